"""Does bfloat16 autocast on the CPU keep quality? The same short mnist-smt and ring8 runs in fp32 and in bf16,
two seeds each, scored the same way; bf16 passes where its metrics fall within the fp32 seed spread.

    python benchmarks/precision_quality.py --only mnist-smt     # 4 runs, resumable, about 30 minutes on 2 cores
    python benchmarks/precision_quality.py --report             # rescore finished runs, rewrite the report

mnist-smt runs are shortened alike (2,000 iterations: 400 warm-up + 100 critic-only + SMT) and scored with the
ladder's digit classifier and local features (benchmarks/quality.py); ring8 runs train 6,000 iterations and are
scored by their own metrics.json (exact mode metrics of the known mixture).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import RESULTS, ROOT, Ledger, command_line, machine, read_json, run_logged, scoremix_command, write_json  # noqa: E402

SEEDS = (0, 1)
PRECISIONS = ("fp32", "bf16")
RUNS = {  # preset -> (short-run overrides, metrics compared: name -> higher is better)
    "mnist-smt": (
        [
            "train.steps=2000",
            "method.warmup_steps=400",
            "method.critic_warmup_steps=100",
            "train.sample_every=0",
            "train.ckpt_every=2500",
            "eval.samples=500",
        ],
        {"digit_score": True, "confident": True, "fd_local": False},
    ),
    "ring8": (
        ["train.steps=6000", "train.sample_every=0", "train.ckpt_every=6000"],
        {"sample_precision": True, "mode_kl": False, "energy_distance": False},
    ),
}


def run_folder(runs: str, preset: str, precision: str, seed: int) -> str:
    return os.path.join(runs, f"{preset}-{precision}-s{seed}")


def train(runs: str, preset: str, precision: str, seed: int) -> None:
    folder = run_folder(runs, preset, precision, seed)
    if os.path.isfile(os.path.join(folder, "metrics.json")):
        return
    cmd = scoremix_command(
        "train",
        "--config",
        preset,
        "--out",
        folder,
        *RUNS[preset][0],
        f"train.precision={precision}",
        f"train.seed={seed}",
        "train.progress=off",
    )
    print(" ".join(cmd[2:]), flush=True)
    result = run_logged(cmd, folder + ".log")
    Ledger(folder + ".sittings.jsonl").add({**result, "command": " ".join(["scoremix", *cmd[3:]])})
    if result["rc"]:
        raise SystemExit(f"{folder} failed; see {folder}.log")


def score(runs: str, preset: str, precision: str, seed: int, scorer) -> dict:
    folder = run_folder(runs, preset, precision, seed)
    costs = Ledger(folder + ".sittings.jsonl").totals()
    out = {
        "preset": preset,
        "precision": precision,
        "seed": seed,
        "train_cpu_s": costs["cpu_s"],
        "train_wall_s": costs["wall_s"],
        "train_seconds": read_json(os.path.join(folder, "metrics.json"))["train_seconds"],
    }
    if preset == "ring8":
        ema = read_json(os.path.join(folder, "metrics.json"))["ema"]
        out.update({k: ema[k] for k in ("modes_covered", "mode_kl", "energy_distance")})
        out["sample_precision"] = ema["precision"]  # the metric; out["precision"] stays the run's fp32 / bf16
    else:
        from quality import draw, load_stage_sampler

        sampler, meta = load_stage_sampler(folder, "smt")
        scores = scorer(draw(sampler, meta, 2000, 0))
        scores["feature_precision"] = scores.pop("precision")  # the run's precision is fp32 / bf16
        out.update(scores)
    return out


def verdicts(rows: list[dict]) -> dict:
    """Per preset and metric: the fp32 and bf16 values over seeds, whether the bf16 mean lies within the fp32 seed
    range [min, max], and within that range widened by half its width on each side (two seeds give a noisy
    spread; the widened test is the one the verdict uses)."""
    out = {}
    for preset, (_, metrics) in RUNS.items():
        for metric in metrics:
            vals = {p: [r[metric] for r in rows if r["preset"] == preset and r["precision"] == p] for p in PRECISIONS}
            if not all(len(v) == len(SEEDS) for v in vals.values()):
                continue
            lo, hi = min(vals["fp32"]), max(vals["fp32"])
            pad = 0.5 * (hi - lo)
            mean = sum(vals["bf16"]) / len(vals["bf16"])
            out[f"{preset}/{metric}"] = {
                "fp32": vals["fp32"],
                "bf16": vals["bf16"],
                "bf16_mean": mean,
                "within_fp32_range": lo <= mean <= hi,
                "within_fp32_spread": lo - pad <= mean <= hi + pad,
            }
    return out


def markdown(result: dict) -> str:
    lines = [
        "# bf16 autocast on the CPU: quality against fp32",
        "",
        f"Command: `{result['command']}`. Machine: {result['machine']['processor']}, {result['machine']['cpu_count']} "
        f"CPUs, torch {result['machine']['torch']}.",
        "",
        "| preset | precision | seed | train CPU s | train s (run's own clock) | metrics |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        metrics = ", ".join(f"{k} {r[k]:.3f}" for k in RUNS[r["preset"]][1])
        lines.append(
            f"| {r['preset']} | {r['precision']} | {r['seed']} | {r['train_cpu_s']:.0f} | "
            f"{r['train_seconds']:.0f} | {metrics} |"
        )
    lines += [
        "",
        "| metric | fp32 seeds | bf16 seeds | bf16 mean | within the fp32 range | within it widened by half |",
        "|---|---|---|---|---|---|",
    ]
    for key, v in result["verdicts"].items():
        lines.append(
            f"| {key} | {', '.join(f'{x:.3f}' for x in v['fp32'])} | {', '.join(f'{x:.3f}' for x in v['bf16'])} "
            f"| {v['bf16_mean']:.3f} | {'yes' if v['within_fp32_range'] else 'no'} "
            f"| {'yes' if v['within_fp32_spread'] else 'no'} |"
        )
    lines += ["", "Commands:", ""] + [f"- `{c}`" for c in result["commands"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=os.path.join(ROOT, "runs", "precision-quality"))
    parser.add_argument("--out", default=os.path.join(RESULTS, "precision-quality.json"))
    parser.add_argument("--only", default=None, help="comma list of presets (default: all)")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args(argv)
    presets = args.only.split(",") if args.only else list(RUNS)
    if not args.report:
        for preset in presets:
            for seed in SEEDS:
                for precision in PRECISIONS:
                    train(args.runs, preset, precision, seed)
    from quality import CPU_CLASSIFIER, Scorer

    scorer = Scorer(CPU_CLASSIFIER)
    rows = [
        score(args.runs, p, prec, s, scorer)
        for p in RUNS
        for s in SEEDS
        for prec in PRECISIONS
        if os.path.isfile(os.path.join(run_folder(args.runs, p, prec, s), "metrics.json"))
    ]
    result = {
        "command": command_line(__file__, argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "rows": rows,
        "verdicts": verdicts(rows),
        "commands": [
            " ".join(["scoremix train --config", p, *RUNS[p][0], f"train.precision={prec}", f"train.seed={s}"])
            for p in RUNS
            if any(r["preset"] == p for r in rows)  # the presets that ran
            for s in SEEDS
            for prec in PRECISIONS
        ],
    }
    write_json(args.out, result)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
        fh.write(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
