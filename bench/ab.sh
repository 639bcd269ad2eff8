#!/usr/bin/env bash
# bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]: two poplite builds side by
# side on the same in-memory mail (8 users x 50 messages of 2-20 KB, cheap
# hashes, so the mail path shows), `login` then `retr` for ROUNDS rounds
# (default 5) of 5 s each, alternating old and new, with examples/loadgen at
# concurrency 8. Prints each run and the medians' ratio new/old. Loopback
# only; both servers are stopped (by pid) on exit.
set -euo pipefail
old_bin=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
new_bin=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
rounds=${3:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example loadgen
loadgen=target/release/examples/loadgen
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

python3 - "$work/seed" <<'PY'
import os, random, sys
random.seed(7)
for u in range(8):
    folder = os.path.join(sys.argv[1], f"bench{u}")
    os.makedirs(folder)
    for i in range(50):
        lines = random.randint(2000, 20000) // 71
        body = "\n".join("x" * 70 for _ in range(lines))
        with open(os.path.join(folder, f"{i:03d}.eml"), "w") as f:
            f.write(f"Subject: m{i}\nFrom: a@b\n\n{body}\n")
PY
users=()
for u in 0 1 2 3 4 5 6 7; do users+=(--user "bench$u:pw"); done
start() { # binary port
    RUST_LOG=warn "$1" serve --memory "${users[@]}" --seed "$work/seed" \
        --listen "127.0.0.1:$2" --auth-failure-delay 0s >/dev/null 2>&1 &
    pids+=($!)
}
start "$old_bin" 42210
start "$new_bin" 42211
sleep 2
for scenario in login retr; do
    for round in $(seq "$rounds"); do
        for side in old:42210 new:42211; do
            "$loadgen" --addr "127.0.0.1:${side##*:}" --scenario "$scenario" --concurrency 8 \
                --user-count 8 --duration 5s --json "$work/$scenario-${side%%:*}-$round.json" >/dev/null
        done
    done
done
python3 - "$work" <<'PY'
import glob, json, statistics, sys
for scenario in ("login", "retr"):
    medians = {}
    for side in ("old", "new"):
        runs = [json.load(open(f)) for f in sorted(glob.glob(f"{sys.argv[1]}/{scenario}-{side}-*.json"))]
        rates = [run["sessions_per_s"] for run in runs]
        medians[side] = statistics.median(rates)
        print(f"{scenario} {side}: sessions/s {[round(r, 1) for r in rates]}, "
              f"p99 ms median {statistics.median(run['p99_ms'] for run in runs):.2f}")
    print(f"{scenario}: new/old = {medians['new'] / medians['old']:.3f}")
PY
