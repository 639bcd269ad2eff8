#!/bin/sh
# Builds the container image from the static binary: tags poplite:VERSION
# and poplite:latest, and prints the image id. Usage:
#   dist/build-image.sh [BINARY]   (default: dist/build-static.sh builds one)
# No registry is needed: the image is FROM scratch.
set -eu
cd "$(dirname "$0")/.."
binary="${1:-$(dist/build-static.sh)}"
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "$binary" "$context/poplite"
strip "$context/poplite" 2>/dev/null || true
mkdir -p "$context/rootfs/data" "$context/rootfs/tmp"
chmod 1777 "$context/rootfs/tmp"
cp Dockerfile "$context/Dockerfile"
docker build -q -t "poplite:$version" -t poplite:latest "$context"
