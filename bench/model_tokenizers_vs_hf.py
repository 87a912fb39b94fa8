#!/usr/bin/env python3
"""WordPiece on BEIR SciFact, one thread: kite's wordpiece_tokenizer beside Hugging Face
tokenizers (the Rust library behind sentence-transformers' MiniLM tokenizer). Encodes every
document (title + " " + text) with [CLS]/[SEP] and truncation at 256, checks that both produce
the same ids (FNV-1a hash over all ids), and reports documents/second and kite's ratio.

  python3 bench/model_tokenizers_vs_hf.py --kite build/release/bench/bench_model_tokenizers \\
      [--minilm models/all-MiniLM-L6-v2] [DATA_DIR]

DATA_DIR holds scifact/ (default: $KITE_DATA). Hugging Face runs with TOKENIZERS_PARALLELISM
off and RAYON_NUM_THREADS=1, one encode() call per document (and encode_batch for reference).
Times are medians of --passes passes after a warm-up pass; documents are in memory.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"

from tokenizers import Tokenizer  # noqa: E402


def fnv(ids_per_doc):
    h = 1469598103934665603
    m = (1 << 64) - 1
    for ids in ids_per_doc:
        for i in ids:
            h = ((h ^ (i & 0xFFFFFFFF)) * 1099511628211) & m
        h = ((h ^ 0xFFFFFFFF) * 1099511628211) & m
    return f"{h:016x}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default=os.environ.get("KITE_DATA", ""))
    ap.add_argument("--kite", required=True)
    ap.add_argument("--minilm", default=os.path.join(os.path.dirname(__file__), "..", "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    docs = []
    with open(os.path.join(args.data, "scifact", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            o = json.loads(line)
            docs.append(o["title"] + " " + o["text"])

    tok = Tokenizer.from_file(os.path.join(args.minilm, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=256)
    ids = [tok.encode(d).ids for d in docs]  # warm-up and checksum
    hf_hash = fnv(ids)
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        for d in docs:
            tok.encode(d)
        times.append(time.perf_counter() - t0)
    hf_t = statistics.median(times)
    times = []
    for _ in range(args.passes):
        t0 = time.perf_counter()
        tok.encode_batch(docs)
        times.append(time.perf_counter() - t0)
    hf_batch_t = statistics.median(times)

    out = subprocess.run([args.kite, args.data, os.path.join(args.minilm, "vocab.txt"), "--passes", str(args.passes)],
                         check=True, capture_output=True, text=True).stdout
    k = json.loads(out)
    same = k["hash"] == hf_hash and k["ids"] == sum(len(i) for i in ids)
    print(f"SciFact corpus: {len(docs)} documents, {k['bytes'] / 1e6:.1f} MB, {k['ids']} ids; "
          f"ids identical to Hugging Face: {same}")
    print(f"{'engine':<34} {'seconds':>8} {'docs/s':>9} {'kite ratio':>10}")
    print(f"{'kite wordpiece_tokenizer':<34} {k['seconds']:8.3f} {k['docs_per_s']:9.0f} {1.0:10.2f}")
    print(f"{'HF tokenizers encode() loop':<34} {hf_t:8.3f} {len(docs) / hf_t:9.0f} {hf_t / k['seconds']:10.2f}")
    print(f"{'HF tokenizers encode_batch (1 thr)':<34} {hf_batch_t:8.3f} {len(docs) / hf_batch_t:9.0f} "
          f"{hf_batch_t / k['seconds']:10.2f}")
    if not same:
        sys.exit("ids differ from Hugging Face tokenizers")


if __name__ == "__main__":
    main()
