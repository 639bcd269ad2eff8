#!/usr/bin/env bash
# bench/dovecot-setup.sh: what bench/compare.py needs from the system that
# only root on Debian can give it, kept in shell because it is apt-get and
# useradd and nothing else.
#
#   bench/dovecot-setup.sh                    Dovecot's POP3 server (package
#                                             dovecot-pop3d) if dovecot, doveadm
#                                             or /usr/lib/dovecot/pop3 is
#                                             missing, and the system user
#                                             popbench that owns Dovecot's
#                                             maildirs
#   bench/dovecot-setup.sh --package NAME     one more Debian package (compare.py
#                                             asks for python3-argon2 when pip
#                                             cannot install argon2-cffi)
#
# Idempotent: what is already there is left as it is. Everything else
# (dovecot.conf, maildirs, starting and stopping Dovecot) is compare.py's.
set -euo pipefail

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    echo "dovecot-setup.sh: $*" >&2
    exit 1
}

[[ $(id -u) -eq 0 ]] || die "run as root (it installs packages and creates the system user popbench)"

export DEBIAN_FRONTEND=noninteractive
# Installs PACKAGES, updating the package lists first only if that is needed.
apt_install() {
    apt-get install -y -q "$@" >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}

case ${1:-} in
--package)
    [[ $# -eq 2 && -n $2 ]] || die "--package takes one package name"
    log "installing $2"
    apt_install "$2"
    exit 0
    ;;
"") ;;
*) die "unknown argument: $1 (no arguments, or --package NAME)" ;;
esac

if ! command -v dovecot >/dev/null || ! command -v doveadm >/dev/null || [[ ! -x /usr/lib/dovecot/pop3 ]]; then
    log "installing dovecot-pop3d"
    apt_install dovecot-pop3d
fi

if ! id popbench >/dev/null 2>&1; then
    log "creating system user popbench"
    useradd --system --no-create-home --shell /usr/sbin/nologin popbench
fi
