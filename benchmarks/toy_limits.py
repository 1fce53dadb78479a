"""Why a toy preset falls short of its bar: two measurements against exact references (issue 9, section 4).

    python benchmarks/toy_limits.py capacity --data grid25 [--steps 12500] [--seeds 0 1] [net overrides]
    python benchmarks/toy_limits.py critic RUN_DIR [RUN_DIR ...]
    python benchmarks/toy_limits.py report

capacity: how precise can the preset's generator network be at all? It is fitted by plain regression
(no SMT, no critic) to an exact transport map T of N(0, I) onto the data: for grid25 the product-quantile
map (each coordinate's Gaussian quantile picks one of 5 columns / rows, the rest of the quantile places the
point inside the mode); for ring8 the polar map (the angle picks one of 8 modes). T pushes N(0, I) exactly
onto the data, so its own precision is the metric's ceiling (0.99). The network gets the preset's
optimiser, learning rate, schedule, batch and as many steps as the preset's generator takes. What it
reaches is an upper bound on what any training signal gives that generator within that many steps,
since regression to a known target is the easiest signal there is. The map is discontinuous (one
generator, 25 or 8 separated modes), so the fit leaves "bridges" between neighbouring modes; their mass
is what the precision misses.

critic: at the end of a trained run, the critic's D(x_t; sigma, alpha) against the exact denoiser of
m_alpha = alpha p + (1 - alpha) q, where p is the exact data mixture and q the empirical law of 20,000
samples of the run's own generator (a mixture of point masses). x_t is drawn where the generator step
evaluates the critic: generator samples plus noise. Reported by noise level: RMS ||D - D*|| / sigma for
alpha = 0, 0.5, 1; the signal the generator follows, RMS ||D*_0 - D*_0.5|| / sigma, and the critic's error
on that difference; the mean cosine between the critic's and the exact D_0 - D_0.5 per sample; and the
floor of the empirical reference (the same numbers for a second independent set of 20,000 samples).

Results: benchmarks/results/toy-limits.json and .md.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from runner import RESULTS, ResultsFile, Subcommands, read_json, write_text  # noqa: E402

from scoremix.analytic import GaussianMixture, mixture_of  # noqa: E402
from scoremix.checkpoint import load_latest_valid  # noqa: E402
from scoremix.config_loader import load_config  # noqa: E402
from scoremix.data.toy import make_toy  # noqa: E402
from scoremix.methods.smt import SMT  # noqa: E402
from scoremix.metrics.toy import mode_metrics  # noqa: E402
from scoremix.nets.build import build_generator  # noqa: E402
from scoremix.trainer import lr_factor  # noqa: E402

STORE = ResultsFile("toy-limits.json")
SIGMAS = [0.02, 0.05, 0.2, 0.5, 1.5, 4.0]
EDGE = 1e-4  # keeps the within-mode quantile away from 0 and 1


def _normal_quantile(u: torch.Tensor) -> torch.Tensor:
    return math.sqrt(2.0) * torch.erfinv(2 * u.clamp(EDGE, 1 - EDGE) - 1)


@functools.lru_cache(maxsize=None)
def _toy(name: str):
    return make_toy(name)  # built once, not at every regression step


def transport_map(name: str, z: torch.Tensor) -> torch.Tensor:
    """An exact map T with T(z) ~ data for z ~ N(0, I_2) (module docstring)."""
    data = _toy(name)
    if name == "grid25":
        u = 0.5 * (1 + torch.erf(z / math.sqrt(2.0)))  # independent uniforms
        cell = (5 * u).floor().clamp(0, 4)
        index = (cell[:, 0] * 5 + cell[:, 1]).long()  # make_toy's order: meshgrid(x, y, 'ij')
        inside = _normal_quantile(5 * u - cell)
    elif name == "ring8":
        angle = (torch.atan2(z[:, 1], z[:, 0]) + math.pi) / (2 * math.pi)  # uniform, independent of |z|
        radius = 1 - torch.exp(-0.5 * z.pow(2).sum(1))  # uniform
        sector = (8 * angle).floor().clamp(0, 7)
        index = sector.long()
        inside = torch.stack([_normal_quantile(8 * angle - sector), _normal_quantile(radius)], 1)
    else:
        raise ValueError(f"no transport map for {name!r} (grid25, ring8)")
    return data.means[index] + data.stds[index, None] * inside


def capacity(args) -> None:
    data = make_toy(args.data)
    runs = []
    for seed in args.seeds:
        cfg = load_config(args.data, [f"seed={seed}", *args.overrides])
        steps = args.steps or cfg.train.steps // cfg.method.gen_every
        torch.manual_seed(seed)
        net = build_generator(cfg, (2,))
        opt = torch.optim.AdamW(
            net.parameters(),
            lr=cfg.optim.lr_gen,
            betas=(cfg.optim.beta1, cfg.optim.beta2),
            weight_decay=cfg.optim.weight_decay,
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: lr_factor(k, cfg.optim.lr_warmup, steps, cfg.optim.gen_schedule)
        )
        gen = torch.Generator().manual_seed(seed)
        start = time.time()
        curve = {}
        for step in range(1, steps + 1):
            z = torch.randn(cfg.data.batch_size, 2, generator=gen)
            loss = (net(z) - transport_map(args.data, z)).pow(2).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.optim.grad_clip)
            opt.step()
            sched.step()
            if step % max(1, steps // 5) == 0 or step == steps:
                curve[step] = _precision(net, data, seed)
        z = torch.randn(10000, 2, generator=torch.Generator().manual_seed(10_000 + seed))
        ceiling = mode_metrics(transport_map(args.data, z), data.means, data.stds, data.weights)
        runs.append(
            {
                "seed": seed,
                "steps": steps,
                "seconds": round(time.time() - start, 1),
                "final": curve[steps],
                "curve": curve,
                "transport_map": ceiling,
            }
        )
        print(args.data, seed, steps, curve, flush=True)
    key = f"capacity/{args.data}/{runs[0]['steps']}/" + " ".join(args.overrides)
    command = (
        "python benchmarks/toy_limits.py capacity --data "
        + args.data
        + (f" --steps {args.steps}" if args.steps else "")
        + " --seeds "
        + " ".join(map(str, args.seeds))
        + "".join(" " + o for o in args.overrides)
    )
    STORE.save(key, {"command": command, "data": args.data, "overrides": args.overrides, "runs": runs})


def _precision(net, data, seed: int) -> dict:
    z = torch.randn(10000, 2, generator=torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        x = net(z)
    m = mode_metrics(x, data.means, data.stds, data.weights)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}


def _empirical_denoiser(
    p: GaussianMixture, q_samples: torch.Tensor, alpha: float, x_t: torch.Tensor, sigma: float, chunk: int = 250
) -> torch.Tensor:
    m = mixture_of(p, GaussianMixture(q_samples, 0.0), alpha)
    return torch.cat([m.denoiser(x_t[i : i + chunk], sigma) for i in range(0, x_t.shape[0], chunk)])


def critic(args) -> None:
    out = []
    for run in args.runs:
        cfg = load_config(os.path.join(run, "config.yaml"))
        found = load_latest_valid(os.path.join(run, "checkpoints"))
        if found is None:
            raise SystemExit(f"no readable checkpoint in {run}/checkpoints")
        path, state = found
        method = SMT(cfg, (2,))
        for name, net in method.networks.items():
            net.load_state_dict(state["networks"][name])
        generator = method.networks["generator"].eval()
        denoiser = method.networks["critic"].denoiser.eval()
        data = make_toy(cfg.data.source)
        p = GaussianMixture(data.means.double(), data.stds.double())
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            q1, q2, x = (generator(torch.randn(n, 2, generator=gen)).double() for n in (20000, 20000, args.points))
        rows = {}
        for s in SIGMAS:
            x_t = x + s * torch.randn(x.shape, generator=gen, dtype=torch.float64)
            model, exact, floor = {}, {}, {}
            for a in (0.0, 0.5, 1.0):
                with torch.no_grad():
                    model[a] = denoiser(
                        x_t.float(), torch.full((x.shape[0],), s), alpha=torch.full((x.shape[0],), a)
                    ).double()
                exact[a] = _empirical_denoiser(p, q1, a, x_t, s)
                floor[a] = _empirical_denoiser(p, q2, a, x_t, s)

            def rms(v):
                return round((v.pow(2).sum(1).mean().sqrt() / s).item(), 4)

            diff_model, diff_exact, diff_floor = (d[0.0] - d[0.5] for d in (model, exact, floor))
            cosine = torch.nn.functional.cosine_similarity(diff_model, diff_exact, dim=1).mean().item()
            rows[str(s)] = {
                **{f"error alpha={a}": rms(model[a] - exact[a]) for a in model},
                **{f"floor alpha={a}": rms(floor[a] - exact[a]) for a in model},
                "signal D0-D0.5": rms(diff_exact),
                "error D0-D0.5": rms(diff_model - diff_exact),
                "floor D0-D0.5": rms(diff_floor - diff_exact),
                "cosine D0-D0.5": round(cosine, 3),
            }
            print(run, s, rows[str(s)], flush=True)
        metrics = read_json(os.path.join(run, "metrics.json"), {})
        out.append(
            {
                "run": os.path.basename(os.path.normpath(run)),
                "data": cfg.data.source,
                "checkpoint_step": state["step"],
                "raw_metrics": metrics.get("raw", {}),
                "by_sigma": rows,
            }
        )
    STORE.save(
        "critic",
        {
            "command": "python benchmarks/toy_limits.py critic " + " ".join(args.runs) + f" --points {args.points}",
            "sigmas": SIGMAS,
            "runs": out,
        },
    )


def report(_args=None) -> None:
    data = STORE.load()
    lines = [
        "# Why the toy presets fall short: generator capacity and critic error",
        "",
        "Written by `python benchmarks/toy_limits.py report` from toy-limits.json. Method: the docstring of "
        "`benchmarks/toy_limits.py`.",
        "",
    ]
    caps = {k: v for k, v in data.items() if k.startswith("capacity/")}
    if caps:
        lines += [
            "## Generator capacity: regression to an exact transport map",
            "",
            "| data | network overrides | steps | precision (seeds) | modes | mode_kl | map's own precision | s/run |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for v in caps.values():
            r = v["runs"]
            lines.append(
                f"| {v['data']} | {' '.join(v['overrides']) or 'preset'} | {r[0]['steps']} | "
                + " / ".join(f"{x['final']['precision']:.3f}" for x in r)
                + " | "
                + " / ".join(str(x["final"]["modes_covered"]) for x in r)
                + " | "
                + " / ".join(f"{x['final']['mode_kl']:.3f}" for x in r)
                + " | "
                + f"{r[0]['transport_map']['precision']:.3f} | {sum(x['seconds'] for x in r) / len(r):.0f} |"
            )
        lines += ["", "Commands: " + "; ".join(f"`{v['command']}`" for v in caps.values()), ""]
        lines += ["Precision during the fit (seed 0):", ""]
        for v in caps.values():
            curve = v["runs"][0]["curve"]
            lines.append(
                f"- {v['data']} {' '.join(v['overrides']) or 'preset'}: "
                + ", ".join(f"{k}: {c['precision']:.3f}" for k, c in curve.items())
            )
        lines.append("")
    if "critic" in data:
        c = data["critic"]
        lines += ["## The trained critic against the exact mixture denoisers", "", f"Command: `{c['command']}`.", ""]
        for run in c["runs"]:
            m = run["raw_metrics"]
            lines += [
                f"### {run['run']} ({run['data']}, checkpoint at iteration {run['checkpoint_step']}; raw "
                f"generator precision {m.get('precision', float('nan')):.3f}, {m.get('modes_covered')}"
                f"/{m.get('num_modes')} modes)",
                "",
                "| sigma | D_0 err | D_0.5 err | D_1 err | signal D_0-D_0.5 | its error | cosine | floor (D_0-D_0.5) |",
                "|---|---|---|---|---|---|---|---|",
            ]
            for s, row in run["by_sigma"].items():
                lines.append(
                    f"| {s} | {row['error alpha=0.0']:.3f} | {row['error alpha=0.5']:.3f} | "
                    f"{row['error alpha=1.0']:.3f} | {row['signal D0-D0.5']:.3f} | "
                    f"{row['error D0-D0.5']:.3f} | "
                    f"{row['cosine D0-D0.5']:.2f} | {row['floor D0-D0.5']:.3f} |"
                )
            lines.append("")
        lines += [
            "Errors are RMS ||D - D*|| / sigma over generator samples plus noise; *signal* is the exact "
            "RMS ||D*_0 - D*_0.5|| / sigma; *floor* is how far the empirical reference moves between two "
            "independent sets of 20,000 generator samples.",
            "",
        ]
    write_text(os.path.join(RESULTS, "toy-limits.md"), "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    cli = Subcommands(__doc__)
    pc = cli.add("capacity", capacity)
    pc.add_argument("--data", default="grid25", choices=["grid25", "ring8"])
    pc.add_argument("--steps", type=int, default=0, help="default: the preset's generator steps")
    pc.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    pc.add_argument("overrides", nargs="*", help="key=value overrides of the preset (e.g. generator.hidden=256)")
    pk = cli.add("critic", critic)
    pk.add_argument("runs", nargs="+")
    pk.add_argument("--points", type=int, default=2000)
    cli.run(report)


if __name__ == "__main__":
    main()
