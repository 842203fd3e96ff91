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


def test_a_command_line_loads_only_its_own_group() -> None:
    """Each run pays for the commands it names: `fmt gan …` builds no other group."""
    code = (
        "import sys; sys.argv = ['fmt', 'gan', 'sample', '--help']\n"
        "from fmnist_toolkit.cli import main\n"
        "try:\n    main()\n"
        "except SystemExit as exit:\n    assert exit.code in (0, None), exit.code\n"
        "print(sorted(m for m in sys.modules if m.startswith('fmnist_toolkit.')))"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    loaded = set(eval(result.stdout.strip().splitlines()[-1]))
    assert "fmnist_toolkit.cli.gan" in loaded
    others = {f"fmnist_toolkit.cli.{group}" for group in ("ae", "clf", "data", "models", "tune")}
    assert not loaded & others, loaded & others


def test_a_lazy_group_is_built_once_and_typos_are_still_answered(cli) -> None:
    import typer.main

    from fmnist_toolkit.cli import SUBCOMMANDS, app

    root = typer.main.get_command(app)
    assert list(root.commands) == list(SUBCOMMANDS)  # listed without building any
    gan = root.commands["gan"]
    assert root.commands["gan"] is gan and gan.name == "gan"
    assert root.commands["doctor"].name == "doctor"
    typo = cli("gna")
    assert typo.exit_code == 2 and "Did you mean 'gan'?" in typo.stderr


def test_a_command_registered_on_the_root_app_itself_is_kept() -> None:
    import typer.main

    from fmnist_toolkit.cli import RootGroup

    def hello(loud: bool = False) -> None:
        """Say hello."""

    extra = typer.Typer(cls=RootGroup)
    extra.callback()(lambda: None)
    extra.command("hello")(hello)
    commands = typer.main.get_command(extra).commands
    assert {"hello", "gan"} <= set(commands) and commands["hello"].name == "hello"
    # made plain like every other command: a flag shows no <bool>
    assert [param.metavar for param in commands["hello"].params] == [""]


def test_only_the_fmt_process_collects_garbage_less_often() -> None:
    """`fmt` raises the young generation's threshold (start-up makes 200,000 lasting objects);
    a program that imports the library keeps its own."""
    import gc

    from fmnist_toolkit.cli import STARTUP_GC_THRESHOLD

    code = (
        "import atexit, gc, sys\n"
        "import fmnist_toolkit, fmnist_toolkit.cli\n"
        "print(gc.get_threshold()[0])\n"
        "atexit.register(lambda: print(gc.get_threshold()[0]))\n"
        "sys.argv = ['fmt', '--version']\n"
        "fmnist_toolkit.cli.run()"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    before, version, during = result.stdout.split("\n")[:3]
    assert int(before) == gc.get_threshold()[0] != STARTUP_GC_THRESHOLD
    assert version.startswith("fmnist-toolkit ") and int(during) == STARTUP_GC_THRESHOLD


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


def test_public_api_surface() -> None:
    import fmnist_toolkit

    shown = dir(fmnist_toolkit)
    assert {"load_model", "list_models", "load_fashion_mnist", "__version__"} <= set(shown)
    assert not {"os", "TYPE_CHECKING", "annotations", "_os"} & set(shown)


def test_public_api_errors_are_standard_exceptions(tmp_path) -> None:
    import pytest
    import torch

    import fmnist_toolkit
    from fmnist_toolkit.errors import ModelNotFoundError, UsageError
    from fmnist_toolkit.models import build_model
    from fmnist_toolkit.storage import ModelStore

    with pytest.raises(LookupError):
        fmnist_toolkit.load_model("ghost")
    with pytest.raises(ValueError, match="URLs are not supported"):
        fmnist_toolkit.load_model("https://example.org/ae-16/model.safetensors")
    with pytest.raises(ValueError, match="unknown device"):
        fmnist_toolkit.load_model("ghost", device="tpu")
    assert ModelNotFoundError.exit_code == 1 and UsageError.exit_code == 2  # CLI codes kept

    model = build_model("autoencoder", "seed", latent_dim=4)
    ModelStore().save("ae-4", model.state_dict(), {
        "kind": "autoencoder",
        "model": {"kind": "autoencoder", "architecture": "seed", "params": {"latent_dim": 4}},
    })  # fmt: skip
    assert [m.name for m in fmnist_toolkit.list_models()] == ["ae-4"]
    loaded = fmnist_toolkit.load_model("ae-4", device="cpu")
    assert next(loaded.parameters()).device == torch.device("cpu") and not loaded.training
