"""The five questions of benchmarks/evidence.py: which runs answer each, for a budget's settings.

Each question takes an evidence_tasks.Runner (whose `budget` holds the settings) and returns its result: the
runs by variant, and for the MNIST questions the digit scores and protocol metrics."""

from __future__ import annotations

import os

import numpy as np
from evidence_tasks import Runner
from runner import scoremix_command

# The swiss-roll setting of App. E.2: 2-layer MLPs of width 128 with leaky ReLU, batch 256, AdamW,
# lr 1e-5 for the generator and 1e-4 for the score model / discriminator.
PAPER_TOY_NETS = [
    "generator.hidden=128",
    "generator.depth=2",
    "generator.activation=leaky_relu",
    "generator.fourier_features=0",
    "score.hidden=128",
    "score.depth=2",
    "score.activation=leaky_relu",
    "score.fourier_features=0",
    "data.batch_size=256",
    "optim.lr_gen=1e-5",
    "optim.lr_score=1e-4",
]
SWISSROLL = ["data.source=swissroll", "data.sigma_data=1.5"]
PROTOCOL_HEUN_STEPS = (1, 4, 18, 35)  # the teacher step counts also scored by FD / KD / precision-recall


def _mnist_smt(b: dict) -> list[str]:
    """The mnist-smt preset's generator warm-up and critic-only iterations (1,500 and 300) would fill a short
    run, so every SMT variant shortens them alike to the budget's (generator, critic) iterations."""
    gen, critic = b["mnist_warmup"]
    return [f"method.warmup_steps={gen}", f"method.critic_warmup_steps={critic}"]


def q1_swissroll(r: Runner) -> dict:
    b = r.budget
    steps = b["toy_steps"]
    base = SWISSROLL + PAPER_TOY_NETS
    variants = {
        "smt": ("swissroll", base),
        "smt-no-gan": ("swissroll", base + ["method.gan=false"]),
        "alpha-1-only": ("swissroll", base + ["method.gen_alpha=constant:1"]),
        "alpha-0-1-only": ("swissroll", base + ["method.gen_alpha=constant:1", "method.score_alpha=endpoints"]),
        "gan": ("ring8-gan", base),
        "smd-analytic": ("ring8-smd", base + ["method.teacher=analytic"]),
        # the library's own swissroll preset (wider MLPs with input Fourier features, larger learning rates)
        "preset-smt": ("swissroll", []),
        "preset-alpha-1-only": ("swissroll", ["method.gen_alpha=constant:1"]),
    }
    runs = {
        name: [r.train(f"q1-{name}", preset, ov, s, steps) for s in b["seeds"]]
        for name, (preset, ov) in variants.items()
    }
    teachers = [
        r.train(
            "q1-edm-teacher",
            "ring8-edm",
            SWISSROLL
            + ["score.hidden=128", "score.depth=2", "score.activation=leaky_relu", "score.fourier_features=0"],
            s,
            b["toy_teacher_steps"],
        )
        for s in b["seeds"]
    ]
    runs["smd-trained-teacher"] = [
        r.train("q1-smd-trained-teacher", "ring8-smd", base + [f"method.teacher={t['folder']}"], s, steps)
        for s, t in zip(b["seeds"], teachers)
    ]
    for k in (1, 4, 35):
        runs[f"edm-{k}-steps"] = [r.evaluate_steps(f"q1-edm-h{k}", t, k, s) for s, t in zip(b["seeds"], teachers)]
    return {"runs": runs, "teacher_runs": teachers}


def _unbalanced_mixture(out: str) -> str:
    """Two components whose weights differ 10x, written as a user's .npz (points + the mixture)."""
    path = os.path.join(out, "unbalanced.npz")
    if not os.path.isfile(path):
        rng = np.random.default_rng(0)
        means = np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
        weights = np.array([10.0, 1.0, 10.0]) / 21
        comp = rng.choice(3, size=20000, p=weights)
        x = means[comp] + 0.15 * rng.standard_normal((20000, 2))
        np.savez(path, x=x, means=means, stds=0.15, weights=weights)
    return path


def q2_coverage(r: Runner) -> dict:
    b = r.budget
    data = {
        "ring8": ("ring8", []),
        "grid25": ("grid25", []),
        "unbalanced": (
            "ring8",
            [
                "data.source=points",
                f"data.path={_unbalanced_mixture(r.out)}",
                "data.standardize=none",
                "data.sigma_data=1.4",
            ],
        ),
    }
    runs = {}
    for dname, (preset, ov) in data.items():
        for label, extra in (("full-alpha", []), ("alpha-1-only", ["method.gen_alpha=constant:1"])):
            runs[f"{dname}/{label}"] = [
                r.train(f"q2-{dname}-{label}", preset, ov + extra, s, b["toy_steps"]) for s in b["seeds"]
            ]
    return {"runs": runs}


def q3_ablations(r: Runner) -> dict:
    b = r.budget
    variants = {
        "preset": [],
        "dmd-weight": ["method.weighting=dmd"],
        "no-gan": ["method.gan=false"],
        "paper-alpha": ["method.score_alpha=paper"],
        "gen-every-1": ["method.gen_every=1"],
        "gen-every-5": ["method.gen_every=5"],
    }
    runs = {
        f"ring8/{k}": [r.train(f"q3-ring8-{k}", "ring8", ov, s, b["toy_steps"]) for s in b["seeds"]]
        for k, ov in variants.items()
    }
    if b["mnist_questions"]:
        for k, ov in variants.items():
            runs[f"mnist/{k}"] = [r.train(f"q3-mnist-{k}", "mnist-smt", _mnist_smt(b) + ov, 0, b["mnist_steps"])]
    digits = {k: r.digit_scores(f"q3-{k.replace('/', '-')}", v[0]) for k, v in runs.items() if k.startswith("mnist")}
    return {"runs": runs, "digits": digits}


