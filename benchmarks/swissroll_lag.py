"""Why SMD from the exact analytic swiss-roll teacher lags SMD from a trained teacher (issue 20, item 4).

docs/results.md (Q1) found energy distance 0.21 for `smd-analytic` against 0.028 for `smd-trained-teacher`,
both the ring8-smd preset on the swiss roll with the paper's App. E.2 toy networks (lr 1e-5 generator),
3,000 iterations. Their resolved configs differ only in method.teacher, so what differs is (1) the teacher
in the warm-up target, the critic loss and the generator direction, (2) the generator's initial weights
(a copy of the trained teacher at sigma_g, or random weights regressed onto the exact teacher by the
300-step warm-up), (3) the critic's initial weights (D_fake a copy of the trained teacher, or random).

This script measures, on seed 0 (energy distance to 5,000 fresh swiss-roll points, the same z for every
generator):
  exact     the warm-up's target D_p(sigma_g z; sigma_g) of the analytic teacher and of the trained teacher,
            and randomly initialised generators (no training)
  runs      the q1 teacher, then both SMD variants again with a checkpoint every 300 iterations: the energy
            distance along training, and how far the generator's outputs move from where SMD starts
  controls  the two SMD runs' states at iteration 300 (warm-up done, no critic step yet) spliced: a run
            resumes with one variant's teacher and the other variant's generator and/or critic, which
            separates the three differences above

Run folders (with checkpoints) go to runs/swissroll-lag/ (not committed); results to
benchmarks/results/swissroll-lag.{json,md} and the CPU time of every child run to swissroll-lag.ledger.jsonl.
A run whose folder already has metrics.json is not run again. Rerun: `OMP_NUM_THREADS=1 nice -n 10 python
benchmarks/swissroll_lag.py` (about 12 CPU-minutes from nothing, most of it in the two analytic-teacher runs).
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evidence_questions import PAPER_TOY_NETS, SWISSROLL  # noqa: E402
from runner import (  # noqa: E402
    RESULTS,
    ROOT,
    Ledger,
    check_run,
    command_line,
    machine,
    read_json,
    run_logged,
    scoremix_command,
    write_json,
    write_text,
)

RUN_ROOT = os.path.join(ROOT, "runs", "swissroll-lag")
JSON_PATH = os.path.join(RESULTS, "swissroll-lag.json")
MD_PATH = os.path.join(RESULTS, "swissroll-lag.md")
LEDGER = Ledger(os.path.join(RESULTS, "swissroll-lag.ledger.jsonl"))

SEED = 0
STEPS = 3000
SPLICE_STEP = 300  # method.warmup_steps of ring8-smd: warm-up done, critic not yet stepped
CKPT = [f"train.ckpt_every={SPLICE_STEP}", f"train.keep_every={SPLICE_STEP}"]
COMMON = [f"train.seed={SEED}", "train.progress=off", "eval.samples=5000"]
TEACHER_ARGS = [
    "--config",
    "ring8-edm",
    *SWISSROLL,
    "score.hidden=128",
    "score.depth=2",
    "score.activation=leaky_relu",
    "score.fourier_features=0",
    "train.steps=4000",
    *COMMON,
]
SMD_BASE = ["--config", "ring8-smd", *SWISSROLL, *PAPER_TOY_NETS, f"train.steps={STEPS}", *COMMON, *CKPT]
N_EVAL = 5000

# controls: the iteration-300 state of the `teacher` run with parts taken from the other run's state at 300:
# gen_weights (generator weights and their EMA), gen_adam (the generator's AdamW moments and step count),
# critic (D_fake and head weights with their AdamW state); each names the SMD run ("trained" or "analytic")
CONTROLS = {
    "trained-teacher_gen-scratch": {
        "teacher": "trained",
        "gen_weights": "analytic",
        "gen_adam": "analytic",
        "critic": "trained",
    },
    "trained-teacher_gen-adam-scratch": {
        "teacher": "trained",
        "gen_weights": "trained",
        "gen_adam": "analytic",
        "critic": "trained",
    },
    "analytic-teacher_gen-adam-from-trained": {
        "teacher": "analytic",
        "gen_weights": "analytic",
        "gen_adam": "trained",
        "critic": "analytic",
    },
}


def folder(name: str) -> str:
    return os.path.join(RUN_ROOT, name)


def smd_args(teacher: str) -> list[str]:
    return [*SMD_BASE, f"method.teacher={'analytic' if teacher == 'analytic' else folder('teacher')}"]


def train(name: str, args: list[str], resume: str | None = None) -> dict:
    """`scoremix train ARGS --out runs/swissroll-lag/NAME` (resumed from a state file when given), once; its
    command, and its wall and CPU time when it ran now (earlier sittings are in the ledger)."""
    out = folder(name)
    cmd = scoremix_command("train", *args, "--out", out, *(["--resume", resume] if resume else []))
    record = {"name": name, "command": " ".join(["python -m scoremix", *cmd[3:]]).replace(ROOT + "/", "")}
    if os.path.isfile(os.path.join(out, "metrics.json")):
        return {**record, "cached": True}
    record.update(check_run(run_logged(cmd, out + ".log", threads=1), cmd, out + ".log"))
    LEDGER.add(record)
    return record


def splice(parts: dict, path: str) -> None:
    """Write the spliced iteration-300 state of a control (CONTROLS) to path."""
    from scoremix.checkpoint import load_training_state, save_training_state

    def state(variant):
        return load_training_state(os.path.join(folder(f"smd-{variant}"), "checkpoints", f"state-{SPLICE_STEP:07d}.pt"))

    base, weights, adam, critic = (state(parts[k]) for k in ("teacher", "gen_weights", "gen_adam", "critic"))
    base["networks"]["generator"] = weights["networks"]["generator"]
    base["ema"], base["ema_updates"] = weights["ema"], weights["ema_updates"]
    base["optimizers"]["generator"] = adam["optimizers"]["generator"]
    base["networks"]["critic"] = critic["networks"]["critic"]
    base["optimizers"]["critic"] = critic["optimizers"]["critic"]
    save_training_state(base, path)


# ---------------------------------------------------------------------------------------------- measuring
class Scorer:
    """Energy distance of a generator to one fixed set of swiss-roll points, on one fixed set of z."""

    def __init__(self):
        from scoremix.data.toy import make_toy

        g = torch.Generator().manual_seed(20)
        roll = make_toy("swissroll")
        self.reference = roll.sample(N_EVAL, generator=g).double()
        self.floor = self.energy(roll.sample(N_EVAL, generator=g))
        self.z = torch.randn(N_EVAL, 2, generator=g)
        self.start_outputs: dict[str, torch.Tensor] = {}

    def energy(self, x) -> float:
        from scoremix.metrics.toy import energy_distance

        return round(energy_distance(x.double(), self.reference), 4)

    @torch.no_grad()
    def one_step(self, denoiser, sigma: float) -> torch.Tensor:
        """D(sigma z; sigma): the generator SMD starts from (method.md section 7)."""
        x = sigma * self.z.double()
        return denoiser(x, torch.full((N_EVAL,), sigma, dtype=torch.float64)).double()

    @torch.no_grad()
    def checkpoints(self, name: str, start: str | None = None) -> list[dict]:
        """Energy distance of the raw generator at every checkpoint of a run (and at its spliced start state),
        and the RMS distance of its outputs (same z) from the generator at iteration 300, where SMD starts."""
        from scoremix.sampling import load_sampler

        rows = []
        for path in [
            *([start] if start else []),
            *sorted(glob.glob(os.path.join(folder(name), "checkpoints", "state-*.pt"))),
        ]:
            sampler, meta = load_sampler(path, use_ema=False)
            x = sampler(self.z).double()
            if meta["step"] == SPLICE_STEP:
                self.start_outputs[name] = x
            start = self.start_outputs.get(name)
            moved = None if start is None else round(float((x - start).pow(2).sum(1).mean().sqrt()), 4)
            rows.append({"step": meta["step"], "energy_distance": self.energy(x), "moved_from_300": moved})
        return rows


def exact_stage(scorer: Scorer) -> dict:
    """No training: the warm-up's targets and randomly initialised generators."""
    from scoremix.config_loader import load_config
    from scoremix.methods import build_method
    from scoremix.teachers.analytic import load_analytic_teacher
    from scoremix.teachers.run import load_run_teacher

    cpu = time.process_time()
    analytic = load_analytic_teacher("swissroll")
    cfg = load_config("ring8-smd", [*SWISSROLL, *PAPER_TOY_NETS, "method.teacher=analytic"])
    sigma_g = cfg.noise.generator_sigma or cfg.noise.sigma_max
    trained = load_run_teacher(folder("teacher"))
    exact_target = scorer.one_step(analytic, sigma_g)
    trained_target = scorer.one_step(trained, sigma_g)
    init = []
    for seed in range(3):
        torch.manual_seed(seed)
        method = build_method(cfg, (2,), 0, teacher=analytic)
        with torch.no_grad():
            x = method.networks["generator"].eval()(scorer.z).double()
        init.append(
            {
                "seed": seed,
                "energy_distance": scorer.energy(x),
                "rms_to_exact_target": round(float((x - exact_target).pow(2).sum(1).mean().sqrt()), 4),
            }
        )
    return {
        "sigma_g": sigma_g,
        "energy_floor": scorer.floor,
        "exact_target": {
            "energy_distance": scorer.energy(exact_target),
            "std": [round(v, 4) for v in exact_target.std(0).tolist()],
        },
        "trained_teacher_target": {
            "energy_distance": scorer.energy(trained_target),
            "std": [round(v, 4) for v in trained_target.std(0).tolist()],
            "rms_to_exact_target": round(float((trained_target - exact_target).pow(2).sum(1).mean().sqrt()), 4),
        },
        "random_init": init,
        "cpu_s": round(time.process_time() - cpu, 1),
    }


