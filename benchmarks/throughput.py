"""CPU speed levers, measured side by side: one SMT training cycle (1 generator + K critic steps) and one-step
sampling, for each preset's networks, in fp32 eager (the 0.1 path), each lever alone (bf16 autocast,
channels_last, regional and whole-network torch.compile) and the preset's own settings ("chosen").

All variants live in one process, start from the same weights, see the same batches and draws, and their
cycles alternate (round r times variant 1, 2, ..., then round r + 1), so load from elsewhere hits them alike;
medians and ratios against fp32 eager are the measurement. A plain fp32 reference of the same SMT math (three
score calls, separate real / fake passes) is checked to give the library's fp32 losses and timed beside them.
Compilation time is the first cycles' excess over the steady state, reported apart. The markdown summary
written beside the JSON is throughput_report.py's.

    PYTHONPATH=. python benchmarks/throughput.py --quick --out benchmarks/results/throughput-cpu.json
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from runner import ROOT, child_env, machine, write_json  # noqa: E402
from throughput_report import markdown  # noqa: E402

LEVERS = {  # variant -> (precision, channels_last, compile)
    "fp32 eager": ("fp32", False, "off"),
    "bf16": ("bf16", False, "off"),
    "channels_last": ("fp32", True, "off"),
    "compile (regional)": ("fp32", False, "blocks"),
    "compile (whole)": ("fp32", False, "whole"),
    "bf16 + compile (whole)": ("bf16", False, "whole"),
}


def make_trainer(
    preset: str,
    batch: int,
    gen_every: int,
    folder: str,
    precision: str,
    channels_last: bool,
    compile_mode: str,
    device: str = "cpu",
):
    from scoremix.config_loader import load_config
    from scoremix.data.toy import TOYS
    from scoremix.trainer import Trainer

    base = load_config(preset)
    data = []
    if base.data.source not in TOYS:  # images: a synthetic array of the preset's shape
        side = base.data.resolution or {"digits": 8, "mnist": 32}.get(base.data.source, 32)
        channels = 1 if base.data.source in ("digits", "mnist") else 3
        path = os.path.join(folder, f"synthetic-{side}.npz")
        if not os.path.exists(path):
            rng = np.random.default_rng(0)
            np.savez(path, x=rng.integers(0, 256, (max(256, 4 * batch), side, side, channels), dtype=np.uint8))
        data = [
            "data.source=npz",
            f"data.path={path}",
            "data.resolution=none",
            "data.holdout=0",
            "data.conditional=false",
        ]
    cfg = load_config(
        preset,
        [
            *data,
            f"batch_size={batch}",
            f"gen_every={gen_every}",
            "method.warmup_steps=0",
            "method.critic_warmup_steps=0",
            "method.gan=false",
            "optim.lr_warmup=0",
            "optim.gen_schedule=constant",
            "optim.score_schedule=constant",
            "progress=off",
            "sample_every=0",
            "ckpt_every=0",
            f"device={device}",
            f"precision={precision}",
            f"channels_last={channels_last}",
            f"train.compile={compile_mode == 'blocks'}",
        ],
    )
    torch.manual_seed(0)
    trainer = Trainer(
        cfg, os.path.join(folder, f"run-{precision}-{channels_last}-{compile_mode}"), echo=lambda *a, **k: None
    )
    if compile_mode == "whole":
        from scoremix.nets.compile import allow_recompiles

        allow_recompiles()
        for net in trainer.method.networks.values():
            net.denoiser.backbone.compile(dynamic=False)  # in place: parameter names unchanged
    return trainer


def preset_levers(preset: str) -> tuple[str, bool, str]:
    from scoremix.config_loader import load_config

    t = load_config(preset).train
    return t.precision, t.channels_last, "blocks" if t.compile else "off"


class Reference:
    """The same SMT update written plainly in fp32: three score calls, separate real/fake passes."""

    def __init__(self, trainer):
        cfg = trainer.cfg
        self.cfg, self.trainer = cfg, trainer
        self.generator = copy.deepcopy(trainer.method.networks["generator"])
        self.critic = copy.deepcopy(trainer.method.networks["critic"])
        self.ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.ema_updates = trainer.ema.updates if trainer.ema else 0
        o = cfg.optim
        self.opt_gen = torch.optim.AdamW(
            self.generator.parameters(), lr=o.lr_gen, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay
        )
        self.opt_critic = torch.optim.AdamW(
            self.critic.parameters(), lr=o.lr_score, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay
        )
        m = trainer.method
        self.grid, self.gen_range, self.shape = m.grid, m.gen_sigma_range, m.data_shape
        self.gen_alpha, self.score_alpha, self.sigma_data = m.gen_alpha, m.score_alpha, m.sigma_data

    def _noisy(self, x, sigma):
        return x + sigma.reshape(-1, *[1] * (x.ndim - 1)) * torch.randn(x.shape, device=x.device)

    def generator_step(self, n, device):
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
        diff = d_fake - d_mix  # Eq. 9-10
        mean = lambda v: v.flatten(1).mean(1).reshape(-1, *[1] * (v.ndim - 1))  # noqa: E731
        scale = mean((x.detach() - d_real).abs()) * torch.sqrt(mean(diff**2) / (mean((d_real - d_fake) ** 2) + 1e-6))
        grad = torch.nan_to_num(diff / scale, nan=0.0, posinf=0.0, neginf=0.0)
        loss = 0.5 * (x - (x - grad).detach()).pow(2).mean()
        self.opt_gen.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.generator)
        self.opt_gen.step()
        with torch.no_grad():
            self.ema_updates += 1
            d = min(self.cfg.train.ema, (1 + self.ema_updates) / (10 + self.ema_updates))
            for e, p in zip(self.ema.parameters(), self.generator.parameters()):
                e.lerp_(p, 1 - d)
        return loss.detach()

    def critic_step(self, x_real):
        self.trainer._seed_micro_batch("critic", 0)
        n, device = x_real.shape[0], x_real.device
        with torch.no_grad():
            x_fake = self.generator(torch.randn(n, *self.shape, device=device))
        sigma = self.grid.draw(n, device)
        alpha = self.score_alpha(n, device=device)
        real_t, fake_t = self._noisy(x_real, sigma), self._noisy(x_fake, sigma)
        d_real = self.critic.denoiser(real_t, sigma, alpha=alpha)  # two separate passes
        d_fake = self.critic.denoiser(fake_t, sigma, alpha=alpha)
        weight = sigma**-2 + self.sigma_data**-2
        mse = lambda a, b: (a - b).pow(2).flatten(1).mean(1)  # noqa: E731
        loss = (alpha * weight * mse(d_real, x_real) + (1 - alpha) * weight * mse(d_fake, x_fake)).mean()  # Eq. 8
        self.opt_critic.zero_grad(set_to_none=True)
        loss.backward()
        self._clip(self.critic)
        self.opt_critic.step()
        return loss.detach()

    def _clip(self, net):
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(net.parameters(), self.cfg.optim.grad_clip)

    def cycle(self, batches, first_step):
        losses = []
        for k, x in enumerate(batches):
            self.trainer.step = first_step + k  # the seeding helper reads the step
            if k == 0:
                losses.append(("loss_gen", self.generator_step(x.shape[0], x.device).item()))
            losses.append(("loss_score", self.critic_step(x).item()))
        self.trainer.step = first_step + len(batches)
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


def _sampler(trainer, precision: str, batch: int):
    from scoremix.precision import autocast

    generator = trainer.method.networks["generator"]
    z = torch.randn(batch, *trainer.source.shape, generator=torch.Generator().manual_seed(1))
    if trainer.cfg.train.channels_last and z.ndim == 4:
        z = z.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def sample():
        with autocast("cpu", precision):
            return generator(z).float()

    return sample


def measure(preset: str, batch: int, gen_every: int, cycles: int, sample_batch: int, warm: int = 2) -> dict:
    chosen = preset_levers(preset)
    variants = dict(LEVERS)
    variants["chosen"] = chosen
    with tempfile.TemporaryDirectory() as folder:
        trainers = {name: make_trainer(preset, batch, gen_every, folder, *levers) for name, levers in variants.items()}
        base = trainers["fp32 eager"]
        for trainer in trainers.values():  # the same initial weights everywhere
            for name, net in trainer.method.networks.items():
                net.load_state_dict(base.method.networks[name].state_dict())
            trainer.ema.module.load_state_dict(base.ema.module.state_dict())
        samplers = {name: _sampler(t, t.cfg.train.precision, sample_batch) for name, t in trainers.items()}
        exact = samplers["fp32 eager"]()
        diffs = {name: float((fn() - exact).abs().max()) for name, fn in samplers.items()}  # same weights here
        batches = [base.source.next_batch()[0] for _ in range(gen_every)]
        # identical math in fp32: the library and the plain reference from the same weights and draws
        reference = Reference(base)
        lib, ref = library_cycle(base, batches, 0), reference.cycle(batches, 0)
        worst = max(abs(a[1] - b[1]) / max(1e-12, abs(b[1])) for a, b in zip(lib, ref))
        runners = {name: (lambda t=t: library_cycle(t, batches, t.step)) for name, t in trainers.items()}
        runners["plain reference (fp32)"] = lambda: reference.cycle(batches, reference.trainer.step)
        train = _alternate(runners, cycles, warm)
        sample = _alternate(samplers, cycles, warm)
    images = batch * gen_every
    return {
        "preset": preset,
        "batch": batch,
        "critic_steps_per_cycle": gen_every,
        "cycles_timed": cycles,
        "chosen": {"precision": chosen[0], "channels_last": chosen[1], "compile": chosen[2]},
        "parameters": base.param_counts,
        "images_per_cycle": images,
        "fp32_library_vs_reference_max_relative_loss_difference": worst,
        "training": _summarise(train, "fp32 eager", images),
        "sampling_batch": sample_batch,
        "sampling": _summarise(sample, "fp32 eager", sample_batch),
        "sampling_max_abs_difference_vs_fp32": diffs,
    }


def _alternate(runners: dict, cycles: int, warm: int) -> dict:
    times = {name: [] for name in runners}
    for _ in range(warm + cycles):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def _summarise(times: dict, baseline: str, images: int) -> dict:
    out = {}
    for name, ts in times.items():
        steady = ts[-(len(ts) - 2) :] if len(ts) > 2 else ts
        med = statistics.median(steady)
        out[name] = {
            "median_s": med,
            "fastest_s": min(steady),
            "images_per_s": images / med,
            "first_cycles_s": [round(t, 3) for t in ts[:2]],
            "compile_s": round(max(0.0, sum(ts[:2]) - 2 * med), 2),
        }
    base = out[baseline]["median_s"]
    for name in out:
        out[name]["speedup_vs_fp32_eager"] = base / out[name]["median_s"]
    return out


def profile_cycles(preset: str, batch: int, gen_every: int, rows: int = 14) -> dict:
    """torch.profiler tables (self CPU time) of one training cycle in fp32 eager and in the preset's settings."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    out = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, levers in (("fp32 eager", LEVERS["fp32 eager"]), ("chosen", preset_levers(preset))):
            trainer = make_trainer(preset, batch, gen_every, folder, *levers)
            batches = [trainer.source.next_batch()[0] for _ in range(gen_every)]
            library_cycle(trainer, batches, 0)
            with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
                library_cycle(trainer, batches, gen_every)
            out[name] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
    return out


