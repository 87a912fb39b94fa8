#!/usr/bin/env python3
"""Regenerates tests/fixtures/attn/sdpa.txt with PyTorch's scaled_dot_product_attention.

Each case draws q [batch][q_seq][heads][dim] (times 2) and k, v [batch][kv_seq][kv_heads][dim]
from the LCG of tools/pos_make_fixtures.py (reproduced by tests/pos/fixture_io.hpp), runs
torch.nn.functional.scaled_dot_product_attention in float64 on the [batch][head][seq][dim]
permutation with a boolean or additive mask, and stores the output in kite's [b][s][h][d]
layout. Query rows past a sequence's q_len are stored as 0 (kite zeroes them).

Masks: causal (bottom-right aligned: query i of q_len sees keys j <= i + kv_len - q_len), key
padding from kv_lens, and BLOOM's ALiBi tensor (build_alibi_tensor) as an additive bias.

Usage: python3 tools/attn_make_fixtures.py   (needs torch, numpy, transformers)
"""
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

from pos_make_fixtures import lcg, writer

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "attn"


def sdpa_case(w, name, seed, batch, q_seq, kv_seq, heads, kv_heads, dim, causal, q_lens=None, kv_lens=None,
              scale=0.0, alibi=False):
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    q_lens = q_lens or [q_seq] * batch
    kv_lens = kv_lens or [kv_seq] * batch
    q = lcg(batch * q_seq * heads * dim, seed).reshape(batch, q_seq, heads, dim) * 2
    k = lcg(batch * kv_seq * kv_heads * dim, seed + 1).reshape(batch, kv_seq, kv_heads, dim)
    v = lcg(batch * kv_seq * kv_heads * dim, seed + 2).reshape(batch, kv_seq, kv_heads, dim)
    qt, kt, vt = (torch.from_numpy(x).double().permute(0, 2, 1, 3) for x in (q, k, v))
    allowed = torch.zeros(batch, 1, q_seq, kv_seq, dtype=torch.bool)
    for b in range(batch):
        for i in range(q_lens[b]):
            for j in range(kv_lens[b]):
                allowed[b, 0, i, j] = (not causal) or j <= i + kv_lens[b] - q_lens[b]
        for i in range(q_lens[b], q_seq):
            allowed[b, 0, i, 0] = True  # padded query rows: anything finite, zeroed below
    bias = torch.zeros(batch, heads, q_seq, kv_seq, dtype=torch.float64)
    if alibi:
        pad = torch.tensor([[1] * kv_lens[b] + [0] * (kv_seq - kv_lens[b]) for b in range(batch)])
        bias += build_alibi_tensor(pad, heads, torch.float64).reshape(batch, heads, 1, kv_seq)
    bias = bias.masked_fill(~allowed, float("-inf"))
    plain_causal = causal and q_seq == kv_seq and not alibi and q_lens == kv_lens == [q_seq] * batch
    if plain_causal:  # the is_causal path itself
        out = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale if scale else None,
                                             enable_gqa=heads != kv_heads)
    else:
        out = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=bias, scale=scale if scale else None,
                                             enable_gqa=heads != kv_heads)
    out = out.permute(0, 2, 1, 3).contiguous().numpy()
    for b in range(batch):
        out[b, q_lens[b]:] = 0
    w.case(name, {"batch": batch, "q_seq": q_seq, "kv_seq": kv_seq, "heads": heads, "kv_heads": kv_heads,
                  "dim": dim, "causal": int(causal), "scale": repr(scale), "alibi": int(alibi), "seed": seed},
           {"q_lens": q_lens, "kv_lens": kv_lens, "out": out.astype(np.float32)})


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    w = writer(OUT / "sdpa.txt", """
PyTorch scaled_dot_product_attention (float64), output [batch][q_seq][heads][dim].
q = 2 * lcg(seed), k = lcg(seed + 1), v = lcg(seed + 2); kite layout [b][s][h][d].""",
               tool="tools/attn_make_fixtures.py")
    sdpa_case(w, "causal_mha", 101, 2, 21, 21, 3, 3, 16, True)
    sdpa_case(w, "padding_bidirectional", 111, 3, 13, 13, 2, 2, 32, False, [13, 7, 1], [13, 7, 1])
    sdpa_case(w, "causal_padding", 121, 2, 17, 17, 2, 2, 16, True, [17, 9], [17, 9])
    sdpa_case(w, "gqa_causal", 131, 1, 13, 13, 8, 2, 32, True)
    sdpa_case(w, "mqa_bidirectional", 141, 2, 7, 7, 4, 1, 64, False)
    sdpa_case(w, "alibi_causal_padding", 151, 2, 15, 15, 5, 5, 16, True, [15, 10], [15, 10], alibi=True)
    sdpa_case(w, "scale_rectangular", 161, 1, 5, 12, 2, 2, 80, False, scale=0.3)
    sdpa_case(w, "decode_gqa", 171, 2, 1, 37, 4, 2, 128, True, [1, 1], [37, 20])
    sdpa_case(w, "chunked_prefill_causal", 181, 1, 6, 23, 2, 2, 32, True)
    w.close()


if __name__ == "__main__":
    main()
