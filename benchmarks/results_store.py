"""Shared plumbing of the measurement scripts: one JSON file of named results under benchmarks/results,
and a subcommand runner that rewrites the markdown report after every measurement."""

from __future__ import annotations

import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


class ResultsFile:
    """benchmarks/results/NAME: a dict of measurements, each stored under its own key."""

    def __init__(self, name: str):
        self.path = os.path.join(RESULTS, name)

    def load(self) -> dict:
        if not os.path.exists(self.path):
            return {}
        with open(self.path) as fh:
            return json.load(fh)

    def save(self, key: str, value) -> None:
        data = self.load()
        data[key] = value
        os.makedirs(RESULTS, exist_ok=True)
        with open(self.path, "w") as fh:
            json.dump(data, fh, indent=2)


def run_subcommand(args, handlers: dict, report) -> None:
    """Run args.what with torch on OMP_NUM_THREADS threads (1 if unset), then rewrite the report."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    handlers[args.what](args)
    if args.what != "report":
        report()
