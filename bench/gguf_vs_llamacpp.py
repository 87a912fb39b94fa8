#!/usr/bin/env python3
"""kite's GGUF decoder beside llama.cpp (llama-bench) on the same .gguf file, same thread counts,
same run.

The anchor is llama.cpp itself, built from source with -DGGML_NATIVE=ON from the llama-cpp-python
source distribution on PyPI (its vendor/llama.cpp), default CPU backend (no BLAS, no GPU backend).
By default the script builds it once and reuses the build:

  pip download --no-deps --no-binary :all: llama-cpp-python   -> .cache/llama-cpp/ (latest version
                                                                 on the first run; --update
                                                                 fetches a newer one)
  cmake vendor/llama.cpp -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
        -DLLAMA_OPENSSL=OFF -DGGML_BLAS=OFF (GPU backends, RPC, tests, server, app: OFF;
        static libraries) ; cmake --build -j2 --target llama-bench llama-simple
                                                              -> .cache/llama-cpp/build-<version>/
  The sdist ships the submodule's shallow git data (one commit, no tags): the commit is named from
  llama-cpp-python's CHANGELOG (-DLLAMA_BUILD_COMMIT), there is no build number (reported as 0).
  A build takes about 15 minutes on two busy cores.

  CPUs with AMX (Sapphire Rapids and later): -march=native turns on ggml's AMX backend, which
  repacks Q4_0/Q4_1/Q8_0/K-quant weights at load. In the llama.cpp this was written against
  (0c1e57098, October 2026, built with GCC 12) every prompt of more than one token crashes in
  ggml_backend_amx_mul_mat (the compiler drops the stores into the tile configuration that
  _tile_loadconfig reads; llama.cpp issue #20824, open PR #26954). --amx auto (default) probes a
  32-token prompt; if it crashes, a second build, build-<version>-noamx, adds
  -mno-amx-tile -mno-amx-int8 -mno-amx-bf16 (explicit ISA flags win over -march=native), which
  leaves llama.cpp on its generic x86 kernels (for Q4_1: AVX2 with VNNI dot products) as on a
  CPU without AMX, such as the AMD EPYC of the issue. That build is the anchor for every row; the
  native build is still timed on tg128 (single-token decoding does not touch the tile unit: it
  runs 512-bit VNNI kernels on the AMX-repacked weights, about twice the generic path's speed
  here) and gets its own tg rows, so kite is held against whichever is faster.
  --amx on: native build only; --amx off: the -mno-amx build only.

Measurements, for each thread count T (rounds alternate llama.cpp and kite so that drift on a
shared machine hits both; medians over all repetitions of all rounds):
  llama.cpp  llama-bench -m FILE -p 512 -n 128 -t T -r N -o json, otherwise its defaults, printed
             from its JSON: n_batch 2048, n_ubatch 512, f16 KV cache, flash attention auto
             (flash_attn -1; on the CPU backend auto resolves to on), load mode auto (mmap),
             repack 1, poll 50, no --numa, no -pg, default priority. llama-bench runs one warm-up
             per test, then N repetitions: pp512 = one 512-token batch into an empty context,
             tg128 = 128 single-token decodes from an empty context, random token ids. Its JSON
             has the per-repetition rates (samples_ts), whose medians are reported.
             Memory: (1) peak resident set (ru_maxrss from wait4) of llama-simple loading FILE and
             generating 1 token after a 5-token prompt (context of 6 tokens): every weight matrix
             has been read once, so the file pages it uses (mmap) or the repacked copies are
             resident; KV cache and compute buffers are those of a tiny context. This stands for
             "resident set after load". (2) peak resident set of each llama-bench process (pp512
             and tg128 contexts, compute buffers for 512-token batches).
  kite       --kite BIN, called once per thread count and round (contract below). Optional: without
             it only llama.cpp's figures are printed.

Contract for kite's benchmark binary (BIN):

  BIN --model FILE --threads T --tg 128 --pp 512 --repetitions N --json

  Semantics as llama-bench: one warm-up of each test, then N timed repetitions; tg = generate 128
  tokens one at a time from an empty KV cache (token ids of your choice), rate = 128 / seconds;
  pp = one 512-token prompt into an empty KV cache (logits of the last token only), rate = 512 /
  seconds. T threads in all, the calling one included. Prints exactly one JSON object on stdout
  (logs go to stderr):

  {
    "tg_tok_s": [float, ...],           # N per-repetition rates for tg128, tokens/s
    "pp_tok_s": [float, ...],           # N per-repetition rates for pp512, tokens/s
    "rss_after_load_bytes": int,        # VmRSS after loading FILE and decoding one warm-up token
                                        # (so weights that are read lazily are resident)
    "weights_bytes_per_token": int,     # bytes of weights one decode step reads (every matrix of
                                        # every layer and the output head; one embedding row)
    "dram_read_gb_s": float,            # DRAM read bandwidth measured with T threads over a
                                        # working set larger than the last-level cache, GB/s (1e9)
    "rss_peak_bytes": int               # optional: peak resident set of the process (ru_maxrss)
  }

  The DRAM bound is dram_read_gb_s * 1e9 / weights_bytes_per_token tokens/s; the table gives
  kite's tg128 as a fraction of it, and llama.cpp's against the same bound (same file).

Usage:
  python3 bench/gguf_vs_llamacpp.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
      [--llama-cpp DIR] [--kite BIN [--kite-int8]] [--threads 1,2] [--repetitions 5] [--rounds 1]
      [--amx auto|on|off] [--update] [--jobs 2] [--build-only] [--json OUT]
  --llama-cpp DIR   an existing llama.cpp build folder with bin/llama-bench (and bin/llama-simple
                    for the memory row), used as is; default: build it as above under .cache/
  The model: python3 tools/fetch_smollm2.py writes models/SmolLM2-135M-Instruct.Q4_1.gguf.

Prints the host (CPU vendor and model name, family/model, ISA), llama.cpp's version and settings,
and one Markdown table: what | threads | llama.cpp | kite | kite / llama.cpp (speed: > 1 is kite
faster; memory: < 1 is kite smaller).
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "llama-cpp"
DEFAULT_MODEL = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
TARGETS = ["llama-bench", "llama-simple"]
NOAMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_CURL=OFF",        # deprecated (ignored, with a warning) in recent llama.cpp
    "-DLLAMA_OPENSSL=OFF",     # no HTTPS model downloads
    "-DGGML_BLAS=OFF",         # the default CPU backend, which is what the issue measures
    "-DGGML_CUDA=OFF", "-DGGML_HIP=OFF", "-DGGML_VULKAN=OFF", "-DGGML_METAL=OFF",
    "-DGGML_SYCL=OFF", "-DGGML_OPENCL=OFF", "-DGGML_RPC=OFF", "-DGGML_BACKEND_DL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_EXAMPLES=ON",
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def version_key(path):
    m = re.search(r"llama_cpp_python-([0-9][0-9.]*)\.tar\.gz$", path.name)
    return tuple(int(x) for x in m.group(1).strip(".").split(".")) if m else ()


def get_sdist(update):
    """The newest llama-cpp-python sdist in the cache; downloads the latest from PyPI if none
    (or with --update)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    have = sorted(CACHE.glob("llama_cpp_python-*.tar.gz"), key=version_key)
    if update or not have:
        log("gguf_vs_llamacpp: pip download --no-deps --no-binary :all: llama-cpp-python")
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary",
                            ":all:", "llama-cpp-python", "-d", tmp], check=True,
                           stdout=sys.stderr)
            for f in pathlib.Path(tmp).glob("llama_cpp_python-*.tar.gz"):
                if not (CACHE / f.name).exists():
                    shutil.move(str(f), CACHE / f.name)
        have = sorted(CACHE.glob("llama_cpp_python-*.tar.gz"), key=version_key)
    if not have:
        sys.exit("gguf_vs_llamacpp: no llama-cpp-python sdist downloaded")
    sdist = have[-1]
    return sdist, ".".join(map(str, version_key(sdist)))


