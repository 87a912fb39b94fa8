#!/usr/bin/env python3
"""Regenerates the flat index's golden fixtures in tests/fixtures/retrieval/ with NumPy and the
PyPI faiss-cpu package (the anchor users know):

  python3 tools/flat_make_fixtures.py [out_dir]

Files (all small):
  flat_base.npy / flat_queries.npy   200 x 16 / 5 x 16 float32, fixed seed
  flat_base.fvecs                    the same base as .fvecs (example smoke test, reader test)
  flat_gt.ivecs                      FAISS's 10 nearest (L2) of each query, int32
  flat_{l2,ip,idmap}.faiss           indexes written by faiss.write_index: IndexFlatL2,
                                     IndexFlatIP, IndexIDMap(IndexFlatL2) with ids 1000 + 3 i
  flat_{l2,ip,idmap}_D.npy / _I.npy  FAISS's search results for the queries (k = 10)
  flat_i4_v2.npy                     a 1-D int32 array written as .npy version 2.0
"""
import os
import sys

import faiss
import numpy as np


def write_vecs(path, a, dtype):
    a = np.ascontiguousarray(a, dtype=dtype)
    n, d = a.shape
    rec = np.empty((n, d + 1), dtype=np.int32)
    rec[:, 0] = d
    rec[:, 1:] = a.view(np.int32)
    rec.tofile(path)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "tests", "fixtures", "retrieval")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240603)
    d = 16
    xb = rng.standard_normal((200, d)).astype(np.float32)
    xb[17] = xb[3]  # a duplicate: FAISS and kite must both rank the lower id first
    xq = rng.standard_normal((5, d)).astype(np.float32)
    xq[4] = xb[3]   # a query equal to a stored vector (distance 0, a tie between ids 3 and 17)
    np.save(os.path.join(out, "flat_base.npy"), xb)
    np.save(os.path.join(out, "flat_queries.npy"), xq)
    write_vecs(os.path.join(out, "flat_base.fvecs"), xb, np.float32)

    k = 10
    indexes = {
        "l2": faiss.IndexFlatL2(d),
        "ip": faiss.IndexFlatIP(d),
        "idmap": faiss.IndexIDMap(faiss.IndexFlatL2(d)),
    }
    for name, index in indexes.items():
        if name == "idmap":
            index.add_with_ids(xb, (1000 + 3 * np.arange(len(xb))).astype(np.int64))
        else:
            index.add(xb)
        faiss.write_index(index, os.path.join(out, f"flat_{name}.faiss"))
        D, I = index.search(xq, k)
        np.save(os.path.join(out, f"flat_{name}_D.npy"), D.astype(np.float32))
        np.save(os.path.join(out, f"flat_{name}_I.npy"), I.astype(np.int64))
        if name == "l2":
            write_vecs(os.path.join(out, "flat_gt.ivecs"), I.astype(np.int32), np.int32)

    np.lib.format.write_array(open(os.path.join(out, "flat_i4_v2.npy"), "wb"),
                              np.arange(7, dtype=np.int32), version=(2, 0))
    print(f"fixtures written to {out} (faiss {faiss.__version__}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
