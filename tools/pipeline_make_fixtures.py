#!/usr/bin/env python3
"""Regenerates tests/fixtures/retrieval/pipeline/*: evaluation metrics by pytrec_eval
(trec_eval's definitions) on random runs with graded relevance, and reciprocal rank fusion as
the seed's Python computes it (a stable sort over first appearance).

Usage: python3 tools/pipeline_make_fixtures.py   (needs pytrec_eval-terrier)
"""
import json
import pathlib
import random
from collections import defaultdict

import pytrec_eval

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "retrieval" / "pipeline"


def make_eval_fixture(rng: random.Random) -> dict:
    n_docs = 300
    qrels, run = {}, {}
    for q in range(60):
        qid = f"q{q}"
        judged = rng.sample(range(n_docs), rng.randint(1, 12))
        # graded relevance 0..3, at least one relevant; some queries with a single relevant doc
        qrels[qid] = {f"d{d}": rng.choice([0, 1, 1, 2, 3]) for d in judged}
        if all(v == 0 for v in qrels[qid].values()):
            qrels[qid][f"d{judged[0]}"] = 1
        depth = rng.choice([5, 10, 37, 100, 150])
        pool = list(set(judged) | set(rng.sample(range(n_docs), min(n_docs, depth))))
        rng.shuffle(pool)
        ranked = pool[:depth]
        # strictly decreasing scores: trec_eval's ordering equals the list order
        run[qid] = {f"d{d}": float(depth - i) + 0.5 for i, d in enumerate(ranked)}
    # a query judged only non-relevant is not evaluated by kite; keep it out of pytrec_eval too
    measures = {"ndcg_cut.10", "recall.100", "success.1", "success.10", "map", "recip_rank", "ndcg_cut.3"}
    full = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    # recip_rank has no cutoff in trec_eval: MRR@10 is recip_rank on runs cut at 10
    run10 = {q: dict(sorted(r.items(), key=lambda kv: -kv[1])[:10]) for q, r in run.items()}
    rr10 = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(run10)
    expected = {}
    for q in run:
        m = full[q]
        expected[q] = {
            "ndcg@10": m["ndcg_cut_10"], "ndcg@3": m["ndcg_cut_3"], "recall@100": m["recall_100"],
            "hit@1": m["success_1"], "hit@10": m["success_10"], "map": m["map"],
            "mrr@10": rr10[q]["recip_rank"],
        }
    return {"qrels": qrels, "run": {q: sorted(r.items(), key=lambda kv: -kv[1]) for q, r in run.items()},
            "expected": expected}


def seed_rrf(rankings, k=5):
    """The seed's reciprocal rank fusion: 1 / (k + rank), ranks from 1, stable sort."""
    scores = defaultdict(float)
    for ranking in rankings:
        for i, doc_id in enumerate(ranking, 1):
            scores[doc_id] += 1.0 / (k + i)
    return sorted(scores.items(), key=lambda x: x[1], reverse=True)


def make_rrf_fixture(rng: random.Random) -> dict:
    cases = []
    for t in range(20):
        n_lists = rng.choice([1, 2, 3])
        lists = [rng.sample(range(40), rng.randint(0, 25)) for _ in range(n_lists)]
        k = rng.choice([0, 1, 5, 60])
        cases.append({"k": k, "lists": lists, "fused": seed_rrf(lists, k)})
    return {"cases": cases}


def main() -> None:
    rng = random.Random(20261127)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "trec_eval_metrics.json").write_text(json.dumps(make_eval_fixture(rng)))
    (OUT / "seed_rrf.json").write_text(json.dumps(make_rrf_fixture(rng)))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
