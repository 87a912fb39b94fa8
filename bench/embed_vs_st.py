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
  int8 (--int8)          the same engines with int8 linear layers, weights per output row and
                         activations rounded at run time: kite-w8a8 (bench_embed --weights w8a8,
                         per-token activation scales, AVX-512 VNNI), st-int8-dynamic
                         (torch.ao.quantization.quantize_dynamic of every nn.Linear, qint8, per-tensor
                         activation scales: PyTorch's own recipe for BERT on CPU) and
                         onnxruntime-int8 (onnxruntime.quantization.quantize_dynamic of the optimized
                         model, QInt8 per channel). Their embeddings are compared with float32
                         sentence-transformers' like the others.

Usage: python3 bench/embed_vs_st.py [--data DIR] [--model DIR] [--kite BIN] [--docs 320]
                                    [--threads 1,2] [--passes 3] [--onnx-dir DIR] [--ort-plain]
                                    [--int8] [--json FILE]
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

import hostinfo

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


def quantize_onnx(fused: pathlib.Path) -> pathlib.Path:
    """The optimized model with int8 MatMul weights (ONNX Runtime's dynamic quantization)."""
    out = fused.with_name("minilm_fused_int8.onnx")
    if not out.exists():
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
        # The fused graph has contrib ops that shape inference cannot type: say they are float.
        quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return out


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
    ap.add_argument("--int8", action="store_true", help="also time the int8 engines (kite-w8a8, st-int8-dynamic, "
                    "onnxruntime-int8)")
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
    st_int8 = None
    if args.int8:
        fused_int8 = quantize_onnx(fused)
        st_int8 = SentenceTransformer(str(args.model), device="cpu")
        st_int8.max_seq_length = 256
        st_int8 = torch.ao.quantization.quantize_dynamic(st_int8, {torch.nn.Linear}, dtype=torch.qint8)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="kite-embed-"))
    texts_file = tmp / "texts.json"
    texts_file.write_text(json.dumps(docs), encoding="utf-8")
    pieces = sum(len(st.tokenizer(d, truncation=True, max_length=256)["input_ids"]) for d in docs)
    print(f"host: {hostinfo.describe()}")
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
        if st_int8 is not None:
            engines["st-int8-dynamic"] = lambda: st_int8.encode(docs, batch_size=args.batch, normalize_embeddings=True,
                                                                convert_to_numpy=True, show_progress_bar=False)
            engines["onnxruntime-int8"] = OrtEncoder(fused_int8, st.tokenizer, threads).encode
        kites = {"kite": "f32"}
        if args.int8:
            kites["kite-w8a8"] = "w8a8"
        times = {name: [] for name in engines}
        work = None  # (GFLOP of one pass over the real word pieces, FMA peak GFLOP/s), from bench_embed
        for name in kites:
            times[name] = []
        outputs = {}
        for name, fn in engines.items():  # warm-up
            outputs[name] = fn() if name in ("sentence-transformers", "st-int8-dynamic") else fn(docs, args.batch)
        for p in range(args.passes):
            for name, fn in engines.items():
                t0 = time.perf_counter()
                fn() if name in ("sentence-transformers", "st-int8-dynamic") else fn(docs, args.batch)
                times[name].append(time.perf_counter() - t0)
            # kite: one warm-up pass and one timed pass per call, interleaved with the others.
            for name, weights in kites.items():
                r = subprocess.run([str(args.kite), "--model", str(args.model), "--texts", str(texts_file), "--threads",
                                    str(threads), "--batch", str(args.batch), "--passes", "1", "--weights", weights,
                                    "--out", str(tmp / f"{name}_{threads}.npy")],
                                   check=True, capture_output=True, text=True)
                k = json.loads(r.stdout)
                if k["word_pieces"] != pieces:
                    sys.exit(f"embed_vs_st: kite tokenized {k['word_pieces']} word pieces, Hugging Face {pieces}")
                times[name].append(k["seconds"][0])
                work = k["gflop_per_pass"], k["fma_peak_gflop_per_s"]
        for name in kites:
            outputs[name] = np.load(tmp / f"{name}_{threads}.npy")
        ref = outputs["sentence-transformers"]
        row = {"threads": threads, "docs": len(docs), "word_pieces": pieces}
        gflop, peak = work
        row["gflop_per_pass"], row["fma_peak_gflop_per_s"] = gflop, peak
        print(f"\nthreads {threads} (limit: float32 FMA peak {peak:.0f} GFLOP/s measured by bench_embed; one pass "
              f"is {gflop:.1f} GFLOP over the real word pieces, padding not counted)")
        for name, ts in times.items():
            med = statistics.median(ts)
            sps = len(docs) / med
            row[name] = {"seconds": ts, "sentences_per_s": sps, "min_cosine_to_st": min_cosine(outputs[name], ref),
                         "gflop_per_s": gflop / med}
            # int8 engines run on integer dot products, another limit: no fraction of the float peak.
            frac = "" if "int8" in name or "w8a8" in name else f", {gflop / med / peak:.0%} of the FMA peak"
            print(f"  {name:22s} {sps:8.2f} sentences/s  {gflop / med:6.1f} GFLOP/s{frac}  (median of "
                  f"{', '.join(f'{t:.2f}' for t in ts)} s; min cosine to sentence-transformers "
                  f"{row[name]['min_cosine_to_st']:.6f})")
        for k in kites:
            for anchor in [n for n in times if n not in kites]:
                ratio = row[k]["sentences_per_s"] / row[anchor]["sentences_per_s"]
                row[f"{k}_vs_{anchor}"] = ratio
                print(f"  {k} / {anchor}: {ratio:.2f}x")
        results.append(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
