#!/usr/bin/env python3
"""Regenerates tests/fixtures/quant/reference.kqfx with tools/quant_reference.py (PyTorch).

One synthetic layer (W [8][200], calibration X [128][200] with correlated features of very
different magnitudes and one dead input) quantized by RTN, GPTQ (groups, act-order, per-row,
8-bit symmetric, fp16 scales) and AWQ. W and X are rounded to float16-representable values so
that they are stored in 2 bytes and read exactly as float in C++.

For each case the file holds the integer levels, scales, zeros, the distance of each rounded
value to the nearest rounding tie (|v - floor(v) - 1/2|, so a test can tell ties from real
disagreements), and for GPTQ the processing order; for AWQ the input scales and grid index.

File format (little endian): magic b"KQFX0001", u32 count, then per array: u32 name length,
name (UTF-8), u8 dtype (0 f32, 1 f64, 2 i32, 3 u8, 4 i16, 5 f16), u32 ndim, u64 dims[ndim],
data (row-major).

Usage: python3 tools/quant_make_fixtures.py   (needs torch and numpy)
"""
import pathlib
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import quant_reference as ref  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "quant" / "reference.kqfx"
DTYPES = {np.float32: 0, np.float64: 1, np.int32: 2, np.uint8: 3, np.int16: 4, np.float16: 5}


def write(path, arrays):
    with open(path, "wb") as f:
        f.write(b"KQFX0001")
        f.write(struct.pack("<I", len(arrays)))
        for name, a in arrays:
            a = np.ascontiguousarray(a)
            nb = name.encode()
            f.write(struct.pack("<I", len(nb)) + nb)
            f.write(struct.pack("<BI", DTYPES[a.dtype.type], a.ndim))
            f.write(struct.pack(f"<{a.ndim}Q", *a.shape))
            f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())


def tie_distance(v):
    return (v - torch.floor(v) - 0.5).abs().numpy().astype(np.float32)


def main() -> None:
    torch.manual_seed(20261127)
    rng = np.random.default_rng(7)
    m, k, n = 8, 200, 128
    W = (rng.standard_normal((m, k)) * 0.05).astype(np.float16)
    W[3, 17] = np.float16(0.9)  # an outlier weight
    W[5, :] = np.float16(0)     # an all-zero row
    A = rng.standard_normal((24, k)) / np.sqrt(24)
    X = rng.standard_normal((n, 24)) @ A + 0.1 * rng.standard_normal((n, k))
    X *= np.exp(rng.uniform(-1.5, 1.5, k))  # channels of very different magnitude (AWQ's case)
    X[:, 11] = 0                            # a dead input: diag(H) = 0
    X = X.astype(np.float16)
    Wt = torch.from_numpy(W.astype(np.float64))
    Xt = torch.from_numpy(X.astype(np.float64))

    arrays = [("W", W), ("X", X)]

    def put(name, Q, S, Z, V, extra=()):
        arrays.extend([(f"{name}/levels", Q.numpy().astype(np.int16)),
                       (f"{name}/scales", S.numpy().astype(np.float32)),
                       (f"{name}/zeros", Z.numpy().astype(np.int16)),
                       (f"{name}/tie_distance", tie_distance(V))])
        arrays.extend(extra)

    for bits, group, sym, sd in [(4, 32, False, "fp32"), (8, 0, True, "fp32"), (4, 128, True, "fp16")]:
        Q, S, Z, V = ref.rtn(Wt, bits, group, sym, sd)
        put(f"rtn_b{bits}_g{group}_{'sym' if sym else 'asym'}_{sd}", Q, S, Z, V)

    gptq_cases = [  # bits, group, sym, act_order, scale dtype
        (4, 32, False, False, "fp32"),
        (4, 128, False, True, "fp32"),
        (4, 0, False, True, "fp32"),
        (8, 64, True, False, "fp32"),
        (4, 64, False, False, "fp16"),
    ]
    for bits, group, sym, act, sd in gptq_cases:
        Q, S, Z, V, perm = ref.gptq(Wt, Xt, bits, group, sym=sym, act_order=act, scale_dtype=sd)
        put(f"gptq_b{bits}_g{group}_{'sym' if sym else 'asym'}_{'act' if act else 'seq'}_{sd}", Q, S, Z, V,
            [(f"gptq_b{bits}_g{group}_{'sym' if sym else 'asym'}_{'act' if act else 'seq'}_{sd}/perm",
              perm.numpy().astype(np.int32))])

    for bits, group in [(4, 32), (4, 128)]:
        Q, S, Z, V, s, idx = ref.awq(Wt, Xt, bits, group)
        put(f"awq_b{bits}_g{group}", Q, S, Z, V,
            [(f"awq_b{bits}_g{group}/input_scales", s.numpy().astype(np.float32)),
             (f"awq_b{bits}_g{group}/grid_index", np.array([idx], dtype=np.int32))])
        print(f"awq g{group}: alpha = {idx / 20:.2f}")

    OUT.parent.mkdir(parents=True, exist_ok=True)
    write(OUT, arrays)
    print(f"wrote {len(arrays)} arrays ({OUT.stat().st_size} bytes) to {OUT} with torch {torch.__version__}")


if __name__ == "__main__":
    main()
