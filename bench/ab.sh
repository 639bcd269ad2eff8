#!/usr/bin/env bash
# bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]: two poplite builds side by
# side on the same in-memory mail (8 users x 50 messages of 2-20 KB, cheap
# hashes, so the mail path shows), `login` then `retr` for ROUNDS rounds
# (default 5) of 5 s each, alternating old and new, with examples/loadgen at
# concurrency 8. Prints each run (sessions/s, and CPU per session: the
# server process's user+system time over the run, from /proc, divided by the
# sessions done) and the medians' ratios new/old. Loopback only; both servers
# (and the scrape loop) are stopped (by pid) on exit.
#
# AB_NEW_ARGS: more `serve` options for the new build only (e.g.
# "--http 127.0.0.1:42212"); AB_SCRAPE: a URL fetched once a second
# for the whole run (e.g. that listener's /metrics), as Prometheus would.
set -euo pipefail
old_bin=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
new_bin=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
rounds=${3:-5}
cd "$(dirname "$0")/.."
cargo build --release --quiet --example loadgen
loadgen=${CARGO_TARGET_DIR:-target}/release/examples/loadgen
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
declare -A server_pid
start() { # side binary port [extra serve options]
    local side=$1 bin=$2 port=$3
    shift 3
    RUST_LOG=warn "$bin" serve --memory "${users[@]}" --seed "$work/seed" \
        --listen "127.0.0.1:$port" --auth-failure-delay 0s "$@" >/dev/null 2>&1 &
    pids+=($!)
    server_pid[$side]=$!
}
start old "$old_bin" 42210
# shellcheck disable=SC2086 # AB_NEW_ARGS is a list of words
start new "$new_bin" 42211 ${AB_NEW_ARGS:-}
sleep 2
if [[ -n ${AB_SCRAPE:-} ]]; then
    # Bounded like the runs: at most one scrape a second for two hours.
    (for _ in $(seq 7200); do curl -fsS -o /dev/null --max-time 2 "$AB_SCRAPE" || true; sleep 1; done) &
    pids+=($!)
fi
cpu_ticks() { # pid: user + system ticks of the whole process so far
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
for scenario in login retr; do
    for round in $(seq "$rounds"); do
        for side in old:42210 new:42211; do
            name=${side%%:*}
            before=$(cpu_ticks "${server_pid[$name]}")
            "$loadgen" --addr "127.0.0.1:${side##*:}" --scenario "$scenario" --concurrency 8 \
                --user-count 8 --duration 5s --json "$work/$scenario-$name-$round.json" >/dev/null
            after=$(cpu_ticks "${server_pid[$name]}")
            echo $((after - before)) >"$work/$scenario-$name-$round.ticks"
        done
    done
done
python3 - "$work" "$(getconf CLK_TCK)" <<'PY'
import glob, json, statistics, sys
work, tick = sys.argv[1], 1000.0 / int(sys.argv[2])
for scenario in ("login", "retr"):
    medians, cpu = {}, {}
    for side in ("old", "new"):
        files = sorted(glob.glob(f"{work}/{scenario}-{side}-*.json"))
        runs = [json.load(open(f)) for f in files]
        rates = [run["sessions_per_s"] for run in runs]
        per_session = [int(open(f[:-5] + ".ticks").read()) * tick / max(run["sessions"], 1)
                       for f, run in zip(files, runs)]
        medians[side] = statistics.median(rates)
        cpu[side] = statistics.median(per_session)
        print(f"{scenario} {side}: sessions/s {[round(r, 1) for r in rates]}, "
              f"CPU ms/session {[round(c, 3) for c in per_session]}, "
              f"p99 ms median {statistics.median(run['p99_ms'] for run in runs):.2f}")
    print(f"{scenario}: sessions/s new/old = {medians['new'] / medians['old']:.3f}, "
          f"CPU per session new/old = {cpu['new'] / cpu['old']:.3f}")
PY
