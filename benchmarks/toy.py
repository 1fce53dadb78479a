"""Toy benchmark: SMT on ring8 and grid25 (seeds 0, 1, 2 each) and swissroll with their presets.

    python benchmarks/toy.py [--jobs 2] [--threads 1] [--only ring8,grid25 [--merge]] [--out benchmarks/results]

Each run is `scoremix train --config PRESET seed=S` in its own process (benchmarks/runner.py: output in
WORK/PRESET-seedS.log, wall and CPU seconds); the script collects the runs'
metrics.json (raw and EMA generator), their training time, and a picture of every run's samples next to
the data, and writes toy.json, toy.md and toy.png under --out, rewritten after every finished run so an
interrupted suite keeps its finished runs (toy.json says whether the suite was complete).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # scoremix from this checkout

from runner import command_line, machine, read_json, train_logged, write_json, write_text  # noqa: E402

RUNS = [("ring8", 0), ("ring8", 1), ("ring8", 2), ("grid25", 0), ("grid25", 1), ("grid25", 2), ("swissroll", 0)]
SHOWN = ["precision", "modes_covered", "mode_kl", "energy_distance", "energy_floor", "knn_precision", "knn_recall"]


def train(preset: str, seed: int, work: str, threads: int, extra: list[str]) -> dict:
    out = os.path.join(work, f"{preset}-seed{seed}")
    args = ["--config", preset, f"seed={seed}", "progress=false", *extra]
    run, metrics = train_logged(args, out, threads, cwd=os.getcwd())
    return {
        "preset": preset,
        "seed": seed,
        "command": "scoremix train " + " ".join(args),
        "wall_seconds": run["wall_s"],
        "cpu_seconds": run["cpu_s"],
        "train_seconds": metrics["train_seconds"],
        "steps": metrics["step"],
        "raw": metrics["raw"],
        "ema": metrics["ema"],
        "picture": os.path.join(out, "samples", "final.png"),
    }


def write_picture(results: list[dict], path: str) -> None:
    from PIL import Image

    from scoremix.plots import titled_grid

    titled_grid(
        [
            (f"{r['preset']} seed {r['seed']} (EMA generator, left) vs data (right)", Image.open(r["picture"]))
            for r in results
        ],
        cols=1,
    ).save(path)


# The quality bars of the small presets (EMA generator, wall time of the whole run on 2 cores)
BARS = {
    "ring8": {"precision": 0.9, "mode_kl": 0.05, "wall_seconds": 300},
    "grid25": {"precision": 0.85, "mode_kl": 0.1, "wall_seconds": 600},
}


def bar_check(r: dict) -> str:
    """'met' or the list of what misses the preset's bar (precision, all modes, mode_kl, wall time)."""
    bar = BARS.get(r["preset"])
    if bar is None:
        return "–"
    m = r["ema"]
    misses = []
    if m.get("precision", 0.0) < bar["precision"]:
        misses.append(f"precision {m.get('precision', 0.0):.3f} < {bar['precision']}")
    if m.get("modes_covered", 0) < m.get("num_modes", 0):
        misses.append(f"modes {m.get('modes_covered')}/{m.get('num_modes')}")
    if m.get("mode_kl", float("inf")) > bar["mode_kl"]:
        misses.append(f"mode_kl {m.get('mode_kl', float('inf')):.3f} > {bar['mode_kl']}")
    if r["wall_seconds"] > bar["wall_seconds"]:
        misses.append(f"wall {r['wall_seconds']:.0f} s > {bar['wall_seconds']} s")
    return "met" if not misses else "; ".join(misses)


def fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_report(results: list[dict], args, started: float, complete: bool) -> list[str]:
    """toy.json, toy.md and toy.png under --out from the runs finished so far (rewritten after each)."""
    m = machine()
    report = {
        "command": command_line(__file__, sys.argv[1:]),
        "machine": {
            "platform": m["platform"],
            "cpus": m["cpu_count"],
            "python": m["python"],
            "jobs_in_parallel": args.jobs,
            "threads_per_run": args.threads,
            "torch": m["torch"],
        },
        "complete": complete,
        "total_seconds": round(time.time() - started, 1),
        "runs": [],
    }
    write_picture(results, os.path.join(args.out, "toy.png"))
    for r in results:
        report["runs"].append({**r, "picture": os.path.relpath(r["picture"]), "bar": bar_check(r)})
    commands = list(dict.fromkeys(r.get("suite_command", report["command"]) for r in results))
    lines = [
        f"Command{'s' if len(commands) > 1 else ''}: "
        + "; ".join(f"`{c}`" for c in commands)
        + f" — {report['machine']['cpus']} CPUs, {args.jobs} run(s) at a time, "
        f"{args.threads} thread(s) each, torch {m['torch']}"
        + ("" if complete else f" — partial: {len(results)} run(s) finished so far"),
        "",
        "| run | weights | train s | " + " | ".join(SHOWN) + " |",
        "|---|---|---|" + "---|" * len(SHOWN),
    ]
    for r in report["runs"]:
        for variant in ("raw", "ema"):
            row = [fmt(r[variant].get(k, "–")) for k in SHOWN]
            lines.append(
                f"| {r['preset']} seed {r['seed']} | {variant} | {r['train_seconds']} | " + " | ".join(row) + " |"
            )
    bars = "; ".join(
        f"{p}: precision >= {b['precision']}, every mode, mode_kl <= {b['mode_kl']}, <= {b['wall_seconds']} s wall"
        for p, b in BARS.items()
    )
    lines += ["", f"Bars (EMA generator; {bars}):", "", "| run | wall s | bar |", "|---|---|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['preset']} seed {r['seed']} | {r['wall_seconds']:.0f} | {r['bar']} |")
    write_json(os.path.join(args.out, "toy.json"), report)
    write_text(os.path.join(args.out, "toy.md"), "\n".join(lines) + "\n")
    return lines


def kept_runs(path: str, rerun: set[str]) -> list[dict]:
    """--merge: the runs of an earlier toy.json whose presets are not run now, each with the suite
    command that produced it; their sample pictures must still exist."""
    earlier = read_json(path)
    if earlier is None:
        return []
    kept = [{"suite_command": earlier["command"], **r} for r in earlier["runs"] if r["preset"] not in rerun]
    missing = [r["picture"] for r in kept if not os.path.exists(r["picture"])]
    if missing:
        raise SystemExit(
            f"--merge keeps the earlier runs of {path}, but their pictures are gone ({missing[0]}); "
            "rerun those presets too or drop --merge"
        )
    return kept


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--work", default="runs/toy-benchmark")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--only", default=None, help="comma list of presets to run (default: all)")
    parser.add_argument(
        "--merge", action="store_true", help="keep the runs of the other presets from the existing toy.json in --out"
    )
    parser.add_argument("extra", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args()
    runs = [r for r in RUNS if args.only is None or r[0] in args.only.split(",")]
    os.makedirs(args.out, exist_ok=True)
    kept = kept_runs(os.path.join(args.out, "toy.json"), {p for p, _ in runs}) if args.merge else []
    started = time.time()
    finished: dict[int, dict] = {}
    suite = command_line(__file__, sys.argv[1:])
    with ThreadPoolExecutor(args.jobs) as pool:
        futures = {
            pool.submit(train, preset, seed, args.work, args.threads, args.extra): i
            for i, (preset, seed) in enumerate(runs)
        }
        for future in as_completed(futures):
            finished[futures[future]] = {**future.result(), "suite_command": suite}
            # an interrupted suite keeps what finished, in the listed order
            done = [finished[i] for i in sorted(finished)]
            order = {(p, s): k for k, (p, s) in enumerate(RUNS)}
            lines = write_report(
                sorted(kept + done, key=lambda r: order.get((r["preset"], r["seed"]), len(RUNS))),
                args,
                started,
                complete=len(finished) == len(runs),
            )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
