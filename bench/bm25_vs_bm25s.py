#!/usr/bin/env python3
"""BM25 on BEIR SciFact, one thread: kite beside bm25s (numpy and numba backends) and
rank_bm25. Prints, per engine, index build time, top-10 queries per second (query tokenization
included) and kite's ratio to it.

  python3 bench/bm25_vs_bm25s.py --kite build/release/bench/bench_lexical_scifact [DATA_DIR]

DATA_DIR holds scifact/ (default: $KITE_DATA). Needs bm25s, PyStemmer, rank_bm25, numpy (and
numba for bm25s's numba backend). Same setup for every engine: title + " " + text, Lucene BM25
(k1 1.2, b 0.75; rank_bm25 only has Okapi BM25), English stop words (Lucene's 33, bm25s's "en"
list is the same), Snowball English stemmer (PyStemmer = libstemmer). Tokenizers differ in
detail: bm25s lower-cases and keeps regex (?u)\\b\\w\\w+\\b tokens (no 1-character tokens,
'_' is a word character); kite's english analyzer applies NFKC + case folding and splits on
non-letters/digits. Build time = tokenizing the corpus + indexing (median of --builds);
QPS = tokenizing the 300 test queries + top-10 retrieval (median of --passes, after a warm-up).
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import hostinfo

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"
os.environ.setdefault("DISABLE_TQDM", "1")


def load_scifact(root):
    d = os.path.join(root, "scifact")
    corpus = [json.loads(l) for l in open(os.path.join(d, "corpus.jsonl"), encoding="utf-8")]
    queries = {}
    for l in open(os.path.join(d, "queries.jsonl"), encoding="utf-8"):
        o = json.loads(l)
        queries[o["_id"]] = o["text"]
    qrels = {}
    for l in list(open(os.path.join(d, "qrels", "test.tsv"), encoding="utf-8"))[1:]:
        q, doc, s = l.rstrip("\n").split("\t")
        if int(s) > 0:
            qrels.setdefault(q, set()).add(doc)
    qids = [q for q in queries if q in qrels]  # queries.jsonl order, as kite's loader
    return corpus, [queries[q] for q in qids], [qrels[q] for q in qids]


def ndcg10(runs, qrels, doc_ids):
    total = 0.0
    for run, rel in zip(runs, qrels):
        dcg = sum(1 / math.log2(r + 2) for r, d in enumerate(run[:10]) if doc_ids[d] in rel)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(10, len(rel))))
        total += dcg / idcg
    return total / len(runs)


def bench_bm25s(texts, queries, qrels, doc_ids, backend, builds, passes):
    import bm25s
    import Stemmer
    stemmer = Stemmer.Stemmer("english")
    build = []
    for _ in range(builds):
        t0 = time.perf_counter()
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        r = bm25s.BM25(method="lucene", k1=1.2, b=0.75, backend=backend)
        r.index(tokens, show_progress=False)
        build.append(time.perf_counter() - t0)

    def one_pass():
        qt = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
        return r.retrieve(qt, k=10, show_progress=False, n_threads=1)

    docs, _ = one_pass()  # warm-up (numba compiles here)
    qps = []
    for _ in range(passes):
        t0 = time.perf_counter()
        one_pass()
        qps.append(len(queries) / (time.perf_counter() - t0))
    return {"engine": f"bm25s {bm25s.__version__} ({backend})", "build_s": statistics.median(build),
            "qps": statistics.median(qps), "ndcg10": ndcg10(docs.tolist(), qrels, doc_ids),
            "terms": len(r.vocab_dict)}


def bench_rank_bm25(texts, queries, qrels, doc_ids, n_queries):
    import bm25s
    import numpy as np
    import rank_bm25
    import Stemmer
    stemmer = Stemmer.Stemmer("english")
    tok = lambda xs: bm25s.tokenize(xs, stopwords="en", stemmer=stemmer, show_progress=False,
                                     return_ids=False)
    t0 = time.perf_counter()
    r = rank_bm25.BM25Okapi(tok(texts), k1=1.2, b=0.75)
    build = time.perf_counter() - t0
    sub = queries[:n_queries]
    t0 = time.perf_counter()
    runs = [np.argsort(-r.get_scores(q))[:10].tolist() for q in tok(sub)]
    qps = len(sub) / (time.perf_counter() - t0)
    return {"engine": "rank_bm25 (BM25Okapi)", "build_s": build, "qps": qps,
            "ndcg10": ndcg10(runs, qrels[:n_queries], doc_ids), "note": f"{len(sub)} queries"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=os.environ.get("KITE_DATA"))
    ap.add_argument("--kite", default="build/release/bench/bench_lexical_scifact",
                    help="path of kite's bench_lexical_scifact binary")
    ap.add_argument("--builds", type=int, default=3)
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--rank-bm25-queries", type=int, default=100)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not args.data:
        sys.exit("give DATA_DIR (the folder holding scifact/) or set KITE_DATA")
    print(f"host: {hostinfo.describe()}")

    kite = json.loads(subprocess.run([args.kite, args.data, "--builds", str(args.builds), "--passes",
                                      str(args.passes), "--k", "10"], check=True, capture_output=True,
                                     text=True).stdout)
    kite["engine"] = "kite (english, lucene)"
    corpus, queries, qrels = load_scifact(args.data)
    texts = [c["title"] + " " + c["text"] for c in corpus]
    doc_ids = [c["_id"] for c in corpus]
    rows = [kite, bench_bm25s(texts, queries, qrels, doc_ids, "numpy", args.builds, args.passes)]
    try:
        import numba  # noqa: F401
        rows.append(bench_bm25s(texts, queries, qrels, doc_ids, "numba", args.builds, args.passes))
    except ImportError:
        print("(numba not installed: bm25s's numba backend skipped)")
    rows.append(bench_rank_bm25(texts, queries, qrels, doc_ids, args.rank_bm25_queries))

    print(f"SciFact: {len(texts)} docs, {len(queries)} test queries, top-10, 1 thread")
    print("| engine | build (s) | kite build speed-up | QPS | kite QPS ratio | nDCG@10 |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['build_s']:.3f} | {r['build_s'] / kite['build_s']:.1f}x | "
              f"{r['qps']:,.0f} | {kite['qps'] / r['qps']:.1f}x | {r['ndcg10']:.4f} |")
    print(f"kite exhaustive path: {kite['qps_exhaustive']:,.0f} QPS; query analysis alone: "
          f"{kite['qps_analyze_only']:,.0f} queries/s; index {kite['index_bytes'] / 1e6:.1f} MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
