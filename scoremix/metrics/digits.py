"""Are generated digits recognisable? A small CNN classifier trained on real digits scores samples.

Scores (from the classifier's class probabilities p(y|x) on each sample):
  confident      fraction of samples whose top class has probability >= threshold (0.9)
  mean_top_prob  average top-class probability
  class_coverage exp(entropy of the predicted-label histogram): 10 when all classes are equally
                 frequent, 1 when every sample gets the same label
  digit_score    exp(E_x KL(p(y|x) || p(y))), the Inception-Score formula with this classifier (1..10)
The same scores on held-out real digits give the reference a generator should approach.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class DigitClassifier(nn.Module):
    """Two conv blocks and two linear layers; works at any resolution >= 8 (adaptive pooling)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(7),
        )
        self.classify = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 49, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, num_classes)
        )

    def forward(self, x):
        return self.classify(self.features(x))


def train_digit_classifier(
    images: torch.Tensor,
    labels: torch.Tensor,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    max_shift: int = 2,
) -> DigitClassifier:
    """Fit the classifier on images in [-1, 1] (N, C, H, W) with integer labels; small random shifts
    (up to `max_shift` pixels) make it judge shapes rather than exact positions."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitClassifier(images.shape[1], int(labels.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = images.shape[0]
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size]
            x = images[idx]
            dx, dy = (int(v) for v in torch.randint(-max_shift, max_shift + 1, (2,), generator=gen))
            x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def class_probabilities(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    return torch.cat(
        [F.softmax(model(images[i : i + batch_size]).float(), dim=1) for i in range(0, images.shape[0], batch_size)]
    )


def digit_scores(probs: torch.Tensor, threshold: float = 0.9) -> dict:
    """The module docstring's scores from class probabilities (N, K)."""
    probs = probs.double()
    top = probs.max(dim=1).values
    counts = torch.bincount(probs.argmax(dim=1), minlength=probs.shape[1]).double()
    freq = counts[counts > 0] / counts.sum()
    label_entropy = -(freq * freq.log()).sum()
    marginal = probs.mean(dim=0)
    kl = (probs * (probs.clamp_min(1e-30).log() - marginal.clamp_min(1e-30).log())).sum(dim=1)
    return {
        "confident": float((top >= threshold).double().mean()),
        "mean_top_prob": float(top.mean()),
        "class_coverage": float(label_entropy.exp()),
        "digit_score": float(math.exp(float(kl.mean()))),
        "label_histogram": [int(c) for c in counts],
    }
