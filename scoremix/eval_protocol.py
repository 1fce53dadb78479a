"""The image-evaluation protocol behind `scoremix eval --metrics ...` (EDM's, where EDM defines one).

* Noise: sample i (i = 0..n-1) draws its z from its own torch.Generator seeded with
  (seed * 2654435761 + i) mod 2**32, so a sample does not depend on the batch size or on how many
  samples are drawn (with seed 0, sample i uses seed i, as EDM's `generate.py --seeds=0-49999`).
* Labels: sample i of a class-conditional generator gets class i % C (balanced classes).
* Quantisation: images in [-1, 1] -> uint8 as EDM does, (x * 127.5 + 128).clip(0, 255).to(uint8)
  (truncation, i.e. rounding half up), before any feature network sees them.
* Names: a metric measured on n samples is named for n: `fid` only when n = 50,000; otherwise the
  count in thousands when n is a multiple of 1,000 (`fid10k`, `kid1k`), else the count (`fid500`).
  With a local feature network the Frechet distance is `fd` and KID is `kd`, never `fid` / `kid`.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from .errors import ConfigError
from .metrics import image as image_metrics

FULL_N = 50_000
METRICS = ("fid", "kid", "pr", "is", "classes")


# ---------------------------------------------------------------------------------------------------
# Noise, labels, quantisation
# ---------------------------------------------------------------------------------------------------

SEED_STRIDE = 2654435761  # odd, about 2**32 / golden ratio: base seeds land far apart


def per_sample_seed(seed: int, index: int) -> int:
    """The torch seed of sample `index`: (seed * 2654435761 + index) mod 2**32 (torch's CPU generator
    keeps 32 bits of a seed); base seed 0 gives seeds 0..n-1 as EDM's `--seeds=0-49999`."""
    return (int(seed) * SEED_STRIDE + int(index)) % 2**32


def sample_noise(indices, shape: tuple, seed: int) -> torch.Tensor:
    """z for the given sample indices, each from its own generator (independent of batching)."""
    out = torch.empty(len(indices), *shape)
    for row, i in enumerate(indices):
        out[row] = torch.randn(*shape, generator=torch.Generator().manual_seed(per_sample_seed(seed, i)))
    return out


def class_labels(indices, num_classes: int) -> torch.Tensor | None:
    return torch.as_tensor(list(indices), dtype=torch.long) % num_classes if num_classes > 0 else None


def quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """EDM's conversion of images in [-1, 1] to uint8 (NaN becomes 0)."""
    x = torch.nan_to_num(x.detach().float(), nan=-128 / 127.5)
    return (x * 127.5 + 128).clip(0, 255).to(torch.uint8)


def metric_suffix(n: int) -> str:
    if n == FULL_N:
        return ""
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def metric_names(kind: str) -> dict:
    """Base names per detector kind: Inception gives fid/kid/is, a local network fd/kd/clf_is."""
    if kind == "inception":
        return {"fid": "fid", "kid": "kid", "is": "is"}
    return {"fid": "fd", "kid": "kd", "is": "clf_is"}


def parse_metrics(text: str) -> list[str]:
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ConfigError(
            f"--metrics {text!r}: unknown {', '.join(bad) or 'empty list'}; choose from {', '.join(METRICS)}"
        )
    return names


# ---------------------------------------------------------------------------------------------------
# Where eval gets "a thing that maps (z, labels) to images"
# ---------------------------------------------------------------------------------------------------


def load_samplers(checkpoint: str, weights=("raw", "ema"), device="cpu", steps: int | None = None):
    """({weights: callable(z, labels) -> images in [-1, 1]}, info) for a run folder or checkpoint file;
    info has shape, num_classes, step, config and the resolved checkpoint path. The one place where a
    diffusion run's multi-step sampler (`steps`) plugs in."""
    from .sampling import load_generators, resolve_checkpoint

    # A diffusion run comes back inside the Heun sampler (steps: its eval.heun_steps when None); a one-step
    # generator refuses `steps` with one line.
    generators, cfg, shape, classes, step = load_generators(checkpoint, tuple(weights), device, steps=steps)
    missing = [w for w in weights if w not in generators]
    if missing == list(weights):
        raise ConfigError(f"'{checkpoint}' has no {'/'.join(weights)} weights")
    samplers = {}
    for which, generator in generators.items():
        samplers[which] = _one_step(generator)
    info = {
        "shape": tuple(shape),
        "num_classes": classes,
        "step": step,
        "config": cfg,
        "path": resolve_checkpoint(checkpoint),
        "missing_weights": missing,
        "heun_steps": next((getattr(g, "steps", None) for g in generators.values()), None),
    }  # None: one step
    return samplers, info


def _one_step(generator):
    @torch.no_grad()
    def sample(z, labels=None):
        return generator(z, labels=labels)

    return sample


