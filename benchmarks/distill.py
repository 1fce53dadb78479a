"""Distillation benchmark: one-step SMD and DMD students of a frozen teacher.

    python benchmarks/distill.py [--threads 1] [--out benchmarks/results] [--teacher RUN]
                                 [--students SMD_RUN,DMD_RUN] [--skip-ring8] [key=value ...]

ring8 (unless --skip-ring8, which keeps the ring8 results and pictures of the last distill.json under
--out): `scoremix train --config ring8-smd` and `--config ring8-dmd` (the exact analytic teacher),
each in its own process (benchmarks/runner.py; output in WORK/PRESET.log); their toy metrics (raw and EMA
generator, scoremix/metrics/toy.py), wall time and CPU time (user + system seconds of the child process:
with --threads 1 this is the time the run takes on one free core, whatever else the machine was doing),
and whether the ring8 bar (precision >= 0.9, 8/8 modes, mode_kl <= 0.05) is met.

MNIST (with --teacher RUN, a run of `scoremix train --config mnist-edm`): the teacher sampled with EDM's
Heun sampler at 1, 2, 4, 8, 18 and 35 steps, and the students `mnist-smd` / `mnist-dmd` distilled from it,
scored with the digit classifier of scoremix/metrics/digits.py (trained on 4,500 real digits, scored on
the other 500 for reference), with CPU times. --students SMD_RUN,DMD_RUN scores two finished runs instead
of training the students (method.name smd and dmd, distilled from this very teacher: the sha256 in their
method.teacher_sha256 must be the teacher's); the SMD and DMD runs of the quality ladder, for instance:

    python benchmarks/distill.py --skip-ring8 --threads 1 --teacher runs/quality-cpu/teacher --students runs/quality-cpu/smd-s0,runs/quality-cpu/dmd-s0 --mnist-samples 1000

Writes distill.json, distill.md and distill.png under --out; the exact command is inside both files. In the
picture every panel has one width; the MNIST rows are 16 samples from one fixed noise z each (the teacher
at each Heun step count, then each student's EMA generator), every digit upscaled 3x (nearest neighbour).
"""  # noqa: E501

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from runner import Ledger, command_line, machine, read_json, train_logged, write_json, write_text  # noqa: E402

SHOWN = ["precision", "modes_covered", "mode_kl", "energy_distance", "energy_floor", "knn_precision", "knn_recall"]
HEUN_STEPS = [1, 2, 4, 8, 18, 35]
PICTURE_SAMPLES = 16  # one row of the picture per sampler, all from the first 16 noises of the scoring z
PICTURE_SCALE = 3  # MNIST digits upscaled by this integer factor (nearest neighbour) in the picture


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


def fit_width(img, width: int):
    """`img` scaled to `width` pixels, aspect kept: nearest neighbour for an integer factor."""
    from PIL import Image

    if img.width == width:
        return img.convert("RGB")
    resample = Image.NEAREST if width % img.width == 0 else Image.LANCZOS
    return img.convert("RGB").resize((width, round(img.height * width / img.width)), resample)


def write_picture(panels: list, path: str) -> None:
    """(title, picture file or PIL image) panels stacked in one column, every one scaled to the widest's
    width; consecutive panels of one size share one titled_grid, so their cells are the same size."""
    from PIL import Image

    from scoremix.plots import save_picture, titled_grid

    pics = [
        (t, p if isinstance(p, Image.Image) else Image.open(p))
        for t, p in panels
        if not isinstance(p, str) or os.path.exists(p)
    ]
    if not pics:
        return
    width = max(img.width for _, img in pics)
    blocks: list[list] = []
    for title, img in pics:
        img = fit_width(img, width)
        if blocks and blocks[-1][-1][1].size == img.size:
            blocks[-1].append((title, img))
        else:
            blocks.append([(title, img)])
    grids = [titled_grid(block, cols=1) for block in blocks]
    out = Image.new("RGB", (width, sum(g.height for g in grids)), "white")
    top = 0
    for grid in grids:
        out.paste(grid, (0, top))
        top += grid.height
    save_picture(out, path)


def row_picture(x):
    """One row of digits ((B, C, H, W) in [-1, 1]) at PICTURE_SCALE times their pixel size."""
    from PIL import Image

    from scoremix.plots import image_grid

    img = image_grid(x[:PICTURE_SAMPLES], nrow=PICTURE_SAMPLES)
    return img.resize((img.width * PICTURE_SCALE, img.height * PICTURE_SCALE), Image.NEAREST)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def check_students(teacher_path: str, spec: str) -> list[str]:
    """The two run folders of --students, after checking that they are an SMD and a DMD run of this teacher;
    a mismatch ends the program with a one-line error."""
    from scoremix.errors import ScoremixError
    from scoremix.methods.distill import teacher_sha256
    from scoremix.sampling import load_sampler
    from scoremix.teachers import load_teacher

    paths = [p for p in spec.split(",") if p]
    if len(paths) != 2:
        raise SystemExit(f"distill.py: --students takes two run folders, SMD_RUN,DMD_RUN; got '{spec}'")
    try:
        digest = teacher_sha256(load_teacher(teacher_path, device="cpu"))
        for path, method in zip(paths, ("smd", "dmd")):
            _, meta = load_sampler(path)
            m = meta["config"].method
            if m.name != method:
                raise SystemExit(f"distill.py: --students: '{path}' is a method.name={m.name} run, not {method}")
            if digest and m.teacher_sha256 and m.teacher_sha256 != digest:
                raise SystemExit(
                    f"distill.py: --students: '{path}' was distilled from another teacher (method.teacher_sha256 "
                    f"{m.teacher_sha256[:12]}, '{teacher_path}' has {digest[:12]})"
                )
    except ScoremixError as err:
        raise SystemExit(f"distill.py: {str(err).splitlines()[0]}") from None
    return paths


