#!/usr/bin/env bash
# bench/gpu/run.sh [build-dir]: kite's whole GPU check in one command, for a machine with a GPU
# (about five minutes). Builds the GPU tests and benchmark unless the build folder already holds
# them (build them elsewhere with `cmake --preset cuda && cmake --build build/cuda --target
# test_gpu kite_gpu_bench` and carry the folder), runs every GPU test (a missing device fails:
# KITE_REQUIRE_GPU=1), times kite's kernels and PyTorch's SDPA flash on the same shapes, and
# prints the table. Logs go to $KITE_GPU_LOGS (default build-dir/gpu-logs).
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/cuda}
logs=${KITE_GPU_LOGS:-$build/gpu-logs}
mkdir -p "$logs"
if [[ ! -x $build/tests/cuda/test_gpu || ! -x $build/bench/kite_gpu_bench ]]; then
  cmake --preset cuda -B "$build" && cmake --build "$build" --target test_gpu kite_gpu_bench || exit 1
fi
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv | tee "$logs/nvidia-smi.txt"
rc=0
echo "== GPU tests"
# The whole log goes to a file first: a pipe that closes early (head) would kill the tests.
KITE_REQUIRE_GPU=1 timeout 240 "$build/tests/cuda/test_gpu" >"$logs/test_gpu.log" 2>&1 || rc=1
grep -E "kite-gpu-err|FAILED|passed|failed|error|SKIPPED" "$logs/test_gpu.log" | tail -300
[[ $rc -eq 0 ]] || echo "== GPU tests FAILED (see $logs/test_gpu.log)"
echo "== kite_gpu_bench"
timeout 180 "$build/bench/kite_gpu_bench" all >"$logs/kite_bench.jsonl" 2>"$logs/kite_bench.err" || rc=1
cat "$logs/kite_bench.err"
echo "== torch SDPA flash (anchor)"
timeout 120 python3 bench/gpu/torch_sdpa.py >"$logs/torch.jsonl" 2>"$logs/torch.err" || rc=1
cat "$logs/torch.err"
echo "== table"
python3 bench/gpu/table.py "$logs/kite_bench.jsonl" "$logs/torch.jsonl" | tee "$logs/table.md"
exit $rc
