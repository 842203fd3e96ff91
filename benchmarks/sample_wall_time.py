"""Wall time of `fmt gan sample --n 64 --denoise out.png` straight after install (target < 3 s).

Runs the installed `fmt` (the one beside this Python) with an empty FMT_HOME, no data folder
and the CPU only, so the bundled generator and denoiser do the work; median of N runs. The
baseline, timed in the same run and alternating with it: a process that imports torch and
ends without the interpreter's teardown (as `fmt` does), which no command that computes can
avoid, so ``beyond_torch_s`` is what the toolkit itself costs. ``--against DIR`` also times the same
command with the toolkit of another checkout (DIR on PYTHONPATH, e.g. a `git worktree` of an
earlier commit), in turn with the others, and reports the ratio.

Usage: python benchmarks/sample_wall_time.py [--runs 5] [--against DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IMPORT_TORCH = "import os, torch; os._exit(0)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--against", type=Path, help="another checkout to time alongside")
    args = parser.parse_args()
    script = shutil.which("fmt", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "fmnist_toolkit"]
    times = []
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "FMT_HOME": str(Path(scratch) / "empty-store"),
            "FMT_DATA_DIR": str(Path(scratch) / "no-data"),
            "CUDA_VISIBLE_DEVICES": "",
        }
        env.pop("FMT_BUNDLED_MODELS", None)
        baseline, against = [], []
        for run in range(args.runs):
            out = Path(scratch) / f"out-{run}.png"
            sample = [*command, "gan", "sample", "--n", "64", "--denoise", str(out)]
            times.append(timed(sample, env))
            baseline.append(timed([sys.executable, "-c", IMPORT_TORCH], env))
            if args.against:
                other = {**env, "PYTHONPATH": str(args.against.resolve())}
                against.append(timed(sample, other))
    median, torch_median = statistics.median(times), statistics.median(baseline)
    record = {
        "command": "fmt gan sample --n 64 --denoise out.png",
        "median_s": round(median, 3),
        "max_s": round(max(times), 3),
        "import_torch_median_s": round(torch_median, 3),
        "beyond_torch_s": round(median - torch_median, 3),
        "runs": args.runs,
        "cpus": os.cpu_count(),
    }
    if against:
        record["against"] = str(args.against)
        record["against_median_s"] = round(statistics.median(against), 3)
        record["ratio"] = round(median / statistics.median(against), 3)
    print(
        json.dumps(record)
        if args.json
        else f"{record['command']}: median "
        f"{record['median_s']:.2f} s, max {record['max_s']:.2f} s over {args.runs} runs; "
        f"`import torch` {record['import_torch_median_s']:.2f} s, so "
        f"{record['beyond_torch_s']:.2f} s beyond it"
        + (
            f"; {args.against}: median {record['against_median_s']:.2f} s, ratio "
            f"{record['ratio']:.2f}"
            if against
            else ""
        )
    )


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, capture_output=True, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
