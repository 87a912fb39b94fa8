#!/usr/bin/env python3
"""kite's flash prefill beside PyTorch's scaled_dot_product_attention on the CPU.

Runs kite's Google Benchmark binary (bench_attn) on the prefill shapes, times
torch.nn.functional.scaled_dot_product_attention on the same shapes with the same number of
threads, and prints medians and the ratio torch_time / kite_time (> 1: kite is faster).

  python3 bench/attn_vs_torch.py --bench build/release/bench/bench_attn [--threads 2]
      [--seqs 2048,8192] [--heads 32] [--kv-heads 32] [--dim 128] [--causal 1] [--reps 3]

Both sides use float32, batch 1, layout-independent inputs (kite: [b][s][h][d]; torch:
[b][h][s][d], its native layout), and the same thread count: OMP_NUM_THREADS for kite,
torch.set_num_threads for torch. The two alternate round by round (--reps rounds), so that
anything else running on the machine disturbs both alike; medians over the rounds are
reported, and the speed-up is the median of the per-round ratios. Needs torch.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import hostinfo


def kite_times(bench, threads, seqs, h, kvh, d, causal, reps=1):
    pattern = "^attn/prefill/flash/kite/h:%d/kvh:%d/d:%d/s:(%s)/causal:%d/threads:%d/" % (
        h, kvh, d, "|".join(str(s) for s in seqs), causal, threads)
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    subprocess.run([bench, "--benchmark_filter=" + pattern, "--benchmark_repetitions=%d" % reps,
                    "--benchmark_out=" + out, "--benchmark_out_format=json"], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    data = json.load(open(out))
    os.unlink(out)
    times = {}
    peak = None
    for b in data["benchmarks"]:
        if reps > 1 and (b.get("run_type") != "aggregate" or b.get("aggregate_name") != "median"):
            continue
        if reps == 1 and b.get("run_type") == "aggregate":
            continue
        s = int(b["name"].split("/s:")[1].split("/")[0])
        times[s] = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        peak = b.get("peak_GFLOP/s", peak)
    missing = [s for s in seqs if s not in times]
    if missing:
        sys.exit("bench_attn produced no result for s = %s (filter %s)" % (missing, pattern))
    return times, peak


class torch_runner:
    """Inputs allocated and warmed up once per shape; time() runs SDPA once."""

    def __init__(self, threads, seqs, h, kvh, d, causal):
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)
        self.runs = {}
        for s in seqs:
            g = torch.Generator().manual_seed(s)
            q = torch.rand(1, h, s, d, generator=g) * 2 - 1
            k = torch.rand(1, kvh, s, d, generator=g) * 2 - 1
            v = torch.rand(1, kvh, s, d, generator=g) * 2 - 1
            run = (lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, is_causal=bool(causal),
                                                                       enable_gqa=h != kvh))
            run()  # warm-up: first-touch of the output and any workspace
            self.runs[s] = run

    def time(self, s):
        t0 = time.perf_counter()
        self.runs[s]()
        return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True, help="path of kite's bench_attn binary")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seqs", default="2048,8192")
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=32)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--causal", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    seqs = [int(x) for x in a.seqs.split(",")]
    torch_side = torch_runner(a.threads, seqs, a.heads, a.kv_heads, a.dim, a.causal)
    rounds_k = {s: [] for s in seqs}
    rounds_t = {s: [] for s in seqs}
    peak = None
    for _ in range(a.reps):
        k, peak = kite_times(a.bench, a.threads, seqs, a.heads, a.kv_heads, a.dim, a.causal)
        for s in seqs:
            rounds_k[s].append(k[s])
            rounds_t[s].append(torch_side.time(s))
    kt = {s: statistics.median(v) for s, v in rounds_k.items()}
    tt = {s: statistics.median(v) for s, v in rounds_t.items()}
    ratio = {s: statistics.median(t / k for t, k in zip(rounds_t[s], rounds_k[s])) for s in seqs}
    import torch

    print(f"host: {hostinfo.describe()}")
    print("flash prefill vs torch %s scaled_dot_product_attention, float32, batch 1, h %d, kvh %d, d %d, "
          "causal %d, %d threads, %d alternating rounds" % (torch.__version__, a.heads, a.kv_heads, a.dim, a.causal,
                                                   a.threads, a.reps))
    print()
    print("Limit: the float32 FMA peak bench_attn measured with %d threads, %s GFLOP/s; each engine's"
          % (a.threads, "%.0f" % peak if peak else "(not reported)"))
    print("rate counts 4 * h * d FLOP per visible query-key pair.")
    print()
    print("| seq | kite flash (ms) | torch SDPA (ms) | kite speed-up (torch / kite) | kite GFLOP/s | of peak "
          "| torch GFLOP/s | of peak |")
    print("|---|---|---|---|---|---|---|---|")
    for s in seqs:
        pairs = 0.5 * s * (s + 1) if a.causal else float(s) * s
        flop = 4.0 * a.heads * a.dim * pairs
        kg, tg = flop / kt[s] / 1e9, flop / tt[s] / 1e9
        frac = (lambda g: "%.0f%%" % (100 * g / peak)) if peak else (lambda g: "-")
        print("| %d | %.1f | %.1f | %.2fx | %.0f | %s | %.0f | %s |" % (s, kt[s] * 1e3, tt[s] * 1e3, ratio[s], kg, frac(kg),
                                                                tg, frac(tg)))


if __name__ == "__main__":
    main()
