"""GPU check: full-size paper configurations on one GPU, bf16 vs fp32, and the batched mixture-score call.

Run on a GPU machine from the repository root (nothing to build):
    PYTHONPATH=. python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json
Writes one JSON file with the card's name. Data are synthetic (random images with the datasets' shapes):
this measures speed, memory and numerical health, not sample quality.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch


def synthetic_npz(folder: str, n: int, res: int, classes: int) -> str:
    rng = np.random.default_rng(0)
    path = os.path.join(folder, f"synthetic-{res}.npz")
    arrays = {"x": rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8)}
    if classes:
        arrays["y"] = rng.integers(0, classes, n)
    np.savez(path, **arrays)
    return path


def time_iterations(preset: str, precision: str, batch: int, iters: int, warm: int, folder: str) -> dict:
    from scoremix.config import load_config
    from scoremix.trainer import Trainer

    base = load_config(preset)
    res = 32 if preset.startswith("cifar") else 64
    classes = 1000 if base.data.conditional else 0
    path = synthetic_npz(folder, 512, res, classes)
    cfg = load_config(preset, [f"data.source=npz", f"data.path={path}", f"batch_size={batch}",
                               f"precision={precision}", "method.warmup_steps=0", "progress=false",
                               "sample_every=0", "ckpt_every=0", "device=cuda"])
    torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(cfg, os.path.join(folder, f"run-{preset}-{precision}"))
    finite = True
    for i in range(warm + iters):
        if i == warm:
            torch.cuda.synchronize()
            start = time.perf_counter()
        stats = trainer.train_step(_to(trainer))
        trainer.step += 1
        finite &= all(torch.isfinite(v).item() for v in stats.values())
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out = {"preset": preset, "precision": precision, "batch": batch, "iterations_timed": iters,
           "seconds_per_iteration": seconds / iters, "images_per_second": batch * iters / seconds,
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30, "losses_finite": bool(finite),
           "skipped_steps": trainer.skipped, "parameters": trainer.param_counts}
    del trainer
    torch.cuda.empty_cache()
    return out


def _to(trainer):
    x, y = trainer.source.next_batch()
    return x.to(trainer.device), None if y is None else y.to(trainer.device)


def batched_vs_separate(batch: int, repeats: int = 20) -> dict:
    """D_0, D_alpha, D_1 as one batched call (what scoremix does) vs three calls (one per alpha)."""
    from scoremix.nets.ddpmpp import DDPMpp
    from scoremix.objectives.smt import mixture_denoisers
    from scoremix.precond import Denoiser

    net = Denoiser(DDPMpp(img_resolution=32, in_channels=3, out_channels=3, model_channels=128,
                          channel_mult=[2, 2, 2], num_blocks=4, attn_resolutions=[16], dropout=0.0,
                          alpha_input=True), 0.5, alpha_input=True).cuda().eval()
    x = torch.randn(batch, 3, 32, 32, device="cuda")
    sigma = torch.rand(batch, device="cuda") * 10 + 0.01
    alpha = torch.rand(batch, device="cuda")

    def separate():
        with torch.no_grad():
            return [net(x, sigma, alpha=a) for a in (torch.zeros_like(alpha), alpha, torch.ones_like(alpha))]

    def batched():
        return mixture_denoisers(net, x, sigma, alpha)

    result = {}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        for name, fn in (("separate", separate), ("batched", batched)) * 2:  # second round is timed
            for _ in range(3):
                fn()
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            torch.cuda.synchronize()
            result[name] = (time.perf_counter() - start) / repeats
    result["speedup_batched_over_separate"] = result["separate"] / result["batched"]
    result["batch"] = batch
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results/gpu_check.json")
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    report = {"command": "PYTHONPATH=. python " + " ".join(sys.argv), "device": torch.cuda.get_device_name(0),
              "torch": torch.__version__, "python": platform.python_version(), "runs": []}
    with tempfile.TemporaryDirectory() as folder:
        for preset in ("cifar10-smt", "imagenet64-smt"):
            for precision in ("bf16", "fp32"):
                run = time_iterations(preset, precision, batch=40, iters=args.iters, warm=5, folder=folder)
                print(json.dumps(run), flush=True)
                report["runs"].append(run)
    report["mixture_denoisers"] = batched_vs_separate(40)
    print(json.dumps(report["mixture_denoisers"]), flush=True)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
