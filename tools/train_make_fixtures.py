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

  tests/fixtures/train/cross_autograd.json, cross_autograd.f64
      the same tiny BERT as BertForSequenceClassification with one label in float64 (pooler and
      classifier drawn from a seed, the classifier scaled up so the logits are not all near 0; all rounded to float32 values),
      6 query-passage pairs ([CLS] q [SEP] p [SEP], token type 1 from p on, each alone), their
      logits, binary cross-entropy with logits against labels 1/0 (mean), and d(loss)/d(every
      parameter). The .f64 file starts with the head (pooler.dense.weight, pooler.dense.bias,
      classifier.weight, classifier.bias: "head" in the JSON) so kite can load the same weights.
      tests/train/test_train_cross.cpp compares kite's logits, loss and gradients with these.

  tests/fixtures/train/pair_truncation.json
      Hugging Face's all-MiniLM-L6-v2 tokenizer on (query, document) pairs of the notes corpus
      the repository ships, truncation="longest_first" at several max_length: input_ids and
      where token type 1 starts; kite::model::encode_pair must give the same.

Usage: python3 tools/train_make_fixtures.py   (needs torch, transformers and models/all-MiniLM-L6-v2)
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


def append_grads(model, tensors, chunks, offset):
    """Every parameter's gradient (float64) onto chunks, named in tensors with its offset."""
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        g = p.grad.detach().numpy().astype("<f8")
        tensors[name] = {"shape": list(g.shape), "offset": offset}
        chunks.append(g.ravel())
        offset += g.size
    return offset


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

    tensors, chunks = {}, []
    offset = append_grads(model, tensors, chunks, 0)
    OUT.mkdir(parents=True, exist_ok=True)
    np.concatenate(chunks).tofile(OUT / "mnr_autograd.f64")
    meta = {"model": "tests/fixtures/model/bert_tiny", "scale": 20.0, "anchors": anchors, "positives": positives,
            "negatives": negatives, "loss": loss.item(), "tensors": tensors,
            "made_with": f"torch {torch.__version__}, transformers {transformers.__version__}"}
    (OUT / "mnr_autograd.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"loss {loss.item():.12f}; {len(tensors)} gradient tensors, {offset} values")


def pair(rng, q_words, p_words):
    q = sentence(rng, q_words)
    p = [int(5 + rng.integers(0, 94)) for _ in range(p_words)] + [3]
    return q + p, len(q)  # ids, where the passage (token type 1) starts


def cross():
    torch.manual_seed(1)
    rng = np.random.default_rng(2027)
    model = transformers.BertForSequenceClassification.from_pretrained(str(TINY), num_labels=1).double()
    with torch.no_grad():
        model.classifier.weight.mul_(25.0)
        model.classifier.bias.fill_(0.1)
        for p in (model.bert.pooler.dense.weight, model.bert.pooler.dense.bias, model.classifier.weight, model.classifier.bias):
            p.copy_(p.float().double())  # float32 values, as kite's checkpoints hold them
    model.eval()
    pairs = [pair(rng, q, p) for q, p in ((3, 9), (1, 5), (6, 14), (4, 2), (2, 20), (7, 7))]
    labels = [1.0, 0.0, 1.0, 0.0, 0.0, 1.0]
    logits = []
    for ids, second in pairs:
        x = torch.tensor([ids], dtype=torch.long)
        types = torch.tensor([[0] * second + [1] * (len(ids) - second)], dtype=torch.long)
        logits.append(model(input_ids=x, token_type_ids=types).logits[0, 0])
    z = torch.stack(logits)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(z, torch.tensor(labels, dtype=torch.float64))
    loss.backward()

    head, tensors, chunks, offset = {}, {}, [], 0
    params = dict(model.named_parameters())
    for name in ("bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"):
        w = params[name].detach().numpy().astype("<f8")
        head[name] = {"shape": list(w.shape), "offset": offset}
        chunks.append(w.ravel())
        offset += w.size
    offset = append_grads(model, tensors, chunks, offset)
    np.concatenate(chunks).tofile(OUT / "cross_autograd.f64")
    meta = {"model": "tests/fixtures/model/bert_tiny", "pairs": [ids for ids, _ in pairs],
            "second": [s for _, s in pairs], "labels": labels, "logits": [v.item() for v in logits],
            "loss": loss.item(), "head": head, "tensors": tensors,
            "made_with": f"torch {torch.__version__}, transformers {transformers.__version__}"}
    (OUT / "cross_autograd.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"cross: loss {loss.item():.12f}; {len(tensors)} gradient tensors, {offset} values")


def pairs():
    tok = transformers.AutoTokenizer.from_pretrained(str(ROOT / "models" / "all-MiniLM-L6-v2"))
    notes = ROOT / "examples" / "data" / "notes"
    queries = [json.loads(l)["text"] for l in (notes / "queries.jsonl").read_text().splitlines()]
    docs = []
    for l in (notes / "corpus.jsonl").read_text().splitlines():
        j = json.loads(l)
        docs.append((j["title"] + " " + j["text"]).strip())  # kite's full_text
    cases = []
    for i, q in enumerate(queries):
        for d in (docs[i], docs[(7 * i + 3) % len(docs)]):
            for a, b in ((q, d), (d, q)):  # the longer text first and second
                for max_length in (3, 9, 16, 24, 41, 64, 512):
                    x = tok(a, b, truncation="longest_first", max_length=max_length)
                    types = x["token_type_ids"]
                    cases.append({"a": a, "b": b, "max_length": max_length, "ids": x["input_ids"],
                                  "second": types.index(1) if 1 in types else len(types)})
    (OUT / "pair_truncation.json").write_text(json.dumps({"tokenizer": "all-MiniLM-L6-v2", "cases": cases,
                                                          "made_with": f"transformers {transformers.__version__}"}) + "\n")
    print(f"pairs: {len(cases)} cases")


if __name__ == "__main__":
    main()
    cross()
    pairs()
