"""Measurements behind two SMT defaults (issue 9, section 3).

    python benchmarks/critic_settings.py alpha   [--steps 4000] [--seeds 0 1]   # D_1 error: paper vs code sampler
    python benchmarks/critic_settings.py dropout [--steps 400] [--masks 16]     # dropout noise in D_0 - D_alpha
    python benchmarks/critic_settings.py report                                 # JSON -> markdown

alpha: the ring8 preset's critic (GAN term off) is trained alone against a FIXED fake distribution
q = N(0, I) in 2-D, for the same number of steps under each score alpha sampler. Its denoiser D(x_t;
sigma, a) is then compared with the exact denoiser of m_a = a p + (1 - a) q (scoremix.analytic) at
a in {0, 0.25, 0.5, 0.75, 1} and at several noise levels, on x_t drawn from the fake q_t (where the generator step
evaluates D_0, D_alpha, D_1) and from m_a,t. The error is RMS ||D - D*|| / sigma (a score error times sigma).

dropout: the digits-smt critic (small U-Net) with the CIFAR preset's score dropout 0.13 is trained alone
for --steps iterations against the untrained generator; then, on generator samples at the generator's
sigmas and alphas, the generator direction (Eq. 10) from one train-mode call (one dropout mask per copy
of D_0, D_alpha, D_1) and from the eval-mode call are compared with the mean over --masks train-mode calls.

Results: benchmarks/results/critic_settings.json and .md (timings are from a shared 2-core machine).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from runner import RESULTS, ResultsFile, Subcommands, write_text  # noqa: E402

from scoremix.analytic import GaussianMixture, mixture_of  # noqa: E402
from scoremix.config_loader import load_config  # noqa: E402
from scoremix.data.toy import make_toy  # noqa: E402
from scoremix.methods.smt import SMT  # noqa: E402
from scoremix.objectives.smt import generator_direction, mixture_denoisers  # noqa: E402
from scoremix.trainer import lr_factor  # noqa: E402

STORE = ResultsFile("critic_settings.json")
SIGMAS = [0.01, 0.05, 0.2, 0.5, 1.5, 4.0]
ALPHAS = [0.0, 0.25, 0.5, 0.75, 1.0]


class FixedGaussianFake(torch.nn.Module):
    def __init__(self, std: float = 1.0):
        super().__init__()
        self.std = std

    def forward(self, z, labels=None):
        return self.std * z


def train_critic_alone(method: SMT, source, steps: int):
    cfg = method.cfg
    critic = method.networks["critic"]
    opt = torch.optim.AdamW(
        critic.parameters(),
        lr=cfg.optim.lr_score,
        betas=(cfg.optim.beta1, cfg.optim.beta2),
        weight_decay=cfg.optim.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: lr_factor(k, cfg.optim.lr_warmup, steps, cfg.optim.score_schedule)
    )
    for step in range(steps):
        x, labels = source(step)
        loss, _ = method.loss("critic", (x, labels), step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.optim.grad_clip)
        opt.step()
        sched.step()


FAKE_STD = {"ring8": 1.0, "grid25": 2.5}


def alpha_experiment(args):
    data = make_toy(args.data)
    p = GaussianMixture(data.means.double(), data.stds.double())
    q = GaussianMixture(torch.zeros(1, 2, dtype=torch.float64), FAKE_STD[args.data])
    runs = []
    for sampler in args.samplers:
        for seed in args.seeds:
            cfg = load_config(args.data, ["method.gan=false", f"method.score_alpha={sampler}", f"seed={seed}"])
            torch.manual_seed(seed)
            method = SMT(cfg, (2,))
            method.networks["generator"] = method.train_networks["generator"] = FixedGaussianFake(FAKE_STD[args.data])
            gen = torch.Generator().manual_seed(seed)
            start = time.time()
            train_critic_alone(method, lambda step: (data.sample(cfg.data.batch_size, generator=gen), None), args.steps)
            seconds = time.time() - start
            net = method.networks["critic"].denoiser.eval()
            errors = {}
            eval_gen = torch.Generator().manual_seed(1000 + seed)
            for a in ALPHAS:
                m = mixture_of(p, q, a)
                for where, law in (("fake", q), ("mixture", m)):
                    for s in SIGMAS:
                        x_t = law.sample(4000, generator=eval_gen) + s * torch.randn(
                            4000, 2, generator=eval_gen, dtype=torch.float64
                        )
                        with torch.no_grad():
                            d = net(x_t.float(), torch.full((4000,), s), alpha=torch.full((4000,), a)).double()
                        exact = m.denoiser(x_t, s)
                        rms = ((d - exact).pow(2).sum(1).mean().sqrt() / s).item()
                        errors[f"{where}/alpha={a}/sigma={s}"] = round(rms, 4)
            runs.append(
                {
                    "sampler": sampler,
                    "seed": seed,
                    "steps": args.steps,
                    "train_seconds": round(seconds, 1),
                    "errors": errors,
                }
            )
            print(
                sampler, seed, round(seconds, 1), {k: v for k, v in errors.items() if k.startswith("fake")}, flush=True
            )
    key = "alpha" if args.data == "ring8" else f"alpha-{args.data}"
    STORE.save(
        key,
        {
            "command": f"python benchmarks/critic_settings.py alpha --data {args.data} --steps {args.steps} "
            "--seeds " + " ".join(map(str, args.seeds)) + " --samplers " + " ".join(args.samplers),
            "data": args.data,
            "fake": f"N(0, {FAKE_STD[args.data]}^2 I) (fixed)",
            "sigmas": SIGMAS,
            "alphas": ALPHAS,
            "runs": runs,
        },
    )


def dropout_experiment(args):
    from scoremix.trainer import Trainer

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            "digits-smt",
            [
                "score.dropout=0.13",
                "method.gan=false",
                "method.warmup_steps=0",
                f"method.critic_warmup_steps={args.steps}",
                f"steps={args.steps}",
                "progress=false",
                "sample_every=0",
                "ckpt_every=0",
                "batch_size=64",
            ],
        )
        tr = Trainer(cfg, os.path.join(tmp, "run"))
        start = time.time()
        for _ in range(args.steps):
            tr.train_step(tr.source.next_batch())
            tr.step += 1
        seconds = time.time() - start
        method = tr.method
        critic = method.networks["critic"].denoiser
        n = 128
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            x = method.networks["generator"](torch.randn(n, *method.data_shape, generator=gen))
        lo, hi = method.gen_sigma_range
        sigma = method.grid.draw(n, lo=lo, hi=hi, generator=gen)
        alpha = method.gen_alpha(n, generator=gen)
        x_t = x + sigma.reshape(-1, 1, 1, 1) * torch.randn(x.shape, generator=gen)

        def direction(train_mode: bool):
            critic.train(train_mode)
            d0, da, d1 = mixture_denoisers(critic, x_t, sigma, alpha)
            return d0 - da, generator_direction(x, d0, da, d1)

        torch.manual_seed(11)
        train_calls = [direction(True) for _ in range(args.masks)]
        eval_diff, eval_dir = direction(False)

        def rel(a, b):  # per-sample ||a - b|| / ||b||, averaged
            return ((a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-12)).mean().item()

        out = {}
        for name, idx, eval_value in (("D_0 - D_alpha", 0, eval_diff), ("generator direction (Eq. 10)", 1, eval_dir)):
            stack = torch.stack([c[idx] for c in train_calls])
            mean = stack.mean(0)
            single = sum(rel(stack[k], mean) for k in range(args.masks)) / args.masks
            out[name] = {
                "train_mode_one_call_vs_mask_mean": round(single, 4),
                "eval_mode_vs_mask_mean": round(rel(eval_value, mean), 4),
                "train_mode_one_call_vs_eval": round(
                    sum(rel(stack[k], eval_value) for k in range(args.masks)) / args.masks, 4
                ),
            }
        critic.train(True)
    print(json.dumps(out, indent=2))
    STORE.save(
        "dropout",
        {
            "command": f"python benchmarks/critic_settings.py dropout --steps {args.steps} --masks {args.masks}",
            "critic": "digits-smt U-Net, score.dropout=0.13, trained alone against the untrained generator",
            "train_seconds": round(seconds, 1),
            "samples": n,
            "masks": args.masks,
            "relative_errors": out,
        },
    )


def report(_args=None):
    data = STORE.load()
    lines = [
        "# Critic settings (issue 9, section 3)",
        "",
        "Written by `python benchmarks/critic_settings.py report` from critic_settings.json; measured on a "
        "shared 2-core machine (times are inflated by other jobs).",
        "",
    ]
    for key in [k for k in data if k.startswith("alpha")]:
        a = data[key]
        samplers = list(dict.fromkeys(r["sampler"] for r in a["runs"]))
        lines += [
            f"## D's error under the score alpha samplers {', '.join(samplers)} ({a.get('data', 'ring8')})",
            "",
            f"Command: `{a['command']}`. Critic of the ring8 preset (GAN off) trained alone against a fixed "
            f"fake {a['fake']}; RMS ||D - D*|| / sigma against the exact mixture denoiser, mean over seeds "
            f"{sorted({r['seed'] for r in a['runs']})}. x_t from the fake q_t (where the generator step "
            "evaluates D) and from m_alpha,t.",
            "",
        ]
        for where in ("fake", "mixture"):
            lines += [
                f"x_t ~ {'q_t' if where == 'fake' else 'm_alpha,t'}:",
                "",
                "| alpha | sampler | " + " | ".join(f"sigma {s}" for s in a["sigmas"]) + " |",
                "|---|---|" + "---|" * len(a["sigmas"]),
            ]
            for al in a["alphas"]:
                for sampler in samplers:
                    runs = [r for r in a["runs"] if r["sampler"] == sampler]
                    vals = [
                        sum(r["errors"][f"{where}/alpha={al}/sigma={s}"] for r in runs) / len(runs) for s in a["sigmas"]
                    ]
                    lines.append(f"| {al} | {sampler} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
            lines.append("")
    if "dropout" in data:
        d = data["dropout"]
        lines += [
            "## Dropout noise in the generator step's critic call",
            "",
            f"Command: `{d['command']}`. {d['critic']} ({d['train_seconds']} s); {d['samples']} generator "
            f"samples, {d['masks']} train-mode calls. Per-sample relative distance ||a - b|| / ||b||, averaged:",
            "",
            "| quantity | one train-mode call vs mean over masks | eval mode vs mean over masks "
            "| one train-mode call vs eval mode |",
            "|---|---|---|---|",
        ]
        for name, v in d["relative_errors"].items():
            lines.append(
                f"| {name} | {v['train_mode_one_call_vs_mask_mean']:.3f} | "
                f"{v['eval_mode_vs_mask_mean']:.3f} | "
                f"{v['train_mode_one_call_vs_eval']:.3f} |"
            )
        lines.append("")
    write_text(os.path.join(RESULTS, "critic_settings.md"), "\n".join(lines))
    print("\n".join(lines))


def main():
    cli = Subcommands(__doc__)
    pa = cli.add("alpha", alpha_experiment)
    pa.add_argument("--steps", type=int, default=4000)
    pa.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    pa.add_argument("--data", default="ring8", choices=sorted(FAKE_STD))
    pa.add_argument("--samplers", nargs="+", default=["paper", "code"])
    pd = cli.add("dropout", dropout_experiment)
    pd.add_argument("--steps", type=int, default=400)
    pd.add_argument("--masks", type=int, default=16)
    cli.run(report)


if __name__ == "__main__":
    main()
