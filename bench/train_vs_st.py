#!/usr/bin/env python3
"""Fine-tuning all-MiniLM-L6-v2 on SciFact's train pairs with the multiple-negatives-ranking loss:
kite-train beside sentence-transformers (PyTorch CPU), same data, batch, schedule and threads,
then both checkpoints (and the base model) evaluated on the test split by the same evaluator
(kite-eval --dense minilm, trec_eval's nDCG@10 and hit@10).

  pairs       every judged (query, document) of qrels/train.tsv with relevance > 0 (919 for
              SciFact); the passage is title + " " + text, as BEIR and kite-train take it
  both        batch 32, AdamW lr 2e-5, weight decay 0.01, 10% linear warm-up then linear decay,
              gradient norm clipped at 1, scale 20 (cosine similarity), max_seq_length 256,
              --epochs passes, seed 42, T threads (torch.set_num_threads / kite-train --threads)
  sentence-   SentenceTransformerTrainer with MultipleNegativesRankingLoss (the modern form of
  transformers fit()), default batch sampler, no evaluation or saving during training; dropout
              0.1 as the model's config has it (kite-train applies none: a documented difference)
  timing      wall time of training only (model loading and tokenizer warm-up excluded for
              both: sentence-transformers' trainer.train(), kite-train's summed step times);
              pairs/s = pairs x epochs / that time

Usage: python3 bench/train_vs_st.py [--data DIR] [--model DIR] [--kite-train BIN] [--kite-eval BIN]
                                    [--epochs 1] [--threads 2] [--out DIR] [--json FILE]
                                    [--skip-st] [--skip-kite]
  --data defaults to $KITE_DATA/scifact; --model to models/all-MiniLM-L6-v2; the binaries to
  build/release/examples/; --out (checkpoints, evaluation caches) to .cache/train-vs-st.
  Needs torch, sentence-transformers, datasets and accelerate (not CI's: a benchmark).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import hostinfo

ROOT = pathlib.Path(__file__).resolve().parents[1]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_pairs(data: pathlib.Path, split: str):
    corpus = {d["_id"]: (d.get("title", "") + " " + d["text"]).strip() if d.get("title") else d["text"]
              for d in read_jsonl(data / "corpus.jsonl")}
    queries = {q["_id"]: q["text"] for q in read_jsonl(data / "queries.jsonl")}
    pairs = []
    with open(data / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        for i, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if i == 0 and not parts[-1].lstrip("-").isdigit():
                continue  # header
            qid, did, rel = parts[0], parts[1], int(parts[-1])
            if rel > 0 and qid in queries and did in corpus:
                pairs.append((queries[qid], corpus[did]))
    return pairs


def evaluate(args, model_dir: pathlib.Path, name: str):
    cache = args.out / "emb" / name
    cmd = [str(args.kite_eval), "--data", str(args.data), "--split", "test", "--retriever", "dense", "--dense",
           "minilm", "--model", str(model_dir), "--threads", str(args.threads), "--cache-dir", str(cache), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    m = r.get("metrics", r)
    return {"ndcg@10": m["ndcg@10"] if "ndcg@10" in m else m["ndcg_cut_10"], "hit@10": m.get("hit@10", m.get("success@10")),
            "raw": r}


def train_st(args, pairs):
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, losses
    from sentence_transformers.training_args import SentenceTransformerTrainingArguments

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(str(args.model), device="cpu")
    model.max_seq_length = 256
    ds = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
    out = args.out / "st"
    targs = SentenceTransformerTrainingArguments(
        output_dir=str(out / "trainer"), num_train_epochs=args.epochs, per_device_train_batch_size=32,
        learning_rate=2e-5, weight_decay=0.01, warmup_ratio=0.1, lr_scheduler_type="linear", max_grad_norm=1.0,
        seed=42, save_strategy="no", eval_strategy="no", logging_steps=10, report_to="none",
        dataloader_drop_last=False, use_cpu=True, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=ds,
                                         loss=losses.MultipleNegativesRankingLoss(model, scale=20.0))
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    model.save(str(out / "model"))
    return {"seconds": seconds, "pairs_per_second": len(pairs) * args.epochs / seconds, "checkpoint": out / "model"}


def train_kite(args, pairs):
    out = args.out / "kite"
    cmd = [str(args.kite_train), "mnr", "--data", str(args.data), "--split", "train", "--model", str(args.model),
           "--out", str(out), "--epochs", str(args.epochs), "--batch", "32", "--lr", "2e-5", "--max-seq-length", "256",
           "--threads", str(args.threads), "--overwrite", "--json"]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    epochs = [json.loads(line) for line in res.stdout.splitlines() if line.strip()]
    seconds = sum(e["seconds"] for e in epochs)
    n = sum(e["pairs"] for e in epochs)
    assert n == len(pairs) * args.epochs, (n, len(pairs))
    return {"seconds": seconds, "pairs_per_second": n / seconds, "checkpoint": pathlib.Path(epochs[-1]["checkpoint"]),
            "mean_loss": [e["mean_loss"] for e in epochs]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=pathlib.Path,
                    default=pathlib.Path(os.environ.get("KITE_DATA", ROOT.parent / "shared" / "data")) / "scifact")
    ap.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "all-MiniLM-L6-v2")
    ap.add_argument("--kite-train", type=pathlib.Path, default=ROOT / "build" / "release" / "examples" / "kite-train")
    ap.add_argument("--kite-eval", type=pathlib.Path, default=ROOT / "build" / "release" / "examples" / "kite-eval")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=pathlib.Path, default=ROOT / ".cache" / "train-vs-st")
    ap.add_argument("--json", type=pathlib.Path)
    ap.add_argument("--skip-st", action="store_true")
    ap.add_argument("--skip-kite", action="store_true")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    print(f"# host: {hostinfo.describe()}", flush=True)
    pairs = load_pairs(args.data, "train")
    print(f"# {len(pairs)} train pairs, {args.epochs} epoch(s), batch 32, {args.threads} thread(s)", flush=True)
    result = {"host": hostinfo.describe(), "pairs": len(pairs), "epochs": args.epochs, "threads": args.threads}
    result["base"] = evaluate(args, args.model, "base")
    print(f"base model            nDCG@10 {result['base']['ndcg@10']:.4f}  hit@10 {result['base']['hit@10']:.4f}",
          flush=True)
    for name, fn, skip in (("kite", train_kite, args.skip_kite), ("sentence-transformers", train_st, args.skip_st)):
        if skip:
            continue
        r = fn(args, pairs)
        ev = evaluate(args, r["checkpoint"], name)
        r.update({"ndcg@10": ev["ndcg@10"], "hit@10": ev["hit@10"], "checkpoint": str(r["checkpoint"])})
        result[name] = r
        print(f"{name:21s} nDCG@10 {r['ndcg@10']:.4f}  hit@10 {r['hit@10']:.4f}  train {r['seconds']:.0f} s  "
              f"{r['pairs_per_second']:.2f} pairs/s", flush=True)
    if "kite" in result and "sentence-transformers" in result:
        ratio = result["kite"]["pairs_per_second"] / result["sentence-transformers"]["pairs_per_second"]
        result["speed_ratio"] = ratio
        print(f"kite / sentence-transformers pairs/s: {ratio:.2f}x", flush=True)
    for k in ("base",):
        result[k].pop("raw", None)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