def extract(sdist):
    src = CACHE / sdist.name[:-len(".tar.gz")]
    if (src / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        return src
    log(f"gguf_vs_llamacpp: extracting {sdist.name}")
    with tarfile.open(sdist) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(CACHE, filter="data")
        else:
            tf.extractall(CACHE)
    return src


def vendored_commit(src, version):
    """llama.cpp commit named by the CHANGELOG entry of this llama-cpp-python version."""
    try:
        text = (src / "CHANGELOG.md").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    m = re.search(r"^## \[" + re.escape(version) + r"\](.*?)(?=^## \[|\Z)", text, re.S | re.M)
    if m:
        c = re.search(r"llama\.cpp@([0-9a-f]{7,40})", m.group(1))
        if c:
            return c.group(1)
    return "unknown"


def build_llamacpp(update, jobs, noamx=False):
    """Builds llama-bench and llama-simple once per llama-cpp-python version (and variant);
    returns (bin folder, info dict). noamx: the same build with the compiler told that the CPU has
    no AMX (-mno-amx-*: explicit ISA flags win over -march=native), so ggml compiles without its
    AMX backend and runs its generic x86 kernels, as on a CPU without AMX."""
    sdist, version = get_sdist(update)
    src = extract(sdist)
    commit = vendored_commit(src, version)
    build = CACHE / (f"build-{version}" + ("-noamx" if noamx else ""))
    stamp = build / "kite-build-info.json"
    # Name the commit (the sdist's shallow git data has no tags, so no build number); keep cmake's
    # `git rev-list --count` from counting a repository above the cache.
    flags = CMAKE_FLAGS + [f"-DLLAMA_BUILD_COMMIT={commit}", "-DLLAMA_BUILD_NUMBER=0"]
    if noamx:
        flags += ["-DCMAKE_C_FLAGS=" + NOAMX, "-DCMAKE_CXX_FLAGS=" + NOAMX]
    info = None
    if stamp.exists():
        try:
            info = json.loads(stamp.read_text())
        except ValueError:
            info = None
    ok = info and info.get("flags") == flags and all((build / "bin" / t).exists() for t in TARGETS)
    if not ok:
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        log(f"gguf_vs_llamacpp: building llama.cpp from llama-cpp-python {version} "
            f"(llama.cpp {commit}) in {build.relative_to(ROOT)} with -j{jobs}; this takes a while")
        t0 = time.time()
        env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(CACHE))
        subprocess.run(["cmake", "-S", str(src / "vendor" / "llama.cpp"), "-B", str(build)]
                       + gen + flags, check=True, stdout=sys.stderr, env=env)
        subprocess.run(["cmake", "--build", str(build), "-j", str(jobs), "--target"] + TARGETS,
                       check=True, stdout=sys.stderr)
        info = {"version": version, "commit": commit, "flags": flags,
                "build_seconds": round(time.time() - t0, 1),
                "built_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        stamp.write_text(json.dumps(info, indent=1))
    info = dict(info)
    info["source"] = (f"llama-cpp-python {version} sdist (vendor/llama.cpp)"
                      + (f", built with {NOAMX}" if noamx else ""))
    info.update(git_head(src / "vendor" / "llama.cpp"))
    return build / "bin", info


def git_head(path):
    """The sdist ships the submodule's shallow git data (one commit, no tags, so no build
    number): full hash, date and subject of the vendored commit, if git can read them."""
    try:
        r = subprocess.run(["git", "-C", str(path), "log", "-1", "--format=%H%n%ci%n%s"],
                           capture_output=True, text=True, env=dict(
                               os.environ, GIT_CEILING_DIRECTORIES=str(CACHE)), timeout=30)
    except (OSError, subprocess.SubprocessError):
        return {}
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or len(lines) < 3:
        return {}
    return {"commit_full": lines[0], "commit_date": lines[1], "commit_subject": lines[2]}


def wait_rss(cmd, **kw):
    """Runs cmd; returns (returncode, stdout, stderr, peak resident set in bytes from wait4)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, **kw)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return p.returncode, out.read().decode(errors="replace"), err.read().decode(
            errors="replace"), ru.ru_maxrss * 1024


def run_llama_bench(bindir, model, t, reps, pp=512, tg=128, check=True):
    cmd = [str(bindir / "llama-bench"), "-m", str(model), "-p", str(pp), "-n", str(tg),
           "-t", str(t), "-r", str(reps), "-o", "json"]
    rc, out, err, rss = wait_rss(cmd)
    if rc != 0:
        if not check:
            return None
        sys.exit(f"gguf_vs_llamacpp: {' '.join(cmd)} failed ({rc}):\n{err[-4000:]}\n(a crash "
                 "in ggml_backend_amx_mul_mat on an AMX CPU: build without --llama-cpp, see --amx)")
    rows = json.loads(out)
    res = {"rss_peak_bytes": rss, "pp": [], "tg": [], "params": {}, "pp_avg": None, "tg_avg": None}
    for r in rows:
        if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0:
            kind = "pp"
        elif r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0:
            kind = "tg"
        else:
            continue
        samples = r.get("samples_ts")
        if samples:
            res[kind].extend(float(x) for x in samples)
        else:  # older llama-bench: mean and standard deviation only
            res[kind].append(float(r["avg_ts"]))
            res["mean_only"] = True
        res[kind + "_avg"] = (r.get("avg_ts"), r.get("stddev_ts"))
        res["params"] = {k: r.get(k) for k in (
            "build_commit", "build_number", "cpu_info", "backends", "type_k", "type_v", "n_batch",
            "n_ubatch", "flash_attn", "use_mmap", "load_mode", "lazy_mode", "repack", "n_depth",
            "no_kv_offload", "embeddings", "poll", "cpu_strict", "n_gpu_layers", "model_type",
            "model_size", "model_n_params", "n_threads") if k in r}
    return res


def run_llama_simple_rss(bindir, model):
    exe = bindir / "llama-simple"
    if not exe.exists():
        return None
    cmd = [str(exe), "-m", str(model), "-n", "1", "Hello my name is"]
    rc, out, err, rss = wait_rss(cmd)
    if rc != 0:
        log(f"gguf_vs_llamacpp: llama-simple failed ({rc}); no memory figure:\n{err[-2000:]}")
        return None
    return rss


def run_kite(kite, model, t, reps, extra=()):
    cmd = [kite, "--model", str(model), "--threads", str(t), "--tg", "128", "--pp", "512",
           "--repetitions", str(reps), "--json", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"gguf_vs_llamacpp: {' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-4000:]}")
    text = r.stdout.strip()
    try:
        return json.loads(text)
    except ValueError:
        for line in reversed(text.splitlines()):  # tolerate stray lines before the object
            line = line.strip()
            if line.startswith("{"):
                return json.loads(line)
        raise


def host_info():
    """CPU vendor / model name / family / model from /proc/cpuinfo, and the ISA extensions that
    matter here."""
    fields = {}
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8", errors="replace"):
            if not line.strip():
                break
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
    except OSError:
        pass
    name = fields.get("model name", "unknown CPU")
    vendor = fields.get("vendor_id", "")
    brand = {"GenuineIntel": "Intel Xeon" if "xeon" in name.lower() else "Intel",
             "AuthenticAMD": "AMD EPYC" if "epyc" in name.lower() else "AMD"}.get(vendor, vendor)
    flags = set(fields.get("flags", "").split())
    isa = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni",
                       "amx_int8", "amx_bf16") if f in flags]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    hyp = " (virtual machine)" if "hypervisor" in flags else ""
    return (f"{brand}: {name}, family {fields.get('cpu family', '?')} model "
            f"{fields.get('model', '?')} stepping {fields.get('stepping', '?')}{hyp}, "
            f"{cpus} CPUs usable, {' '.join(isa)}"), "amx_int8" in flags


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, spec=",.1f"):
    return "-" if x is None else format(x, spec)


def pick_engines(args, model, amx_host):
    """The llama.cpp builds to run: [(label, bin folder, info, runs pp512)]. On a CPU with AMX,
    --amx auto probes a short prompt with the plain native build; if that crashes (llama.cpp's AMX
    matmul loads a tile configuration the compiler may optimise away: llama.cpp issue #20824, PR
    #26954), the anchor becomes the -mno-amx build and the native build is still timed on tg128
    alone (its single-token path does not use AMX tiles but runs on the AMX-repacked weights)."""
    if args.llama_cpp:
        bindir = pathlib.Path(args.llama_cpp) / "bin"
        if not (bindir / "llama-bench").exists():
            sys.exit(f"gguf_vs_llamacpp: {bindir / 'llama-bench'} not found")
        return [("llama.cpp", bindir, {"source": f"--llama-cpp {args.llama_cpp}"}, True)]
    if args.amx == "off" and amx_host:
        bindir, info = build_llamacpp(args.update, args.jobs, noamx=True)
        return [("llama.cpp", bindir, info, True)]
    bindir, info = build_llamacpp(args.update, args.jobs)
    if args.amx == "on" or not amx_host or args.build_only:
        return [("llama.cpp", bindir, info, True)]
    probe = run_llama_bench(bindir, model, 1, 1, pp=32, tg=0, check=False)
    if probe is not None:
        return [("llama.cpp", bindir, info, True)]
    log("gguf_vs_llamacpp: the native build crashes on a 32-token prompt on this AMX CPU; "
        "the anchor is the -mno-amx build (the native build is kept for tg128)")
    nb, ninfo = build_llamacpp(args.update, args.jobs, noamx=True)
    info = dict(info, note="pp crashes in ggml_backend_amx_mul_mat; timed on tg128 only")
    return [("llama.cpp", nb, ninfo, True), ("llama.cpp native+AMX", bindir, info, False)]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="the .gguf file both engines load")
    ap.add_argument("--llama-cpp", default=None,
                    help="llama.cpp build folder with bin/llama-bench (default: build it under .cache/)")
    ap.add_argument("--kite", default=None, help="kite's GGUF benchmark binary (contract above)")
    ap.add_argument("--kite-int8", action="store_true",
                    help="also run BIN --int8-activations (kite's llama.cpp-like int8 activation "
                         "path) and give it its own rows")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repetitions", type=int, default=5, help="timed repetitions per test and round")
    ap.add_argument("--rounds", type=int, default=1, help="alternating llama.cpp / kite rounds")
    ap.add_argument("--amx", choices=["auto", "on", "off"], default="auto",
                    help="on a CPU with AMX: auto = native build, or the -mno-amx build if the "
                         "native one crashes on prompts; on = native only; off = -mno-amx only")
    ap.add_argument("--update", action="store_true",
                    help="download the latest llama-cpp-python sdist even if one is cached")
    ap.add_argument("--jobs", type=int, default=2, help="parallel compile jobs for the build")
    ap.add_argument("--build-only", action="store_true", help="build llama.cpp and stop")
    ap.add_argument("--json", default=None, help="also write all samples to this JSON file")
    args = ap.parse_args()
    threads = [int(x) for x in args.threads.split(",")]
    model = pathlib.Path(args.model)
    host, amx_host = host_info()
    if not model.exists() and not args.build_only:
        sys.exit(f"gguf_vs_llamacpp: {model} not found (python3 tools/fetch_smollm2.py fetches it)")
    if args.kite and not os.path.exists(args.kite):
        sys.exit(f"gguf_vs_llamacpp: {args.kite} not found")

    engines = pick_engines(args, model, amx_host)
    if args.build_only:
        print(json.dumps([e[2] for e in engines], indent=1))
        return 0

    lc = {e[0]: {t: {"pp": [], "tg": [], "rss_peak": []} for t in threads} for e in engines}
    params = {}
    variants = [("kite", [])] + ([("kite int8 act.", ["--int8-activations"])] if args.kite_int8 else [])
    kts = {v: {t: {"pp": [], "tg": [], "rss_load": [], "rss_peak": [], "wbytes": None, "dram": []}
               for t in threads} for v, _ in variants}
    mean_only = False
    simple_rss = []
    load0 = os.getloadavg()[0]
    for rnd in range(args.rounds):
        r = run_llama_simple_rss(engines[0][1], model)
        if r:
            simple_rss.append(r)
        for t in threads:
            for label, bindir, _, do_pp in engines:
                log(f"gguf_vs_llamacpp: round {rnd + 1}/{args.rounds}, {t} thread(s): {label}")
                b = run_llama_bench(bindir, model, t, args.repetitions, pp=512 if do_pp else 0)
                lc[label][t]["pp"] += b["pp"]
                lc[label][t]["tg"] += b["tg"]
                lc[label][t]["rss_peak"].append(b["rss_peak_bytes"])
                params[label] = b["params"]
                mean_only = mean_only or b.get("mean_only", False)
            for vname, extra in (variants if args.kite else []):
                kt = kts[vname]
                log(f"gguf_vs_llamacpp: round {rnd + 1}/{args.rounds}, {t} thread(s): {vname}")
                k = run_kite(args.kite, model, t, args.repetitions, extra)
                kt[t]["pp"] += [float(x) for x in k.get("pp_tok_s", [])]
                kt[t]["tg"] += [float(x) for x in k.get("tg_tok_s", [])]
                if k.get("rss_after_load_bytes"):
                    kt[t]["rss_load"].append(int(k["rss_after_load_bytes"]))
                if k.get("rss_peak_bytes"):
                    kt[t]["rss_peak"].append(int(k["rss_peak_bytes"]))
                if k.get("weights_bytes_per_token"):
                    kt[t]["wbytes"] = int(k["weights_bytes_per_token"])
                if k.get("dram_read_gb_s"):
                    kt[t]["dram"].append(float(k["dram_read_gb_s"]))

    n = args.repetitions * args.rounds
    print(f"host: {host}")
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load1 = os.getloadavg()[0]
    print(f"load average (1 min): {load0:.1f} before, {load1:.1f} after, on {ncpu} CPUs"
          + ("; the machine was shared: multi-threaded figures are contended (a spinning "
             "barrier waits for a descheduled thread)" if max(load0, load1) > ncpu else ""))
    for label, _, info, _ in engines:
        p = params.get(label, {})
        line = f"{label}: {info['source']}"
        if info.get("version"):
            line += (f", commit {info.get('commit_full', info.get('commit'))} of "
                     f"{info.get('commit_date', '?')} (no build number: the sdist has no tags), "
                     f"built in {info.get('build_seconds')} s")
        if info.get("note"):
            line += f"; {info['note']}"
        print(line)
        print(f"  llama-bench {p.get('build_commit')} ({p.get('build_number')}), backends "
              f"{p.get('backends')}, defaults: n_batch {p.get('n_batch')}, n_ubatch "
              f"{p.get('n_ubatch')}, KV {p.get('type_k')}/{p.get('type_v')}, flash_attn "
              f"{p.get('flash_attn')} (-1 = auto), load_mode {p.get('load_mode', p.get('use_mmap'))} "
              f"(-1 = auto), repack {p.get('repack')}, poll {p.get('poll')}, no --numa, no -pg")
    p0 = params.get(engines[0][0], {})
    print(f"model: {model.name} ({p0.get('model_type')}, {p0.get('model_size')} bytes of weights, "
          f"{p0.get('model_n_params')} parameters); medians of {n} repetitions"
          + (" (this llama-bench gave only means: medians of the means)" if mean_only else "")
          + "; kite / llama.cpp: speed > 1 = kite faster, memory < 1 = kite smaller")
    print()
    print("| what | threads | llama.cpp | kite | kite / llama.cpp |")
    print("|---|---:|---:|---:|---:|")

    def row(what, t, a, b, spec=",.1f"):
        ratio = f"{b / a:.2f}x" if a and b else "-"
        print(f"| {what} | {t} | {fmt(a, spec)} | {fmt(b, spec)} | {ratio} |")

    for vname, _ in variants:
        kt = kts[vname]
        vs = "" if vname == "kite" else f", {vname}"
        for label, _, _, do_pp in engines:
            what = "tg128 tok/s" + ("" if label == "llama.cpp" else f" ({label})") + vs
            for t in threads:
                row(what, t, med(lc[label][t]["tg"]), med(kt[t]["tg"]))
        for label, _, _, do_pp in engines:
            if do_pp:
                what = "pp512 tok/s" + ("" if label == "llama.cpp" else f" ({label})") + vs
                for t in threads:
                    row(what, t, med(lc[label][t]["pp"]), med(kt[t]["pp"]))
        for t in threads:
            wb, dram = kt[t]["wbytes"], med(kt[t]["dram"])
            if wb and dram:
                bound = dram * 1e9 / wb
                for label, *_ in engines:
                    lt, kk = med(lc[label][t]["tg"]), med(kt[t]["tg"])
                    print(f"| tg128 / DRAM bound ({dram:.1f} GB/s / {wb / 1e6:.1f} MB = {bound:,.0f} "
                          f"tok/s){'' if label == 'llama.cpp' else ', ' + label}{vs} | {t} | "
                          f"{fmt(lt / bound if lt else None, '.0%')} | "
                          f"{fmt(kk / bound if kk else None, '.0%')} | - |")
        mib = 1 / (1 << 20)
        ls = med(simple_rss)
        kl = med([x for t in threads for x in kt[t]["rss_load"]])
        row("RSS after load + 1 token, MiB (llama.cpp: llama-simple)" + vs, "-",
            ls * mib if ls else None, kl * mib if kl else None)
        for label, *_ in engines:
            for t in threads:
                a, b = med(lc[label][t]["rss_peak"]), med(kt[t]["rss_peak"])
                row("peak RSS over the tests, MiB" + ("" if label == "llama.cpp" else f" ({label})") + vs,
                    t, a * mib if a else None, b * mib if b else None)
    if not args.kite:
        print("\n(no --kite binary: llama.cpp only)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"host": host, "llama_cpp": {e[0]: e[2] for e in engines},
                       "llama_bench_params": params,
                       "llama_cpp_samples": {lab: {str(t): v for t, v in d.items()}
                                             for lab, d in lc.items()},
                       "llama_simple_rss_bytes": simple_rss,
                       "kite_samples": {v: {str(t): kts[v][t] for t in threads} for v, _ in variants}},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
