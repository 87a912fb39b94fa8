#!/usr/bin/env python3
"""kite's flat index beside FAISS (PyPI faiss-cpu, the anchor users get), same vectors, same
thread counts, same run.

For each size the script writes base.npy (n x d) and queries.npy (1000 x d), uniform [-1, 1)
float32 from fixed seeds, then times
  - kite: bench_flat --flat_data=DIR (Google Benchmark, one search call per iteration,
    --benchmark_repetitions medians), which reads the same files; for batches the scan kernel
    takes (nq < 8) also kite-f16, the same index with flat_options::f16_scan (exact results
    from a float16 pre-filtering scan, 1.5x the memory), and for larger batches kite-bf16,
    with flat_options::bf16_gemm (exact results from a bfloat16 pre-filtering GEMM, 1.5x the
    memory; CPUs with AVX512_BF16 only);
  - FAISS: IndexFlatL2 on the same files in a child Python process whose environment has
    OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed (they can hold a current OpenBLAS back),
    faiss.omp_set_num_threads(t), the same call pattern and repetition medians;
  - optionally (--skylakex) FAISS again with OPENBLAS_CORETYPE=SkylakeX, which makes the
    OpenBLAS bundled in the wheel use its AVX-512 sgemm on CPUs it does not recognise.
Rounds alternate kite and FAISS so that drift on a shared machine hits both.

  python3 bench/flat_vs_faiss.py --bench build/release/bench/bench_flat \
      --n 100000 --d 384 [--nq 1,16,1000] [--threads 1,2] [--reps 5] [--rounds 2] [--skylakex]

Prints a Markdown table: queries per second, ratio kite / FAISS (> 1: kite faster), and for
nq = 1 the scan rate as a fraction of the DRAM read bandwidth bench_flat measures. Peak memory:
one copy of the base in each process (3 GB at n = 1e6, d = 768) plus the page cache.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

import hostinfo

FAISS_CHILD = r"""
import json, sys, time
import numpy as np
import faiss
args = json.loads(sys.argv[1])
base = np.load(args["dir"] + "/base.npy", mmap_mode="r")
queries = np.ascontiguousarray(np.load(args["dir"] + "/queries.npy"))
n, d = base.shape
index = faiss.IndexFlatL2(d)
for i in range(0, n, 65536):
    index.add(np.ascontiguousarray(base[i:i + 65536]))
del base
out = {}
for nq in args["nq"]:
    for t in args["threads"]:
        faiss.omp_set_num_threads(t)
        index.search(queries[:nq], args["k"])  # warm-up
        reps = []
        at = 0
        for r in range(args["reps"]):
            calls, t0 = 0, time.perf_counter()
            while True:  # like Google Benchmark: repeat calls for min_time, report the mean
                index.search(queries[at:at + nq], args["k"])
                at = (at + nq) % (1000 - nq + 1)
                calls += 1
                el = time.perf_counter() - t0
                if el >= args["min_time"]:
                    break
            reps.append(el / calls)
        out[f"{nq}/{t}"] = reps