@torch.no_grad()
def generate_uint8(
    sampler,
    n: int,
    shape: tuple,
    num_classes: int,
    seed: int = 0,
    batch: int = 250,
    device="cpu",
    progress=None,
    start: int = 0,
    label: int | None = None,
    precision: str = "fp32",
):
    """Yield (indices, uint8 images (B, C, H, W) on the CPU, labels or None) for samples start..start+n-1;
    `label` gives every sample that class instead of i % C; precision=bf16 samples under bfloat16 autocast."""
    from .precision import autocast

    device = torch.device(device)
    for i in range(start, start + n, batch):
        idx = list(range(i, min(i + batch, start + n)))
        z = sample_noise(idx, shape, seed).to(device)
        labels = class_labels(idx, num_classes)
        if labels is not None and label is not None:
            labels = torch.full_like(labels, label)
        with autocast(device, precision):
            x = sampler(z, None if labels is None else labels.to(device)).float()
        yield idx, quantize_uint8(x).cpu(), labels
        if progress is not None:
            progress.update(len(idx))


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    from .sampling import check_device

    return str(check_device(name))


# ---------------------------------------------------------------------------------------------------
# Reference statistics (EDM's .npz layout: mu, sigma)
# ---------------------------------------------------------------------------------------------------


def save_reference(path: str, features: np.ndarray, detector: dict, source: str, keep_features: bool = False) -> dict:
    """Write mu (D,) and sigma (D, D) float64 as EDM does, plus n, source and the detector's name and
    SHA-256 (extra keys that EDM's loader ignores); `keep_features` also stores the features (float32)
    for KID and precision/recall."""
    from .checkpoint import atomic_write_bytes

    mu, sigma = image_metrics.feature_statistics(features)
    arrays = {
        "mu": mu,
        "sigma": sigma,
        "n": np.array(features.shape[0]),
        "source": np.array(source),
        "detector": np.array(detector.get("name", "")),
        "detector_sha256": np.array(detector.get("sha256", "")),
    }
    if keep_features:
        arrays["features"] = np.asarray(features, np.float32)
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    return {"path": path, "n": int(features.shape[0]), "feature_dim": int(mu.shape[0])}


