"""The runnable commands of the docs pages work.

Every fenced block whose info string is exactly `bash runnable` in docs/*.md is run: the blocks of one page
in order, in one scratch folder (so a page's blocks may use each other's outputs), each with `bash -e -o
pipefail`, with SCOREMIX_REPO set to the repository root. Every `scoremix train` (also written `python -m
scoremix train` or `torchrun ... -m scoremix train`) gets tiny-run overrides appended: 3 iterations, no
periodic pictures or checkpoints, 16 evaluation samples, warm-ups cut to one iteration, a batch of at most
16 (a micro-batch `train.batch_gpu` shrinks by the same factor, so accumulation stays on) and at most 2
Heun steps: a page's networks and data are the page's own, but each run takes seconds. A resumed run
trains 3 iterations past its checkpoint. The commands run with OMP_NUM_THREADS=1 unless the environment
sets it (on 2 cores one thread per process is several times faster for these small networks). The
`scoremix` first on PATH is a small script that appends the overrides (`make_shim`). One test per page;
a failure shows the block and its output.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO, "docs")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")
TINY = {
    "train.steps": 3,
    "train.sample_every": 0,
    "train.ckpt_every": 0,
    "train.log_every": 1,
    "eval.samples": 16,
    "train.progress": "off",
}
MAX_BATCH, MAX_HEUN = 16, 2
BLOCK_TIMEOUT_S = 600


def runnable_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks whose info string is exactly 'bash runnable', in page order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        body, i = [], i + 1
        while i < len(lines) and not re.match(rf"^ {{0,3}}{fence[0]}{{{len(fence)},}}\s*$", lines[i]):
            body.append(lines[i])
            i += 1
        i += 1
        if info == "bash runnable":
            blocks.append("\n".join(body) + "\n")
    return blocks


def pages_with_blocks() -> list[str]:
    out = []
    for path in sorted(glob.glob(os.path.join(DOCS, "*.md"))):
        with open(path) as fh:
            if runnable_blocks(fh.read()):
                out.append(os.path.basename(path))
    return out


def rewrite_module_calls(block: str) -> str:
    """`python -m scoremix` -> `scoremix`, and torchrun's `-m scoremix` -> `--no-python scoremix`, so every
    training command passes through the shortening `scoremix` first on PATH."""
    block = re.sub(r"\bpython3?\s+-m\s+scoremix\b", "scoremix", block)
    return re.sub(r"(\btorchrun\b[^\n]*?)\s-m\s+scoremix\b", r"\1 --no-python scoremix", block)


def _largest_divisor_at_most(n: int, k: int) -> int:
    return max(d for d in range(1, min(n, k) + 1) if n % d == 0)


def shortened_train_argv(argv: list[str], world_size: int = 1) -> list[str]:
    """argv of `scoremix ...` with the tiny-run overrides appended when it is a training command."""
    from scoremix.checkpoint import checkpoint_step, list_checkpoints
    from scoremix.cli_args import build_parser
    from scoremix.config_loader import load_config
    from scoremix.errors import ScoremixError

    try:
        args, extra = build_parser().parse_known_args(argv)
    except SystemExit:
        return argv
    if args.command != "train" or args.dry_run:
        return argv
    overrides = list(args.overrides) + [e for e in extra if "=" in e]
    source = args.config
    if args.resume and args.out and args.config is None and os.path.isfile(os.path.join(args.out, "config.yaml")):
        source = os.path.join(args.out, "config.yaml")
    try:
        cfg = load_config(source, overrides)
    except (ScoremixError, OSError):
        return argv  # the real command reports the problem
    tiny = dict(TINY)
    if args.resume:
        try:
            if args.resume == "latest":
                done = max(
                    (checkpoint_step(p) for p in list_checkpoints(os.path.join(args.out, "checkpoints"))), default=0
                )
            else:
                done = max(0, checkpoint_step(args.resume))
        except (OSError, ValueError):
            done = 0
        tiny["train.steps"] = done + TINY["train.steps"]
    for key in ("warmup_steps", "critic_warmup_steps"):
        if getattr(cfg.method, key) > 1:
            tiny[f"method.{key}"] = 1
    batch = cfg.data.batch_size
    if batch > MAX_BATCH:
        batch = tiny["data.batch_size"] = MAX_BATCH
    if cfg.train.batch_gpu and batch != cfg.data.batch_size:
        # the micro-batch shrinks with the batch, by the same factor whatever the number of processes, so
        # accumulation stays on and a run on 1 process still matches a run on 2
        scaled = max(1, cfg.train.batch_gpu * batch // cfg.data.batch_size)
        tiny["train.batch_gpu"] = _largest_divisor_at_most(max(1, batch // world_size), scaled)
    if cfg.eval.heun_steps > MAX_HEUN:
        tiny["eval.heun_steps"] = MAX_HEUN
    return argv + [f"{k}={v}" for k, v in tiny.items()]


SHIM = """#!{python}
import os, sys
sys.path.insert(0, {repo!r})
from tests.test_docs import shortened_train_argv
from scoremix.cli import main
sys.exit(main(shortened_train_argv(sys.argv[1:], int(os.environ.get("WORLD_SIZE", "1")))))
"""


def make_shim(folder: str) -> str:
    """A folder holding a `scoremix` executable that shortens training commands; put it first on PATH."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "scoremix")
    with open(path, "w") as fh:
        fh.write(SHIM.format(python=sys.executable, repo=REPO))
    os.chmod(path, 0o755)
    return folder


