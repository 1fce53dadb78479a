"""Images/s of one SMT cycle (1 generator step + K critic steps): scoremix against a plain reference.

The reference implements the same math inside this file the straightforward way: D_0, D_alpha, D_1 as
three separate critic calls, the critic's real and fake halves as two separate passes, fp32, no compile.
Both start from the same weights, see the same batches and the same random draws (the reference seeds
the global RNG exactly as the trainer does, by (seed, step, phase, micro-batch)), so their losses must
agree to float tolerance; this is checked before timing. Timing alternates library and reference cycles
in one process (so machine load hits both alike) and reports medians and their ratio.

    PYTHONPATH=. python benchmarks/throughput.py --quick --out benchmarks/results/throughput-cpu.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch


def make_trainer(preset: str, batch: int, gen_every: int, device: str, folder: str, extra=()):
    from scoremix.config import load_config
    from scoremix.trainer import Trainer

    base = load_config(preset)
    side = base.data.resolution or {"digits": 8, "mnist": 32}.get(base.data.source, 32)
    channels = 1 if base.data.source in ("digits", "mnist") else 3
    rng = np.random.default_rng(0)
    path = os.path.join(folder, "synthetic.npz")
    np.savez(path, x=rng.integers(0, 256, (max(256, 4 * batch), side, side, channels), dtype=np.uint8))
    cfg = load_config(preset, ["data.source=npz", f"data.path={path}", "data.resolution=none", "data.conditional=false",
                               f"batch_size={batch}", f"gen_every={gen_every}", "method.warmup_steps=0",
                               "method.critic_warmup_steps=0", "method.gan=false", "optim.lr_warmup=0",
                               "optim.gen_schedule=constant", "optim.score_schedule=constant", "progress=off",
                               "sample_every=0", "ckpt_every=0", f"device={device}", "precision=fp32",
                               "channels_last=false", *extra])
    return Trainer(cfg, os.path.join(folder, "run"), echo=lambda *a, **k: None)


class Reference:
    """The same SMT update written plainly: three score calls, separate real/fake passes."""

    def __init__(self, trainer):
        cfg = trainer.cfg
        self.cfg, self.trainer = cfg, trainer
        self.generator = copy.deepcopy(trainer.method.networks["generator"])
        self.critic = copy.deepcopy(trainer.method.networks["critic"])
        self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.ema_updates = trainer.ema.updates if trainer.ema else 0
        o = cfg.optim
        self.opt_gen = torch.optim.AdamW(self.generator.parameters(), lr=o.lr_gen, betas=(o.beta1, o.beta2),
                                         weight_decay=o.weight_decay)
        self.opt_critic = torch.optim.AdamW(self.critic.parameters(), lr=o.lr_score, betas=(o.beta1, o.beta2),
                                            weight_decay=o.weight_decay)
        m = trainer.method
        self.grid, self.gen_range, self.shape = m.grid, m.gen_sigma_range, m.data_shape
        self.gen_alpha, self.score_alpha, self.sigma_data = m.gen_alpha, m.score_alpha, m.sigma_data

    def _noisy(self, x, sigma):
        return x + sigma.reshape(-1, 1, 1, 1) * torch.randn(x.shape, device=x.device)

    def _weight(self, sigma):
        return sigma ** -2 + self.sigma_data ** -2

    def generator_step(self, n, device, step):
        self.trainer._seed_micro_batch("generator", 0)  # the same draws as the library, in the same order
        z = torch.randn(n, *self.shape, device=device)
        x = self.generator(z)
        lo, hi = self.gen_range
        sigma = self.grid.draw(n, device, lo=lo, hi=hi)
        alpha = self.gen_alpha(n, device=device)
        x_t = self._noisy(x.detach(), sigma)
        with torch.no_grad():  # three separate calls of the amortized score network
            d_fake = self.critic.denoiser(x_t, sigma, alpha=torch.zeros_like(alpha))
            d_mix = self.critic.denoiser(x_t, sigma, alpha=alpha)
            d_real = self.critic.denoiser(x_t, sigma, alpha=torch.ones_like(alpha))
        # Eq. 9-10: step along D_0 - D_alpha, scaled by ||x - D_1||_1 sqrt(mean diff^2 / mean (D_1 - D_0)^2)
        diff = d_fake - d_mix
        mean = lambda v: v.flatten(1).mean(1).reshape(-1, 1, 1, 1)  # noqa: E731
        scale = mean((x.detach() - d_real).abs()) * torch.sqrt(mean(diff ** 2) / (mean((d_real - d_fake) ** 2) + 1e-6))
        grad = torch.nan_to_num(diff / scale, nan=0.0, posinf=0.0, neginf=0.0)
        loss = 0.5 * (x - (x - grad).detach()).pow(2).mean()
        self.opt_gen.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.generator)
        self.opt_gen.step()
        self._ema_update()
        return loss.detach()

    def critic_step(self, x_real, step):
        self.trainer._seed_micro_batch("critic", 0)
        n, device = x_real.shape[0], x_real.device
        with torch.no_grad():
            x_fake = self.generator(torch.randn(n, *self.shape, device=device))
        sigma = self.grid.draw(n, device)
        alpha = self.score_alpha(n, device=device)
        real_t, fake_t = self._noisy(x_real, sigma), self._noisy(x_fake, sigma)
        d_real = self.critic.denoiser(real_t, sigma, alpha=alpha)  # two separate passes
        d_fake = self.critic.denoiser(fake_t, sigma, alpha=alpha)
        mse = lambda a, b: (a - b).pow(2).flatten(1).mean(1)  # noqa: E731
        loss = (alpha * self._weight(sigma) * mse(d_real, x_real)
                + (1 - alpha) * self._weight(sigma) * mse(d_fake, x_fake)).mean()  # Eq. 8
        self.opt_critic.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.critic)
        self.opt_critic.step()
        return loss.detach()

    def _clip(self, net):
        clip = self.cfg.optim.grad_clip
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), clip)

    @torch.no_grad()
    def _ema_update(self):
        self.ema_updates += 1
        d = min(self.cfg.train.ema, (1 + self.ema_updates) / (10 + self.ema_updates))
        for e, p in zip(self.ema.parameters(), self.generator.parameters()):
            e.lerp_(p, 1 - d)

    def cycle(self, batches, first_step):
        """Iteration first_step: generator + critic; the next K-1: critic only (as SMT.plan with gen_every=K)."""
        losses = []
        for k, x in enumerate(batches):
            if k == 0:
                losses.append(("loss_gen", self.generator_step(x.shape[0], x.device, first_step).item()))
            losses.append(("loss_score", self.critic_step(x, first_step + k).item()))
        return losses


def library_cycle(trainer, batches, first_step):
    losses = []
    for k, x in enumerate(batches):
        trainer.step = first_step + k
        stats = trainer.train_step((x, None))
        if "loss_gen" in stats:
            losses.append(("loss_gen", stats["loss_gen"].item()))
        losses.append(("loss_score", stats["loss_score"].item()))
    trainer.step = first_step + len(batches)
    return losses


def reference_cycle(ref, batches, first_step):
    ref.trainer.step = first_step  # the seeding helper reads the step
    losses = []
    for k, x in enumerate(batches):
        ref.trainer.step = first_step + k
        if k == 0:
            losses.append(("loss_gen", ref.generator_step(x.shape[0], x.device, first_step).item()))
        losses.append(("loss_score", ref.critic_step(x, first_step + k).item()))
    ref.trainer.step = first_step + len(batches)
    return losses


def run(preset: str, batch: int, gen_every: int, cycles: int, device: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(preset, batch, gen_every, device, folder)
        ref = Reference(trainer)
        dev = trainer.device
        batches = [trainer.source.next_batch()[0].to(dev) for _ in range(gen_every)]
        # 1. identical math: two cycles from the same weights, the same batches and draws
        check = {"library": [], "reference": []}
        for c in range(2):
            check["library"] += library_cycle(trainer, batches, c * gen_every)
            check["reference"] += reference_cycle(ref, batches, c * gen_every)
        pairs = list(zip(check["library"], check["reference"]))
        assert all(a[0] == b[0] for a, b in pairs)
        worst = max(abs(a[1] - b[1]) / max(1e-12, abs(b[1])) for a, b in pairs)
        # 2. timing: alternate library and reference cycles, one warm-up each
        times = {"library": [], "reference": []}
        step = 2 * gen_every
        for c in range(cycles + 1):
            for name, fn, obj in (("library", library_cycle, trainer), ("reference", reference_cycle, ref)):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                fn(obj, batches, step)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                if c > 0:
                    times[name].append(time.perf_counter() - start)
            step += gen_every
        images = batch * gen_every
        med = {k: statistics.median(v) for k, v in times.items()}
        best = {k: min(v) for k, v in times.items()}  # the least disturbed cycle: robust to other jobs' load
        return {"preset": preset, "device": str(dev), "batch": batch, "critic_steps_per_cycle": gen_every,
                "cycles_timed": cycles, "images_per_cycle": images,
                "library_images_per_s": images / med["library"], "reference_images_per_s": images / med["reference"],
                "speedup_library_over_reference": med["reference"] / med["library"],
                "library_images_per_s_best": images / best["library"],
                "reference_images_per_s_best": images / best["reference"],
                "speedup_best_cycles": best["reference"] / best["library"],
                "cycle_seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
                "losses_checked": len(pairs), "max_relative_loss_difference": worst,
                "losses_identical": worst < 1e-4, "parameters": trainer.param_counts}


def profile(preset: str, batch: int, gen_every: int, device: str, rows: int = 12) -> dict:
    """torch.profiler tables (self CPU time) of one library and one reference cycle."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    out = {}
    with tempfile.TemporaryDirectory() as folder:
        trainer = make_trainer(preset, batch, gen_every, device, folder)
        ref = Reference(trainer)
        batches = [trainer.source.next_batch()[0].to(trainer.device) for _ in range(gen_every)]
        library_cycle(trainer, batches, 0)
        reference_cycle(ref, batches, 0)
        for name, fn, obj in (("library", library_cycle, trainer), ("reference", reference_cycle, ref)):
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                fn(obj, batches, gen_every)
            out[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="digits-smt")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--gen-every", type=int, default=5, help="K: critic steps per cycle")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true",
                        help="batch 32, K=3, 20 timed cycles (seconds on 2 idle cores)")
    parser.add_argument("--profile", action="store_true", help="add torch.profiler tables to the output")
    parser.add_argument("--out", default=None, help="JSON file to write (a .md summary is written beside it)")
    parser.add_argument("--summarise", default=None, help="only rewrite the .md summary of this JSON file")
    args = parser.parse_args()
    if args.summarise:
        with open(args.summarise) as fh:
            result = json.load(fh)
        with open(os.path.splitext(args.summarise)[0] + ".md", "w") as fh:
            fh.write(summary(result))
        return 0
    if args.quick:
        args.batch, args.gen_every, args.cycles = 32, 3, 20
    torch.manual_seed(0)
    start, load_before = time.time(), os.getloadavg()[0]
    result = run(args.preset, args.batch, args.gen_every, args.cycles, args.device)
    result.update({"command": "PYTHONPATH=. python " + " ".join(sys.argv), "torch": torch.__version__,
                   "python": platform.python_version(), "threads": torch.get_num_threads(),
                   "cpu_count": os.cpu_count(), "wall_seconds": round(time.time() - start, 1),
                   "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]})
    if args.profile:
        result["profile"] = profile(args.preset, args.batch, args.gen_every, args.device)
    print(json.dumps({k: v for k, v in result.items() if k not in ("profile", "cycle_seconds")}, indent=1))
    if not result["losses_identical"]:
        print("error: library and reference losses differ", file=sys.stderr)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
        with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
            fh.write(summary(result))
    return 0 if result["losses_identical"] else 1


def summary(r: dict) -> str:
    lines = [f"# SMT cycle throughput: {r['preset']} networks, batch {r['batch']}, 1 generator + "
             f"{r['critic_steps_per_cycle']} critic steps, {r['device']}", "",
             f"Command: `{r['command']}` (torch {r['torch']}, {r['threads']} threads, {r['cpu_count']} CPUs).",
             f"Load average (1 min) before / after: {' / '.join(map(str, r.get('load_average_1min', ['?'])))}. Library "
             "and reference cycles alternate in one process, so other load hits both alike; the ratio is the",
             "measurement, absolute images/s hold for this machine only.", "",
             "| | images/s, median cycle | images/s, fastest cycle |", "|---|---|---|",
             f"| scoremix | {r['library_images_per_s']:.1f} | {r['library_images_per_s_best']:.1f} |",
             f"| plain reference (3 score calls, separate real/fake passes) | {r['reference_images_per_s']:.1f} | "
             f"{r['reference_images_per_s_best']:.1f} |",
             f"| ratio | {r['speedup_library_over_reference']:.2f}x | {r['speedup_best_cycles']:.2f}x |", "",
             f"Losses of {r['losses_checked']} phases from the same weights, batches and draws: max relative "
             f"difference {r['max_relative_loss_difference']:.2e} ({'identical' if r['losses_identical'] else 'DIFFERENT'}).",
             ""]
    if "profile" in r:
        lines += ["torch.profiler, one cycle each (self CPU time; the full tables are in the JSON):", ""]
        for name in ("library", "reference"):
            table = r["profile"][name]
            total = [ln for ln in table.splitlines() if ln.startswith("Self CPU time total")]
            convs = [ln.split() for ln in table.splitlines() if ln.strip().startswith("aten::mkldnn_convolution")]
            calls = f", {convs[0][-1]} convolution calls" if convs else ""
            lines.append(f"- {name}: {total[0].split(': ')[1] if total else '?'}{calls}")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
