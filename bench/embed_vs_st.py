#!/usr/bin/env python3
"""Sentence embeddings per second, all-MiniLM-L6-v2 on SciFact documents: kite's encoder
(bench_embed) beside sentence-transformers (PyTorch CPU) and ONNX Runtime, in one script.

Same texts (the first --docs documents of the corpus, title + " " + text as BEIR), same batch
(32), same truncation (256 word pieces), same output (mean pooling, L2-normalised), same thread
count (1, then 2). Every engine tokenizes inside its timed pass. Timings are steady state: one
warm-up pass, then --passes timed passes, engines interleaved pass by pass; medians are reported.
The embeddings of kite and ONNX Runtime are checked against sentence-transformers' (cosine).

  sentence-transformers  SentenceTransformer(model).encode(texts, batch_size=32,
                         normalize_embeddings=True), max_seq_length 256, torch.set_num_threads(T)
  onnxruntime            transformers' BertModel exported with torch.onnx (opset 17, dynamic
                         batch and length), then ONNX Runtime's transformer optimizer (fused
                         attention, LayerNorm, GELU); batches sorted by length like
                         sentence-transformers, Hugging Face tokenizer, mean pooling in NumPy;
                         intra_op_num_threads=T. The plain export is timed too (--ort-plain).
  kite                   build/<preset>/bench/bench_embed --threads T (float32, packed GEMM
                         panels, flash attention; sequences packed without padding)

Usage: python3 bench/embed_vs_st.py [--data DIR] [--model DIR] [--kite BIN] [--docs 320]
                                    [--threads 1,2] [--passes 3] [--onnx-dir DIR] [--ort-plain]
                                    [--json FILE]
  --data defaults to $KITE_DATA/scifact; --model to models/all-MiniLM-L6-v2; --kite to
  build/release/bench/bench_embed. Needs torch, sentence-transformers, onnxruntime and onnx.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_docs(data: pathlib.Path, n: int):
    docs = []
    with open(data / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            docs.append((d.get("title", "") + " " + d["text"]).strip())
            if len(docs) == n:
                break
    return docs


def export_onnx(model_dir: pathlib.Path, out_dir: pathlib.Path):
    """BertModel -> ONNX (plain) and ORT-optimized ONNX; cached in out_dir."""
    import torch
    import transformers
    plain = out_dir / "minilm.onnx"
    fused = out_dir / "minilm_fused.onnx"
    if not plain.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        bert = transformers.BertModel.from_pretrained(str(model_dir), add_pooling_layer=False,
                                                      attn_implementation="eager").eval()

        class Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        ids = torch.ones(2, 16, dtype=torch.long)
        mask = torch.ones_like(ids)
        mask[1, 8:] = 0  # trace the padding-mask path
        torch.onnx.export(Wrap(bert), (ids, mask), str(plain), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"},
                                        "last_hidden_state": {0: "b", 1: "s"}})
    if not fused.exists():
        from onnxruntime.transformers import optimizer
        opt = optimizer.optimize_model(str(plain), model_type="bert", num_heads=12, hidden_size=384)
        opt.save_model_to_file(str(fused))
    return plain, fused


class OrtEncoder:
    def __init__(self, path, tokenizer, threads):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        self.tok = tokenizer
        self.inputs = {i.name for i in self.sess.get_inputs()}

    def encode(self, texts, batch=32):
        # As sentence-transformers: sort by length (longest first), pad per batch.
        lengths = [-len(t) for t in texts]
        order = np.argsort(lengths, kind="stable")
        out = np.empty((len(texts), 384), dtype=np.float32)
        for i in range(0, len(texts), batch):
            idx = order[i:i + batch]
            enc = self.tok([texts[j] for j in idx], padding=True, truncation=True, max_length=256, return_tensors="np")
            feed = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
            h = self.sess.run(None, feed)[0]
            m = feed["attention_mask"][..., None].astype(np.float32)
            e = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            out[idx] = e
        return out


def min_cosine(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float((a * b).sum(1).min())


def main() -> int:
    ap = argparse.ArgumentParser()
    default_data = pathlib.Path(os.environ.get("KITE_DATA", "")) / "scifact" if os.environ.get("KITE_DATA") else None
    ap.add_argument("--data", type=pathlib.Path, default=default_data)
    ap.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "all-MiniLM-L6-v2")
    ap.add_argument("--kite", type=pathlib.Path, default=ROOT / "build" / "release" / "bench" / "bench_embed")
    ap.add_argument("--docs", type=int, default=320)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--onnx-dir", type=pathlib.Path, default=ROOT / ".cache" / "onnx")
    ap.add_argument("--ort-plain", action="store_true", help="also time the unoptimized ONNX export")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    if args.data is None:
        sys.exit("embed_vs_st: give --data DIR (SciFact folder) or set KITE_DATA")

    import torch
    from sentence_transformers import SentenceTransformer

    docs = load_docs(args.data, args.docs)
    st = SentenceTransformer(str(args.model), device="cpu")
    st.max_seq_length = 256
    plain, fused = export_onnx(args.model, args.onnx_dir)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kite-embed-"))
    texts_file = tmp / "texts.json"
    texts_file.write_text(json.dumps(docs), encoding="utf-8")
    pieces = sum(len(st.tokenizer(d, truncation=True, max_length=256)["input_ids"]) for d in docs)
    print(f"{len(docs)} SciFact documents, {pieces} word pieces (mean {pieces / len(docs):.1f}), batch {args.batch}, "
          f"max 256 word pieces; {args.passes} timed passes after a warm-up, medians")

    results = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        engines = {
            "sentence-transformers": lambda: st.encode(docs, batch_size=args.batch, normalize_embeddings=True,
                                                       convert_to_numpy=True, show_progress_bar=False),
            "onnxruntime": OrtEncoder(fused, st.tokenizer, threads).encode,
        }
        if args.ort_plain:
            engines["onnxruntime-plain"] = OrtEncoder(plain, st.tokenizer, threads).encode
        times = {name: [] for name in engines}
        times["kite"] = []
        outputs = {}
        for name, fn in engines.items():  # warm-up
            outputs[name] = fn() if name == "sentence-transformers" else fn(docs, args.batch)
        kite_out = tmp / f"kite_{threads}.npy"
        for p in range(args.passes):
            for name, fn in engines.items():
                t0 = time.perf_counter()
                fn() if name == "sentence-transformers" else fn(docs, args.batch)
                times[name].append(time.perf_counter() - t0)
            # kite: one warm-up pass and one timed pass per call, interleaved with the others.
            r = subprocess.run([str(args.kite), "--model", str(args.model), "--texts", str(texts_file), "--threads",
                                str(threads), "--batch", str(args.batch), "--passes", "1", "--out", str(kite_out)],
                               check=True, capture_output=True, text=True)
            k = json.loads(r.stdout)
            if k["word_pieces"] != pieces:
                sys.exit(f"embed_vs_st: kite tokenized {k['word_pieces']} word pieces, Hugging Face {pieces}")
            times["kite"].append(k["seconds"][0])
        outputs["kite"] = np.load(kite_out)
        ref = outputs["sentence-transformers"]
        row = {"threads": threads, "docs": len(docs), "word_pieces": pieces}
        print(f"\nthreads {threads}")
        for name, ts in times.items():
            med = statistics.median(ts)
            sps = len(docs) / med
            row[name] = {"seconds": ts, "sentences_per_s": sps, "min_cosine_to_st": min_cosine(outputs[name], ref)}
            print(f"  {name:22s} {sps:8.2f} sentences/s  (median of {', '.join(f'{t:.2f}' for t in ts)} s; "
                  f"min cosine to sentence-transformers {row[name]['min_cosine_to_st']:.6f})")
        for anchor in [n for n in times if n != "kite"]:
            ratio = row["kite"]["sentences_per_s"] / row[anchor]["sentences_per_s"]
            row[f"kite_vs_{anchor}"] = ratio
            print(f"  kite / {anchor}: {ratio:.2f}x")
        results.append(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
