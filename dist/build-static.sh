#!/bin/sh
# Builds a statically linked x86_64 Linux poplite (glibc's static libc:
# the musl target cannot be installed on these machines) and prints its
# path. Usage: dist/build-static.sh [OUT]   (OUT: copy it there too)
#
# Static glibc cannot load NSS modules: host names are resolved from
# /etc/hosts and DNS only, never LDAP, mDNS or nss-resolve (docs/packaging.md).
set -eu
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# A target dir of its own: the flags differ from a normal build, and
# sharing target/ would rebuild everything each time one or the other runs.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/static"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --target "$target" --bin poplite >&2
binary="$CARGO_TARGET_DIR/$target/release/poplite"
if ldd "$binary" >/dev/null 2>&1 && ! ldd "$binary" 2>&1 | grep -q "statically linked"; then
    echo "dist/build-static.sh: $binary is not static:" >&2
    ldd "$binary" >&2
    exit 1
fi
if [ $# -ge 1 ]; then
    cp "$binary" "$1"
    binary="$1"
fi
echo "$binary"
