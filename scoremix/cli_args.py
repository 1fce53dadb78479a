"""The `scoremix` command's arguments: one parser per subcommand and `build_parser` (cli.py runs them).

Imports nothing of scoremix, so the argument definitions load without torch or the commands' modules."""

from __future__ import annotations

import argparse


def _add_train(sub):
    p = sub.add_parser(
        "train",
        help="train a one-step generator",
        description="Train with a preset or YAML config; key=value overrides apply last "
        "(e.g. steps=5000 seed=1 score.hidden=128).",
    )
    p.add_argument("--config", "-c", default=None, help="preset name or YAML file (default: quickstart)")
    p.add_argument("overrides", nargs="*", help="key=value settings (see `scoremix presets --keys`)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<name>-<time>)")
    p.add_argument("--resume", default=None, help="'latest' (newest valid checkpoint in --out) or a state-*.pt file")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and parameter counts, then exit")


def _add_sample(sub):
    p = sub.add_parser("sample", help="draw samples from a trained generator")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="run folder, generator.safetensors, state-*.pt or a folder from `scoremix export --format folder`",
    )
    p.add_argument("--n", type=int, default=64, help="number of samples")
    p.add_argument(
        "--out",
        required=True,
        help="output .png (picture), .npz (images: uint8 NHWC 'arr_0' and labels "
        "'arr_1', EDM/ADM's convention; vectors: array 'x', labels 'y', for data.source=points runs in "
        "the data file's units, as scoremix.generate returns them) or DIR/ (one PNG per image)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--class", dest="label", type=int, default=None, help="class label for conditional generators")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ema", dest="ema", action="store_true", default=True, help="EMA weights (default)")
    g.add_argument("--raw", dest="ema", action="store_false", help="raw (non-EMA) weights")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--batch", type=int, default=250, help="samples per forward pass (images never depend on it)")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="diffusion runs only: Heun steps (2N-1 network evaluations; default: the run's eval.heun_steps)",
    )
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="bf16: run the network under bfloat16 autocast (CPU and CUDA; weights stay fp32)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines (on stderr)")


def _add_export(sub):
    p = sub.add_parser(
        "export",
        help="export a trained generator as an ONNX graph or a self-describing folder",
        description="onnx: one graph, noise[, labels] -> samples with a dynamic batch axis (diffusion "
        "runs: the denoiser alone, x, sigma[, labels] -> denoised), checked against "
        "PyTorch with ONNX Runtime (needs pip install 'scoremix[export]'). folder: "
        "config.json + model.safetensors, loadable by scoremix.load_sampler and "
        "`scoremix sample --checkpoint FOLDER`.",
    )
    p.add_argument("run", help="run folder, generator.safetensors, state-*.pt or an exported folder")
    p.add_argument("--format", dest="fmt", default="onnx", help="onnx (default) or folder")
    p.add_argument("--out", required=True, help="the .onnx file (--format onnx) or the folder (--format folder)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ema", dest="ema", action="store_true", default=True, help="EMA weights (default)")
    g.add_argument("--raw", dest="ema", action="store_false", help="raw (non-EMA) weights")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")


