#!/usr/bin/env python3
"""Computes dense embeddings of a retrieval data set with sentence-transformers, in the row
order kite-eval expects, and saves them as float32 .npy files:

  corpus_emb.npy   one row per document, corpus order; text = title + " " + text (as BEIR)
  queries_emb.npy  one row per evaluated query: for BEIR the queries judged in
                   qrels/<split>.tsv in queries.jsonl order; for KLUE STS the sentence1 of every
                   pair with binary-label 1, in file order

Embeddings are L2-normalised. Truncation follows the model (256 word pieces for MiniLM).

Usage: python3 tools/embed_dataset.py --data DIR [--format beir|klue-sts] [--split test]
                                      --model MODEL_DIR --out OUT_DIR
"""
import argparse
import json
import pathlib

import numpy as np
from sentence_transformers import SentenceTransformer


def beir(data: pathlib.Path, split: str):
    corpus = [json.loads(l) for l in (data / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
    judged = set()
    for i, line in enumerate((data / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()):
        f = line.split("\t")
        if i == 0 and f[0] == "query-id":
            continue
        if len(f) >= 3:
            judged.add(f[0])
    queries = [json.loads(l) for l in (data / "queries.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
    docs = [(d.get("title", "") + " " + d["text"]).strip() for d in corpus]
    qs = [q["text"] for q in queries if q["_id"] in judged]
    return docs, qs


def klue(data: pathlib.Path):
    path = data / "klue-sts-v1.1_dev.json" if data.is_dir() else data
    pairs = json.loads(path.read_text(encoding="utf-8"))
    return [p["sentence2"] for p in pairs], [p["sentence1"] for p in pairs if p["labels"]["binary-label"] == 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, type=pathlib.Path)
    ap.add_argument("--format", default="beir", choices=["beir", "klue-sts"])
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, type=pathlib.Path)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    docs, qs = beir(args.data, args.split) if args.format == "beir" else klue(args.data)
    model = SentenceTransformer(args.model, device="cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, texts in (("corpus_emb.npy", docs), ("queries_emb.npy", qs)):
        e = model.encode(texts, batch_size=args.batch, normalize_embeddings=True, convert_to_numpy=True,
                         show_progress_bar=False).astype(np.float32)
        np.save(args.out / name, np.ascontiguousarray(e))
        print(f"{name}: {e.shape}")


if __name__ == "__main__":
    main()
