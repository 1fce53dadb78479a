"""Inference speed of a one-step generator against its EDM teacher (same backbone), on the paths a user can
deploy: PyTorch eager fp32, PyTorch with the CPU presets' setting (bfloat16 autocast), and ONNX Runtime.

    python benchmarks/inference.py --student runs/quality-cpu/smd-s0 --teacher runs/quality-cpu/teacher

The teacher samples with EDM's Heun sampler at 18 steps (35 network evaluations); the student in one. For each
model and path: per-sample latency at batch 1 (median of repeated calls, the paths alternating within each
repetition so that other load hits them alike) and throughput at batch 256, timed on the batches that make the
samples: four consecutive calls from the same noise for every model and path, the first one (warming caches and
allocations after a switch of path) reported apart and the median of the rest taken, so that the one-step
generator and the teacher's 35 evaluations are timed alike, in steady state. The 1,024 samples of each path are
scored with the digit classifier (the exported and bf16 paths must score like PyTorch fp32). Writes inference.json (keys
one_step_vs_teacher_speedup and onnx_max_abs_diff at the top) and inference.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from quality import CPU_CLASSIFIER  # noqa: E402
from runner import RESULTS, command_line, machine, write_json  # noqa: E402

PATHS = ("pytorch fp32", "pytorch bf16", "onnxruntime")


def load_paths(run: str, steps: int | None, folder: str, name: str) -> tuple[dict, dict]:
    """{path name: sampler(z) -> float32 samples} for one run, and its metadata."""
    from scoremix import load_sampler
    from scoremix.export import OnnxRuntimeSampler, export_onnx
    from scoremix.precision import autocast

    sampler, meta = load_sampler(run, steps=steps)
    onnx_path = os.path.join(folder, f"{name}.onnx")
    exported = export_onnx(run, onnx_path)
    ort = OnnxRuntimeSampler(onnx_path, steps=steps, threads=torch.get_num_threads())

    @torch.no_grad()
    def eager(z):
        return sampler(z).float()

    @torch.no_grad()
    def bf16(z):
        with autocast("cpu", "bf16"):
            return sampler(z).float()

    meta = {**meta, "onnx_export_max_abs_diff": exported["max_abs_diff"], "onnx_bytes": exported["bytes"]}
    return {"pytorch fp32": eager, "pytorch bf16": bf16, "onnxruntime": ort}, meta


def timed(fns: dict, z: torch.Tensor, repeats: int) -> dict:
    """Median seconds per call of each function on z; the functions alternate within each repetition."""
    times = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn(z)
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(z)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def stream(fn, batches: list[torch.Tensor]) -> tuple[list[float], torch.Tensor]:
    """fn called on each batch in turn, as when generating many samples: seconds per call and the samples."""
    times, out = [], []
    for z in batches:
        start = time.perf_counter()
        out.append(fn(z))
        times.append(time.perf_counter() - start)
    return times, torch.cat(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", required=True, help="one-step run (an SMD/DMD student of --teacher)")
    parser.add_argument("--teacher", required=True, help="its EDM diffusion run")
    parser.add_argument("--steps", type=int, default=18, help="the teacher's Heun steps (2N-1 evaluations)")
    parser.add_argument(
        "--samples", type=int, default=1024, help="samples per path, drawn in batches of --batch, all scored"
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5, help="timed batch-1 calls per path (x10 for one step)")
    parser.add_argument(
        "--classifier",
        default=CPU_CLASSIFIER,
        help="the ladder's digit classifier (benchmarks/quality.py); trained and kept there when missing",
    )
    parser.add_argument("--out", default=os.path.join(RESULTS, "inference.json"))
    args = parser.parse_args(argv)

    from quality import Scorer

    with tempfile.TemporaryDirectory() as folder:
        models = {
            "one-step": load_paths(args.student, None, folder, "student"),
            "teacher": load_paths(args.teacher, args.steps, folder, "teacher"),
        }
        shape = models["one-step"][1]["data_shape"]
        if tuple(models["teacher"][1]["data_shape"]) != tuple(shape):
            raise SystemExit("student and teacher generate different shapes; pass a student of this teacher")
        scorer = Scorer(args.classifier)
        rows = {}
        z1 = torch.randn(1, *shape, generator=torch.Generator().manual_seed(1))
        n_batches = max(2, -(-args.samples // args.batch))
        batches = [
            torch.randn(args.batch, *shape, generator=torch.Generator().manual_seed(100 + k)) for k in range(n_batches)
        ]
        for model, (paths, meta) in models.items():
            one = timed(paths, z1, args.repeats * (10 if model == "one-step" else 1))
            samples = {}
            for name, fn in paths.items():
                times, samples[name] = stream(fn, batches)
                rows[(model, name)] = {
                    "model": model,
                    "path": name,
                    "network_evaluations": meta["evaluations"],
                    "latency_ms_batch1": 1000 * one[name],
                    # the first batch after switching path warms caches and allocations: steady state is the rest
                    "images_per_s_batch": args.batch / statistics.median(times[1:]),
                    "first_batch_s": times[0],
                    "batch_s": times[1:],
                    **{k: v for k, v in scorer(samples[name]).items() if k in ("digit_score", "confident")},
                }
            for name in ("pytorch bf16", "onnxruntime"):
                rows[(model, name)]["max_abs_diff_vs_pytorch_fp32"] = float(
                    (samples[name] - samples["pytorch fp32"]).abs().max()
                )
    speedup = {
        name: rows[("one-step", name)]["images_per_s_batch"] / rows[("teacher", name)]["images_per_s_batch"]
        for name in PATHS
    }
    result = {
        "command": command_line(__file__, argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "student": args.student,
        "teacher": args.teacher,
        "teacher_heun_steps": args.steps,
        "batch": args.batch,
        "samples_scored": n_batches * args.batch,
        "one_step_vs_teacher_speedup": speedup,
        "onnx_max_abs_diff": {m: rows[(m, "onnxruntime")]["max_abs_diff_vs_pytorch_fp32"] for m in models},
        "onnx_latency_vs_eager_batch1": {
            m: rows[(m, "pytorch fp32")]["latency_ms_batch1"] / rows[(m, "onnxruntime")]["latency_ms_batch1"]
            for m in models
        },
        "rows": list(rows.values()),
    }
    write_json(args.out, result)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
        fh.write(markdown(result))
    print(markdown(result))
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    lines = [
        "# Inference: one-step generator against its teacher",
        "",
        f"Command: `{r['command']}`. Machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']}, "
        f"{m['threads']} threads.",
        "",
        f"Student `{r['student']}` (1 network evaluation) and teacher `{r['teacher']}` (Heun, "
        f"{r['teacher_heun_steps']} steps), the same U-Net. Latency: median per call at batch 1; throughput: "
        f"median over consecutive batches of {r['batch']} after the first (warm-up) one; digit score of "
        f"{r['samples_scored']} samples from the same noise.",
        "",
        "| model | path | NFE | latency ms (batch 1) | images/s (batch) | digit score | confident | "
        "max abs diff vs fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        diff = row.get("max_abs_diff_vs_pytorch_fp32")
        lines.append(
            f"| {row['model']} | {row['path']} | {row['network_evaluations']} | "
            f"{row['latency_ms_batch1']:.2f} | {row['images_per_s_batch']:.0f} | {row['digit_score']:.2f} | "
            f"{row['confident']:.2f} | {'-' if diff is None else f'{diff:.2g}'} |"
        )
    lines += [
        "",
        "One-step over teacher, throughput at batch "
        + str(r["batch"])
        + ": "
        + ", ".join(f"{k} {v:.1f}x" for k, v in r["one_step_vs_teacher_speedup"].items())
        + ".",
        "ONNX Runtime over PyTorch eager, batch-1 latency: "
        + ", ".join(f"{k} {v:.2f}x" for k, v in r["onnx_latency_vs_eager_batch1"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
