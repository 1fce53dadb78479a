"""The MNIST quality ladder's outputs (benchmarks/quality.py): the picture of samples per method, the markdown
report, and the shipped EMA weights of the teacher, the better SMD seed and SMT."""

from __future__ import annotations

import os
from statistics import mean
from typing import TYPE_CHECKING

from runner import ROOT

if TYPE_CHECKING:
    from quality import Scorer

LABELS = {
    "teacher": "EDM teacher",
    "smd": "SMD student",
    "dmd": "DMD student",
    "smt": "SMT from scratch",
    "gan": "GAN baseline",
}


def picture(rows: list[dict], runs: str, scorer: Scorer, path: str, per_row: int = 16, zoom: int = 2) -> None:
    """One row of `per_row` samples per method from the same noise (the teacher's at its 35 evaluations)."""
    from PIL import Image, ImageDraw, ImageFont
    from quality import PICTURE_SEED, draw, load_stage_sampler  # the ladder's own sampling, imported late

    from scoremix.eval_protocol import quantize_uint8

    strips = [("real digits (held out)", scorer.x_held[:per_row])]
    for row in rows:
        if row["stage"] not in ("teacher", "smd-s0", "dmd-s0", "smt", "gan"):
            continue
        sampler, meta = load_stage_sampler(os.path.join(runs, row["stage"]), row["method"])
        strips.append((f"{LABELS[row['method']]}, {row['nfe']} NFE", draw(sampler, meta, per_row, PICTURE_SEED)))
    side, label_w = 28 * zoom, 210
    canvas = Image.new("L", (label_w + per_row * side, len(strips) * (side + 4)), 255)
    pen = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=15)
    for r, (label, x) in enumerate(strips):
        y0 = r * (side + 4)
        pen.text((6, y0 + side // 2 - 9), label, fill=0, font=font)
        images = quantize_uint8(x.clamp(-1, 1))[:, 0].numpy()
        for c, img in enumerate(images):
            canvas.paste(Image.fromarray(img).resize((side, side), Image.NEAREST), (label_w + c * side, y0 + 2))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    canvas.save(path)


def markdown(result: dict, analysis: str = "") -> str:
    """quality.md: the rows, the floor, the targets, the curves and the commands; `analysis` (the hand-written
    ANALYSIS file of the results folder, which reruns keep) goes after the table."""
    lines = [
        f"# MNIST quality ladder ({result['budget']} budget)",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']['processor']}, "
        f"{result['machine']['cpu_count']} CPUs, torch {result['machine']['torch']}.",
        "",
        "Every row: 2,000 samples of the EMA weights (`samples` says otherwise), noise seed 0; digit scores from "
        "the classifier of `benchmarks/mnist_digits.py` trained on the 4,500 training digits; FD / KD / precision "
        "/ recall in its 128-d penultimate-layer features against the 500 held-out digits. Train minutes add "
        "every sitting of the stage.",
        "",
        "| row | NFE | params | iterations | train CPU min | wall min | digit score | confident | coverage | "
        "FD local | KD local | precision | recall |",
        "|" + "---|" * 13,
    ]
    for r in result["rows"] + [result["floor"]]:
        params = f"{r['parameters'] / 1e6:.2f}M" if r.get("parameters") else "-"
        lines.append(
            f"| {r['stage']} | {r['nfe']} | {params} | {r.get('iterations', '-')} | "
            f"{r.get('train_cpu_minutes', '-')} | {r.get('train_wall_minutes', '-')} | "
            f"{r['digit_score']:.2f} | {r['confident']:.2f} | {r['class_coverage']:.2f} | "
            f"{r['fd_local']:.2f} | {r['kd_local']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} |"
        )
    floor = result["floor"]
    lines += [
        "",
        f"Held-out real digits: digit score {floor['held_out_digit_score']:.2f}, "
        f"{100 * floor['held_out_confident']:.0f} % confident.",
        "",
        *seed_summary(result["rows"]),
        *probe_table(result["rows"], result.get("probes", [])),
        *([analysis.strip(), ""] if analysis.strip() else []),
        "## Targets",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in result["targets"].items()]
    lines += ["", "## Digit score along training (EMA, kept checkpoints)", ""]
    for stage, points in result["curves"].items():
        cells = ", ".join(
            f"{p['iteration']}: {p['digit_score']:.2f} ({p['train_cpu_minutes']:.0f} CPU min)" for p in points
        )
        lines.append(f"- {stage}: {cells}")
    lines += ["", "## Commands", ""] + [f"- `{c}`" for c in result["stage_commands"]]
    return "\n".join(lines) + "\n"


def probe_table(rows: list[dict], probes: list[dict]) -> list[str]:
    """Each probe beside the row it stretches: the same network, retrained with `factor` times the iterations
    (its learning-rate schedule stretched over them, warm-ups unchanged). A gain there is budget; none points at
    capacity or optimisation, not at the budget."""
    if not probes:
        return []
    lines = [
        "## Capacity against budget (probes)",
        "",
        "| probe | row | iterations | train CPU min | digit score | confident | FD local |",
        "|" + "---|" * 7,
    ]
    by_stage = {r["stage"]: r for r in rows}
    for p in probes:
        for r in filter(None, (by_stage.get(p["stretches"]), p)):  # the stretched row, when scored, then the probe
            lines.append(
                f"| {p['stage']} | {r['stage']} | {r['iterations']} | {r['train_cpu_minutes']} | "
                f"{r['digit_score']:.2f} | {r['confident']:.2f} | {r['fd_local']:.2f} |"
            )
    return lines + [""]


def seed_summary(rows: list[dict]) -> list[str]:
    """The students over their seeds: each method's mean digit score and FD, and DMD minus SMD seed by seed."""
    by = {m: {r["seed"]: r for r in rows if r["method"] == m} for m in ("smd", "dmd")}
    seeds = sorted(set(by["smd"]) & set(by["dmd"]))
    if len(seeds) < 2:
        return []
    lines = ["## The students over seeds", "", "| | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |"]
    lines.append("|---" * (len(seeds) + 2) + "|")
    for key, label in (("digit_score", "digit score"), ("fd_local", "FD local")):
        for m in ("smd", "dmd"):
            vals = [by[m][s][key] for s in seeds]
            lines.append(f"| {m.upper()} {label} | " + " | ".join(f"{v:.2f}" for v in vals) + f" | {mean(vals):.2f} |")
        diff = [by["dmd"][s][key] - by["smd"][s][key] for s in seeds]
        lines.append(f"| DMD - SMD {label} | " + " | ".join(f"{v:+.2f}" for v in diff) + f" | {mean(diff):+.2f} |")
    return lines + [""]


def ship(rows: list[dict], runs: str, folder: str) -> None:
    """EMA weights of the teacher, the better SMD seed and SMT, one generator-format file each (EMA only)."""
    from scoremix import checkpoint as ckpt

    smd = max((r for r in rows if r["method"] == "smd"), key=lambda r: r["digit_score"], default=None)
    chosen = {"teacher": "mnist-edm-teacher.safetensors", "smt": "mnist-smt.safetensors"}
    if smd:
        chosen[smd["stage"]] = "mnist-smd.safetensors"
    os.makedirs(folder, exist_ok=True)
    for row in rows:
        if row["stage"] not in chosen:
            continue
        src = os.path.join(
            runs, row["stage"], "denoiser.safetensors" if row["method"] == "teacher" else "generator.safetensors"
        )
        raw, ema, config, info = ckpt.load_generator(src)
        dst = os.path.join(folder, chosen[row["stage"]])
        ckpt.save_generator(
            dst,
            ema if ema is not None else raw,
            None,
            config,
            info["step"],
            info["data_shape"],
            info["num_classes"],
            kind="denoiser" if row["method"] == "teacher" else "generator",
        )
        if os.path.getsize(dst) > 8 * 2**20:
            raise SystemExit(f"{dst} is {os.path.getsize(dst) / 2**20:.1f} MB, over the 8 MB limit")
        row["weights"] = os.path.relpath(dst, ROOT)