def run_blocks(blocks: list[str], workdir: str, name: str) -> list[str]:
    """Run the blocks in order in `workdir`; pytest.fail with the block and its output at the first failure.
    Returns each block's output."""
    shim = make_shim(os.path.join(workdir, ".docs-test-bin"))
    env = dict(os.environ)
    env["SCOREMIX_REPO"] = REPO
    env.setdefault("OMP_NUM_THREADS", "1")  # one thread per process: tiny networks, 2 cores, often 2 processes
    env["PATH"] = os.pathsep.join([shim, os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    outputs = []
    for number, block in enumerate(blocks, 1):
        script = os.path.join(workdir, f".block-{number}.sh")
        with open(script, "w") as fh:
            fh.write(rewrite_module_calls(block))
        try:
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", script],
                cwd=workdir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=BLOCK_TIMEOUT_S,
            )
            output, code = done.stdout, done.returncode
        except subprocess.TimeoutExpired as err:
            output, code = (
                (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or ""),
                f"timeout after {BLOCK_TIMEOUT_S} s",
            )
        outputs.append(output)
        if code != 0:
            pytest.fail(
                f"{name}, runnable block {number} of {len(blocks)} failed (exit {code}):\n"
                f"--- block ---\n{block}--- output (last 6000 characters) ---\n{output[-6000:]}",
                pytrace=False,
            )
    return outputs


@pytest.mark.parametrize("page", pages_with_blocks())
def test_runnable_blocks_of_page(page, tmp_path):
    with open(os.path.join(DOCS, page)) as fh:
        blocks = runnable_blocks(fh.read())
    run_blocks(blocks, str(tmp_path), f"docs/{page}")


# -- the machinery itself ------------------------------------------------------------------------------


def test_only_bash_runnable_blocks_are_extracted():
    page = (
        "text\n```bash\nshown only\n```\n```bash runnable\necho one\n```\n"
        "````bash runnable\necho two\n```\nstill two\n````\n```python\nx = 1\n```\n```bash runnable-ish\nno\n```\n"
    )
    assert runnable_blocks(page) == ["echo one\n", "echo two\n```\nstill two\n"]


def test_my_pages_have_runnable_blocks():
    for page in ("guide.md", "evaluation.md", "scaling.md"):
        assert page in pages_with_blocks(), f"docs/{page} has no ```bash runnable block"


def test_module_calls_are_routed_through_the_shortening_command():
    block = "python -m scoremix train --config ring8\ntorchrun --standalone --nproc_per_node 2 -m scoremix train x=1\n"
    assert rewrite_module_calls(block) == (
        "scoremix train --config ring8\ntorchrun --standalone --nproc_per_node 2 --no-python scoremix train x=1\n"
    )


def test_training_commands_get_tiny_overrides(tmp_path):
    argv = ["train", "--config", "mnist-smt", "--out", str(tmp_path / "r"), "train.steps=7000"]
    out = shortened_train_argv(argv)
    assert out[: len(argv)] == argv
    extra = dict(item.split("=", 1) for item in out[len(argv) :])
    assert extra["train.steps"] == "3" and extra["eval.samples"] == "16" and extra["train.sample_every"] == "0"
    assert extra["method.warmup_steps"] == "1" and extra["method.critic_warmup_steps"] == "1"
    assert extra["data.batch_size"] == "16"
    # appended after the page's own overrides, so they win
    assert out.index("train.steps=3") > out.index("train.steps=7000")
    assert shortened_train_argv(["sample", "--checkpoint", "x", "--out", "y.png"]) == [
        "sample",
        "--checkpoint",
        "x",
        "--out",
        "y.png",
    ]
    assert shortened_train_argv(["train", "--config", "ring8", "--dry-run"]) == [
        "train",
        "--config",
        "ring8",
        "--dry-run",
    ]


def test_accumulation_and_resume_survive_the_shortening(tmp_path):
    for world in (1, 2):  # ring8: batch 256 in micro-batches of 64 -> batch 16 in micro-batches of 4
        out = shortened_train_argv(["train", "--config", "ring8", "train.batch_gpu=64"], world_size=world)
        assert "data.batch_size=16" in out and "train.batch_gpu=4" in out
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "state-0000003.pt").write_bytes(b"")
    resumed = shortened_train_argv(["train", "--config", "ring8", "--out", str(run), "--resume", "latest"])
    assert "train.steps=6" in resumed


def test_a_failing_block_fails_with_the_block_and_its_output(tmp_path):
    blocks = ["echo made > a.txt\n", "cat a.txt\nfalse\necho never\n"]
    with pytest.raises(pytest.fail.Exception) as err:
        run_blocks(blocks, str(tmp_path), "docs/example.md")
    text = str(err.value)
    assert (
        "block 2 of 2" in text
        and "cat a.txt\nfalse" in text
        and "made" in text
        and "never\n" not in text.split("--- output")[1]
    )
