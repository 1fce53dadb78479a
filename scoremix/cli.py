"""The `scoremix` command (also `python -m scoremix`, so `torchrun -m scoremix train ...` works)."""

from __future__ import annotations

import json
import os
import sys
import time

from .cli_args import build_parser
from .cli_common import make_output_folder
from .errors import ScoremixError

EXIT_USER_ERROR = 2


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
    from .data_parallel import resolve_device
    from .trainer import Trainer

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
