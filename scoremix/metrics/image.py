"""Sample-quality metrics on feature vectors (numpy, float64): pure functions, no files or networks.

frechet_distance        FID / FD between two Gaussians fitted to features (Heusel et al. 2017)
kernel_distance         unbiased KID: MMD^2 with the cubic polynomial kernel, over random subsets
                        (Binkowski et al. 2018), mean and standard deviation over the subsets
inception_score         exp(E_x KL(p(y|x) || p(y))) from logits, mean and std over splits
                        (Salimans et al. 2016)
precision_recall        improved precision / recall with k-NN balls, k = 3 (Kynkaanniemi et al. 2019),
                        and density / coverage (Naeem et al. 2020)
class_histogram_entropy entropy of the predicted-class histogram, for class-conditional models
"""

from __future__ import annotations

import math
import warnings

import numpy as np


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) in float64 of features (N, D); the covariance uses N - 1 as numpy.cov does."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got shape {x.shape}")
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (x.shape[0] - 1)
    return mu, sigma


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), the Frechet (2-Wasserstein) distance of two
    Gaussians. The matrix square root is scipy.linalg.sqrtm; when it is not finite (near-singular
    covariances) eps is added to both diagonals, and a small imaginary part left by round-off is dropped
    (a large one is an error)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.shape[0],) * 2:
        raise ValueError(
            f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    with warnings.catch_warnings():  # singular products are expected (fewer samples than dimensions)
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm left an imaginary component of {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the kernel k(a, b) = (a.b / d + 1)^3: within-set means leave out the diagonal."""
    m, n = x.shape[0], y.shape[0]
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    within_x = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    within_y = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(within_x + within_y - 2 * kxy.mean())


def kernel_distance(real, fake, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: (mean, std) of unbiased MMD^2 over `num_subsets` random subsets of min(subset_size, N) points
    drawn without replacement from each set; the subsets are the same for the same seed and sizes."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with the same D, got {real.shape} and {fake.shape}")
    m = min(subset_size, real.shape[0], fake.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples in each set")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            mmd2_unbiased(
                real[rng.choice(real.shape[0], m, replace=False)], fake[rng.choice(fake.shape[0], m, replace=False)]
            )
            for _ in range(num_subsets)
        ]
    )
    return float(values.mean()), float(values.std(ddof=1) if num_subsets > 1 else 0.0)


def inception_score(logits, splits: int = 10) -> tuple[float, float]:
    """(mean, std) over `splits` consecutive chunks of exp(E_x KL(p(y|x) || p(y))), p = softmax(logits)."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    scores = []
    for part in np.array_split(np.arange(z.shape[0]), splits):
        lp = log_p[part]
        p = np.exp(lp)
        log_marginal = np.log(p.mean(axis=0).clip(1e-300))
        scores.append(math.exp(float((p * (lp - log_marginal)).sum(axis=1).mean())))
    return float(np.mean(scores)), float(np.std(scores))


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * x @ y.T
    return np.maximum(d, 0.0)


def _kth_radius_sq(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
    out = np.empty(x.shape[0])
    for i in range(0, x.shape[0], chunk):
        d = _squared_distances(x[i : i + chunk], x)
        out[i : i + chunk] = np.partition(d, k, axis=1)[:, k]  # index k skips the point itself (distance 0)
    return out


def precision_recall(real, fake, k: int = 3, chunk: int = 2048) -> dict:
    """precision: share of fakes inside some real point's k-NN ball; recall: share of reals inside some
    fake point's ball; density: mean over fakes of (number of real balls containing it) / k; coverage:
    share of real balls that contain at least one fake."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples in each set")
    real_r, fake_r = _kth_radius_sq(real, k, chunk), _kth_radius_sq(fake, k, chunk)
    in_real = np.zeros(fake.shape[0], dtype=np.int64)  # how many real balls hold each fake
    real_covered = np.zeros(real.shape[0], dtype=bool)  # real balls holding at least one fake
    for i in range(0, fake.shape[0], chunk):
        d = _squared_distances(fake[i : i + chunk], real)
        inside = d <= real_r[None, :]
        in_real[i : i + chunk] = inside.sum(axis=1)
        real_covered |= inside.any(axis=0)
    recalled = np.zeros(real.shape[0], dtype=bool)
    for i in range(0, real.shape[0], chunk):
        d = _squared_distances(real[i : i + chunk], fake)
        recalled[i : i + chunk] = (d <= fake_r[None, :]).any(axis=1)
    return {
        "precision": float((in_real > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float(in_real.mean() / k),
        "coverage": float(real_covered.mean()),
    }


def class_histogram_entropy(predicted, num_classes: int) -> dict:
    """Entropy (nats) of the histogram of predicted classes, its ratio to log(num_classes) (1 = every
    class equally often), the number of classes seen and the histogram."""
    counts = np.bincount(np.asarray(predicted, np.int64), minlength=num_classes).astype(np.float64)
    freq = counts[counts > 0] / counts.sum()
    entropy = float(-(freq * np.log(freq)).sum())
    return {
        "class_entropy": entropy,
        "class_entropy_ratio": entropy / math.log(num_classes) if num_classes > 1 else 1.0,
        "classes_seen": int((counts > 0).sum()),
        "class_histogram": [int(c) for c in counts],
    }
