#!/usr/bin/env bash
# End-to-end HTTP serving comparison: kite-serve against llama.cpp's llama-server, same GGUF file,
# same thread count, same number of parallel slots, the same open-loop Poisson workload
# (bench/serve_load.py with the same seed) at each rate.
#
#   bench/serve_http.sh [RATE...]          (the rates default to $RATES)
#
# Environment (defaults):
#   MODEL        models/SmolLM2-135M-Instruct.Q4_1.gguf
#   THREADS      2        compute threads of both servers
#   PARALLEL     16       parallel sequences (kite --parallel, llama-server -np)
#   CTX          1024     tokens per request/slot (llama-server gets -c CTX*PARALLEL: its context is shared by the slots)
#   RATES        "0.5 1 2" requests per second
#   DURATION     60       seconds of arrivals per rate
#   SEED         1        serve_load.py seed (same schedule and prompts for both servers)
#   TIMEOUT      120      serve_load.py per-request socket timeout
#   OUT          /tmp/kite_serve_http   folder for the JSON results and server logs
#   SERVERS      "kite llama"           which servers to run, in this order
#   KITE_SERVE   build/release/examples/kite-serve
#   LLAMA_SERVER .cache/llama-cpp/build-0.3.36-noamx/bin/llama-server
#   LOAD_ARGS    ""       extra serve_load.py arguments, e.g. "--output-mean-tokens 64"
#   WARMUP       1        one short request (not in the results) after /health, before the first rate
#
# Each server is started once, waited for (GET /health == 200, at most 60 s), given every rate in
# turn, then stopped with SIGTERM (SIGKILL after 30 s). The prefix cache therefore carries over
# from one rate to the next, for both servers alike.
#
# llama-server flags (checked against `llama-server --help` of build-0.3.36-noamx): -m, --port,
# -t, -tb, -np, -c, -cb, --log-disable all exist under these names; none had to change. -cb is
# the default already and is passed only to be explicit. llama-server never answers 429 (it
# queues every request); kite-serve answers 429 beyond --queue (64 waiting) requests.
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/serve_common.sh
RATES=${RATES:-"0.5 1 2"}
if [[ $# -gt 0 ]]; then RATES="$*"; fi
DURATION=${DURATION:-60}
SEED=${SEED:-1}
TIMEOUT=${TIMEOUT:-120}
OUT=${OUT:-/tmp/kite_serve_http}
SERVERS=${SERVERS:-"kite llama"}
LLAMA_SERVER=${LLAMA_SERVER:-.cache/llama-cpp/build-0.3.36-noamx/bin/llama-server}
LOAD_ARGS=${LOAD_ARGS:-}
WARMUP=${WARMUP:-1}

mkdir -p "$OUT"
echo "# model $MODEL, threads $THREADS, parallel $PARALLEL, ctx $CTX, rates $RATES, duration $DURATION s, seed $SEED"
echo "# results in $OUT"

server_pid=""

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$server_pid" 2>/dev/null; then
      echo "# server $server_pid still running 30 s after SIGTERM: SIGKILL" >&2
      kill -KILL "$server_pid" 2>/dev/null || true
    fi
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server NAME PORT: launches it in the background (log in $OUT/NAME.log), sets server_pid.
start_server() {
  local name=$1 port=$2
  local -a cmd
  case "$name" in
    kite)
      [[ -x "$KITE_SERVE" ]] || { echo "no $KITE_SERVE: build the kite-serve target" >&2; return 1; }
      cmd=("$KITE_SERVE" --model "$MODEL" --port "$port" --threads "$THREADS" --parallel "$PARALLEL"
           --ctx "$CTX" --quiet --int8-activations)
      ;;
    llama)
      [[ -x "$LLAMA_SERVER" ]] || { echo "no $LLAMA_SERVER: build llama.cpp's llama-server" >&2; return 1; }
      cmd=("$LLAMA_SERVER" -m "$MODEL" --port "$port" -t "$THREADS" -tb "$THREADS" -np "$PARALLEL"
           -c $((CTX * PARALLEL)) -cb --log-disable)
      ;;
    *) echo "unknown server $name" >&2; return 1 ;;
  esac
  echo "## $name: ${cmd[*]}"
  "${cmd[@]}" >"$OUT/$name.log" 2>&1 &
  server_pid=$!
}

# wait_health NAME PORT: GET /health until 200, at most 60 s; fails if the server exits.
wait_health() {
  local name=$1 port=$2 code
  for _ in $(seq 120); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "# the server exited before answering /health:" >&2; tail -5 "$OUT/$name.log" >&2 || true
      return 1
    fi
    code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)
    [[ "$code" == 200 ]] && return 0
    sleep 0.5
  done
  echo "# no 200 from /health within 60 s" >&2
  return 1
}

load_limit=$(awk -v d="$DURATION" -v t="$TIMEOUT" 'BEGIN { print int(d + t + 90) }')

for name in $SERVERS; do
  port=${PORT:-$(free_port)}
  if ! start_server "$name" "$port" || ! wait_health "$name" "$port"; then
    echo "# $name: not started; its rows stay empty" >&2
    stop_server
    continue
  fi
  if [[ "$WARMUP" == 1 ]]; then
    curl -s -m 60 -o /dev/null "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' \
      -d '{"model":"default","messages":[{"role":"user","content":"Hello"}],"max_tokens":8}' || true
  fi
  for rate in $RATES; do
    json="$OUT/${name}_rate${rate}.json"
    rm -f "$json"
    # shellcheck disable=SC2086  # LOAD_ARGS is a list of arguments
    if ! timeout "$load_limit" python3 bench/serve_load.py --url "http://127.0.0.1:$port" --rate "$rate" \
        --duration "$DURATION" --seed "$SEED" --timeout "$TIMEOUT" --label "$name" --json "$json" $LOAD_ARGS; then
      echo "# serve_load.py failed for $name at rate $rate" >&2
    fi
  done
  stop_server
done

echo
python3 - "$OUT" "$RATES" "$SERVERS" <<'EOF'
import json, os, sys
out, rates, servers = sys.argv[1], sys.argv[2].split(), sys.argv[3].split()

def load(name, rate):
    p = os.path.join(out, f"{name}_rate{rate}.json")
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def f(x):
    return "-" if x is None else f"{x:.1f}"

print(f"{'rate':>5} {'server':<6} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p95':>9} {'TPOT p50':>9} {'TPOT p95':>9}  ok/429/err")
for rate in rates:
    tput = {}
    for name in servers:
        s = load(name, rate)
        if s is None:
            print(f"{rate:>5} {name:<6} {'(no result)':>8}")
            continue
        tput[name] = s["throughput_tok_s"]
        t, p = s["ttft_ms"], s["tpot_ms"]
        print(f"{rate:>5} {name:<6} {f(s['throughput_tok_s']):>8} {f(t['p50']):>9} {f(t['p95']):>9} "
              f"{f(p['p50']):>9} {f(p['p95']):>9}  {s['completed']}/{s['rejected']}/{s['errors']}")
    if tput.get("kite") and tput.get("llama"):
        print(f"{rate:>5} kite/llama throughput ratio {tput['kite'] / tput['llama']:.2f}")
print("(TTFT/TPOT in ms, nearest-rank percentiles over completed requests; "
      "throughput = completed output tokens / (last completion - first send))")
EOF
