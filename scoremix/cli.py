"""The `scoremix` command (also `python -m scoremix`, so `torchrun -m scoremix train ...` works)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .cli_common import make_output_folder
from .errors import ScoremixError

EXIT_USER_ERROR = 2


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


def cmd_train(args) -> int:
    from .config_loader import load_config
    from .distributed import DistInfo, cleanup, init_distributed

    overrides = list(args.overrides)
    if args.resume and args.out and os.path.isfile(os.path.join(args.out, "config.yaml")) and args.config is None:
        config_source = os.path.join(args.out, "config.yaml")  # a resumed run keeps its own config
    else:
        config_source = args.config
    if args.resume and not args.out and args.resume == "latest":
        raise ScoremixError("--resume latest needs --out RUN_FOLDER (the folder of the run to continue)")
    cfg = load_config(config_source, overrides)
    if args.dry_run:
        print(cfg.to_yaml().rstrip())
        _print_parameter_counts(cfg)
        return 0
    from .trainer import Trainer, resolve_device

    info = init_distributed(resolve_device(cfg.train.device, DistInfo()).type)
    run_dir = args.out or os.path.join("runs", f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    try:
        if info.is_main:
            print(cfg.to_yaml().rstrip())
        trainer = Trainer(cfg, run_dir, resume=args.resume, info=info)
        result = trainer.fit()
    finally:
        cleanup(info)
    if info.is_main and not result.get("preempted"):
        print(f"done: {run_dir} (samples in {run_dir}/samples, metrics in {run_dir}/metrics.json)")
    return 0


def _print_parameter_counts(cfg) -> None:
    import torch

    from .data import build_dataset
    from .data.toy import TOYS
    from .methods import build_method
    from .nets.build import count_parameters

    if cfg.data.source in TOYS:
        shape, classes = (2,), 0
    else:
        shape, classes = _image_shape(cfg)
    with torch.device("meta"):
        method = build_method(cfg, shape, classes)
    counts = {k: count_parameters(v) for k, v in method.networks.items()}
    print("# parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()) + f" (data shape {tuple(shape)})")
    del build_dataset


def _image_shape(cfg):
    """Data shape without reading the data when the config pins it; else peek at the dataset."""
    known = {
        "cifar10": (3, 32, 32, 10),
        "imagenet64": (3, 64, 64, 1000),
        "digits": (1, 8, 8, 10),
        "mnist": (1, 32, 32, 10),
    }
    d = cfg.data
    if d.source in known:
        c, h, w, k = known[d.source]
        res = d.resolution or h
        return (d.channels or c, res, res), (k if d.conditional else 0)
    from .data import build_dataset

    ds = build_dataset(d)
    return tuple(ds.shape), ds.num_classes if d.conditional else 0


def cmd_sample(args) -> int:
    import numpy as np
    import torch

    from .api import in_data_units
    from .plots import image_grid, samples_picture, save_picture
    from .sampling import load_generator, sample

    if args.n < 1:
        raise ScoremixError("--n must be at least 1")
    to_folder = args.out.endswith(("/", os.sep)) or os.path.isdir(args.out)
    if not (to_folder or args.out.endswith((".png", ".npz"))):
        raise ScoremixError(
            f"--out '{args.out}' must end in .png (picture) or .npz (arrays), or in / (a folder of PNGs)"
        )
    if args.batch < 1:
        raise ScoremixError(f"--batch must be at least 1, got {args.batch}")
    if not to_folder:
        make_output_folder(args.out, "--out")
    from .eval_protocol import resolve_device

    args.device = resolve_device(args.device)
    gen, cfg, shape, classes, step, which = load_generator(
        args.checkpoint, use_ema=args.ema, device=args.device, steps=args.steps
    )
    if args.label is not None and not 0 <= args.label < max(classes, 1):
        raise ScoremixError(
            f"--class {args.label} is out of range: this generator has "
            f"{'no classes' if classes == 0 else f'classes 0..{classes - 1}'}"
        )
    if len(shape) == 3 and not args.out.endswith(".png"):
        from .cli_eval import export_images

        del gen
        return export_images(args, args.label)
    if to_folder:
        raise ScoremixError(
            f"--out '{args.out}': a folder of PNGs needs an image generator; this one makes "
            f"{shape}-vectors, use .npz or .png"
        )
    labels = None
    if classes:
        labels = torch.full((args.n,), args.label) if args.label is not None else torch.arange(args.n) % classes
    x = sample(gen, args.n, shape, classes, seed=args.seed, labels=labels, device=args.device, precision=args.precision)
    x = in_data_units(x, args.checkpoint, cfg)  # points runs: the run's standardisation undone
    try:
        if args.out.endswith(".npz"):
            arrays = {"x": x.numpy()}
            if labels is not None:
                arrays["y"] = labels.numpy()
            np.savez(args.out, **arrays)
        else:
            save_picture(image_grid(x) if x.ndim == 4 else samples_picture(x), args.out)
    except OSError as err:
        raise ScoremixError(
            f"cannot write --out '{args.out}' ({err.strerror or err}); free disk space or pick a writable folder"
        ) from None
    heun = f", {gen.steps} Heun step{'s' * (gen.steps != 1)}" if hasattr(gen, "evaluations") else ""
    print(f"{args.n} samples ({which} weights, step {step}{heun}) -> {args.out}")
    return 0


def cmd_export(args) -> int:
    from .export import export, stderr_report, summary_line

    result = export(
        args.run, args.fmt, args.out, weights="ema" if args.ema else "raw", opset=args.opset, report=stderr_report
    )
    print(summary_line(result))
    return 0


def cmd_eval(args) -> int:
    import torch

    from .evaluate import Evaluator, generate_samples
    from .sampling import load_generators

    if args.action == "stats":
        from .cli_eval import cmd_eval_stats

        return cmd_eval_stats(args)
    if args.metrics or args.ref or args.run or args.n is not None:
        from .cli_eval import cmd_eval_protocol

        return cmd_eval_protocol(args)
    if not args.checkpoint:
        raise ScoremixError("eval needs --checkpoint RUN (or --run DIR with --metrics)")
    if args.samples is not None and args.samples < 10:
        raise ScoremixError(f"--samples must be at least 10 (nearest-neighbour metrics need them), got {args.samples}")
    if args.json:
        make_output_folder(args.json, "--json")
    from .eval_protocol import resolve_device

    generators, cfg, shape, classes, step = load_generators(
        args.checkpoint, device=resolve_device(args.device), steps=args.steps
    )
    evaluator = Evaluator(cfg.data, args.samples or cfg.eval.samples, cfg.eval.knn_k)
    results = {"step": step, "samples": evaluator.n}
    if any(hasattr(g, "evaluations") for g in generators.values()):  # a diffusion run: say how it sampled
        results["heun_steps"] = next(iter(generators.values())).steps
    for variant, gen in generators.items():
        fake = generate_samples(
            gen,
            evaluator.n,
            shape,
            classes,
            torch.device(resolve_device(args.device)),
            seed=777,
            precision=args.precision,
        )
        results[variant] = evaluator(fake)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        try:
            with open(args.json, "w") as fh:
                fh.write(text + "\n")
        except OSError as err:
            raise ScoremixError(f"cannot write --json '{args.json}' ({err.strerror or err})") from None
    return 0


def cmd_teacher(args) -> int:
    from .sampling import check_device
    from .teachers import load_teacher

    teacher = load_teacher(args.path, device=check_device(args.device))
    info = teacher.info
    rows = [
        ("kind", info.get("kind")),
        ("arch", info.get("arch")),
        ("precond", info.get("precond")),
        ("resolution", info.get("resolution")),
        ("channels", info.get("channels")),
        ("classes", info.get("num_classes")),
        ("parameters", f"{info.get('parameters', 0):,}"),
        ("sigma_data", info.get("sigma_data")),
    ]
    rows += [(k, info[k]) for k in ("weights", "step", "data", "source") if info.get(k) is not None]
    for key, value in rows:
        print(f"{key:12s} {'-' if value is None else value}")
    return 0


def cmd_presets(args) -> int:
    from .config import Config, all_keys
    from .presets import PRESETS, get_preset

    if args.reference:
        from .config_reference import write_reference

        return write_reference(args.reference)
    if args.show:
        print(get_preset(args.show).to_yaml().rstrip())
        return 0
    if args.keys:
        d = Config().to_dict()
        for key in all_keys():
            if key == "name":
                continue
            section, leaf = key.split(".")
            print(f"{key} = {d[section][leaf]!r}")
        return 0
    for name, fn in PRESETS.items():
        print(f"{name:18s} {(fn.__doc__ or '').strip().splitlines()[0]}")
    return 0


def cmd_data(args) -> int:
    from .data.prepare import guess_source, prepare_zip

    kind, path = guess_source(args.source) if args.kind is None else (args.kind, args.source)
    if kind in ("digits", "mnist"):
        path = None
    info = prepare_zip(
        kind, path, args.out, resolution=args.resolution, channels=args.channels, labels=not args.no_labels
    )
    c, h, w = info["shape"]
    print(
        f"wrote {info['images']} images ({c}x{h}x{w}, {info['num_classes']} classes) to {info['out']}; "
        f"train with data.source=zip data.path={info['out']}"
    )
    return 0


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def cmd_features(args) -> int:
    from .cli_eval import cmd_features as run

    return run(args)


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "presets": cmd_presets,
    "features": cmd_features,
    "teacher": cmd_teacher,
    "data": cmd_data,
    "export": cmd_export,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or args.command != "train"]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        return COMMANDS[args.command](args)
    except ScoremixError as err:
        if args.debug:
            raise
        print(f"error: {_one_line(str(err))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as err:  # the environment (disk, permissions) rather than the program: still one line
        if args.debug:
            raise
        print(f"error: {_one_line(str(err))} (run with --debug for a traceback)", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
