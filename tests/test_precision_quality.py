"""benchmarks/precision_quality.py: the bf16-vs-fp32 verdict on known seed values."""

from __future__ import annotations

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
