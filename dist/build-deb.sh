#!/bin/sh
# Builds the Debian package target/debian/poplite_VERSION_amd64.deb with
# cargo-deb (installed from crates.io when missing) around the static binary
# of dist/build-static.sh, stripped, and the rest listed in Cargo.toml's
# [package.metadata.deb]. Prints the package's path last.
set -eu
cd "$(dirname "$0")/.."
if ! command -v cargo-deb >/dev/null 2>&1; then
    cargo install cargo-deb --locked --version 3.8.0 >&2
fi
static=$(dist/build-static.sh)
# cargo-deb strips only what it builds itself; this binary is built above.
mkdir -p target/debian-staging
strip -o target/debian-staging/poplite "$static"
cargo deb --no-build "$@"
