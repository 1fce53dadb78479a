"""Distillation benchmark: one-step SMD and DMD students of a frozen teacher.

    python benchmarks/distill.py [--threads 1] [--out benchmarks/results] [--teacher RUN] [key=value ...]

ring8 (always): `scoremix train --config ring8-smd` and `--config ring8-dmd` (the exact analytic teacher),
each in its own process (benchmarks/runner.py; output in WORK/PRESET.log); their toy metrics (raw and EMA
generator, scoremix/metrics/toy.py), wall time and CPU time (user + system seconds of the child process:
with --threads 1 this is the time the run takes on one free core, whatever else the machine was doing),
and whether the ring8 bar (precision >= 0.9, 8/8 modes, mode_kl <= 0.05) is met.

MNIST (with --teacher RUN, a run of `scoremix train --config mnist-edm`): the teacher sampled with EDM's
Heun sampler at 1, 2, 4, 8, 18 and 35 steps, and the students `mnist-smd` / `mnist-dmd` distilled from it,
scored with the digit classifier of scoremix/metrics/digits.py (trained on 4,500 real digits, scored on
the other 500 for reference), with CPU times.

Writes distill.json, distill.md and distill.png under --out; the exact command is inside both files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runner import command_line, machine, read_json, train_logged, write_json, write_text  # noqa: E402

SHOWN = ["precision", "modes_covered", "mode_kl", "energy_distance", "energy_floor", "knn_precision", "knn_recall"]
HEUN_STEPS = [1, 2, 4, 8, 18, 35]


def meets_ring8_bar(m: dict) -> bool:
    return m["precision"] >= 0.9 and m["modes_covered"] == m["num_modes"] == 8 and m["mode_kl"] <= 0.05


def train(preset: str, work: str, threads: int, extra: list[str]) -> dict:
    out = os.path.join(work, preset)
    args = ["--config", preset, "progress=false", *extra]
    run, metrics = train_logged(args, out, threads, cwd=os.getcwd())
    return {
        "preset": preset,
        "command": "scoremix train " + " ".join(args) + f" --out {out}",
        "wall_seconds": run["wall_s"],
        "cpu_seconds": run["cpu_s"],
        "train_seconds": metrics["train_seconds"],
        "steps": metrics["step"],
        "raw": metrics.get("raw"),
        "ema": metrics.get("ema"),
        "run": out,
        "picture": os.path.join(out, "samples", "final.png"),
    }


def write_picture(panels: list[tuple[str, str]], path: str) -> None:
    from PIL import Image

    from scoremix.plots import titled_grid

    pics = [(title, Image.open(p)) for title, p in panels if os.path.exists(p)]
    if pics:
        titled_grid(pics, cols=1).save(path)


# -- MNIST -------------------------------------------------------------------------------------------------
def mnist_part(teacher_path: str, work: str, threads: int, extra: list[str], n: int) -> dict:
    """Teacher at several Heun step counts and the two students, all scored by one digit classifier."""
    import torch

    from benchmarks.mnist_digits import real_split
    from scoremix.evaluate import generate_samples
    from scoremix.metrics.digits import class_probabilities, digit_scores, train_digit_classifier
    from scoremix.plots import image_grid, save_picture
    from scoremix.sampling import load_generators
    from scoremix.solvers import heun_sample
    from scoremix.teachers import load_teacher

    torch.set_num_threads(threads)
    teacher = load_teacher(teacher_path, device="cpu")
    info = teacher.info
    resolution = info["resolution"]
    (x_train, y_train), (x_test, y_test) = real_split(resolution)
    classifier = train_digit_classifier(x_train, y_train, seed=0)
    probs = class_probabilities(classifier, x_test)
    result = {
        "teacher": teacher_path,
        "teacher_step": info.get("step"),
        "samples": n,
        "classifier_test_accuracy": float((probs.argmax(1) == y_test).double().mean()),
        "real_holdout": digit_scores(probs),
        "teacher_heun": [],
        "students": [],
    }
    shape = tuple(info["data_shape"])
    z = torch.randn(n, *shape, generator=torch.Generator().manual_seed(777))
    pictures = []
    for steps in HEUN_STEPS:
        t0, c0 = time.time(), time.process_time()
        xs = torch.cat(
            [
                heun_sample(
                    teacher,
                    z[i : i + 250],
                    steps=steps,
                    sigma_min=info.get("sigma_min", 0.002),
                    sigma_max=info.get("sigma_max", 80.0),
                    rho=info.get("rho", 7.0),
                ).float()
                for i in range(0, n, 250)
            ]
        )
        entry = {
            "steps": steps,
            "evaluations": 2 * steps - 1,
            "wall_seconds": round(time.time() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1),
            **digit_scores(class_probabilities(classifier, xs.clamp(-1, 1))),
        }
        result["teacher_heun"].append(entry)
        pic = os.path.join(work, f"mnist-teacher-heun{steps}.png")
        save_picture(image_grid(xs[:64]), pic)
        pictures.append((f"MNIST teacher, Heun {steps} steps ({2 * steps - 1} evaluations)", pic))
        print(f"teacher heun {steps}: digit score {entry['digit_score']:.2f}", flush=True)
    for preset in ("mnist-smd", "mnist-dmd"):
        run = train(preset, work, threads, [f"method.teacher={teacher_path}", *extra])
        generators, cfg, gshape, classes, step = load_generators(run["run"])
        for which, gen in generators.items():
            xs = generate_samples(gen, n, gshape, classes, "cpu", seed=777).clamp(-1, 1)
            run[which] = digit_scores(class_probabilities(classifier, xs))
        result["students"].append(run)
        pictures.append((f"{preset} one-step student (EMA), {run['steps']} iterations", run["picture"]))
        print(f"{preset}: digit score {run.get('ema', run['raw'])['digit_score']:.2f}", flush=True)
    result["pictures"] = pictures
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--work", default="runs/distill-benchmark")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--teacher", default=None, help="a mnist-edm run folder: adds the MNIST part")
    parser.add_argument("--mnist-samples", type=int, default=1000)
    parser.add_argument("--skip-ring8", action="store_true", help="only the MNIST part")
    parser.add_argument("extra", nargs="*", help="key=value overrides for every training run")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.work, exist_ok=True)
    m = machine()
    report = {
        "command": command_line(__file__, sys.argv[1:]),
        "machine": {
            "platform": m["platform"],
            "cpus": m["cpu_count"],
            "python": m["python"],
            "torch": m["torch"],
            "threads_per_run": args.threads,
            "note": "shared 2-core machine: wall times are inflated by other jobs; CPU seconds "
            "are the child's user+system time",
        },
        "ring8": [],
        "mnist": None,
    }
    pictures = []
    previous = os.path.join(args.out, "distill.json")
    earlier = read_json(previous) if args.skip_ring8 else None
    if earlier is not None:  # keep the ring8 results of an earlier invocation
        report["ring8"] = earlier.get("ring8", [])
        report["ring8_command"] = earlier.get("ring8_command", earlier["command"])
        pictures += [
            (
                f"{r['preset']}: one-step student (EMA, left) vs data (right), {r['steps']} iterations, "
                f"{r['cpu_seconds']:.0f} CPU s",
                r["picture"],
            )
            for r in report["ring8"]
        ]
    else:
        report["ring8_command"] = report["command"]
    if not args.skip_ring8:
        for preset in ("ring8-smd", "ring8-dmd"):
            run = train(preset, args.work, args.threads, args.extra)
            for which in ("raw", "ema"):
                if run.get(which):
                    run[which]["meets_ring8_bar"] = meets_ring8_bar(run[which])
            report["ring8"].append(run)
            pictures.append(
                (
                    f"{preset}: one-step student (EMA, left) vs data (right), {run['steps']} iterations, "
                    f"{run['cpu_seconds']:.0f} CPU s",
                    run["picture"],
                )
            )
            print(f"{preset}: {json.dumps(run['ema'])}", flush=True)
    if args.teacher:
        report["mnist"] = mnist_part(args.teacher, args.work, args.threads, args.extra, args.mnist_samples)
        pictures += report["mnist"].pop("pictures")
    write_picture(pictures, os.path.join(args.out, "distill.png"))
    write_json(os.path.join(args.out, "distill.json"), report)
    write_text(os.path.join(args.out, "distill.md"), markdown(report))
    print(markdown(report))
    return 0


def fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Distillation benchmark",
        "",
        f"Command: `{report['command']}` — {m['cpus']} CPUs, "
        f"{m['threads_per_run']} thread(s) per run, torch {m['torch']}. {m['note']}.",
        "",
    ]
    if report["ring8"]:
        lines += [
            "## ring8, analytic teacher",
            "",
            "| run | weights | iterations | CPU s | wall s | " + " | ".join(SHOWN) + " | bar |",
            "|---" * (len(SHOWN) + 6) + "|",
        ]
        for r in report["ring8"]:
            for which in ("raw", "ema"):
                if r.get(which):
                    v = r[which]
                    cells = [fmt(v.get(k)) for k in SHOWN] + ["met" if v["meets_ring8_bar"] else "not met"]
                    lines.append(
                        f"| {r['preset']} | {which} | {r['steps']} | {r['cpu_seconds']:.0f} | "
                        f"{r['wall_seconds']:.0f} | " + " | ".join(cells) + " |"
                    )
        lines += ["", f"Made by `{report['ring8_command']}`; each run is:", ""]
        lines += [f"- `{r['command']}`" for r in report["ring8"]] + [""]
    mn = report.get("mnist")
    if mn:
        lines += [
            "## MNIST 5k, teacher from mnist-edm",
            "",
            f"Teacher `{mn['teacher']}`; digit classifier test accuracy {mn['classifier_test_accuracy']:.3f}; "
            f"{mn['samples']} samples each.",
            "",
            "| sampler | network evaluations | CPU s | digit score | confident | coverage |",
            "|---|---|---|---|---|---|",
            f"| real held-out digits | – | – | {mn['real_holdout']['digit_score']:.2f} | "
            f"{mn['real_holdout']['confident']:.3f} | {mn['real_holdout']['class_coverage']:.2f} |",
        ]
        for e in mn["teacher_heun"]:
            lines.append(
                f"| teacher, Heun {e['steps']} steps | {e['evaluations']} | {e['cpu_seconds']:.0f} | "
                f"{e['digit_score']:.2f} | {e['confident']:.3f} | {e['class_coverage']:.2f} |"
            )
        for r in mn["students"]:
            for which in ("raw", "ema"):
                if r.get(which):
                    v = r[which]
                    lines.append(
                        f"| {r['preset']} ({which}), {r['steps']} iterations, {r['cpu_seconds']:.0f} CPU s "
                        f"to train | 1 | – | {v['digit_score']:.2f} | {v['confident']:.3f} | "
                        f"{v['class_coverage']:.2f} |"
                    )
        lines += [""] + [f"- `{r['command']}`" for r in mn["students"]] + [""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
