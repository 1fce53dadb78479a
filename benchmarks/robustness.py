"""Robustness benchmark: kills, SIGTERM, damaged checkpoints and bad input, measured on real runs.

    python benchmarks/robustness.py [--kills 5] [--seed 0]

1. SIGKILL a tiny ring8 training process at `--kills` random steps (seeded), resuming each time with
   `--resume latest`; report the steps lost per resume and whether the finished run is bitwise equal
   (networks, EMA, optimisers, schedulers, RNG, data position, generator file) to an uninterrupted one.
2. SIGTERM: exit code, resume hint, steps lost, bitwise-equal continuation.
3. Truncate / flip bytes in / zero the tail of the newest checkpoint: does `--resume latest` warn and take
   the one before?
4. The table of bad inputs of tests/robustness_helpers.py: how many exit with code 2 and one line.

Writes benchmarks/results/robustness.json and benchmarks/results/robustness.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import torch  # noqa: E402

from tests.robustness_helpers import (  # noqa: E402
    BAD_INPUTS,
    STEPS,
    Workspace,
    check_bad_input,
    corruption_experiment,
    kill_resume_experiment,
    run_overrides,
    sigterm_experiment,
    start_reference,
)


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": "cpu (training subprocesses with OMP_NUM_THREADS=1)",
    }


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def markdown(r: dict) -> str:
    k, t, b = r["kill_resume"], r["sigterm"], r["bad_inputs"]
    rows = [
        ("SIGKILLs survived", f"{k['kills_survived']} / {len(k['kills'])}"),
        ("steps lost per resume", ", ".join(map(str, k["steps_lost_per_resume"]))),
        ("bitwise-equal continuation after the kills", r["bitwise_equal_continuation"]),
        ("SIGTERM: exit code / steps lost", f"{t['exit_code']} / {t['steps_lost']}"),
        ("SIGTERM: resume hint printed", yes_no(bool(t["resume_hint"]))),
        ("SIGTERM: bitwise-equal continuation", yes_no(t["bitwise_equal"])),
    ]
    rows += [
        (
            f"damaged newest checkpoint ({c['damage']}): warned and resumed from the previous",
            yes_no(c["exit_code"] == 0 and c["warning_names_file"] and c["resumed_from_previous"]),
        )
        for c in r["corruption"]
    ]
    rows.append(("bad inputs: exit code 2 with a one-line message", f"{b['exit_2_one_line']} / {b['tried']}"))
    lines = [
        f"# Robustness ({r['date']})",
        "",
        f"`{r['command']}` on {r['machine']['platform']}, "
        f"{r['machine']['cpu_count']} CPUs, torch {r['machine']['torch']}; {r['seconds']:.0f} s.",
        "",
        "| check | result |",
        "|---|---|",
    ]
    lines += [f"| {a} | {v} |" for a, v in rows]
    lines += [
        "",
        "| kill | killed after checkpoint | step reached | resumed from | steps lost |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {x['kill']} | {x['checkpoint_seen']} | {x['step_reached']} | {x['resumed_from']} | {x['steps_lost']} |"
        for x in k["kills"]
    ]
    failed = [c for c in b["cases"] if not c["ok"]]
    if failed:
        lines += ["", "Bad inputs that did not give a one-line exit-2 error:", ""]
        lines += [f"- {c['name']}: exit {c['exit_code']}: {c['stderr'][:200]}" for c in failed]
    return "\n".join(lines) + "\n"


def run(kills: int, seed: int) -> dict:
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="scoremix-robustness-") as work:
        reference = start_reference(work)
        print(f"kill/resume: {kills} SIGKILLs at random steps of a {STEPS}-step run ...", flush=True)
        kill = kill_resume_experiment(work, reference, kills=kills, seed=seed)
        print(f"  steps lost per resume {kill['steps_lost_per_resume']}, bitwise equal: {kill['bitwise_equal']}")
        print("SIGTERM ...", flush=True)
        term = sigterm_experiment(work, reference)
        print(f"  exit {term['exit_code']}, lost {term['steps_lost']}, bitwise equal: {term['bitwise_equal']}")
        print("damaged checkpoints ...", flush=True)
        corruption = [corruption_experiment(work, how) for how in ("truncate", "flip", "tail")]
        print("bad inputs ...", flush=True)
        ws = Workspace(os.path.join(work, "bad-inputs"))
        cases = [check_bad_input(case, ws) for case in BAD_INPUTS]
    passed = sum(c["ok"] for c in cases)
    print(f"  {passed} / {len(cases)} exit 2 with one line")
    kill, term, corruption, cases = (
        json.loads(json.dumps(x).replace(work, "<tmp>")) for x in (kill, term, corruption, cases)
    )
    return {
        "command": "python benchmarks/robustness.py"
        + ("" if (kills, seed) == (5, 0) else f" --kills {kills} --seed {seed}"),
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "training_config": {"preset": "ring8", "overrides": run_overrides(), "steps": STEPS},
        "kills_survived": kill["kills_survived"],
        "steps_lost_per_resume": kill["steps_lost_per_resume"],
        "bitwise_equal_continuation": yes_no(kill["bitwise_equal"] and term["bitwise_equal"]),
        "bad_inputs_tried": len(cases),
        "bad_inputs_exit_2_one_line": passed,
        "kill_resume": kill,
        "sigterm": term,
        "corruption": corruption,
        "bad_inputs": {"tried": len(cases), "exit_2_one_line": passed, "cases": cases},
        "seconds": round(time.time() - began, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = run(args.kills, args.seed)
    folder = os.path.join(HERE, "results")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "robustness.json"), "w") as fh:
        json.dump(result, fh, indent=2)
        fh.write("\n")
    with open(os.path.join(folder, "robustness.md"), "w") as fh:
        fh.write(markdown(result))
    print(f"wrote {folder}/robustness.json and robustness.md")
    ok = (
        result["kills_survived"] == args.kills
        and result["bitwise_equal_continuation"] == "yes"
        and result["bad_inputs_exit_2_one_line"] == result["bad_inputs_tried"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
