# poplite in an image FROM scratch: the static binary (dist/build-static.sh)
# and nothing else, no shell, no libc, no package manager. Built by
# dist/build-image.sh, which prepares the context (see docs/packaging.md).
FROM scratch

# The binary, and two directories scratch lacks: /data for the database
# (a volume, owned by the user the server runs as) and /tmp for SQLite's
# temporary files.
COPY poplite /poplite
COPY --chown=10001:10001 rootfs/data /data
COPY rootfs/tmp /tmp

# A numeric user: scratch has no /etc/passwd to name one.
USER 10001:10001
VOLUME /data

# Unprivileged ports; map them with -p 110:1110 and so on. Each listener
# other than POP3 is on only when its variable is set (docs/packaging.md).
ENV POPLITE_DB=/data/poplite.db \
    POPLITE_LISTEN=0.0.0.0:1110
EXPOSE 1110 1995 2424 2525 8025

# The binary checks itself: POP3's greeting, or /readyz where HTTP is on.
HEALTHCHECK --interval=10s --timeout=6s --start-period=5s --retries=3 \
    CMD ["/poplite", "health", "--timeout", "5s"]

ENTRYPOINT ["/poplite"]
CMD ["serve"]
