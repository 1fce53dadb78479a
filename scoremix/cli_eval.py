"""Command-line parts of evaluation: `eval` with --metrics (the protocol), `eval stats`, `eval --run`,
`features train` and image export for `sample`. Argument definitions live in cli_args.py."""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .cli_common import make_output_folder
from .errors import ConfigError, ScoremixError


def parse_data_source(spec: str) -> tuple[str, str | None]:
    """'mnist', 'digits', 'cifar10:PATH', 'folder:PATH', 'npz:FILE', 'zip:FILE', 'imagenet64:PATH'."""
    from .data.images import IMAGE_SOURCES

    name, _, path = spec.partition(":")
    name = name.strip().lower()
    if name not in IMAGE_SOURCES:
        raise ConfigError(
            f"--data {spec!r}: unknown source; use one of {', '.join(IMAGE_SOURCES)}, with :PATH "
            "where the source needs one (e.g. cifar10:/data/cifar-10-batches-py)"
        )
    return name, (path or None)


def load_data(spec: str, resolution: int | None = None, use_labels: bool = True):
    from .data.images import load_image_dataset

    name, path = parse_data_source(spec)
    return load_image_dataset(name, path=path, resolution=resolution, use_labels=use_labels)


def _progress(total: int, desc: str, enabled: bool):
    """A bar on a terminal, plain lines (no carriage returns) when stderr goes to a log."""
    from .progress import command_progress

    return command_progress(total, desc, enabled, unit="images")


def _extractor(args, device: str):
    from .features import load_extractor, resolve_detector_path

    path = resolve_detector_path(args.detector)
    if path is None:
        raise ConfigError(
            "no feature network: pass --detector PATH (a TorchScript Inception file or a "
            "`scoremix features train` .safetensors) or set SCOREMIX_DETECTOR"
        )
    return load_extractor(path, device)


def _write_json(path: str | None, payload: dict) -> None:
    text = json.dumps(payload, indent=2)
    print(text)
    if path:
        try:
            with open(path, "w") as fh:
                fh.write(text + "\n")
        except OSError as err:
            raise ScoremixError(f"cannot write --json '{path}' ({err.strerror or err})") from None


def cmd_eval_stats(args) -> int:
    """`scoremix eval stats --data SOURCE --out ref.npz [--detector PATH] [--features] [--limit N]`."""
    from .eval_protocol import dataset_features, resolve_device, save_reference

    if not args.data or not args.out:
        raise ConfigError("eval stats needs --data SOURCE and --out FILE.npz")
    if not args.out.endswith(".npz"):
        raise ConfigError(f"--out '{args.out}' must end in .npz (EDM's layout: mu, sigma)")
    device = resolve_device(args.device)
    extractor = _extractor(args, device)
    dataset = load_data(args.data, args.resolution, use_labels=False)
    total = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    t0 = time.time()
    bar = _progress(total, "reference", not args.no_progress)
    feats, _, _ = dataset_features(dataset, extractor, args.batch, args.limit, bar)
    bar.close()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    info = save_reference(args.out, feats, extractor.describe(), args.data, keep_features=args.features)
    info.update({"detector": extractor.describe(), "wall_seconds": round(time.time() - t0, 2)})
    if args.ref:  # compare with another reference, e.g. EDM's published statistics of the same data
        from .eval_protocol import load_reference
        from .metrics.image import feature_statistics, frechet_distance

        other = load_reference(args.ref)
        if other["mu"].shape != (extractor.dim,):
            raise ConfigError(
                f"--ref '{args.ref}' has {other['mu'].shape[0]}-d statistics, the detector {extractor.dim}-d"
            )
        info["fd_to_ref"] = {
            "ref": args.ref,
            "ref_sha256": other["sha256"],
            "value": frechet_distance(*feature_statistics(feats), other["mu"], other["sigma"]),
        }
    print(json.dumps(info, indent=2))
    return 0


