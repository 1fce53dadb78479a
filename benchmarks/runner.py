"""What every measurement script shares: `scoremix` subprocess runs with their wall and CPU time (waited for, or
several at once through Child), a ledger of sittings for runs that resume, the environment of child processes,
the results folder and its files (JSON and markdown written whole; ResultsFile, Subcommands for the scripts that
store one measurement per subcommand).

A run is always `python -m scoremix ...` in a subprocess, so the evidence is what a user gets. Its CPU time is
the child's own user + system time (os.wait4), so other load on the machine inflates the wall time but hardly
the CPU time; both are recorded, with the load average before and after.
"""

from __future__ import annotations

import argparse
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
    return Child(cmd, log_path, threads, cwd).wait()


class Child:
    """A started command, its stdout and stderr going to log_path after a `$ command` line (appended, or the log
    started afresh with fresh=True). `poll()` (None while it runs) and `wait()` give run_logged's record."""

    def __init__(self, cmd: list[str], log_path: str, threads: int | None = None, cwd: str = ROOT, fresh: bool = False):
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        self.load_before = os.getloadavg()[0]
        self.start = time.time()
        self.result: dict | None = None
        self._log = open(log_path, "w" if fresh else "a")
        self._log.write(f"$ {' '.join(cmd)}\n")
        self._log.flush()
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd, env=child_env(threads)
            )
        except OSError:
            self._log.close()
            raise

    def poll(self) -> dict | None:
        if self.result is None:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self._finish(status, usage)
        return self.result

    def wait(self) -> dict:
        if self.result is None:
            _, status, usage = os.wait4(self.proc.pid, 0)
            self._finish(status, usage)
        return self.result

    def _finish(self, status: int, usage) -> None:
        self._log.close()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.result = {
            "rc": self.proc.returncode,
            "wall_s": round(time.time() - self.start, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "load": [round(self.load_before, 2), round(os.getloadavg()[0], 2)],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.start)),
        }


def log_tail(path: str, chars: int = 2000) -> str:
    """The end of a run's log, for the error message of a run that failed."""
    try:
        with open(path, errors="replace") as fh:
            return fh.read()[-chars:]
    except OSError:
        return ""


def check_run(result: dict, cmd: list[str], log_path: str) -> dict:
    """result (of run_logged) when the command succeeded; else RuntimeError with the end of its log."""
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit code {result['rc']}; log {log_path}):\n{log_tail(log_path)}")
    return result


def train_logged(args: list[str], out: str, threads: int | None = None, cwd: str = ROOT) -> tuple[dict, dict]:
    """`scoremix train ARGS --out OUT`, its output in OUT.log: (run_logged's record, the run's metrics.json).
    A run that fails raises RuntimeError with the end of its log."""
    cmd = scoremix_command("train", *args, "--out", out)
    result = check_run(run_logged(cmd, out + ".log", threads, cwd), cmd, out + ".log")
    return result, read_json(os.path.join(cwd, out, "metrics.json"))


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
        return {
            "sittings": len(rows),
            "wall_s": round(sum(r["wall_s"] for r in rows), 1),
            "cpu_s": round(sum(r["cpu_s"] for r in rows), 1),
        }


def machine() -> dict:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "processor": _cpu_name(),
        "platform": platform.platform(),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_text(path: str, text: str) -> None:
    """Write a file atomically (a reader never sees half a file)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_json(path: str, data, indent: int | None = 2) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    write_text(path, json.dumps(data, indent=indent) + "\n")


def read_json(path: str, default=None, tolerant: bool = False):
    """The JSON in path, or default when there is no such file (tolerant: also when it cannot be read or parsed,
    as the output of a run that was killed half-way)."""
    if not os.path.exists(path):
        return default
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        if tolerant:
            return default
        raise


def command_line(script: str, argv: list[str]) -> str:
    """The exact command that produced a result, relative to the repository root."""
    return " ".join(["python", os.path.relpath(os.path.abspath(script), ROOT), *argv])


class ResultsFile:
    """benchmarks/results/NAME: a dict of measurements, each stored under its own key."""

    def __init__(self, name: str):
        self.path = os.path.join(RESULTS, name)

    def load(self) -> dict:
        return read_json(self.path, {})

    def save(self, key: str, value) -> None:
        data = self.load()
        data[key] = value
        write_json(self.path, data)


class Subcommands:
    """The command line of a script of measurements: one subcommand each, stored in a ResultsFile, and `report`,
    which writes the markdown from that file (and is run after every measurement too)."""

    def __init__(self, doc: str):
        self.parser = argparse.ArgumentParser(description=doc.splitlines()[0])
        self._sub = self.parser.add_subparsers(dest="what", required=True)
        self.handlers: dict = {}

    def add(self, name: str, handler) -> argparse.ArgumentParser:
        self.handlers[name] = handler
        return self._sub.add_parser(name)

    def run(self, report, argv: list[str] | None = None) -> None:
        """Run the subcommand with torch on OMP_NUM_THREADS threads (1 if unset), then rewrite the report."""
        import torch

        self._sub.add_parser("report")
        args = self.parser.parse_args(argv)
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        if args.what == "report":
            report(args)
        else:
            self.handlers[args.what](args)
            report()