print(json.dumps({"faiss": faiss.__version__, "times": out}))
"""


def write_data(dirname, n, d, seed):
    """Writes base.npy and queries.npy unless a previous run left the same ones (stamp file)."""
    import numpy as np
    from numpy.lib.format import open_memmap
    stamp = os.path.join(dirname, "stamp.txt")
    tag = f"n={n} d={d} seed={seed} uniform[-1,1) float32"
    if os.path.exists(stamp) and open(stamp).read() == tag:
        return
    os.makedirs(dirname, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = open_memmap(os.path.join(dirname, "base.npy"), mode="w+", dtype=np.float32, shape=(n, d))
    for i in range(0, n, 65536):  # in chunks: a 3 GB base never sits in memory twice
        m = min(65536, n - i)
        base[i:i + m] = rng.random((m, d), dtype=np.float32) * 2 - 1
    base.flush()
    del base
    q = rng.random((1000, d), dtype=np.float32) * 2 - 1
    np.save(os.path.join(dirname, "queries.npy"), q)
    open(stamp, "w").write(tag)


def run_kite(bench, dirname, nqs, threads, k, reps, min_time):
    filt = "flat/kite(-f16|-bf16)?/.*/nq:(" + "|".join(map(str, nqs)) + ")/k:%d/threads:(%s)(/real_time)?$" % (
        k, "|".join(map(str, threads)))
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run([bench, f"--flat_data={dirname}", f"--benchmark_filter={filt}",
                        f"--benchmark_repetitions={reps}", f"--benchmark_min_time={min_time}",
                        f"--benchmark_out={f.name}", "--benchmark_out_format=json"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        data = json.load(open(f.name))
    times, dram = {}, {}
    for b in data["benchmarks"]:
        if b.get("run_type") != "iteration":
            continue
        if b.get("error_occurred"):
            continue
        parts = dict(p.split(":") for p in b["run_name"].split("/") if ":" in p)
        impl = b["run_name"].split("/")[1]
        key = f"{parts['nq']}/{parts['threads']}" + {"kite-f16": "/f16", "kite-bf16": "/bf16"}.get(impl, "")
        unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b["time_unit"]]
        times.setdefault(key, []).append(b["real_time"] * unit)
        dram[parts["threads"]] = b.get("dram_GBps", 0.0)
    return times, dram


def run_faiss(dirname, nqs, threads, k, reps, min_time, coretype):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    arg = json.dumps({"dir": dirname, "nq": nqs, "threads": threads, "k": k, "reps": reps,
                      "min_time": min_time})
    r = subprocess.run([sys.executable, "-c", FAISS_CHILD, arg], check=True, env=env,
                       capture_output=True, text=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="build/release/bench/bench_flat", help="bench_flat binary")
    ap.add_argument("--n", default="100000", help="comma-separated base sizes")
    ap.add_argument("--d", default="384", help="comma-separated dimensions")
    ap.add_argument("--nq", default="1,16,1000")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5, help="repetitions per round (medians)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating kite / FAISS rounds")
    ap.add_argument("--min-time", type=float, default=0.3, help="seconds per repetition")
    ap.add_argument("--skylakex", action="store_true",
                    help="also time FAISS with OPENBLAS_CORETYPE=SkylakeX (nq >= 20 uses BLAS)")
    ap.add_argument("--data-dir", default=None,
                    help="keep the .npy files in DIR/n<n>_d<d>/ and reuse them on the next run "
                         "(default: a temporary directory, removed afterwards)")
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()
    nqs = [int(x) for x in args.nq.split(",")]
    threads = [int(x) for x in args.threads.split(",")]
    if not os.path.exists(args.bench):
        sys.exit(f"flat_vs_faiss: {args.bench} not found; build the bench_flat target first")

    rows = []
    for n in [int(x) for x in args.n.split(",")]:
        for d in [int(x) for x in args.d.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                dirname = os.path.join(args.data_dir, f"n{n}_d{d}") if args.data_dir else tmp
                write_data(dirname, n, d, args.seed + n + d)
                kite_t, faiss_t, skx_t, dram = {}, {}, {}, {}
                version = "?"
                for _ in range(args.rounds):
                    t, dram = run_kite(args.bench, dirname, nqs, threads, args.k, args.reps, args.min_time)
                    for key, v in t.items():
                        kite_t.setdefault(key, []).extend(v)
                    f = run_faiss(dirname, nqs, threads, args.k, args.reps, args.min_time, None)
                    version = f["faiss"]
                    for key, v in f["times"].items():
                        faiss_t.setdefault(key, []).extend(v)
                    if args.skylakex:
                        big = [q for q in nqs if q >= 20]
                        if big:
                            f = run_faiss(dirname, big, threads, args.k, args.reps, args.min_time, "SkylakeX")
                            for key, v in f["times"].items():
                                skx_t.setdefault(key, []).extend(v)
                for nq in nqs:
                    for t in threads:
                        key = f"{nq}/{t}"
                        tk = statistics.median(kite_t[key])
                        tf = statistics.median(faiss_t[key])
                        ts = statistics.median(skx_t[key]) if key in skx_t else None
                        th = statistics.median(kite_t[key + "/f16"]) if key + "/f16" in kite_t else None
                        tb = statistics.median(kite_t[key + "/bf16"]) if key + "/bf16" in kite_t else None
                        gbs = n * d * 4 / tk / 1e9
                        rows.append((n, d, nq, t, tk, tf, ts, gbs, dram.get(str(t), 0.0), version, th, tb))

    print(f"host: {hostinfo.describe()}")
    print(f"kite flat_index vs faiss-cpu {rows[0][9] if rows else ''} (IndexFlatL2), k = {args.k}, "
          f"medians of {args.reps * args.rounds} repetitions; ratio = kite qps / FAISS qps")
    hdr = "| n | d | nq | threads | kite qps | FAISS qps | kite / FAISS |"
    sep = "|---:|---:|---:|---:|---:|---:|---:|"
    if args.skylakex:
        hdr += " FAISS+SkylakeX qps | kite / FAISS+SkylakeX |"
        sep += "---:|---:|"
    hdr += " kite scan GB/s | DRAM GB/s | fraction | kite-f16 qps | kite-f16 / FAISS | f16 scan GB/s |"
    sep += "---:|---:|---:|---:|---:|---:|"
    hdr += " kite-bf16 qps | kite-bf16 / FAISS |"
    sep += "---:|---:|"
    if args.skylakex:
        hdr += " kite-bf16 / FAISS+SkylakeX |"
        sep += "---:|"
    print(hdr)
    print(sep)
    for n, d, nq, t, tk, tf, ts, gbs, dram, _, th, tb in rows:
        line = f"| {n} | {d} | {nq} | {t} | {nq / tk:,.1f} | {nq / tf:,.1f} | {tf / tk:.2f}x |"
        if args.skylakex:
            line += f" {nq / ts:,.1f} | {ts / tk:.2f}x |" if ts else " - | - |"
        if nq <= 16:
            line += f" {gbs:.1f} | {dram:.1f} | {gbs / dram:.0%} |" if dram else f" {gbs:.1f} | - | - |"
        else:
            line += " - | - | - |"
        # float16 rows: 2 bytes per component read
        line += f" {nq / th:,.1f} | {tf / th:.2f}x | {n * d * 2 / th / 1e9:.1f} |" if th else " - | - | - |"
        # bfloat16 GEMM (flat_options::bf16_gemm; batches of 8 and more, AVX512_BF16 only)
        line += f" {nq / tb:,.1f} | {tf / tb:.2f}x |" if tb else " - | - |"
        if args.skylakex:
            line += f" {ts / tb:.2f}x |" if tb and ts else " - |"
        print(line)
    # Two threads never slower than one (kite), per size and batch.
    for n, d, nq, t, tk, *_ in rows:
        if t == 2:
            one = [r for r in rows if r[:3] == (n, d, nq) and r[3] == 1]
            if one and tk > one[0][4]:
                print(f"note: kite with 2 threads is slower than with 1 at n={n} d={d} nq={nq}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