def _reference(args, extractor, device: str, metrics) -> dict:
    from .eval_protocol import check_reference, dataset_features, load_reference
    from .metrics.image import feature_statistics

    ref = load_reference(args.ref) if args.ref else None
    if ref is not None:
        check_reference(ref, extractor)
    need_features = any(m in metrics for m in ("kid", "pr"))
    if args.data and (ref is None or (need_features and "features" not in ref)):
        dataset = load_data(args.data, args.resolution, use_labels=False)
        bar = _progress(
            len(dataset) if args.limit is None else min(args.limit, len(dataset)), "reference", not args.no_progress
        )
        feats, _, _ = dataset_features(dataset, extractor, args.batch, args.limit, bar)
        bar.close()
        if ref is None:
            mu, sigma = feature_statistics(feats)
            ref = {
                "mu": mu,
                "sigma": sigma,
                "path": None,
                "sha256": None,
                "source": args.data,
                "n": int(feats.shape[0]),
                "detector_sha256": extractor.sha256,
            }
        ref["features"] = feats
    if ref is None:
        raise ConfigError(
            "no reference: pass --ref ref.npz (from `scoremix eval stats` or EDM's published files) or --data SOURCE"
        )
    return ref


def cmd_eval_protocol(args) -> int:
    """`scoremix eval --checkpoint RUN --metrics fid,kid,pr --n N --ref ref.npz --detector PATH` and
    `scoremix eval --run DIR --every K ...`."""
    from .eval_history import append_jsonl, evaluation_key, plot_metrics, read_done, run_checkpoints
    from .eval_protocol import evaluate_samplers, load_samplers, parse_metrics, resolve_device

    if bool(args.checkpoint) == bool(args.run):
        raise ConfigError("pass exactly one of --checkpoint RUN_OR_FILE and --run RUN_FOLDER")
    metrics = parse_metrics(args.metrics or "fid")
    n = args.n if args.n is not None else 50_000
    if n < 10:
        raise ConfigError(f"--n must be at least 10, got {n}")
    if args.batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {args.batch}")
    weights = [w.strip() for w in args.weights.split(",") if w.strip()]
    if not weights or any(w not in ("raw", "ema") for w in weights):
        raise ConfigError(f"--weights {args.weights!r}: use raw, ema or raw,ema")
    if args.json:
        make_output_folder(args.json, "--json")
    device = resolve_device(args.device)
    extractor = _extractor(args, device)
    ref = _reference(args, extractor, device, metrics)
    progress = not args.no_progress
    if args.checkpoint:
        samplers, info = load_samplers(args.checkpoint, weights, device, args.steps)
        result = evaluate_samplers(
            samplers,
            info,
            extractor,
            ref,
            metrics,
            n,
            args.seed,
            args.batch,
            device,
            progress,
            precision=getattr(args, "precision", "fp32"),
        )
        _write_json(args.json, result)
        return 0
    if not os.path.isdir(args.run):
        raise ConfigError(f"--run '{args.run}' is not a folder; pass a run folder made by `scoremix train`")
    jsonl = os.path.join(args.run, "metrics.jsonl")
    key = evaluation_key(
        metrics, n, args.seed, extractor.sha256, ref.get("sha256") or str(ref.get("source")), args.steps
    )
    done = read_done(jsonl)
    evaluated = []
    for step, path in run_checkpoints(args.run, args.every):
        if (step, key) in done:
            continue
        try:
            samplers, info = load_samplers(path, weights, device, args.steps)
        except ScoremixError as err:  # pruned or being written while training continues
            print(f"skipping step {step}: {err}")
            continue
        result = evaluate_samplers(
            samplers,
            info,
            extractor,
            ref,
            metrics,
            n,
            args.seed,
            args.batch,
            device,
            progress,
            precision=getattr(args, "precision", "fp32"),
        )
        result["key"] = key
        append_jsonl(jsonl, result)
        evaluated.append(step)
        print(json.dumps({"step": step, **{w: v for w, v in result["weights"].items()}}))
    picture = plot_metrics(jsonl, os.path.join(args.run, "metrics.png")) if os.path.isfile(jsonl) else None
    print(
        f"evaluated steps {evaluated or 'none (all done already)'} -> {jsonl}"
        + (f"; plot {picture}" if picture else "")
    )
    return 0


