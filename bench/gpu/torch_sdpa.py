#!/usr/bin/env python3
"""The anchor of kite's flash attention benchmark: PyTorch's scaled_dot_product_attention with
the flash backend only, on the same shapes kite_gpu_bench times (bf16, 16 heads, [batch, heads,
seq, dim]), timed with CUDA events (median of 30 after 5 warm-ups). One JSON line per case, the
same fields as kite_gpu_bench. Runs where torch sees a GPU (bench/gpu/run.sh on the GPU machine)."""
import json
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = [  # (batch, seq, dim, causal): the cases of bench/gpu/bench_flash.cpp
    (4, 4096, 128, False), (4, 4096, 128, True),
    (1, 16384, 128, False), (1, 16384, 128, True),
    (4, 4096, 64, False), (4, 4096, 64, True),
]
HEADS = 16


def time_ms(fn, warmup=5, reps=30):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return statistics.median(out)


def main():
    if not torch.cuda.is_available():
        print("torch_sdpa.py: torch sees no GPU", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", file=sys.stderr)
    for batch, seq, dim, causal in SHAPES:
        q, k, v = (torch.randn(batch, HEADS, seq, dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
        flops = 4.0 * batch * HEADS * seq * seq * dim * (0.5 if causal else 1.0)
        params = f"bf16 d{dim} b{batch} s{seq} h{HEADS} causal={int(causal)}"
        print(json.dumps({"case": "torch_sdpa_flash", "params": params, "ms": ms, "tflops": flops / (ms * 1e-3) / 1e12,
                          "gbps": 0.0, "ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
