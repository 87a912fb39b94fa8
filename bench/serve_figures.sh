#!/usr/bin/env bash
# The serving figures of README.md / bench/README.md: bench_serve (kite::serve::engine on
# SmolLM2-135M-Instruct Q4_1) in the issue's workloads, medians of --repeat runs, and
# llama.cpp's llama-batched-bench at 1 and 16 parallel sequences on the same file and threads.
#
#   bench/serve_figures.sh [BUILD_DIR] [LLAMA_CPP_BUILD_DIR]
#     BUILD_DIR            kite build with bench_serve (default build/release)
#     LLAMA_CPP_BUILD_DIR  a llama.cpp build with bin/llama-batched-bench (optional): the one
#                          bench/gguf_vs_llamacpp.py configures under .cache/llama-cpp/, plus
#                          cmake --build DIR --target llama-batched-bench
#   Environment: THREADS (2), REPEAT (2), FIXED_REPEAT (5: the two fixed-shape runs),
#                KITE_DATA (SciFact for the RAG workload),
#                ACT ("--int8-activations" by default; "" for float activations).
#
# Prints one JSON object per run (bench_serve's) and llama.cpp's table; the ratios are computed
# from these by hand in bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/release}
llama=${2:-}
bin="$build/bench/bench_serve"
model=models/SmolLM2-135M-Instruct.Q4_1.gguf
threads=${THREADS:-2}
repeat=${REPEAT:-2}
fixed_repeat=${FIXED_REPEAT:-5}
act=${ACT---int8-activations}
[[ -x "$bin" ]] || { echo "no $bin: build the bench_serve target" >&2; exit 1; }
[[ -f "$model" ]] || { echo "no $model: run python3 tools/fetch_smollm2.py" >&2; exit 1; }
# run [--repeat N] ARGS...: bench_serve with ARGS, medians of N runs (default REPEAT).
run() {
  local r=$repeat
  if [[ ${1:-} == --repeat ]]; then r=$2; shift 2; fi
  echo "## bench_serve --repeat $r $*"
  "$bin" --model "$model" --threads "$threads" --repeat "$r" $act "$@" --json
}

echo "# host: $(python3 bench/hostinfo.py), threads $threads"
# 1. Aggregate decode throughput: 1 and 16 streams, 128-token prompts, 64 new tokens (the shape
#    of llama-batched-bench -npp 128 -ntg 64).
#    These runs take seconds; five each (FIXED_REPEAT), because on a shared VM the single stream
#    delivered 103 and 181 output tok/s in two runs of the same binary (2026-12-05).
run --repeat "$fixed_repeat" --fixed --rate 0 --requests 1 --prompt-tokens 128 --output-tokens 64 --prefix-cache off
run --repeat "$fixed_repeat" --fixed --rate 0 --requests 16 --max-running 16 --prompt-tokens 128 --output-tokens 64 --prefix-cache off
# 2. Continuous vs static vs dynamic batching: Poisson arrivals, lognormal lengths, a shared
#    256-token system prompt; a saturating rate and a moderate one.
for policy in continuous static dynamic; do run --policy "$policy" --requests 64 --rate 20; done
for policy in continuous static; do run --policy "$policy" --requests 64 --rate 3; done
# 3. Prefix caching: time to first token with the shared 256-token system prompt, on and off.
for pc in on off; do run --requests 24 --rate 1 --prefix-cache "$pc"; done
# 4. Prompt-lookup speculation on retrieval-augmented prompts (SciFact abstract + claim), greedy,
#    one stream at a time.
if [[ -n "${KITE_DATA:-}" && -f "$KITE_DATA/scifact/corpus.jsonl" ]]; then
  for sp in off ngram; do
    run --requests 16 --rate 0 --max-running 1 --rag "$KITE_DATA" --output-tokens 128 --speculative "$sp" --ngram-min 3
  done
else
  echo "## KITE_DATA unset or without scifact/: the RAG speculation rows are skipped"
fi
# 5. llama.cpp's batched bench on the same file.
if [[ -n "$llama" ]]; then
  echo "## llama-batched-bench -npp 128 -ntg 64 -npl 1,16 -t $threads"
  "$llama/bin/llama-batched-bench" -m "$model" -c 4096 -b 2048 -ub 512 -npp 128 -ntg 64 -npl 1,16 -t "$threads" 2>&1 |
    grep -E '^\|'
fi
