#!/usr/bin/env python3
"""Tokenizers on BEIR SciFact, one thread: kite beside Hugging Face tokenizers (the Rust library
behind sentence-transformers and transformers' fast tokenizers). Encodes every document
(title + " " + text), checks that both produce the same ids (FNV-1a hash over all ids), and
reports documents/second and kite's ratio:
  WordPiece  all-MiniLM-L6-v2's tokenizer, [CLS]/[SEP], truncation at 256;
  BPE        a GPT-2-style byte-level BPE (ByteLevel regex) with a 32k vocabulary, trained here
             on the SciFact corpus with tokenizers (no real GPT-2 tokenizer.json is available
             offline), no truncation.

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

import tempfile  # noqa: E402

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

import hostinfo  # noqa: E402


def fnv(ids_per_doc):
    h = 1469598103934665603
    m = (1 << 64) - 1
    for ids in ids_per_doc:
        for i in ids:
            h = ((h ^ (i & 0xFFFFFFFF)) * 1099511628211) & m
        h = ((h ^ 0xFFFFFFFF) * 1099511628211) & m
    return f"{h:016x}"


def time_hf(tok, docs, passes):
    ids = [tok.encode(d).ids for d in docs]  # warm-up and checksum
    loop, batch = [], []
    for _ in range(passes):
        t0 = time.perf_counter()
        for d in docs:
            tok.encode(d)
        loop.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        tok.encode_batch(docs)
        batch.append(time.perf_counter() - t0)
    return ids, statistics.median(loop), statistics.median(batch)


def report(name, docs, k, hf_ids, hf_t, hf_batch_t):
    same = k["hash"] == fnv(hf_ids) and k["ids"] == sum(len(i) for i in hf_ids)
    print(f"{name} on SciFact: {len(docs)} documents, {k['bytes'] / 1e6:.1f} MB, {k['ids']} ids; "
          f"ids identical to Hugging Face: {same}")
    print(f"  {'engine':<34} {'seconds':>8} {'docs/s':>9} {'kite ratio':>10}")
    print(f"  {'kite':<34} {k['seconds']:8.3f} {k['docs_per_s']:9.0f} {1.0:10.2f}")
    print(f"  {'HF tokenizers encode() loop':<34} {hf_t:8.3f} {len(docs) / hf_t:9.0f} {hf_t / k['seconds']:10.2f}")
    print(f"  {'HF tokenizers encode_batch (1 thr)':<34} {hf_batch_t:8.3f} {len(docs) / hf_batch_t:9.0f} "
          f"{hf_batch_t / k['seconds']:10.2f}")
    return same


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

    wp = Tokenizer.from_file(os.path.join(args.minilm, "tokenizer.json"))
    wp.no_padding()
    wp.enable_truncation(max_length=256)
    wp_res = time_hf(wp, docs, args.passes)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(docs, trainers.BpeTrainer(vocab_size=32000, special_tokens=["<|endoftext|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                      show_progress=False))
    with tempfile.TemporaryDirectory() as tmp:
        bpe_path = os.path.join(tmp, "bpe32k.json")
        bpe.save(bpe_path)
        bpe = Tokenizer.from_file(bpe_path)
        bpe_res = time_hf(bpe, docs, args.passes)
        out = subprocess.run([args.kite, args.data, os.path.join(args.minilm, "vocab.txt"), "--passes",
                              str(args.passes), "--bpe", bpe_path], check=True, capture_output=True, text=True).stdout
    kite = {o["tokenizer"]: o for o in map(json.loads, out.strip().splitlines())}
    print(f"host: {hostinfo.describe()}")
    ok = report("WordPiece (all-MiniLM-L6-v2, max 256)", docs, kite["wordpiece"], *wp_res)
    ok &= report("Byte-level BPE (GPT-2 regex, 32k vocab)", docs, kite["bpe"], *bpe_res)
    if not ok:
        sys.exit("ids differ from Hugging Face tokenizers")

if __name__ == "__main__":
    main()
