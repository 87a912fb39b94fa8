#!/usr/bin/env python3
"""Fits the rational erf approximation of kite::model::act::detail::erf (kite/model/layers.hpp).

erf(x) ~ x P(x^2) / Q(x^2) on [0, C], C = 3.925 (1 - erf(C) = 2.8e-8, below half a float ulp
of 1, so erf = +-1 beyond C in float32), with P of degree 5 and Q of degree 5 in x^2, Q(0) = 1.

Method: linearised least squares x P(t) - erf(x) Q(t) = 0 on Chebyshev nodes, each step
weighted by 1 / Q of the previous step (Loeb), with Lawson's multiplicative weights driving the
fit toward minimax. Prints the coefficients rounded to float32 and the error of the float32
Horner evaluation against math.erf (double) on a dense grid.

Usage: python3 tools/fit_erf.py   (needs numpy)
"""
import math

import numpy as np

C = 3.925
NP, NQ = 6, 5  # coefficients of P (t^0..t^5); of Q beyond the constant 1 (t^1..t^5)


def fit(iters=60, n=20000):
    x = (C / 2) * (1 - np.cos(np.pi * (np.arange(n) + 0.5) / n))
    f = np.array([math.erf(v) for v in x])
    t = x * x
    q = np.ones_like(x)
    w = np.ones_like(x)
    best = None
    for _ in range(iters):
        a = np.hstack([x[:, None] * t[:, None] ** np.arange(NP), -(f[:, None] * t[:, None] ** np.arange(1, NQ + 1))])
        wt = w / q
        sol, *_ = np.linalg.lstsq(a * wt[:, None], f * wt, rcond=None)
        p, qq = sol[:NP], np.concatenate([[1.0], sol[NP:]])
        q = np.polyval(qq[::-1], t)
        r = x * np.polyval(p[::-1], t) / q - f
        e = np.abs(r).max()
        if best is None or e < best[0]:
            best = (e, p.copy(), qq.copy())
        w = w * np.abs(r)
        w = w / w.sum() * len(w) + 1e-12
    return best


def horner32(coef, t):
    acc = np.zeros_like(t)
    for c in coef[::-1]:
        acc = (acc * t + np.float32(c)).astype(np.float32)
    return acc


def main():
    e, p, q = fit()
    xs = np.linspace(0, C, 200001).astype(np.float32)
    ts = (xs * xs).astype(np.float32)
    y = (xs * horner32(p, ts) / horner32(q, ts)).astype(np.float32)
    ref = np.array([math.erf(float(v)) for v in xs])
    print(f"max |error|: {e:.3g} in double, {np.abs(y - ref).max():.3g} evaluated in float32 on [0, {C}]")
    print(f"1 - erf({C}) = {1 - math.erf(C):.3g}")
    print("P:", ", ".join(f"{float(np.float32(v))!r}f" for v in p))
    print("Q:", ", ".join(f"{float(np.float32(v))!r}f" for v in q))


if __name__ == "__main__":
    main()
