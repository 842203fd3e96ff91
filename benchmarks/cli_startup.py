"""Wall time of `fmt --help` and `fmt ae --help` (target: under 0.5 s), median of N runs.

Usage: python benchmarks/cli_startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    script = shutil.which("fmt", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "fmnist_toolkit"]
    for extra in (["--help"], ["ae", "--help"], ["--version"]):
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run([*command, *extra], capture_output=True, check=True)
            times.append(time.perf_counter() - started)
        label = " ".join(["fmt", *extra])
        print(f"{label:18s} median {statistics.median(times):.3f} s  max {max(times):.3f} s")


if __name__ == "__main__":
    main()
