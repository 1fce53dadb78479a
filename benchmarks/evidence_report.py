"""The tables and pictures of benchmarks/evidence.py: per-variant summaries over seeds, the markdown tables of
summary.md, loss curves, and sample pictures."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
from evidence_questions import SWISSROLL
from runner import write_json

TABLE_KEYS = ("precision", "modes_covered", "mode_kl", "energy_distance", "knn_precision", "knn_recall")


def summarise(records: list[dict]) -> dict:
    """Mean and spread (min..max) over seeds of the EMA metrics (raw when there is no EMA)."""
    out = {
        "seeds": len(records),
        "diverged": sum(bool(r.get("diverged")) for r in records),
        "wall_s": float(np.mean([w for r in records if isinstance(w := r.get("wall_s"), (int, float))] or [math.nan])),
    }
    for key in TABLE_KEYS:
        vals = []
        for rec in records:
            m = rec.get("metrics") or {}
            m = m.get("ema") or m.get("raw") or {}
            if isinstance(m.get(key), (int, float)):
                vals.append(float(m[key]))
        if vals:
            out[key] = {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "max": float(np.max(vals))}
    return out


def markdown_table(result: dict) -> str:
    rows = [
        "| variant | seeds | diverged | wall s | " + " | ".join(TABLE_KEYS) + " |",
        "|---|---|---|---|" + "---|" * len(TABLE_KEYS),
    ]
    for name, records in result["runs"].items():
        s = summarise(records)
        cells = []
        for key in TABLE_KEYS:
            v = s.get(key)
            f = ".3g" if key == "modes_covered" else ".3f"
            cells.append(
                "–"
                if v is None
                else (f"{v['mean']:{f}}" if s["seeds"] == 1 else f"{v['mean']:{f}} ({v['min']:{f}}–{v['max']:{f}})")
            )
        rows.append(f"| {name} | {s['seeds']} | {s['diverged']} | {s['wall_s']:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot_curves(result: dict, path: str, key_prefix: str = "loss") -> None:
    """One panel per variant: the loss curves of every seed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = [n for n, recs in result["runs"].items() if any(r.get("curves") for r in recs)]
    if not names:
        return
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for rec in result["runs"][name]:
            curves = rec.get("curves") or {}
            for key, values in curves.items():
                if key.startswith(key_prefix) and len(values) == len(curves.get("step", [])):
                    ax.plot(curves["step"], values, lw=0.8, label=f"{key} s{rec['seed']}")
        ax.set_title(name, fontsize=8)
        ax.set_yscale("symlog")
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def q1_picture(result: dict, path: str, n: int = 2000) -> None:
    """One scatter per variant (seed 0's EMA generator; the EDM teacher at each step count) beside the data."""
    import torch

    from scoremix.config_loader import load_config
    from scoremix.data import reference_samples
    from scoremix.plots import scatter_image, titled_grid, toy_bounds
    from scoremix.sampling import load_sampler, sample

    reference = torch.as_tensor(reference_samples(load_config("swissroll", SWISSROLL).data, n, seed=0)).float()
    bounds = toy_bounds(reference)
    panels = [("data", scatter_image(reference, bounds, size=200))]
    for name, records in result["runs"].items():
        rec = records[0]
        steps = rec.get("heun_steps")
        folder = rec.get("folder") or next(
            (t["folder"] for t in result.get("teacher_runs", []) if t["seed"] == rec["seed"]), None
        )
        if rec.get("returncode") != 0 or folder is None:
            continue
        try:
            sampler, meta = load_sampler(folder, steps=steps)
            x = sample(sampler, n, meta["data_shape"], meta["num_classes"], seed=0)
        except Exception as err:  # a failed run has no weights: leave its panel out, say so
            print(f"q1 picture: {name}: {err}", file=sys.stderr)
            continue
        panels.append((name, scatter_image(x.reshape(n, -1).float(), bounds, size=200)))
    titled_grid(panels, 4).save(path)


def runs_picture(result: dict, path: str) -> None:
    """Each variant's seed-0 run as it drew itself at the end (samples/final.png: samples beside data)."""
    from PIL import Image

    from scoremix.plots import titled_grid

    panels = []
    for name, records in result["runs"].items():
        picture = os.path.join(records[0].get("folder", ""), "samples", "final.png")
        if os.path.isfile(picture):
            panels.append((f"{name} (seed {records[0]['seed']}): samples | data", Image.open(picture)))
    if panels:
        titled_grid(panels, 2).save(path)


def _protocol_values(record: dict | None) -> dict:
    """fd / kd / precision / recall of the EMA weights, whatever sample count names them (fd2k, kd2k, ...)."""
    weights = ((record or {}).get("result") or {}).get("weights", {}).get("ema", {})
    out = {}
    for key, value in weights.items():
        base = key.rstrip("0123456789k")
        if base in ("fd", "kd", "precision", "recall") and not key.endswith("_std"):
            out[base] = value
    return out


def digits_table(result: dict) -> str:
    """Q5: each one-step method and the teacher by Heun step count: digit-classifier scores and FD / KD /
    precision / recall in the local feature space."""
    rows = [
        "| method | network evaluations | digit score | confident | FD | KD | precision | recall | training s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    walls = {k: v[0].get("wall_s") for k, v in result["runs"].items()}
    teacher_wall = next((t.get("wall_s") for t in result.get("teacher_runs", [])), None)
    protocol = result.get("protocol_metrics", {})

    def cell(v, fmt):
        return "–" if v is None else format(v, fmt)

    for name, rec in result.get("digits", {}).items():
        entries = list(((rec.get("scores") or {}).get("runs") or {}).values())
        ema = entries[0].get("ema", {}) if entries else {}
        steps = rec.get("heun_steps")
        p = _protocol_values(protocol.get(name))
        wall = walls.get(name) if steps is None else teacher_wall
        rows.append(
            f"| {name} | {1 if steps is None else 2 * steps - 1} | {cell(ema.get('digit_score'), '.2f')} | "
            f"{cell(ema.get('confident'), '.0%')} | {cell(p.get('fd'), '.1f')} | {cell(p.get('kd'), '.2f')} | "
            f"{cell(p.get('precision'), '.3f')} | {cell(p.get('recall'), '.3f')} | {cell(wall, '.0f')} |"
        )
    return "\n".join(rows)


def report_question(q: int, result: dict, out: str, budget: dict) -> list[str]:
    """qN-TITLE.json, its loss curves and sample pictures under out; the question's lines of summary.md."""
    title = result["title"]
    stem = os.path.join(out, f"q{q}-{title}")
    write_json(stem + ".json", result, indent=1)
    plot_curves(result, stem + "-curves.png")
    lines = [f"## Q{q}: {title}", "", markdown_table(result), ""]
    if q == 1:
        q1_picture(result, stem + "-samples.png", n=min(2000, budget["eval_samples"]))
    if q == 2:
        runs_picture(result, stem + "-samples.png")
    if q in (1, 2):
        lines += [f"![samples](q{q}-{title}-samples.png)", ""]
    if result.get("digits"):
        lines += [digits_table(result), ""]
    return lines
