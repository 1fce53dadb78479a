"""A run's evaluation history, behind `scoremix eval --run DIR`: which checkpoints to evaluate, the rows
of the run's metrics.jsonl (what makes two evaluations the same, which are done, appending one) and the
metrics-vs-step picture. The measuring itself is eval_protocol.py's."""

from __future__ import annotations

import json
import math
import os


def run_checkpoints(run_dir: str, every: int) -> list[tuple[int, str]]:
    """(step, path) of the run's training states whose step is a multiple of `every`, and its
    generator.safetensors (the newest weights: the trainer rewrites it at every checkpoint and at the
    end) when its step is not among them; oldest first."""
    from . import checkpoint as ckpt

    found = [(ckpt.checkpoint_step(p), p) for p in ckpt.list_checkpoints(os.path.join(run_dir, "checkpoints"))]
    chosen = [(s, p) for s, p in found if every <= 0 or s % every == 0]
    final = os.path.join(run_dir, "generator.safetensors")
    if os.path.isfile(final):
        try:
            from safetensors import safe_open

            with safe_open(final, framework="pt") as fh:
                step = int((fh.metadata() or {}).get("step", -1))
            if step not in {s for s, _ in chosen}:
                chosen.append((step, final))
        except Exception:
            pass
    return sorted(chosen)


def evaluation_key(metrics, n: int, seed: int, detector_sha: str, ref_sha: str, steps: int | None = None) -> str:
    """What makes two evaluations of one checkpoint the same; `steps` (diffusion runs' Heun steps) is part
    of it, so a run evaluated at 18 steps is evaluated again at 35."""
    key = [sorted(metrics), n, seed, detector_sha[:16], ref_sha[:16]]
    return json.dumps(key if steps is None else key + [int(steps)])


def read_done(jsonl_path: str) -> set:
    """(step, key) pairs already in metrics.jsonl; a cut last line (a killed writer) is ignored."""
    done = set()
    if not os.path.isfile(jsonl_path):
        return done
    with open(jsonl_path) as fh:
        for line in fh:
            try:
                row = json.loads(line)
                done.add((int(row["step"]), row["key"]))
            except (ValueError, KeyError, TypeError):
                continue
    return done


def append_jsonl(path: str, row: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def plot_metrics(jsonl_path: str, out_png: str) -> str | None:
    """metric vs step, one line per (metric, weights); None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = []
    with open(jsonl_path) as fh:
        for line in fh:
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    series = {}
    for row in rows:
        for which, values in row.get("weights", {}).items():
            for name, value in values.items():
                if isinstance(value, (int, float)) and not name.endswith("_std") and math.isfinite(value):
                    series.setdefault(name, {}).setdefault(which, []).append((row["step"], value))
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(4 * len(series), 3.2), squeeze=False)
    for ax, (name, by_weights) in zip(axes[0], sorted(series.items())):
        for which, points in sorted(by_weights.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=which)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png
