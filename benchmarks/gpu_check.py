"""GPU check: full-size paper configurations on one GPU, bf16 vs fp32, the batched mixture-score call, and
model FLOP utilisation (MFU) of training and one-step sampling against a bf16 matmul peak measured here.

Run on a GPU machine from the repository root (nothing to build; about 6 minutes on an H100/H200):
    PYTHONPATH=. python benchmarks/gpu_check.py --mfu --out benchmarks/results/gpu_mfu.json
`--mfu` runs only the MFU part (cifar10-smt batch 40; imagenet64-smt at global batch 280 in micro-batches
of --batch-gpu under an 80 GiB memory cap; sampling at batch 1000); without it the older bf16/fp32 table runs too. `--smoke` runs the
MFU part end to end on the CPU with tiny networks (a test of this script, not a measurement).
Writes one JSON file with the card's name. Data are synthetic (random images with the datasets' shapes):
this measures speed, memory and numerical health, not sample quality.
The MFU arithmetic (matmul peak, FLOP counting, timing) is gpu_flops.py's.
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from gpu_flops import flops_and_seconds, matmul_peak, sync  # noqa: E402


def synthetic_npz(folder: str, n: int, res: int, classes: int) -> str:
    rng = np.random.default_rng(0)
    path = os.path.join(folder, f"synthetic-{res}.npz")
    arrays = {"x": rng.integers(0, 256, (n, res, res, 3), dtype=np.uint8)}
    if classes:
        arrays["y"] = rng.integers(0, classes, n)
    np.savez(path, **arrays)
    return path


def time_iterations(preset: str, precision: str, batch: int, iters: int, warm: int, folder: str) -> dict:
    from scoremix.config_loader import load_config
    from scoremix.trainer import Trainer

    base = load_config(preset)
    res = 32 if preset.startswith("cifar") else 64
    classes = 1000 if base.data.conditional else 0
    path = synthetic_npz(folder, 512, res, classes)
    cfg = load_config(
        preset,
        [
            "data.source=npz",
            f"data.path={path}",
            f"batch_size={batch}",
            f"precision={precision}",
            "method.warmup_steps=0",
            "progress=false",
            "sample_every=0",
            "ckpt_every=0",
            "device=cuda",
        ],
    )
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
    out = {
        "preset": preset,
        "precision": precision,
        "batch": batch,
        "iterations_timed": iters,
        "seconds_per_iteration": seconds / iters,
        "images_per_second": batch * iters / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
        "losses_finite": bool(finite),
        "skipped_steps": trainer.skipped,
        "parameters": trainer.param_counts,
    }
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

    net = (
        Denoiser(
            DDPMpp(
                img_resolution=32,
                in_channels=3,
                out_channels=3,
                model_channels=128,
                channel_mult=[2, 2, 2],
                num_blocks=4,
                attn_resolutions=[16],
                dropout=0.0,
                alpha_input=True,
            ),
            0.5,
            alpha_input=True,
        )
        .cuda()
        .eval()
    )
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


def train_mfu(
    preset: str, batch: int, batch_gpu: int, iters: int, device: str, folder: str, peak: float, extra: list
) -> dict:
    """One SMT cycle = gen_every iterations (1 generator + gen_every critic steps); its FLOPs counted once
    with FlopCounterMode, its time over `iters` cycles after one warm-up cycle."""
    from scoremix.config_loader import load_config
    from scoremix.trainer import Trainer

    base = load_config(preset)
    res = 32 if preset.startswith("cifar") else 64
    classes = 1000 if base.data.conditional else 0
    path = synthetic_npz(folder, max(64, 2 * batch), res, classes)
    cfg = load_config(
        preset,
        [
            "data.source=npz",
            f"data.path={path}",
            f"batch_size={batch}",
            f"batch_gpu={batch_gpu}",
            "precision=bf16",
            "method.warmup_steps=0",
            "method.critic_warmup_steps=0",
            "progress=off",
            "sample_every=0",
            "ckpt_every=0",
            f"device={device}",
            *extra,
        ],
    )
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(cfg, os.path.join(folder, f"mfu-{preset}"), echo=lambda *a, **k: None)
    k = cfg.method.gen_every
    batches = [_to(trainer) for _ in range(k)]

    def cycle():
        for b in batches:
            trainer.train_step(b)
            trainer.step += 1

    flops, seconds = flops_and_seconds(cycle, iters, device)  # warm-up compiles when train.compile is on
    achieved = flops / seconds
    out = {
        "preset": preset,
        "what": "training cycle",
        "global_batch": batch,
        "batch_gpu": batch_gpu or batch,
        "accumulation_steps": trainer.accum_steps,
        "iterations_per_cycle": k,
        "cycles_timed": iters,
        "seconds_per_iteration": seconds / k,
        "images_per_second": batch * k / seconds,
        "flops_per_cycle": flops,
        "achieved_tflops": achieved / 1e12,
        "mfu": achieved / peak,
        "parameters": trainer.param_counts,
        "extra": extra,
    }
    if torch.device(device).type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    batches.clear()
    trainer.method.networks.clear()
    trainer.optimizers.clear()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return out


def sampling_mfu(preset: str, batch: int, iters: int, device: str, peak: float, extra: list) -> dict:
    """One-step generation x = G(sigma z) in bf16 autocast at `batch`."""
    from scoremix.config_loader import load_config
    from scoremix.nets.build import build_generator

    cfg = load_config(preset, [f"device={device}", *extra])
    res = 32 if preset.startswith("cifar") else 64
    classes = 1000 if cfg.data.conditional else 0
    gen = build_generator(cfg, (3, res, res), classes).to(device).eval()
    z = torch.randn(batch, 3, res, res, device=device)
    labels = torch.randint(0, classes, (batch,), device=device) if classes else None
    kind = torch.device(device).type

    def sample():
        with torch.no_grad(), torch.autocast(kind, dtype=torch.bfloat16, enabled=kind == "cuda"):
            gen(z, labels=labels)

    flops, seconds = flops_and_seconds(sample, iters, device)
    return {
        "preset": preset,
        "what": "one-step sampling",
        "batch": batch,
        "images_per_second": batch / seconds,
        "flops_per_batch": flops,
        "achieved_tflops": flops / seconds / 1e12,
        "mfu": flops / seconds / peak,
    }


def small_preset_speed(preset: str, iters: int, device: str, folder: str, extra: list) -> dict:
    """Iterations/s of a small preset (mnist-smt: launch- and sync-bound on a GPU; target >= 100 it/s on an H100)."""
    from scoremix.config_loader import load_config
    from scoremix.trainer import Trainer

    cfg = load_config(
        preset,
        [
            "method.warmup_steps=0",
            "method.critic_warmup_steps=0",
            "progress=off",
            "sample_every=0",
            "ckpt_every=0",
            f"device={device}",
            *[e for e in extra if "compile" in e],
        ],
    )
    trainer = Trainer(cfg, os.path.join(folder, f"speed-{preset}"), echo=lambda *a, **k: None)
    batches = [_to(trainer) for _ in range(8)]
    for i in range(10):
        trainer.train_step(batches[i % 8])
        trainer.step += 1
    sync(device)
    start = time.perf_counter()
    for i in range(iters):
        trainer.train_step(batches[i % 8])
        trainer.step += 1
    sync(device)
    seconds = time.perf_counter() - start
    return {
        "preset": preset,
        "what": "iterations per second",
        "batch": cfg.data.batch_size,
        "iterations_timed": iters,
        "iterations_per_second": iters / seconds,
    }


SMOKE_NETS = [
    "generator.channels=16",
    "score.channels=16",
    "generator.blocks=1",
    "score.blocks=1",
    "generator.channel_mult=[1,2]",
    "score.channel_mult=[1,2]",
    "generator.attention=[]",
    "score.attention=[]",
    "gen_every=2",
]


def mfu_report(args) -> dict:
    device = "cpu" if args.smoke else "cuda"
    extra = SMOKE_NETS if args.smoke else []
    if args.compile:
        extra = extra + ["train.compile=true"]
    peak = matmul_peak(device, size=256 if args.smoke else 8192, repeats=2 if args.smoke else 20)
    print(json.dumps({"bf16_matmul_peak": peak}), flush=True)
    runs = []
    if not args.smoke and args.memory_limit_gib:  # behave like a card of that size (imagenet64-smt must fit 80 GB)
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_limit_gib * 2**30 / total))
    # imagenet64-smt: global batch 280 in micro-batches of --batch-gpu; one timed cycle (5 iterations of
    # 280 images take about 40 s on an H200), so the whole script fits in about 6 minutes
    plan = [
        ("cifar10-smt", 4 if args.smoke else 40, 0, args.iters),
        ("imagenet64-smt", 4 if args.smoke else 280, 2 if args.smoke else args.batch_gpu, 1),
    ]
    with tempfile.TemporaryDirectory() as folder:
        for preset, batch, batch_gpu, iters in plan:
            try:
                run = train_mfu(
                    preset, batch, batch_gpu, 1 if args.smoke else iters, device, folder, peak["tflops"] * 1e12, extra
                )
            except torch.cuda.OutOfMemoryError as err:  # record it and go on: the other numbers still count
                run = {
                    "preset": preset,
                    "what": "training cycle",
                    "global_batch": batch,
                    "batch_gpu": batch_gpu,
                    "error": f"out of memory: {str(err).splitlines()[0][:200]}",
                }
                torch.cuda.empty_cache()
            print(json.dumps(run), flush=True)
            runs.append(run)
        run = small_preset_speed("mnist-smt", 5 if args.smoke else 300, device, folder, extra)
        print(json.dumps(run), flush=True)
        runs.append(run)
        for preset in ("cifar10-smt", "imagenet64-smt"):
            run = sampling_mfu(
                preset,
                4 if args.smoke else args.sample_batch,
                1 if args.smoke else 5,
                device,
                peak["tflops"] * 1e12,
                extra,
            )
            print(json.dumps(run), flush=True)
            runs.append(run)
    return {"bf16_matmul_peak": peak, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--out", default=None, help="JSON file (default benchmarks/results/gpu_check.json; with --mfu gpu_mfu.json)"
    )
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--mfu", action="store_true", help="only the MFU measurements")
    parser.add_argument("--smoke", action="store_true", help="the MFU part on the CPU with tiny networks")
    parser.add_argument("--compile", action="store_true", help="train.compile=true in the MFU runs")
    parser.add_argument(
        "--batch-gpu",
        type=int,
        default=20,
        help="imagenet64-smt micro-batch (global batch 280; batch 40 peaked at 113 GiB on an H200)",
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=80.0,
        help="cap this process's GPU memory as if the card had this much (0: no cap)",
    )
    parser.add_argument("--sample-batch", type=int, default=1000)
    args = parser.parse_args()
    if args.out is None:
        args.out = (
            "benchmarks/results/gpu_mfu-smoke-cpu.json"
            if args.smoke
            else "benchmarks/results/gpu_mfu.json"
            if args.mfu
            else "benchmarks/results/gpu_check.json"
        )
    if args.smoke or args.mfu:
        if not args.smoke and not torch.cuda.is_available():
            print("no CUDA device (use --smoke to test this script on the CPU)", file=sys.stderr)
            return 1
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        report = {
            "command": "PYTHONPATH=. python " + " ".join(sys.argv),
            "device": torch.cuda.get_device_name(0) if not args.smoke else "cpu (smoke test, not a measurement)",
            "torch": torch.__version__,
            "python": platform.python_version(),
            **mfu_report(args),
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 1
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    report = {
        "command": "PYTHONPATH=. python " + " ".join(sys.argv),
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "runs": [],
    }
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
