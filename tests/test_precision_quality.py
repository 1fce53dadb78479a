"""benchmarks/precision_quality.py: the bf16-vs-fp32 verdict on known seed values."""

from __future__ import annotations

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import precision_quality  # noqa: E402


def rows(preset: str, metric_values: dict[str, dict[str, list[float]]]) -> list[dict]:
    out = []
    for precision in precision_quality.PRECISIONS:
        for i, seed in enumerate(precision_quality.SEEDS):
            out.append(
                {
                    "preset": preset,
                    "precision": precision,
                    "seed": seed,
                    **{m: v[precision][i] for m, v in metric_values.items()},
                }
            )
    return out


def test_verdict_uses_the_fp32_range_and_its_widening():
    values = {
        "digit_score": {"fp32": [6.0, 6.4], "bf16": [6.5, 6.5]},  # mean 6.5: outside [6.0, 6.4], inside [5.8, 6.6]
        "confident": {"fp32": [0.5, 0.6], "bf16": [0.55, 0.57]},  # mean 0.56: inside
        "fd_local": {"fp32": [20.0, 22.0], "bf16": [30.0, 31.0]},  # mean 30.5: outside [19, 23]
    }
    verdicts = precision_quality.verdicts(rows("mnist-smt", values))
    score, confident, fd = (verdicts[f"mnist-smt/{m}"] for m in ("digit_score", "confident", "fd_local"))
    assert score["bf16_mean"] == 6.5 and not score["within_fp32_range"] and score["within_fp32_spread"]
    assert confident["within_fp32_range"] and confident["within_fp32_spread"]
    assert not fd["within_fp32_range"] and not fd["within_fp32_spread"]
    assert "ring8/precision" not in verdicts  # no ring8 rows: no verdict


def test_a_metric_named_precision_does_not_overwrite_the_runs_precision(tmp_path):
    folder = tmp_path / "ring8-bf16-s1"
    folder.mkdir()
    ema = {"precision": 0.8, "modes_covered": 8, "mode_kl": 0.01, "energy_distance": 0.02}
    (folder / "metrics.json").write_text(json.dumps({"train_seconds": 12.0, "ema": ema}))
    row = precision_quality.score(str(tmp_path), "ring8", "bf16", 1, scorer=None)
    assert row["precision"] == "bf16" and row["sample_precision"] == 0.8 and row["seed"] == 1
    verdicts = precision_quality.verdicts(
        [{**row, "precision": p, "seed": s} for p in ("fp32", "bf16") for s in (0, 1)]
    )
    assert verdicts["ring8/sample_precision"]["within_fp32_range"]
