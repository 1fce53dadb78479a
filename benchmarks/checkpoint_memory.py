"""Peak host memory of writing a training-state checkpoint: the streaming writer against version 1.

Each writer runs in a fresh process that builds a state of known size (float32 tensors on the CPU),
records its peak resident memory (VmHWM, reset at the start since a child inherits its parent's
high-water mark) before and after the write, and reports the peak during the
write as a multiple of the state's size (the state itself counts as 1x). Run from the repository root:
    PYTHONPATH=. python benchmarks/checkpoint_memory.py --mib 256 --out benchmarks/results/checkpoint_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import gc, json, resource, sys
import torch
from scoremix import checkpoint as ckpt
mib, writer, path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def rss_mib():  # peak resident memory (VmHWM; ru_maxrss where /proc is missing)
    try:
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:  # the high-water mark is inherited from the parent over fork: reset it (Linux: "5" > clear_refs)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:
    pass
torch.zeros(1)  # allocator warm
base = rss_mib()
n = mib * 2**20 // 4 // 16
state = {"networks": {f"w{i}": torch.randn(n) for i in range(16)}, "step": 1}
gc.collect()
with_state = rss_mib()
(ckpt.save_training_state if writer == "streaming" else ckpt.save_training_state_v1)(state, path)
peak = rss_mib()
back = ckpt.load_training_state(path)
assert all(torch.equal(back["networks"][k], v) for k, v in state["networks"].items())
state_mib = (with_state - base)
print(json.dumps({"writer": writer, "state_mib": mib, "rss_before_state_mib": round(base, 1),
                  "rss_with_state_mib": round(with_state, 1), "rss_peak_after_write_mib": round(peak, 1),
                  "peak_over_state": round((peak - base) / mib, 2)}))
"""


def measure(writer: str, mib: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(mib), writer, os.path.join(folder, "state.pt")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"},
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256, help="state size in MiB")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    results = [measure(w, args.mib) for w in ("v1-in-memory", "streaming")]
    for r in results:
        print(json.dumps(r))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump({"command": "PYTHONPATH=. python " + " ".join(sys.argv), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
