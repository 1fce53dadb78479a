"""Image metrics on feature arrays: closed forms in float64, brute-force formulas, unbiasedness."""

import math

import numpy as np
import pytest

pytest.importorskip("scipy")

from scoremix.metrics.image import (  # noqa: E402
    class_histogram_entropy,
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_distance,
    mmd2_unbiased,
    precision_recall,
)


def _random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_distance_matches_the_closed_form_for_commuting_gaussians():
    # diagonal covariances: FD = |mu1 - mu2|^2 + sum (sqrt(s1) - sqrt(s2))^2
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_general_covariances_agrees_with_the_eigenvalue_form():
    # tr((S1 S2)^(1/2)) = sum of sqrt of the eigenvalues of S1 S2 (real, positive for SPD S1, S2)
    rng = np.random.default_rng(1)
    d = 12
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    eig = np.linalg.eigvals(s1 @ s2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum()
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    # 1-D: FD = (m1 - m2)^2 + (sd1 - sd2)^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0, rel=1e-12)


def test_frechet_distance_survives_singular_covariances():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 40))  # 5 samples in 40-d: rank-4 covariances
    y = rng.standard_normal((5, 40)) + 1.0
    fd = frechet_distance(*feature_statistics(x), *feature_statistics(y))
    assert math.isfinite(fd) and fd > 30  # the mean shift alone gives 40


def test_feature_statistics_are_float64_mean_and_unbiased_covariance():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)


def _mmd2_brute_force(x, y):
    k = lambda a, b: (a @ b / x.shape[1] + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_unbiased_mmd_matches_the_brute_force_formula():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((9, 5)), rng.standard_normal((9, 5)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_brute_force(x, y), rel=1e-12)


def test_kid_is_zero_in_expectation_on_identical_distributions_and_positive_otherwise():
    rng = np.random.default_rng(5)
    d = 8
    # many independent pairs from one law: the unbiased estimator averages to 0 within its standard error
    values = [mmd2_unbiased(rng.standard_normal((40, d)), rng.standard_normal((40, d))) for _ in range(300)]
    mean, se = np.mean(values), np.std(values) / np.sqrt(len(values))
    assert abs(mean) < 3 * se
    assert min(values) < 0  # an unbiased estimator of 0 must go negative
    shifted = kernel_distance(
        rng.standard_normal((400, d)), rng.standard_normal((400, d)) + 0.5, num_subsets=20, subset_size=100
    )
    assert shifted[0] > 10 * shifted[1] / np.sqrt(20)


def test_kid_subsets_are_seeded():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((300, 4)), rng.standard_normal((300, 4))
    assert kernel_distance(a, b, 10, 50, seed=1) == kernel_distance(a, b, 10, 50, seed=1)
    assert kernel_distance(a, b, 10, 50, seed=1) != kernel_distance(a, b, 10, 50, seed=2)


def test_inception_score_of_confident_balanced_predictions_is_the_class_count():
    logits = np.full((100, 10), -50.0)
    logits[np.arange(100), np.arange(100) % 10] = 50.0
    mean, std = inception_score(logits, splits=1)
    assert mean == pytest.approx(10.0, rel=1e-9) and std == 0.0
    assert inception_score(np.zeros((40, 10)), splits=2)[0] == pytest.approx(1.0, abs=1e-12)
    # two classes, p(y|x) in {(0.8, 0.2), (0.2, 0.8)}: IS = exp(0.8 ln 1.6 + 0.2 ln 0.4)
    two = np.log(np.array([[0.8, 0.2], [0.2, 0.8]] * 10))
    assert inception_score(two, splits=1)[0] == pytest.approx(
        math.exp(0.8 * math.log(1.6) + 0.2 * math.log(0.4)), rel=1e-12
    )


def test_precision_recall_density_coverage_on_constructed_sets():
    rng = np.random.default_rng(7)
    real = rng.standard_normal((300, 2))
    same = precision_recall(real, real.copy(), k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    assert same["density"] >= 1.0  # each point sits in its own ball and its k neighbours' balls
    far = precision_recall(real, real + 100.0, k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # fakes collapsed onto one real point: precise but no recall, coverage about 1/300 of the balls
    collapsed = precision_recall(real, np.repeat(real[:1], 50, axis=0) + 1e-9, k=3)
    assert collapsed["precision"] == 1.0 and collapsed["recall"] < 0.05 and collapsed["coverage"] < 0.05


def test_precision_recall_chunking_does_not_change_results():
    rng = np.random.default_rng(8)
    a, b = rng.standard_normal((120, 3)), rng.standard_normal((90, 3)) * 1.3
    assert precision_recall(a, b, 3, chunk=7) == precision_recall(a, b, 3, chunk=4096)


def test_class_histogram_entropy():
    balanced = class_histogram_entropy(np.arange(100) % 10, 10)
    assert balanced["class_entropy"] == pytest.approx(math.log(10), rel=1e-12)
    assert balanced["class_entropy_ratio"] == pytest.approx(1.0, rel=1e-12) and balanced["classes_seen"] == 10
    one = class_histogram_entropy(np.full(30, 4), 10)
    assert one["class_entropy"] == 0.0 and one["classes_seen"] == 1 and one["class_histogram"][4] == 30


def _prdc_brute_force(real, fake, k):
    def radii(x):
        return [sorted(np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i)[k - 1] for i in range(len(x))]

    r_real, r_fake = radii(real), radii(fake)
    inside = [[np.linalg.norm(f - r) <= rr for r, rr in zip(real, r_real)] for f in fake]
    precision = np.mean([any(row) for row in inside])
    recall = np.mean([any(np.linalg.norm(r - f) <= rf for f, rf in zip(fake, r_fake)) for r in real])
    density = sum(sum(row) for row in inside) / (k * len(fake))
    coverage = np.mean([any(inside[j][i] for j in range(len(fake))) for i in range(len(real))])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def test_precision_recall_density_coverage_match_their_definitions():
    rng = np.random.default_rng(9)
    real, fake = rng.standard_normal((40, 3)), rng.standard_normal((30, 3)) * 1.2 + 0.3
    fast, slow = precision_recall(real, fake, k=3), _prdc_brute_force(real, fake, 3)
    for key in slow:
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key
