#!/usr/bin/env python3
"""An independent NumPy implementation of the llama2.c forward pass, run on the aidreams260K
checkpoint, that writes the fixture kite's decoder is checked against:

  tests/fixtures/model/aidreams_greedy.json   greedy decoding of 100 tokens from BOS (token ids,
      the decoded text, the smallest gap between the two best logits over the 100 steps)
  tests/fixtures/model/aidreams_logits.f32    the logits of the first 4 steps, float32
      little-endian, [step][vocab]

The model (llama2.c run.c, written here from its definition, not ported line by line): token
embedding; per layer RMSNorm (eps 1e-5), q/k/v projections, RoPE on interleaved pairs
(2i, 2i+1) with theta 10000 over each head, causal multi-head attention (scores / sqrt(head
size), softmax), output projection, residual; RMSNorm, SwiGLU MLP w2(silu(w1 x) * w3 x),
residual; final RMSNorm; logits from the classifier (shared with the embedding here).

Unlike run.c, which decodes one token at a time with a KV cache, this recomputes the whole
sequence with a causal mask at every step, so it also checks the cache of whatever it is
compared with. Arithmetic is float32 as in run.c; RoPE angles are computed as run.c does
(float32 pos * 10000^(-head_dim/head_size)) and compared with the tables stored in the file.

Usage: python3 tools/aidreams_reference.py [DATA]   (DATA: folder with aidreams260k/, default
$KITE_DATA). Needs numpy.
"""
import hashlib
import json
import os
import pathlib
import re
import struct
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "model"
sys.path.insert(0, str(ROOT / "tools"))
import model_llama2c_tokenizer  # noqa: E402

STEPS = 100
LOGIT_STEPS = 4