def cmd_features(args) -> int:
    """`scoremix features train --data SOURCE --out FILE.safetensors`."""
    from .features.local import dataset_arrays, save_local_features, train_local_features

    if args.features_command != "train":
        raise ConfigError("usage: scoremix features train --data SOURCE --out FILE.safetensors")
    if not args.out.endswith(".safetensors"):
        raise ConfigError(f"--out '{args.out}' must end in .safetensors")
    if not 0 < args.held_out < 1:
        raise ConfigError(f"--held-out must be a fraction in (0, 1), got {args.held_out}")
    dataset = load_data(args.data, args.resolution, use_labels=True)
    if dataset.num_classes < 2:
        raise ConfigError(
            f"--data {args.data!r} has no class labels; a feature network is trained as a classifier "
            "(a folder needs one sub-folder per class or a dataset.json)"
        )
    x, y = dataset_arrays(dataset)
    net = train_local_features(x, y, args.data, args.held_out, args.epochs, args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_local_features(net, args.out)
    print(json.dumps({"out": args.out, **net.meta}, indent=2))
    return 0


def export_images(args, classes_label) -> int:
    """`scoremix sample` for image generators: DIR/ -> PNGs (and dataset.json with labels), FILE.npz ->
    uint8 NHWC array `arr_0` (+ `arr_1` labels), EDM / ADM's convention; per-sample seeds."""
    from PIL import Image

    from .eval_protocol import generate_uint8, load_samplers, resolve_device

    device = resolve_device(args.device)
    samplers, info = load_samplers(args.checkpoint, ("raw", "ema"), device, getattr(args, "steps", None))
    which = "ema" if args.ema and "ema" in samplers else "raw"  # a run without EMA falls back to raw
    classes = info["num_classes"]
    to_folder = not args.out.endswith(".npz")
    if to_folder:
        os.makedirs(args.out, exist_ok=True)
    arrays, labels_out, names = [], [], []
    bar = _progress(args.n, f"sample ({which} weights)", not getattr(args, "no_progress", False))
    for idx, images, labels in generate_uint8(
        samplers[which],
        args.n,
        info["shape"],
        classes,
        args.seed,
        args.batch,
        device,
        progress=bar,
        label=classes_label,
        precision=getattr(args, "precision", "fp32"),
    ):
        hwc = images.permute(0, 2, 3, 1).numpy()
        if to_folder:
            for row, i in enumerate(idx):
                name = f"{i:06d}.png"
                Image.fromarray(hwc[row, :, :, 0] if hwc.shape[3] == 1 else hwc[row]).save(os.path.join(args.out, name))
                names.append(name)
        else:
            arrays.append(hwc)
        if labels is not None:
            labels_out.append(labels.numpy())
    bar.close()
    labels_all = np.concatenate(labels_out) if labels_out else None
    if to_folder:
        if labels_all is not None:
            with open(os.path.join(args.out, "dataset.json"), "w") as fh:
                json.dump({"labels": [[name, int(c)] for name, c in zip(names, labels_all)]}, fh)
    else:
        import io

        from .checkpoint import atomic_write_bytes

        buf = io.BytesIO()
        payload = {"arr_0": np.concatenate(arrays)}
        if labels_all is not None:
            payload["arr_1"] = labels_all
        np.savez(buf, **payload)
        atomic_write_bytes(args.out, buf.getvalue())
    print(f"{args.n} samples ({which} weights, step {info['step']}, per-sample seeds, base {args.seed}) -> {args.out}")
    return 0
