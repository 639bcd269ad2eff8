#!/bin/sh
# Builds the Debian package target/debian/poplite_VERSION-1_amd64.deb with
# cargo-deb (installed from crates.io when missing): the release binary
# (stripped), the systemd unit and the rest listed in Cargo.toml's
# [package.metadata.deb]. Prints the package's path last.
set -eu
cd "$(dirname "$0")/.."
if ! command -v cargo-deb >/dev/null 2>&1; then
    cargo install cargo-deb --locked --version 3.8.0
fi
cargo deb --strip "$@"
