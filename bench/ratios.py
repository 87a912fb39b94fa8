#!/usr/bin/env python3
"""Pairs Google Benchmark results by name and prints kite's speed ratio to each anchor.

Names follow kite's convention, one path segment naming the implementation, e.g.
core/dot/kite/n:384 and core/dot/eigen/n:384. Run a binary with repetitions and JSON output,
then pass the file:

  build/release/bench/bench_core --benchmark_repetitions=5 \
      --benchmark_out=core.json --benchmark_out_format=json
  python3 bench/ratios.py core.json [--kite kite]

Medians over repetitions are used (aggregate rows named *_median); the ratio is
anchor_time / kite_time, so > 1 means kite is faster. Standard library only.
"""
import argparse
import json
import re
import sys
from collections import defaultdict


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("json_file")
    ap.add_argument("--kite", default="kite", help="implementation segment that names kite")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    data = json.load(open(args.json_file))
    times = {}
    for b in data["benchmarks"]:
        name = b["name"]
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") != "median":
                continue
            name = re.sub(r"_median$", "", name)
        elif any(x.get("run_type") == "aggregate" for x in data["benchmarks"]):
            continue
        times[name] = b["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
    groups = defaultdict(dict)
    for name, t in times.items():
        parts = name.split("/")
        for i, p in enumerate(parts):
            key = "/".join(parts[:i] + ["*"] + parts[i + 1:])
            groups[key][p] = t
    rows = []
    for key, impls in sorted(groups.items()):
        if args.kite not in impls or len(impls) < 2:
            continue
        for impl, t in sorted(impls.items()):
            if impl == args.kite:
                continue
            rows.append((key.replace("*", f"{args.kite}|{impl}"), impls[args.kite], t, t / impls[args.kite]))
    if not rows:
        print("no kite/anchor pairs found", file=sys.stderr)
        return 1
    # The host the binary ran on (kite::bench::host_setup puts it in the JSON context).
    host = data.get("context", {}).get("host")
    if host:
        print(f"host: {host}")
        if args.markdown:
            print()
    if args.markdown:
        print("| benchmark | kite | anchor | anchor / kite |")
        print("|---|---:|---:|---:|")
        for k, tk, ta, r in rows:
            print(f"| `{k}` | {tk*1e6:.3f} us | {ta*1e6:.3f} us | {r:.2f}x |")
    else:
        for k, tk, ta, r in rows:
            print(f"{k:70s} kite {tk*1e6:10.3f} us  anchor {ta*1e6:10.3f} us  ratio {r:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