def _lr_overrides(preset: str, factor: float) -> list[str]:
    from scoremix.presets import get_preset

    o = get_preset(preset).optim
    return [f"optim.lr_gen={o.lr_gen * factor:.3g}", f"optim.lr_score={o.lr_score * factor:.3g}"]


def q4_stability(r: Runner) -> dict:
    b = r.budget
    runs = {}
    for preset in ("ring8", "ring8-dmd", "ring8-gan"):
        for factor in (1 / 3, 1, 3):
            key = f"{preset}/lr-x{factor:.2g}"
            runs[key] = [
                r.train(f"q4-{preset}-x{factor:.2g}", preset, _lr_overrides(preset, factor), s, b["toy_steps"])
                for s in b["stability_seeds"]
            ]
    if b["mnist_questions"]:
        teacher = [f"method.teacher={_mnist_teacher(r)['folder']}"]
        for preset, name, extra in (
            ("mnist-smt", "q4-mnist", _mnist_smt(b)),
            ("mnist-dmd", "q4-mnist-dmd", teacher),
            ("mnist-gan", "q4-mnist-gan", []),
        ):
            for factor in (1 / 3, 1, 3):
                # at x1 the run is Q5's (the same configuration): named as Q5 names it, trained once
                shared = factor == 1 and preset != "mnist-smt"
                run_name = name.replace("q4-", "q5-") if shared else f"{name}-x{factor:.2g}"
                runs[f"{preset}/lr-x{factor:.2g}"] = [
                    r.train(run_name, preset, extra + _lr_overrides(preset, factor), 0, b["mnist_steps"])
                ]
    digits = {k: r.digit_scores(f"q4-{k.replace('/', '-')}", v[0]) for k, v in runs.items() if k.startswith("mnist")}
    return {"runs": runs, "digits": digits}


def _mnist_teacher(r: Runner) -> dict:
    """The EDM teacher of the MNIST distillation runs (trained once, shared by Q4 and Q5)."""
    return r.train("q5-mnist-edm", "mnist-edm", [], 0, r.budget["mnist_teacher_steps"])


def q5_one_vs_many(r: Runner) -> dict:
    b = r.budget
    teacher = _mnist_teacher(r)
    runs = {
        "smt": [r.train("q5-mnist-smt", "mnist-smt", _mnist_smt(b), 0, b["mnist_steps"])],
        "gan": [r.train("q5-mnist-gan", "mnist-gan", [], 0, b["mnist_steps"])],
        "smd": [r.train("q5-mnist-smd", "mnist-smd", [f"method.teacher={teacher['folder']}"], 0, b["mnist_steps"])],
        "dmd": [r.train("q5-mnist-dmd", "mnist-dmd", [f"method.teacher={teacher['folder']}"], 0, b["mnist_steps"])],
    }
    digits = {k: r.digit_scores(f"q5-{k}", v[0]) for k, v in runs.items()}
    for k in b["heun_steps"]:
        digits[f"edm-{k}-steps"] = r.digit_scores("q5-mnist-edm", teacher, steps=k)
    # FD / KD / precision-recall in a local feature space (the evaluation protocol, offline)
    detector = os.path.join(r.out, "runs", "mnist28-features.safetensors")
    ref = os.path.join(r.out, "runs", "mnist28-ref.npz")
    r.command(
        "q5-features",
        scoremix_command("features", "train", "--data", "mnist", "--resolution", "28", "--out", detector),
        detector,
        2000.0,
    )
    r.command(
        "q5-reference",
        scoremix_command(
            "eval", "stats", "--data", "mnist", "--resolution", "28", "--detector", detector, "--features", "--out", ref
        ),
        ref,
        1000.0,
    )
    protocol = {}
    teacher_steps = [k for k in PROTOCOL_HEUN_STEPS if k in b["heun_steps"]]
    for k, v in list(runs.items()) + [(f"edm-{k}-steps", [dict(teacher, heun_steps=k)]) for k in teacher_steps]:
        out = os.path.join(r.out, "runs", f"q5-{k}-fd.json.metrics")
        steps = v[0].get("heun_steps")
        cmd = scoremix_command(
            "eval",
            "--checkpoint",
            v[0]["folder"],
            "--metrics",
            "fid,kid,pr",
            "--n",
            str(b["digit_samples"]),
            "--ref",
            ref,
            "--detector",
            detector,
            "--weights",
            "ema",
            "--json",
            out,
        ) + ([] if steps is None else ["--steps", str(steps)])
        protocol[k] = r.command(f"q5-{k}-fd", cmd, out, 300.0 * (steps or 1))
    return {"runs": runs, "teacher_runs": [teacher], "digits": digits, "protocol_metrics": protocol}


QUESTIONS = {
    1: ("swissroll", q1_swissroll),
    2: ("coverage", q2_coverage),
    3: ("ablations", q3_ablations),
    4: ("stability", q4_stability),
    5: ("one-vs-many", q5_one_vs_many),
}
