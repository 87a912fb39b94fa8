#!/usr/bin/env python3
"""PyTorch reference implementations of kite's quantization methods, in float64.

These follow the papers and are the oracles for tests/fixtures/quant (written by
tools/quant_make_fixtures.py); kite's C++ (include/kite/quant/) must produce the same integer
levels except at exact rounding ties.

- rtn():  round-to-nearest on a symmetric absmax grid or GPTQ's asymmetric min-max grid.
- gptq(): Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative
          Pre-trained Transformers", Algorithm 1: H = 2 X^T X + lambda I (lambda = 1% of the mean
          diagonal), the upper Cholesky factor of H^-1, columns quantized in order with the
          error spread over the remaining columns, lazy batches of 128 columns; plus the paper's
          extensions: groups of G columns and act-order (columns by descending diag(H)).
- awq():  Lin et al. 2023, "AWQ: Activation-aware Weight Quantization", the scale search: per
          input channel s = mean|x|^alpha (normalised by sqrt(max s * min s)), alpha over 20
          points in [0, 1), lowest output MSE on the calibration data, weights scaled W * s and
          inputs x / s so the layer computes the same function, then RTN.

Choices that the papers leave open (kite's C++ makes the same ones):
- Grids (quantizer): symmetric = absmax, scale = max|w| / (2^(b-1) - 1), levels -qmax..qmax;
  asymmetric = GPTQ's quantizer: lo = min(min w, 0), hi = max(max w, 0), scale = (hi - lo) /
  (2^b - 1), zero = round(-lo / scale); an all-zero group gets lo = -1, hi = 1 (absmax 1).
  The scale is rounded to its storage type (float32 or float16) before zero and levels are
  computed. AWQ uses the same asymmetric grid (llm-awq's own does not extend the range to 0).
- GPTQ groups without act-order: a group's grid is computed when its first column is reached,
  from the current (already error-updated) weights of its columns. (The GPTQ repository reads
  them from a copy taken at the start of the 128-column block, which differs when G < 128.)
- GPTQ with act-order and groups: "static groups" (AutoGPTQ's option): each group's grid is
  computed from the weights before GPTQ runs, so groups stay contiguous in the original column
  order and the packed layout needs no permutation. Per-row grids are always computed up front.
- act-order ties: stable descending sort (lower column index first).
- Dead inputs (diag(H) == 0): H[j][j] = 1 and W[:, j] = 0, as in the GPTQ repository.
- AWQ: only the scale search (no weight clipping search).
"""
import torch

F64 = torch.float64


def round_storage(s: torch.Tensor, scale_dtype: str) -> torch.Tensor:
    """Rounds float64 scales to their storage type (float32 or float16) and back."""
    f = s.to(torch.float32)
    if scale_dtype == "fp16":
        f = f.to(torch.float16).to(torch.float32)
        tiny = 2.0 ** -24
    else:
        tiny = torch.finfo(torch.float32).tiny
    f = torch.where(f == 0, torch.full_like(f, tiny), f)
    if not torch.isfinite(f).all():
        raise ValueError("scale overflows its storage type")
    return f.to(F64)


def find_grid(w: torch.Tensor, bits: int, sym: bool, scale_dtype: str):
    """Scale and zero point per row of w [rows, n] (float64)."""
    lo = torch.clamp(w.min(dim=1).values, max=0.0)
    hi = torch.clamp(w.max(dim=1).values, min=0.0)
    if sym:
        qmax = 2 ** (bits - 1) - 1
        amax = torch.maximum(-lo, hi)
        amax = torch.where(amax == 0, torch.ones_like(amax), amax)
        scale = round_storage(amax / qmax, scale_dtype)
        return scale, torch.zeros_like(scale)
    maxq = 2 ** bits - 1
    both0 = (lo == 0) & (hi == 0)
    lo = torch.where(both0, -torch.ones_like(lo), lo)
    hi = torch.where(both0, torch.ones_like(hi), hi)
    scale = round_storage((hi - lo) / maxq, scale_dtype)
    zero = torch.clamp(torch.round(-lo / scale), 0, maxq)
    return scale, zero


def quantize_levels(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, sym: bool):
    """Integer levels (float64 tensor) and the value w / scale that was rounded."""
    v = w / scale
    if sym:
        qmax = 2 ** (bits - 1) - 1
        return torch.clamp(torch.round(v), -qmax, qmax), v
    maxq = 2 ** bits - 1
    return torch.clamp(torch.round(v) + zero, 0, maxq), v


def dequantize_levels(q, scale, zero):
    return scale * (q - zero)


def n_groups(k: int, group: int) -> int:
    return (k + group - 1) // group if group > 0 else 1


