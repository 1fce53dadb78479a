"""benchmarks/runner.py: the subprocess runs of every measurement script report the child's own CPU time (not
its wall time, not earlier children's), keep its output in a log, and the result files are written whole."""

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))

import runner  # noqa: E402

BURN = "import time\nwhile time.process_time() < {s}: pass\nprint('burnt')"  # until the child used s CPU seconds
SLEEP = "import time; time.sleep({s}); print('slept')"


def test_cpu_time_is_the_childs_own(tmp_path):
    log = str(tmp_path / "run.log")
    burnt = runner.run_logged([sys.executable, "-c", BURN.format(s=0.6)], log, threads=1)
    assert burnt["rc"] == 0
    assert burnt["cpu_s"] >= 0.6  # the loop alone used 0.6 s of the child's CPU
    assert burnt["wall_s"] >= burnt["cpu_s"] - 0.1  # one thread: no more CPU than wall time (to rounding)
    slept = runner.run_logged([sys.executable, "-c", SLEEP.format(s=0.6)], log, threads=1)
    assert slept["wall_s"] >= 0.6
    assert slept["cpu_s"] < 0.4  # sleeping costs no CPU; the first child's 0.6 s is not counted again
    text = open(log).read()
    assert text.count("$ ") == 2 and "burnt" in text and "slept" in text  # appended, each after its command


def test_child_runs_in_the_background_and_reports_its_exit_code(tmp_path):
    log = tmp_path / "child.log"
    log.write_text("an earlier attempt\n")
    child = runner.Child(
        [
            sys.executable,
            "-c",
            "import os, sys, time; time.sleep(0.5); print(os.environ['OMP_NUM_THREADS']); sys.exit(3)",
        ],
        str(log),
        threads=3,
        fresh=True,
    )
    assert child.poll() is None  # still sleeping
    deadline = time.time() + 30
    while child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    result = child.wait()
    assert result["rc"] == 3 and result["wall_s"] >= 0.5
    lines = log.read_text().splitlines()
    assert lines[0].startswith("$ ") and lines[1] == "3"  # fresh log; threads pinned in the child's environment


def test_check_run_names_the_failure_with_the_end_of_the_log(tmp_path):
    log = str(tmp_path / "fail.log")
    cmd = [sys.executable, "-c", "import sys; print('the reason it failed'); sys.exit(2)"]
    result = runner.run_logged(cmd, log)
    with pytest.raises(RuntimeError, match="exit code 2") as err:
        runner.check_run(result, cmd, log)
    assert "the reason it failed" in str(err.value)
    ok = runner.run_logged([sys.executable, "-c", "pass"], log)
    assert runner.check_run(ok, cmd, log) is ok


def test_ledger_sums_the_sittings(tmp_path):
    ledger = runner.Ledger(str(tmp_path / "sub" / "run.sittings.jsonl"))
    assert ledger.totals() == {"sittings": 0, "wall_s": 0, "cpu_s": 0}
    for wall, cpu in ((10.2, 18.5), (4.5, 7.3), (0.5, 0.2)):
        ledger.add({"wall_s": wall, "cpu_s": cpu, "command": "scoremix train"})
    assert ledger.totals() == {"sittings": 3, "wall_s": 15.2, "cpu_s": 26.0}
    assert [s["wall_s"] for s in ledger.sittings()] == [10.2, 4.5, 0.5]


def test_json_files_are_written_whole_and_read_back(tmp_path):
    path = str(tmp_path / "deep" / "result.json")
    runner.write_json(path, {"a": [1, 2]}, indent=1)
    assert runner.read_json(path) == {"a": [1, 2]} and os.listdir(tmp_path / "deep") == ["result.json"]
    assert runner.read_json(str(tmp_path / "missing.json"), {}) == {}
    half = tmp_path / "half.json"
    half.write_text('{"command": "scoremix tr')  # a file cut off by a killed writer
    assert runner.read_json(str(half), tolerant=True) is None
    with pytest.raises(json.JSONDecodeError):
        runner.read_json(str(half))


def test_results_file_keeps_the_other_measurements(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path))
    store = runner.ResultsFile("limits.json")
    store.save("capacity", {"precision": 0.9})
    store.save("critic", {"runs": []})
    store.save("capacity", {"precision": 0.95})
    assert json.loads((tmp_path / "limits.json").read_text()) == {
        "capacity": {"precision": 0.95},
        "critic": {"runs": []},
    }


@pytest.fixture
def keep_torch_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # Subcommands.run sets them for the measurement


def test_subcommands_rewrite_the_report_after_a_measurement(keep_torch_threads):
    calls = []
    cli = runner.Subcommands("Measurements.\n\nmore text")
    cli.add("alpha", lambda args: calls.append(("alpha", args.steps))).add_argument("--steps", type=int, default=4)

    def report(args=None):
        calls.append(("report", args is not None))

    cli.run(report, ["alpha", "--steps", "7"])
    assert calls == [("alpha", 7), ("report", False)]
    calls.clear()
    cli = runner.Subcommands("Measurements.")
    cli.add("alpha", lambda args: calls.append("alpha"))
    cli.run(report, ["report"])
    assert calls == [("report", True)]