def load_reference(path: str) -> dict:
    """mu, sigma (float64) and, when present, features, n, source, detector_sha256; also the file's SHA-256.
    Reads EDM's published files (keys mu, sigma) as they are; never unpickles."""
    from .features import file_sha256

    if not os.path.isfile(path):
        raise ConfigError(
            f"--ref '{path}' does not exist; make one with `scoremix eval stats --data SOURCE --out FILE`"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            files = set(data.files)
            if not {"mu", "sigma"} <= files:
                raise ConfigError(f"--ref '{path}' has no mu/sigma arrays (keys: {', '.join(sorted(files))})")
            ref = {"mu": data["mu"].astype(np.float64), "sigma": data["sigma"].astype(np.float64)}
            for key in ("features", "n", "source", "detector", "detector_sha256"):
                if key in files:
                    ref[key] = data[key] if key == "features" else data[key].item()
    except (OSError, ValueError) as err:
        raise ConfigError(f"--ref '{path}' is not a readable .npz file ({str(err).splitlines()[0][:120]})") from None
    d = ref["mu"].shape[0]
    if ref["mu"].ndim != 1 or ref["sigma"].shape != (d, d):
        raise ConfigError(f"--ref '{path}': mu {ref['mu'].shape} and sigma {ref['sigma'].shape} do not fit together")
    ref["sha256"] = file_sha256(path)
    ref["path"] = os.path.abspath(path)
    return ref


def check_reference(ref: dict, extractor) -> None:
    if ref["mu"].shape[0] != extractor.dim:
        raise ConfigError(
            f"--ref has {ref['mu'].shape[0]}-d statistics but the detector gives {extractor.dim}-d "
            "features; use the detector the reference was made with"
        )
    made_with = ref.get("detector_sha256")
    if made_with and extractor.sha256 and made_with != extractor.sha256:
        raise ConfigError(
            f"--ref was made with detector {ref.get('detector', '?')} (sha256 {made_with[:12]}...), "
            f"not with {extractor.name} ({extractor.sha256[:12]}...); recompute it with `scoremix eval stats`"
        )


def dataset_features(dataset, extractor, batch: int = 250, limit: int | None = None, progress=None):
    """(features, logits or None, labels or None) of the first `limit` images of an ImageDataset
    (all when None), converted back to uint8 exactly."""
    from .data.images import tensor_to_uint8

    n = len(dataset) if limit is None else min(limit, len(dataset))
    feats, logits, labels = [], [], []
    for i in range(0, n, batch):
        x, y = dataset.get(np.arange(i, min(i + batch, n)))
        f, lg = extractor(tensor_to_uint8(x))
        feats.append(f)
        if lg is not None:
            logits.append(lg)
        if y is not None:
            labels.append(y.numpy())
        if progress is not None:
            progress.update(x.shape[0])
    return (
        np.concatenate(feats),
        np.concatenate(logits) if logits else None,
        np.concatenate(labels) if labels else None,
    )


# ---------------------------------------------------------------------------------------------------
# Metrics of one sampler
# ---------------------------------------------------------------------------------------------------


def compute_metrics(
    metrics,
    fake_features,
    fake_logits,
    ref: dict,
    kind: str,
    n: int,
    intended_labels=None,
    num_classes: int = 0,
    kid_subsets: int = 100,
    k: int = 3,
) -> dict:
    """The requested metrics, named by the protocol's rule, from features of n generated samples."""
    names, tag = metric_names(kind), metric_suffix(n)
    out = {}
    if "fid" in metrics:
        mu, sigma = image_metrics.feature_statistics(fake_features)
        out[names["fid"] + tag] = image_metrics.frechet_distance(mu, sigma, ref["mu"], ref["sigma"])
    if "kid" in metrics or "pr" in metrics:
        if "features" not in ref:
            raise ConfigError(
                "kid and pr need reference features: make --ref with `scoremix eval stats --features`, "
                "or pass --data SOURCE"
            )
    if "kid" in metrics:
        mean, std = image_metrics.kernel_distance(ref["features"], fake_features, num_subsets=kid_subsets)
        out[names["kid"] + tag], out[names["kid"] + tag + "_std"] = mean, std
    if "pr" in metrics:
        for key, value in image_metrics.precision_recall(ref["features"], fake_features, k=k).items():
            out[key + tag] = value
    if "is" in metrics or "classes" in metrics:
        if fake_logits is None:
            raise ConfigError(
                "is / classes need a detector with logits (NVIDIA's Inception TorchScript or a local "
                "feature network); default_1.pt has features only"
            )
    if "is" in metrics:
        out[names["is"] + tag], out[names["is"] + tag + "_std"] = image_metrics.inception_score(fake_logits)
    if "classes" in metrics:
        predicted = fake_logits.argmax(axis=1)
        hist = image_metrics.class_histogram_entropy(predicted, fake_logits.shape[1])
        out.update({key + (tag if key != "class_histogram" else ""): v for key, v in hist.items()})
        if intended_labels is not None and num_classes == fake_logits.shape[1]:
            out["class_accuracy" + tag] = float((predicted == np.asarray(intended_labels)).mean())
    return out


def evaluate_samplers(
    samplers: dict,
    info: dict,
    extractor,
    ref: dict,
    metrics,
    n: int,
    seed: int = 0,
    batch: int = 250,
    device="cpu",
    progress: bool = True,
    precision: str = "fp32",
) -> dict:
    """Generate n samples per weights variant, extract features, compute metrics; one JSON-ready dict.
    Progress goes to stderr: a bar on a terminal, plain lines in a log."""
    from .progress import command_progress

    shape, classes = info["shape"], info["num_classes"]
    result = {
        "checkpoint": info["path"],
        "step": info["step"],
        "n": n,
        "seed": seed,
        "seeds": f"sample i uses torch.Generator().manual_seed(({seed} * {SEED_STRIDE} + i) mod 2**32), i = 0..{n - 1}",
        "labels": f"i % {classes}" if classes else None,
        "quantisation": "(x * 127.5 + 128).clip(0, 255).to(uint8)",
        "naming": "fid/kid only for n = 50000; otherwise suffixed by n (fid10k, kid1k, fid500); "
        "local feature networks give fd/kd",
        "metrics": list(metrics),
        "detector": extractor.describe(),
        "reference": {k: ref.get(k) for k in ("path", "sha256", "n", "source", "detector", "detector_sha256")},
        "batch": batch,
        "device": str(device),
        "precision": precision,
        "weights": {},
        "wall_seconds": {},
        "heun_steps": info.get("heun_steps"),
    }  # diffusion runs: Heun steps per sample (2N-1 evaluations)
    if info.get("missing_weights"):
        result["weights_missing"] = info["missing_weights"]  # e.g. ema asked for, but the run had no EMA
    for which, sampler in samplers.items():
        t0 = time.time()
        bar = command_progress(n, f"{which} step {info['step']}", progress, unit="images")
        feats, logits = [], []
        for _, images, _ in generate_uint8(sampler, n, shape, classes, seed, batch, device, bar, precision=precision):
            f, lg = extractor(images)
            feats.append(f)
            if lg is not None:
                logits.append(lg)
        bar.close()
        fake_logits = np.concatenate(logits) if logits else None
        labels = class_labels(range(n), classes)
        result["weights"][which] = compute_metrics(
            metrics,
            np.concatenate(feats),
            fake_logits,
            ref,
            extractor.kind,
            n,
            None if labels is None else labels.numpy(),
            classes,
        )
        result["wall_seconds"][which] = round(time.time() - t0, 2)
    return result
