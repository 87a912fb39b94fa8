#!/usr/bin/env python3
"""Markdown table of bench_quant_matmul results: each format's median time beside the float32
Eigen anchor of the same shape, batch and threads, the speed-up, and (for GEMV) the effective
weight bandwidth and its fraction of the DRAM read bandwidth the binary measured.

  build/release/bench/bench_quant_matmul --benchmark_repetitions=5 \\
      --benchmark_report_aggregates_only=true \\
      --benchmark_out=quant.json --benchmark_out_format=json
  python3 bench/quant_report.py quant.json

Standard library only.
"""
import json
import re
import sys
from collections import defaultdict

UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = json.load(open(sys.argv[1]))
    rows = {}
    aggregated = any(b.get("run_type") == "aggregate" for b in data["benchmarks"])
    for b in data["benchmarks"]:
        name = b["name"]
        if aggregated:
            if b.get("aggregate_name") != "median":
                continue
            name = re.sub(r"_median$", "", name)
        name = re.sub(r"/real_time$", "", name)
        m = re.match(r"quant/(gemv|gemm)/([^/]+)/kite/(m:\d+/k:\d+/b:\d+/threads:\d+)$", name)
        if not m:
            continue
        op, fmt, shape = m.groups()
        rows[(op, shape, fmt)] = (b["real_time"] * UNITS[b["time_unit"]], b.get("GB/s"), b.get("dram"))
    groups = defaultdict(dict)
    for (op, shape, fmt), v in rows.items():
        groups[(op, shape)][fmt] = v
    # The host the binary ran on (kite::bench::host_setup puts it in the JSON context).
    host = data.get("context", {}).get("host")
    if host:
        print(f"host: {host}")
        print()
    print("| op | shape | format | median | vs f32 (Eigen) | weight GB/s | of DRAM |")
    print("|---|---|---|---:|---:|---:|---:|")
    order = ["f32", "bf16", "f32dense", "int8", "int8a8", "llm_int8", "int4g128", "int4g128sym", "int4g128a8"]
    for (op, shape), fmts in sorted(groups.items(), key=lambda kv: (kv[0][0] == "gemm", kv[0][1])):
        base = fmts.get("f32")
        for fmt in sorted(fmts, key=lambda f: order.index(f) if f in order else len(order)):
            t, gbs, dram = fmts[fmt]
            ratio = f"{base[0] / t:.2f}x" if base else "-"
            bw = f"{gbs:.1f}" if gbs is not None and op == "gemv" else ""
            fr = f"{dram:.2f}" if dram is not None and op == "gemv" else ""
            print(f"| {op} | {shape} | {fmt} | {t * 1e6:.0f} us | {ratio} | {bw} | {fr} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
