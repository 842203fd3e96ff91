"""Start-up stays light and all three ways in reach the same app."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "optuna", "torchvision", "matplotlib")


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "argv",
    [None, ["fmt", "--help"], ["fmt", "ae", "--help"], ["fmt", "ae", "train", "--help"]],
    ids=["import", "help", "ae-help", "ae-train-help"],
)
def test_no_heavy_imports(argv: list[str] | None) -> None:
    run_cli = (
        f"import sys; sys.argv = {argv!r}\n"
        "from fmnist_toolkit.cli import main\n"
        "try:\n    main()\n"
        "except SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
        if argv
        else "import fmnist_toolkit\n"
    )
    code = run_cli + f"import sys; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_group(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for group in ("data", "models", "ae", "clf", "gan"):
        assert group in result.stdout


def test_python_dash_m_and_version() -> None:
    from fmnist_toolkit import __version__

    result = subprocess.run(
        [sys.executable, "-m", "fmnist_toolkit", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"fmnist-toolkit {__version__}"


@pytest.mark.parametrize("script", ["fmt", "fmnist-toolkit"])
def test_console_scripts_installed(script: str) -> None:
    path = Path(sys.executable).parent / script
    if not path.exists():
        pytest.skip(f"{script} is not installed beside {sys.executable} (not a pip install)")
    result = subprocess.run(
        [str(path), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 0
    assert result.stdout.startswith("fmnist-toolkit ")


def test_public_api_is_lazy() -> None:
    import fmnist_toolkit

    assert set(fmnist_toolkit.__all__) >= {"load_model", "load_fashion_mnist", "__version__"}
    assert callable(fmnist_toolkit.load_model)