def rtn(W: torch.Tensor, bits: int, group: int, sym: bool, scale_dtype: str = "fp32"):
    """Round-to-nearest. Returns levels [m, k], scales [m, G], zeros [m, G], pre-rounding values."""
    W = W.to(F64)
    m, k = W.shape
    gc = group if group > 0 else k
    ng = n_groups(k, group)
    Q = torch.zeros(m, k, dtype=F64)
    V = torch.zeros(m, k, dtype=F64)
    S = torch.zeros(m, ng, dtype=F64)
    Z = torch.zeros(m, ng, dtype=F64)
    for g in range(ng):
        c0, c1 = g * gc, min(k, (g + 1) * gc)
        s, z = find_grid(W[:, c0:c1], bits, sym, scale_dtype)
        q, v = quantize_levels(W[:, c0:c1], s[:, None], z[:, None], bits, sym)
        Q[:, c0:c1], V[:, c0:c1], S[:, g], Z[:, g] = q, v, s, z
    return Q, S, Z, V


def rtn_dequantized(W, bits, group, sym, scale_dtype="fp32"):
    Q, S, Z, _ = rtn(W, bits, group, sym, scale_dtype)
    k = W.shape[1]
    gc = group if group > 0 else k
    gidx = torch.arange(k) // gc
    return S[:, gidx] * (Q - Z[:, gidx])


def gptq(W, X, bits, group, sym=False, act_order=False, blocksize=128, percdamp=0.01, scale_dtype="fp32"):
    """GPTQ (Algorithm 1 with groups and act-order). W [m, k], X [n, k] (calibration inputs).

    Returns levels [m, k] and the pre-rounding values w / scale in original column order, scales
    and zeros [m, groups], and the processing order perm (perm[j] = original column at step j).
    """
    W = W.to(F64).clone()
    X = X.to(F64)
    m, k = W.shape
    H = 2.0 * X.T @ X
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0

    gc = group if group > 0 else k
    ng = n_groups(k, group)
    S = torch.zeros(m, ng, dtype=F64)
    Z = torch.zeros(m, ng, dtype=F64)
    static = group <= 0 or act_order  # grids fixed before the column loop
    if static:
        for g in range(ng):
            S[:, g], Z[:, g] = find_grid(W[:, g * gc:min(k, (g + 1) * gc)], bits, sym, scale_dtype)

    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
    else:
        perm = torch.arange(k)
    W = W[:, perm]
    H = H[perm][:, perm]

    damp = percdamp * torch.mean(torch.diag(H))
    H = H + damp * torch.eye(k, dtype=F64)
    L = torch.linalg.cholesky(H)
    Hinv = torch.cholesky_inverse(L)
    U = torch.linalg.cholesky(Hinv, upper=True)

    Q = torch.zeros(m, k, dtype=F64)
    V = torch.zeros(m, k, dtype=F64)
    for i1 in range(0, k, blocksize):
        i2 = min(i1 + blocksize, k)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros(m, count, dtype=F64)
        U1 = U[i1:i2, i1:i2]
        for i in range(count):
            col = int(perm[i1 + i])
            g = col // gc
            if not static and col % gc == 0:
                S[:, g], Z[:, g] = find_grid(W1[:, i:i + gc], bits, sym, scale_dtype)
            w = W1[:, i]
            q, v = quantize_levels(w, S[:, g], Z[:, g], bits, sym)
            Q[:, col], V[:, col] = q, v
            err = (w - dequantize_levels(q, S[:, g], Z[:, g])) / U1[i, i]
            W1[:, i:] -= err[:, None] * U1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return Q, S, Z, V, perm


def awq(W, X, bits, group, n_grid=20, scale_dtype="fp32"):
    """AWQ scale search + RTN on W * s. Returns levels, scales, zeros, pre-rounding values, the
    input scales s (float32 values) and the chosen grid index (alpha = index / n_grid)."""
    W = W.to(F64)
    X = X.to(F64)
    x_mean = X.abs().mean(dim=0)
    org = X @ W.T
    best, best_i, best_s = float("inf"), -1, None
    for i in range(n_grid):
        ratio = i / n_grid
        s = x_mean.pow(ratio).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        s = s.to(torch.float32).to(F64)
        Wq = rtn_dequantized(W * s[None, :], bits, group, False, scale_dtype) / s[None, :]
        loss = (org - X @ Wq.T).pow(2).mean().item()
        if loss < best:
            best, best_i, best_s = loss, i, s
    Q, S, Z, V = rtn(W * best_s[None, :], bits, group, False, scale_dtype)
    return Q, S, Z, V, best_s, best_i
