#!/usr/bin/env bash
# bench/flood.sh: does a login flood slow sessions that are already logged in?
# One session RETRs a 50 MB message over and over (loadgen `big`), first alone,
# then while 16 workers log in as fast as they can at the default argon2 cost
# (right passwords, so the failed-login back-off stays out of it). Prints both
# rates and their ratio. Loopback only; about 40 seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin poplite --example loadgen
P=target/release/poplite
L=target/release/examples/loadgen
W=$(mktemp -d)
trap 'kill "$SP" 2>/dev/null || true; rm -rf "$W"' EXIT
DB=$W/flood.db
printf 'pw\n' | $P --db "$DB" user add big0 --password-stdin --argon2-params m=64,t=1,p=1 >/dev/null
python3 -c 'import sys; sys.stdout.write("Subject: big\r\n\r\n" + ("x" * 998 + "\r\n") * 50000)' >"$W/big.eml"
$P --db "$DB" deliver big0 "$W/big.eml" >/dev/null
for i in $(seq 0 15); do
    printf 'pw\n' | $P --db "$DB" user add "flood$i" --password-stdin >/dev/null
done
PORT=$((20000 + RANDOM % 20000))
RUST_LOG=warn $P --db "$DB" serve --listen "127.0.0.1:$PORT" --max-connections-per-ip 0 &
SP=$!
sleep 0.5
big() { $L --addr "127.0.0.1:$PORT" --scenario big --concurrency 1 --duration 8s --users big0 --user-count 1 --password pw | awk '/^MB\/s/ {print $2}'; }
alone=$(big)
$L --addr "127.0.0.1:$PORT" --scenario login --concurrency 16 --duration 12s \
    --users 'flood%d' --user-count 16 --password pw >"$W/flood.txt" &
FP=$!
sleep 2
flooded=$(big)
wait "$FP"
logins=$(awk '/^sessions\/s/ {print $2}' "$W/flood.txt")
echo "big alone:               $alone MB/s"
echo "big during a login flood: $flooded MB/s ($logins logins/s at m=19456,t=2,p=1)"
awk -v a="$alone" -v f="$flooded" 'BEGIN {printf "ratio: %.2f\n", f / a}'
