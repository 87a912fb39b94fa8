#!/usr/bin/env python3
"""Golden fixture of kite's training backward pass (kite/train), made with PyTorch autograd.

  tests/fixtures/train/mnr_autograd.json, mnr_autograd.f64
      the tiny BertModel of tests/fixtures/model/bert_tiny in float64 (eval mode: no dropout, as
      kite trains), 4 anchors, their 4 positives and 2 hard negatives (token ids of different
      lengths, each sequence run alone: no padding), mean pooling, and the MNR loss of
      sentence-transformers' MultipleNegativesRankingLoss (cosine similarity x 20, cross-entropy
      with target i for anchor i; candidates = positives then negatives). The JSON holds the ids,
      the loss, and for every parameter with a gradient its name, shape and offset into the .f64
      file: d(loss)/d(parameter) from loss.backward(), float64 little-endian, row-major.

kite's test (tests/train/test_train_bert.cpp) runs the same loss through train::bert_model<double>
and <float> and compares every gradient with these, relative to the largest entry of its tensor.

Usage: python3 tools/train_make_fixtures.py   (needs torch and transformers)
"""
import json
import pathlib

import numpy as np
import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "model" / "bert_tiny"
OUT = ROOT / "tests" / "fixtures" / "train"


def sentence(rng, words):
    return [2] + [int(5 + rng.integers(0, 94)) for _ in range(words)] + [3]  # [CLS] ... [SEP]


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(2026)
    model = transformers.BertModel.from_pretrained(str(TINY), add_pooling_layer=False).double()
    model.eval()
    anchors = [sentence(rng, w) for w in (3, 1, 6, 4)]
    positives = [sentence(rng, w) for w in (9, 5, 14, 2)]
    negatives = [sentence(rng, w) for w in (7, 11)]

    def embed(ids):
        x = torch.tensor([ids], dtype=torch.long)
        h = model(input_ids=x, token_type_ids=torch.zeros_like(x)).last_hidden_state[0]
        return h.mean(dim=0)

    a = torch.stack([embed(s) for s in anchors])
    c = torch.stack([embed(s) for s in positives + negatives])
    scores = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(c, dim=1).T * 20.0
    loss = torch.nn.functional.cross_entropy(scores, torch.arange(len(anchors)))
    loss.backward()

    tensors, chunks, offset = {}, [], 0
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.detach().numpy().astype("<f8")
        tensors[name] = {"shape": list(g.shape), "offset": offset}
        chunks.append(g.ravel())
        offset += g.size
    OUT.mkdir(parents=True, exist_ok=True)
    np.concatenate(chunks).tofile(OUT / "mnr_autograd.f64")
    meta = {"model": "tests/fixtures/model/bert_tiny", "scale": 20.0, "anchors": anchors, "positives": positives,
            "negatives": negatives, "loss": loss.item(), "tensors": tensors,
            "made_with": f"torch {torch.__version__}, transformers {transformers.__version__}"}
    (OUT / "mnr_autograd.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"loss {loss.item():.12f}; {len(tensors)} gradient tensors, {offset} values")


if __name__ == "__main__":
    main()
