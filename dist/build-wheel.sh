#!/bin/sh
# Builds the Python wheel (python/: the poplite binary and the pytest plugin)
# with maturin around the static binary of dist/build-static.sh, so the wheel
# runs on any x86_64 Linux and CI compiles poplite once for every package.
# Prints the wheel's path. Usage: dist/build-wheel.sh [OUT_DIR]
# (default target/wheels). Needs maturin (`pip install maturin`).
set -eu
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-target/wheels}")
dist/build-static.sh >/dev/null
rm -f "$out"/poplite-*.whl
# The same target, flags and directory as dist/build-static.sh: cargo reuses
# its build and only links the stripped binary anew.
cd python
CARGO_TARGET_DIR=../target/static RUSTFLAGS="-C target-feature=+crt-static" \
    python3 -m maturin build --release --locked --target x86_64-unknown-linux-gnu --out "$out" >&2
ls "$out"/poplite-*.whl
