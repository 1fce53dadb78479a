"""The digit classifier scores: closed forms on constructed probabilities, and a classifier that
actually recognises real MNIST digits (so the scores of generated digits mean something)."""

import math

import pytest
import torch

from scoremix.data.images import load_mnist_dataset
from scoremix.metrics.digits import class_probabilities, digit_scores, train_digit_classifier


def test_confident_and_balanced_predictions_score_ten():
    probs = torch.eye(10, dtype=torch.float64).repeat(7, 1)
    s = digit_scores(probs)
    assert s["confident"] == 1.0 and s["mean_top_prob"] == 1.0
    assert s["class_coverage"] == pytest.approx(10.0, rel=1e-12)
    assert s["digit_score"] == pytest.approx(10.0, rel=1e-12)
    assert s["label_histogram"] == [7] * 10


def test_one_class_for_every_sample_scores_one():
    probs = torch.zeros(20, 10, dtype=torch.float64)
    probs[:, 3] = 1.0
    s = digit_scores(probs)
    assert s["class_coverage"] == pytest.approx(1.0, abs=1e-12)
    assert s["digit_score"] == pytest.approx(1.0, abs=1e-12)
    assert s["confident"] == 1.0


def test_undecided_predictions_are_not_confident():
    s = digit_scores(torch.full((50, 10), 0.1, dtype=torch.float64))
    assert s["confident"] == 0.0
    assert s["mean_top_prob"] == pytest.approx(0.1, abs=1e-12)
    assert s["digit_score"] == pytest.approx(1.0, abs=1e-12)


def test_digit_score_matches_its_formula_on_two_classes():
    # half the samples (0.8, 0.2), half (0.2, 0.8): marginal (0.5, 0.5), KL = 0.8 ln 1.6 + 0.2 ln 0.4
    probs = torch.tensor([[0.8, 0.2], [0.2, 0.8]], dtype=torch.float64).repeat(5, 1)
    s = digit_scores(probs, threshold=0.75)
    assert s["digit_score"] == pytest.approx(math.exp(0.8 * math.log(1.6) + 0.2 * math.log(0.4)), rel=1e-12)
    assert s["confident"] == 1.0 and s["class_coverage"] == pytest.approx(2.0, rel=1e-12)


def test_classifier_recognises_held_out_real_digits():
    data = load_mnist_dataset(resolution=28)
    x, y = data.get(list(range(len(data))))
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1))
    train, test = order[:2000], order[4500:]
    model = train_digit_classifier(x[train], y[train], epochs=4, lr=2e-3)
    probs = class_probabilities(model, x[test])
    accuracy = float((probs.argmax(1) == y[test]).double().mean())
    assert accuracy > 0.9
    scores = digit_scores(probs)
    assert scores["class_coverage"] > 9.5
    # pure noise is not a digit
    noise = class_probabilities(model, torch.rand(200, 1, 28, 28) * 2 - 1)
    assert digit_scores(noise)["digit_score"] < scores["digit_score"] / 2
