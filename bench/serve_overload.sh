#!/usr/bin/env bash
# kite-serve under overload: an open-loop Poisson load at RATE requests/s (choose about twice
# what the server sustains) for DURATION seconds. Reports how every request ended (completed or
# 429; errors and hangs are failures) and the server's resident memory when idle before the
# load, after a warm-up at the same load, and when idle again after each of two overload runs
# (the KV pool is allocated at start and its pages are touched as blocks are first used, so the
# resident set grows to the pool's size and stays there: a leak would grow it again on the
# second run).
#
#   RATE=8 DURATION=60 bench/serve_overload.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/serve_common.sh
RATE=${RATE:-8}
DURATION=${DURATION:-60}
WARM=${WARM:-15}
OUT=${OUT:-/tmp/kite_serve_overload}
mkdir -p "$OUT"
port=$(free_port)
"$KITE_SERVE" --model "$MODEL" --port "$port" --threads "$THREADS" --parallel "$PARALLEL" --ctx "$CTX" \
  --int8-activations --quiet 2> "$OUT/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
  sleep 0.1
done
rss() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$pid/status"; }
idle() {  # waits until nothing runs or waits (bounded: 120 s)
  for _ in $(seq 1200); do
    m=$(curl -sf "http://127.0.0.1:$port/metrics")
    if grep -q '^kite_running_sequences 0$' <<<"$m" && grep -q '^kite_queue_depth 0$' <<<"$m"; then return 0; fi
    sleep 0.1
  done
  echo "server not idle after 120 s" >&2
  return 1
}
echo "rss_idle_start_mib $(rss)"
python3 bench/serve_load.py --url "http://127.0.0.1:$port" --rate "$RATE" --duration "$WARM" --seed 2 --label warm \
  --json "$OUT/warm.json" > "$OUT/warm.txt"
idle
echo "rss_idle_after_warmup_mib $(rss)"
for run in 1 2; do
  python3 bench/serve_load.py --url "http://127.0.0.1:$port" --rate "$RATE" --duration "$DURATION" --seed $((2 + run)) \
    --label "overload $run" --json "$OUT/overload$run.json" | tee "$OUT/overload$run.txt"
  idle
  echo "rss_idle_after_overload${run}_mib $(rss)"
done
kill -TERM $pid
wait $pid && echo "server exit status 0"
trap - EXIT