def scored_run(path: str) -> dict:
    """The record of a student trained earlier (--students): its cost from the ladder's ledger when it has one."""
    costs = Ledger(path.rstrip("/") + ".sittings.jsonl").totals()
    return {
        "run": path,
        "trained_earlier": True,
        "cpu_seconds": costs["cpu_s"] if costs["sittings"] else None,
        "wall_seconds": costs["wall_s"] if costs["sittings"] else None,
    }


# -- MNIST -------------------------------------------------------------------------------------------------
def mnist_part(
    teacher_path: str, work: str, threads: int, extra: list[str], n: int, students: list[str] | None = None
) -> dict:
    """Teacher at several Heun step counts and the two students (trained now, or the runs of --students), all
    scored by one digit classifier; result["pictures"] holds one row picture per sampler, from one z."""
    import torch

    from benchmarks.mnist_digits import real_split
    from scoremix.evaluate import generate_samples
    from scoremix.metrics.digits import class_probabilities, digit_scores, train_digit_classifier
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
        "picture_noise": f"the first {PICTURE_SAMPLES} of the scoring noise (seed 777), the same for every row",
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
        title = f"EDM teacher, Heun {plural(steps, 'step')} ({plural(2 * steps - 1, 'network evaluation')})"
        pictures.append((title, row_picture(xs)))
        print(f"teacher heun {steps}: digit score {entry['digit_score']:.2f}", flush=True)
    for i, preset in enumerate(("mnist-smd", "mnist-dmd")):
        if students:
            run = scored_run(students[i])
        else:
            run = train(preset, work, threads, [f"method.teacher={teacher_path}", *extra])
        generators, cfg, gshape, classes, step = load_generators(run["run"])
        run.update(preset=cfg.name if students else preset, method=cfg.method.name, iterations=step)
        for which, gen in generators.items():
            xs = generate_samples(gen, n, gshape, classes, "cpu", seed=777).clamp(-1, 1)
            run[which] = digit_scores(class_probabilities(classifier, xs))
        which = "ema" if "ema" in generators else "raw"
        with torch.no_grad():
            row = generators[which](z[:PICTURE_SAMPLES], labels=None).float()
        weights = "EMA" if which == "ema" else "raw"
        title = (
            f"{cfg.method.name.upper()} one-step student ({weights}, 1 network evaluation, {plural(step, 'iteration')})"
        )
        pictures.append((title, row_picture(row)))
        result["students"].append(run)
        print(f"{run['preset']}: digit score {run[which]['digit_score']:.2f}", flush=True)
    result["pictures"] = pictures
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--work", default="runs/distill-benchmark")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--teacher", default=None, help="a mnist-edm run folder: adds the MNIST part")
    parser.add_argument(
        "--students",
        default=None,
        help="SMD_RUN,DMD_RUN: finished smd and dmd runs of --teacher to score instead of training mnist-smd/-dmd",
    )
    parser.add_argument("--mnist-samples", type=int, default=1000)
    parser.add_argument("--skip-ring8", action="store_true", help="only the MNIST part")
    parser.add_argument("extra", nargs="*", help="key=value overrides for every training run")
    args = parser.parse_args()
    if args.students and not args.teacher:
        parser.error("--students needs --teacher (the teacher they were distilled from)")
    students = check_students(args.teacher, args.students) if args.students else None
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
        report["mnist"] = mnist_part(args.teacher, args.work, args.threads, args.extra, args.mnist_samples, students)
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
                f"| teacher, Heun {plural(e['steps'], 'step')} | {e['evaluations']} | {e['cpu_seconds']:.0f} | "
                f"{e['digit_score']:.2f} | {e['confident']:.3f} | {e['class_coverage']:.2f} |"
            )
        for r in mn["students"]:
            cost = f", {r['cpu_seconds']:.0f} CPU s to train" if r.get("cpu_seconds") is not None else ""
            for which in ("raw", "ema"):
                if r.get(which):
                    v = r[which]
                    lines.append(
                        f"| {r['preset']} ({which}), {r['iterations']} iterations{cost} | 1 | – | "
                        f"{v['digit_score']:.2f} | {v['confident']:.3f} | {v['class_coverage']:.2f} |"
                    )
        lines += [""] + [
            f"- `{r['command']}`" if "command" in r else f"- `{r['run']}`, trained earlier, scored as it is"
            for r in mn["students"]
        ]
        lines += ["", "distill.png: " + mn["picture_noise"] + f"; digits at {PICTURE_SCALE}x their pixel size.", ""]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