def load_checkpoint(path):
    raw = open(path, "rb").read()
    dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len = struct.unpack_from("<7i", raw, 0)
    shared = vocab > 0
    vocab = abs(vocab)
    head = dim // n_heads
    kv_dim = dim * n_kv_heads // n_heads
    w = np.frombuffer(raw, dtype="<f4", offset=28)
    at = 0

    def take(*shape):
        nonlocal at
        n = int(np.prod(shape))
        a = w[at:at + n].reshape(shape)
        at += n
        return a

    m = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, vocab=vocab,
             seq_len=seq_len, head=head, kv_dim=kv_dim)
    m["emb"] = take(vocab, dim)
    m["rms_att"] = take(n_layers, dim)
    m["wq"] = take(n_layers, dim, dim)
    m["wk"] = take(n_layers, kv_dim, dim)
    m["wv"] = take(n_layers, kv_dim, dim)
    m["wo"] = take(n_layers, dim, dim)
    m["rms_ffn"] = take(n_layers, dim)
    m["w1"] = take(n_layers, hidden, dim)
    m["w2"] = take(n_layers, dim, hidden)
    m["w3"] = take(n_layers, hidden, dim)
    m["rms_final"] = take(dim)
    m["freq_real"] = take(seq_len, head // 2)
    m["freq_imag"] = take(seq_len, head // 2)
    m["cls"] = m["emb"] if shared else take(vocab, dim)
    assert at == w.size, "file size does not match the header"
    return m


def rmsnorm(x, weight):
    # x: [tokens][dim]
    ss = np.mean(x * x, axis=-1, keepdims=True, dtype=np.float32) + np.float32(1e-5)
    return (x / np.sqrt(ss)).astype(np.float32) * weight


def rope_tables(m, n):
    # cos/sin [pos][head/2] as run.c computes them (float32 throughout).
    head = m["head"]
    j = np.arange(0, head, 2, dtype=np.float32)
    freq = np.float32(1.0) / np.power(np.float32(10000.0), j / np.float32(head)).astype(np.float32)
    pos = np.arange(n, dtype=np.float32)[:, None]
    angle = (pos * freq[None, :]).astype(np.float32)
    return np.cos(angle).astype(np.float32), np.sin(angle).astype(np.float32)


def rotate(x, cos, sin, heads, head):
    # x: [tokens][heads * head]; pairs (2i, 2i+1) of each head rotated by angle[pos][i].
    t = x.shape[0]
    x = x.reshape(t, heads, head // 2, 2)
    a, b = x[..., 0], x[..., 1]
    c, s = cos[:t, None, :], sin[:t, None, :]
    out = np.stack([a * c - b * s, a * s + b * c], axis=-1)
    return out.reshape(t, heads * head).astype(np.float32)


def forward(m, tokens):
    """Logits [tokens][vocab] of the whole sequence (causal)."""
    t = len(tokens)
    H, KH, hs = m["n_heads"], m["n_kv_heads"], m["head"]
    cos, sin = rope_tables(m, t)
    x = m["emb"][tokens].astype(np.float32)  # [t][dim]
    mask = np.triu(np.full((t, t), -np.inf, dtype=np.float32), k=1)
    for layer in range(m["n_layers"]):
        xb = rmsnorm(x, m["rms_att"][layer])
        q = rotate(xb @ m["wq"][layer].T, cos, sin, H, hs)
        k = rotate(xb @ m["wk"][layer].T, cos, sin, KH, hs)
        v = xb @ m["wv"][layer].T
        q = q.reshape(t, H, hs).transpose(1, 0, 2)            # [head][t][hs]
        k = k.reshape(t, KH, hs).transpose(1, 0, 2)
        v = v.reshape(t, KH, hs).transpose(1, 0, 2)
        group = H // KH
        k = np.repeat(k, group, axis=0)
        v = np.repeat(v, group, axis=0)
        scores = (q @ k.transpose(0, 2, 1)) / np.float32(np.sqrt(hs)) + mask  # [head][t][t]
        scores = scores - scores.max(axis=-1, keepdims=True)
        p = np.exp(scores)
        p = (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)
        att = (p @ v).transpose(1, 0, 2).reshape(t, H * hs)
        x = x + att @ m["wo"][layer].T
        xb = rmsnorm(x, m["rms_ffn"][layer])
        g = xb @ m["w1"][layer].T
        u = xb @ m["w3"][layer].T
        h = (g / (np.float32(1.0) + np.exp(-g))) * u
        x = (x + h @ m["w2"][layer].T).astype(np.float32)
    x = rmsnorm(x, m["rms_final"])
    return (x @ m["cls"].T).astype(np.float32)


def main():
    data = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KITE_DATA", ""))
    ckpt = data / "aidreams260k" / "aidreams260K.bin"
    tok_path = data / "aidreams260k" / "tok512.bin"
    if not ckpt.exists():
        sys.exit(f"no checkpoint at {ckpt}; pass the data folder or set KITE_DATA")
    m = load_checkpoint(ckpt)
    cos, sin = rope_tables(m, m["seq_len"])
    print("max |RoPE table (run.c formula) - stored freq_cis|:",
          float(max(np.abs(cos - m["freq_real"]).max(), np.abs(sin - m["freq_imag"]).max())))

    tokens = [model_llama2c_tokenizer.BOS]
    first_logits = []
    margins = []
    for step in range(STEPS):
        logits = forward(m, tokens)[-1]
        if step < LOGIT_STEPS:
            first_logits.append(logits.copy())
        top2 = np.sort(logits)[-2:]
        margins.append(float(top2[1] - top2[0]))
        tokens.append(int(np.argmax(logits)))
    tok = model_llama2c_tokenizer.Tokenizer(str(tok_path), vocab_size=m["vocab"])
    text = tok.decode(tokens).decode("utf-8", errors="replace")
    bos_at = [i for i, t in enumerate(tokens[1:], 1) if t == model_llama2c_tokenizer.BOS]
    fixture = {
        "checkpoint": "aidreams260k/aidreams260K.bin",
        "checkpoint_sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest(),
        "tokenizer": "aidreams260k/tok512.bin",
        "steps": STEPS,
        "tokens": tokens,
        "text": text,
        "first_bos_generated_at": bos_at[0] if bos_at else None,
        "min_top2_margin": min(margins),
        "logits_file": "aidreams_logits.f32",
        "logits_steps": LOGIT_STEPS,
        "vocab_size": m["vocab"],
        "note": "greedy argmax from BOS, no stopping; tokens[0] is BOS; logits_file holds the logits "
                "that chose tokens[1..logits_steps], float32 little-endian [step][vocab]",
    }
    text_out = json.dumps(fixture, indent=1, ensure_ascii=False)
    text_out = re.sub(r'"tokens": \[[\d,\s]+\]', '"tokens": ' + json.dumps(tokens), text_out)  # one line
    (OUT / "aidreams_greedy.json").write_text(text_out + "\n")
    np.stack(first_logits).astype("<f4").tofile(OUT / "aidreams_logits.f32")
    print(f"greedy {STEPS} tokens, min top-2 logit margin {min(margins):.4g}")
    print(text)


if __name__ == "__main__":
    main()
