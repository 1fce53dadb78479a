"""The arithmetic of model FLOP utilisation for benchmarks/gpu_check.py: the bf16 matmul peak measured on the
device (MFU's denominator), the FLOPs of a call counted by FlopCounterMode, and its mean wall time."""

from __future__ import annotations

import time

import torch


def sync(device) -> None:
    """Wait for the work queued on a CUDA device (nothing to wait for on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device: str, size: int = 8192, repeats: int = 20) -> dict:
    """Achieved bf16 matrix-multiply FLOP/s (the denominator of MFU), best of three rounds."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(3):
        sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        sync(device)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - start))
    return {"size": size, "tflops": best / 1e12}


def counted_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def flops_and_seconds(fn, iters: int, device: str) -> tuple[float, float]:
    """FLOPs of one call of `fn` (FlopCounterMode) and its mean wall time over `iters` calls, after one warm-up."""
    fn()
    flops = counted_flops(fn)
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return flops, (time.perf_counter() - start) / iters
