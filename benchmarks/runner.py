"""What every measurement script shares: `scoremix` subprocess runs with their wall and CPU time, a ledger of
sittings for runs that resume, the environment of child processes, and the results folder.

A run is always `python -m scoremix ...` in a subprocess, so the evidence is what a user gets. Its CPU time is
the child's own user + system time (os.wait4), so other load on the machine inflates the wall time but hardly
the CPU time; both are recorded, with the load average before and after.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def child_env(threads: int | None = None) -> dict:
    """The environment of a child run: the repository importable, OMP threads pinned when asked."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def scoremix_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "scoremix", *args]


def run_logged(cmd: list[str], log_path: str, threads: int | None = None, cwd: str = ROOT) -> dict:
    """Run cmd with stdout and stderr appended to log_path; {'rc', 'wall_s', 'cpu_s', 'load'}."""
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    load_before = os.getloadavg()[0]
    start = time.time()
    with open(log_path, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd, env=child_env(threads))
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": round(time.time() - start, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start))}


class Ledger:
    """One JSON line per sitting of a resumable run (wall and CPU seconds, command, load), so a run split
    over several sittings still reports its whole cost."""

    def __init__(self, path: str):
        self.path = path

    def sittings(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path) as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def add(self, record: dict) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def totals(self) -> dict:
        rows = self.sittings()
        return {"sittings": len(rows), "wall_s": round(sum(r["wall_s"] for r in rows), 1),
                "cpu_s": round(sum(r["cpu_s"] for r in rows), 1)}


def machine() -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "processor": _cpu_name(), "platform": platform.platform()}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(path: str, data) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, path)


def read_json(path: str, default=None):
    if not os.path.exists(path):
        return default
    with open(path) as fh:
        return json.load(fh)


def command_line(script: str, argv: list[str]) -> str:
    """The exact command that produced a result, relative to the repository root."""
    return " ".join(["python", os.path.relpath(os.path.abspath(script), ROOT), *argv])
