"""Wall time of `fmt gan sample --n 64 --denoise out.png` straight after install (target < 4 s).

Runs the installed `fmt` (the one beside this Python) with an empty FMT_HOME, no data folder
and the CPU only, so the bundled generator and autoencoder do the work; median of N runs.

Usage: python benchmarks/sample_wall_time.py [--runs 5] [--json]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
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
        for run in range(args.runs):
            out = Path(scratch) / f"out-{run}.png"
            started = time.perf_counter()
            subprocess.run(
                [*command, "gan", "sample", "--n", "64", "--denoise", str(out)],
                env=env,
                capture_output=True,
                check=True,
            )
            times.append(time.perf_counter() - started)
    record = {
        "command": "fmt gan sample --n 64 --denoise out.png",
        "median_s": round(statistics.median(times), 3),
        "max_s": round(max(times), 3),
        "runs": args.runs,
        "cpus": os.cpu_count(),
    }
    print(
        json.dumps(record)
        if args.json
        else f"{record['command']}: median "
        f"{record['median_s']:.2f} s, max {record['max_s']:.2f} s over {args.runs} runs"
    )


if __name__ == "__main__":
    main()