def onednn_kernels() -> list[str]:
    """The oneDNN implementations a bf16 convolution forward and backward pick here (ONEDNN_VERBOSE)."""
    code = (
        "import torch\nnet = torch.nn.Conv2d(32, 32, 3, padding=1)\nx = torch.randn(8, 32, 14, 14, requires_grad=True)\n"
        "with torch.autocast('cpu', dtype=torch.bfloat16):\n    y = net(x)\ny.float().sum().backward()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**child_env(), "ONEDNN_VERBOSE": "1"},
        timeout=120,
    )
    kinds = set()
    for line in done.stdout.splitlines():
        parts = line.split(",")
        if line.startswith("onednn_verbose") and len(parts) > 6 and parts[3] in ("exec", "create:cache_miss"):
            kinds.add(f"{parts[4]} {parts[5]} {parts[6]}".strip())
    return sorted(kinds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="digits-smt,mnist-smt,mnist-smt-base,ring8")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--gen-every", type=int, default=3, help="K: critic steps per cycle")
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--sample-batch", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="batch 32, K=3, 8 timed cycles")
    parser.add_argument("--profile", action="store_true", help="add torch.profiler tables of the first preset")
    parser.add_argument("--out", default=None, help="JSON file to write (a .md summary is written beside it)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.gen_every, args.cycles = 32, 3, 8
    start, load_before = time.time(), os.getloadavg()[0]
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    runs = []
    for preset in presets:
        runs.append(measure(preset, args.batch, args.gen_every, args.cycles, args.sample_batch))
        print(
            f"{preset}: "
            + ", ".join(f"{k} {v['speedup_vs_fp32_eager']:.2f}x" for k, v in runs[-1]["training"].items()),
            flush=True,
        )
    chosen = {r["preset"]: r["training"]["chosen"]["median_s"] for r in runs}
    result = {
        "command": "PYTHONPATH=. python benchmarks/throughput.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "presets": runs,
        "speedup_vs_fp32_eager": {
            r["preset"]: round(r["training"]["chosen"]["speedup_vs_fp32_eager"], 3) for r in runs
        },
        "sampling_speedup_vs_fp32_eager": {
            r["preset"]: round(r["sampling"]["chosen"]["speedup_vs_fp32_eager"], 3) for r in runs
        },
        "speedup_vs_plain_reference": {
            r["preset"]: round(r["training"]["plain reference (fp32)"]["median_s"] / chosen[r["preset"]], 3)
            for r in runs
        },
        "onednn_bf16_kernels": onednn_kernels(),
    }
    if args.profile:
        result["profile"] = {presets[0]: profile_cycles(presets[0], args.batch, args.gen_every)}
    result["wall_seconds"] = round(time.time() - start, 1)
    result["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if args.out:
        write_json(args.out, result)
        with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
            fh.write(markdown(result))
    print(
        {
            k: result[k]
            for k in ("speedup_vs_fp32_eager", "sampling_speedup_vs_fp32_eager", "speedup_vs_plain_reference")
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