def optimizer_state(name: str, step: int) -> dict:
    """The generator's AdamW state in a checkpoint: its step count, the RMS over parameters of sqrt(v) (second
    moment) and of m (first moment), and the norm of the generator's output layer."""
    from scoremix.checkpoint import load_training_state

    state = load_training_state(os.path.join(folder(name), "checkpoints", f"state-{step:07d}.pt"))
    adam = list(state["optimizers"]["generator"]["state"].values())
    v = torch.cat([p["exp_avg_sq"].flatten() for p in adam])
    m = torch.cat([p["exp_avg"].flatten() for p in adam])
    out = [t for k, t in state["networks"]["generator"].items() if k.endswith("backbone.out.weight")]
    return {
        "step": step,
        "adam_steps": int(float(adam[0]["step"])),
        "rms_sqrt_v": float(v.mean().sqrt()),
        "rms_m": float(m.pow(2).mean().sqrt()),
        "out_layer_norm": round(float(out[0].norm()), 3),
    }


def run_summary(name: str, scorer: Scorer, start: str | None = None) -> dict:
    metrics = read_json(os.path.join(folder(name), "metrics.json"))
    rows = scorer.checkpoints(name, start)
    summary = {
        "final_eval": {
            "raw": metrics["raw"]["energy_distance"],
            "ema": metrics["ema"]["energy_distance"],
            "knn_recall_raw": metrics["raw"]["knn_recall"],
        },
        "trajectory": rows,
        "resumed_from": os.path.relpath(start, ROOT) if start else None,
    }
    if start is None:
        summary["generator_optimizer"] = [optimizer_state(name, step) for step in (SPLICE_STEP, 3 * SPLICE_STEP)]
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-controls", action="store_true", help="only the exact stage and the two SMD runs")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    os.makedirs(RUN_ROOT, exist_ok=True)
    cpu = time.process_time()
    commands = [train("teacher", TEACHER_ARGS)]
    scorer = Scorer()
    result = {
        "command": command_line(__file__, argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "seed": SEED,
        "steps": STEPS,
        "exact": exact_stage(scorer),
        "runs": {},
    }
    for teacher in ("trained", "analytic"):
        commands.append(train(f"smd-{teacher}", smd_args(teacher)))
        result["runs"][f"smd-{teacher}"] = run_summary(f"smd-{teacher}", scorer)
    if not args.no_controls:
        for name, parts in CONTROLS.items():
            start = os.path.join(RUN_ROOT, f"{name}-start.pt")
            if not os.path.isfile(os.path.join(folder(name), "metrics.json")):
                shutil.rmtree(folder(name), ignore_errors=True)
                splice(parts, start)
            commands.append(train(name, smd_args(parts["teacher"]), resume=start))
            summary = run_summary(name, scorer, start)
            summary["parts_from"] = {k: f"smd-{v}" if k != "teacher" else v for k, v in parts.items()}
            result["runs"][name] = summary
    result["commands"] = commands
    result["cpu"] = {"children": LEDGER.totals(), "this_process_s": round(time.process_time() - cpu, 1)}
    write_json(JSON_PATH, result)
    write_text(MD_PATH, report(result))
    print(f"wrote {os.path.relpath(JSON_PATH, ROOT)} and {os.path.relpath(MD_PATH, ROOT)}")


def report(r: dict) -> str:
    """The runs as a table (which part of the iteration-300 state came from which run, final energy distance),
    the warm-up targets, the generators' AdamW moments, the commands; the full record is in the JSON."""
    ex = r["exact"]
    lines = [
        "# Swiss-roll SMD: the analytic teacher against a trained one",
        "",
        f"Command: `{r['command']}` ({r['machine']['processor']}, torch {r['machine']['torch']}, "
        f"{r['machine']['threads']} thread). Seed {r['seed']}, {r['steps']} iterations; energy distance (ED) of "
        f"{N_EVAL:,} samples to {N_EVAL:,} fresh swiss-roll points (floor {ex['energy_floor']}), the same z for "
        "every generator. Controls resume from the iteration-300 state (warm-up done, no critic step yet) with "
        "its parts taken from the two SMD runs. What the numbers say: docs/results.md, Q1.",
        "",
        "| run | teacher | generator weights | generator AdamW state | critic | ED raw | ED EMA |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, run in r["runs"].items():
        own = "smd-" + name.split("-", 1)[1] if name.startswith("smd-") else None
        parts = run.get("parts_from") or {
            "teacher": own.split("-")[1],
            "gen_weights": own,
            "gen_adam": own,
            "critic": own,
        }
        cells = [parts["teacher"], parts["gen_weights"], parts["gen_adam"], parts["critic"]]
        ev = run["final_eval"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ev['raw']:.4f} | {ev['ema']:.4f} |")
    lines += [
        "",
        f"Warm-up targets D(sigma_g z; sigma_g) at sigma_g = {ex['sigma_g']}: exact teacher ED "
        f"{ex['exact_target']['energy_distance']}, trained teacher ED {ex['trained_teacher_target']['energy_distance']} "
        f"(RMS {ex['trained_teacher_target']['rms_to_exact_target']} from the exact one); randomly initialised "
        "generators: "
        + ", ".join(f"ED {g['energy_distance']} (RMS {g['rms_to_exact_target']})" for g in ex["random_init"])
        + ".",
        "",
        "Generator AdamW state of the two SMD runs (RMS of sqrt(v) and of m over all weights, norm of the output layer):",
        "",
    ]
    for name in ("smd-trained", "smd-analytic"):
        for o in r["runs"][name].get("generator_optimizer") or []:
            lines.append(
                f"- {name}, iteration {o['step']} ({o['adam_steps']} AdamW steps): sqrt(v) {o['rms_sqrt_v']:.2e}, "
                f"m {o['rms_m']:.2e}, output layer norm {o['out_layer_norm']}"
            )
    lines += ["", "Energy distance along training (raw generator):", ""]
    for name, run in r["runs"].items():
        lines.append(f"- {name}: " + ", ".join(f"{p['step']}: {p['energy_distance']}" for p in run["trajectory"]))
    lines += ["", "## Commands", ""] + [f"- `{c['command']}`" for c in r["commands"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
