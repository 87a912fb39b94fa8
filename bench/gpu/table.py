#!/usr/bin/env python3
"""Prints the issue's table from kite_gpu_bench's and torch_sdpa.py's JSON lines: flash forward
beside torch SDPA flash (ratio, target >= 0.8), paged decode and int4 GEMV as a share of the
measured copy bandwidth (target >= 70%)."""
import json
import sys


def load(paths):
    rows = []
    for p in paths:
        try:
            with open(p) as f:
                rows += [json.loads(l) for l in f if l.startswith("{")]
        except FileNotFoundError:
            print(f"table.py: {p} missing", file=sys.stderr)
    return rows


def main(paths):
    rows = load(paths)
    bw = next((r["gbps"] for r in rows if r["case"] == "bandwidth"), None)
    torch = {r["params"]: r for r in rows if r["case"] == "torch_sdpa_flash"}
    print("| kernel | shape | kite | anchor | ratio | target | met |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ok = "" if r.get("ok", True) else " **WRONG OUTPUT**"
        if r["case"] == "flash_fwd":
            t = torch.get(r["params"])
            if t:
                ratio = r["tflops"] / t["tflops"]
                print(f"| flash fwd | {r['params']} | {r['tflops']:.0f} TFLOP/s ({r['ms']:.3f} ms){ok} | "
                      f"torch SDPA flash {t['tflops']:.0f} TFLOP/s | {ratio:.2f}x | >= 0.80x | "
                      f"{'yes' if ratio >= 0.8 and not ok else 'no'} |")
            else:
                print(f"| flash fwd | {r['params']} | {r['tflops']:.0f} TFLOP/s{ok} | (no anchor) | | >= 0.80x | |")
        elif r["case"] in ("paged_decode", "gemv") and bw:
            share = r["gbps"] / bw
            target = ">= 70%" if ("batch 64, ctx 4096" in r["params"] or ("int4" in r["params"] and "batch 1," in r["params"])) else "(info)"
            met = ("yes" if share >= 0.7 and not ok else "no") if target != "(info)" else ""
            print(f"| {r['case']} | {r['params']} | {r['gbps']:.0f} GB/s ({r['ms'] * 1000:.1f} us){ok} | "
                  f"copy bandwidth {bw:.0f} GB/s | {share * 100:.0f}% | {target} | {met} |")
    if bw:
        print(f"\ncopy bandwidth (cudaMemcpy device to device, 2 GiB, bytes read + written): {bw:.0f} GB/s")


if __name__ == "__main__":
    main(sys.argv[1:])
