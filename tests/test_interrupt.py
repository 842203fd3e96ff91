"""A real Ctrl-C (SIGINT) in a real process: exit 130, old model intact, --resume finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def fmt(*args: object) -> list[str]:
    return [sys.executable, "-m", "fmnist_toolkit", *map(str, args)]


def run_fmt(*args: object, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        fmt(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_ctrl_c_saves_checkpoint_and_resume_finishes(synthetic_data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "FMT_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    common = [
        "ae",
        "train",
        "--data-dir",
        synthetic_data,
        "--device",
        "cpu",
        "--latent-dim",
        "4",
        "--batch-size",
        "64",
        "--name",
        "run",
    ]
    first = run_fmt(*common, "--epochs", "1", "--quiet", env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    before = json.loads((tmp_path / "home" / "run" / "config.json").read_text())

    epochs = 200
    process = subprocess.Popen(
        fmt(*common, "--epochs", epochs),
        env=env,
        # A shell without job control (CI, nohup) starts children with SIGINT ignored, and
        # Python then never raises KeyboardInterrupt: give the child the default disposition.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    assert process.stderr is not None
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        if line.startswith("run epoch 3/"):
            break
    else:
        process.kill()
        pytest.fail(f"training never reached epoch 3: {seen}")
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130, rest
    error_lines = [line for line in rest.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "Traceback" not in rest
    assert "resume with: " in error_lines[0] and "--resume" in error_lines[0]
    after = json.loads((tmp_path / "home" / "run" / "config.json").read_text())
    assert after == before, "the interrupted run must not touch the saved model"

    resume_command = error_lines[0].split("resume with: ", 1)[1].split()
    assert " ae train --name run --resume " in f" {' '.join(resume_command)} "
    assert resume_command[resume_command.index("--data-dir") + 1] == str(synthetic_data)
    arguments = resume_command[resume_command.index("train") + 1 :]
    resumed = run_fmt("ae", "train", *arguments, "--json", "--quiet", env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["epochs"] == epochs and summary["resumed_from_epoch"] >= 3
    assert not (tmp_path / "home" / ".checkpoints" / "run").exists()