def _add_eval(sub):
    p = sub.add_parser(
        "eval",
        help="measure a trained generator against its data (raw and EMA)",
        description="Without --metrics/--ref/--run: the training-time metrics (toys exact, images in "
        "pixel space). With them: FID/KID/precision-recall by EDM's protocol. "
        "`scoremix eval stats --data SOURCE --out ref.npz` writes reference statistics.",
    )
    p.add_argument("action", nargs="?", choices=["stats"], help="stats: write reference statistics of --data to --out")
    p.add_argument("--checkpoint", default=None, help="run folder, generator.safetensors or state-*.pt")
    p.add_argument("--json", default=None, help="write the metrics to this file")
    p.add_argument("--samples", type=int, default=None, help="generated samples (default: the config's eval.samples)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--metrics", default=None, help="comma list of fid, kid, pr, is, classes (protocol mode)")
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="generated samples per weights (default 50000; results for other n are named for n: fid10k)",
    )
    p.add_argument("--ref", default=None, help="reference .npz (mu, sigma[, features]): `eval stats` or EDM's files")
    p.add_argument(
        "--detector",
        default=None,
        help="feature network: TorchScript Inception or a `features train` .safetensors (default: $SCOREMIX_DETECTOR)",
    )
    p.add_argument(
        "--data",
        default=None,
        help="dataset SOURCE[:PATH] for `eval stats`, or reference features "
        "for kid/pr (mnist, digits, cifar10:PATH, folder:PATH, npz:FILE, ...)",
    )
    p.add_argument("--resolution", type=int, default=None, help="resize --data images to this size")
    p.add_argument("--limit", type=int, default=None, help="use at most this many --data images")
    p.add_argument("--out", default=None, help="`eval stats`: the .npz to write")
    p.add_argument("--features", action="store_true", help="`eval stats`: also store the features (for kid/pr)")
    p.add_argument("--batch", type=int, default=250, help="images per forward pass (results never depend on it)")
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="base seed: sample i uses torch seed (seed * 2654435761 + i) mod 2**32 (seed 0: seeds 0..n-1, as EDM)",
    )
    p.add_argument("--weights", default="raw,ema", help="raw, ema or raw,ema")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (diffusion runs only)")
    p.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "bf16"),
        help="bf16: sample under bfloat16 autocast (CPU and CUDA; weights stay fp32)",
    )
    p.add_argument("--run", default=None, help="evaluate this run folder's checkpoints into its metrics.jsonl")
    p.add_argument("--every", type=int, default=0, help="with --run: only checkpoints whose step is a multiple of K")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_teacher(sub):
    p = sub.add_parser("teacher", help="inspect a diffusion teacher (for distillation)")
    tsub = p.add_subparsers(dest="teacher_command", required=True)
    q = tsub.add_parser("inspect", help="print a teacher's kind, architecture, resolution, classes and size")
    q.add_argument(
        "path",
        help="scoremix diffusion run (folder, state-*.pt, denoiser.safetensors), EDM .pkl, "
        "diffusers UNet2DModel folder, or 'analytic'",
    )
    q.add_argument("--device", default="cpu")


def _add_features(sub):
    p = sub.add_parser("features", help="local feature networks for FD/KID without downloads")
    fsub = p.add_subparsers(dest="features_command", required=True)
    t = fsub.add_parser(
        "train", help="train a small classifier on a labelled dataset; its penultimate layer gives features"
    )
    t.add_argument(
        "--data", required=True, help="SOURCE[:PATH] with labels: mnist, digits, folder:PATH, cifar10:PATH, ..."
    )
    t.add_argument("--out", required=True, help="the .safetensors to write")
    t.add_argument("--resolution", type=int, default=None, help="resize images to this size first")
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--held-out", type=float, default=0.1, help="share of images kept out to measure accuracy")
    t.add_argument("--seed", type=int, default=0)


def _add_data(sub):
    p = sub.add_parser("data", help="dataset tools")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    q = data_sub.add_parser("prepare", help="resize a dataset once into an EDM-style zip (PNGs + dataset.json)")
    q.add_argument("source", help="digits, mnist, or a path: folder of images, .npz/.npy, .zip, CIFAR-10 folder")
    q.add_argument("--out", required=True, help="the .zip to write")
    q.add_argument("--resolution", type=int, default=None, help="side length to resize to (default: native)")
    q.add_argument("--channels", type=int, default=None, choices=(1, 3), help="convert to 1 or 3 channels")
    q.add_argument("--source", dest="kind", default=None, help="the kind of SOURCE when its name does not say it")
    q.add_argument("--no-labels", action="store_true", help="drop the labels (dataset.json gets labels: null)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scoremix", description="One-step generators with Score-of-Mixture Training.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_sample(sub)
    _add_export(sub)
    _add_eval(sub)
    _add_teacher(sub)
    _add_features(sub)
    _add_data(sub)
    p = sub.add_parser("presets", help="list presets (or every config key with --keys)")
    p.add_argument("--keys", action="store_true", help="list every config key with its default")
    p.add_argument("--show", default=None, help="print one preset's full config")
    p.add_argument(
        "--reference",
        nargs="?",
        const="-",
        default=None,
        metavar="FILE",
        help="write the config reference page (keys, types, defaults, presets) to FILE, e.g. "
        "docs/config.md; without FILE print it",
    )
    return parser
