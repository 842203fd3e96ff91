"""fmt models list --kind and sizes, and fmt models prune (export/import: tests/test_faults.py)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import torch

from fmnist_toolkit.storage import ModelStore
from tests.test_cli import assert_one_line_error
from tests.test_storage import save_autoencoder


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    for item in [path, *path.rglob("*")]:
        os.utime(item, (then, then))


def test_list_filters_by_kind_and_shows_sizes(cli, isolated_home: Path) -> None:
    store = ModelStore(isolated_home)
    save_autoencoder(store, "ae")
    store.save("clf", {"w": torch.zeros(3)}, {"kind": "classifier"})
    store.save("dn", {"w": torch.zeros(3)}, {"kind": "denoiser"})
    listing = json.loads(cli("models", "list", "--kind", "classifier", "--json").stdout)
    assert [entry["name"] for entry in listing] == ["clf"]
    listing = json.loads(cli("models", "list", "--kind", "denoiser", "--json").stdout)
    assert [entry["name"] for entry in listing] == ["dn"]
    sizes = {
        entry["name"]: entry["size"] for entry in json.loads(cli("models", "list", "--json").stdout)
    }
    assert sizes["ae"] > sizes["clf"] > 0
    table = cli("models", "list")
    assert table.exit_code == 0 and "size" in table.stdout and " kB" in table.stdout
    assert "No generator models" in cli("models", "list", "--kind", "generator").stderr


@pytest.mark.parametrize("width", [80, 200])
def test_list_fits_the_terminal(cli, isolated_home: Path, monkeypatch, width: int) -> None:
    from rich.console import Console

    from fmnist_toolkit.cli import _render

    store = ModelStore(isolated_home)
    save_autoencoder(store, "autoencoder-with-a-long-name", metrics={"test_mse": 0.0123})
    store.save("clf", {"w": torch.zeros(3)}, {"kind": "classifier"})
    terminal = Console(width=width, force_terminal=True, no_color=True, highlight=False)
    monkeypatch.setattr(_render, "results", terminal)
    with terminal.capture() as captured:
        assert cli("models", "list").exit_code == 0
    lines = re.sub(r"\x1b\[[0-9;]*m", "", captured.get()).splitlines()  # no styles
    assert lines and all(len(line) <= width for line in lines)
    assert any("autoencoder-with-a-long-name" in line and "0.01230" in line for line in lines)
    assert ("architecture" in captured.get()) == (width > 140)  # narrow: the scanned columns


def test_list_piped_with_columns_fits_them(cli, isolated_home: Path, monkeypatch) -> None:
    save_autoencoder(ModelStore(isolated_home), "ae", metrics={"test_mse": 0.0123})
    monkeypatch.setenv("COLUMNS", "80")
    piped = cli("models", "list").stdout
    assert "architecture" not in piped and "0.01230" in piped
    assert all(len(line) <= 80 for line in piped.splitlines())
    monkeypatch.delenv("COLUMNS")
    assert "architecture" in cli("models", "list").stdout  # a pipe: the natural width


def test_prune_stale_checkpoints_and_leftovers(cli, isolated_home: Path) -> None:
    store = ModelStore(isolated_home)
    store.save_checkpoint("old-run", {"w": torch.zeros(3)}, {"kind": "autoencoder", "epoch": 1})
    store.save_checkpoint("new-run", {"w": torch.zeros(3)}, {"kind": "autoencoder", "epoch": 1})
    _age(store.checkpoint_dir("old-run"), 10 * 86400)
    crashed = isolated_home / ".tmp-ae-0123"
    crashed.mkdir()
    (crashed / "model.safetensors").write_bytes(b"half")
    in_progress = isolated_home / ".tmp-ae-4567"
    in_progress.mkdir()
    _age(crashed, 7200)

    dry = json.loads(cli("models", "prune", "--dry-run", "--json").stdout)
    assert sorted(Path(entry["path"]).name for entry in dry["would_remove"]) == [
        ".tmp-ae-0123",
        "old-run",
    ]
    assert crashed.exists() and store.has_checkpoint("old-run")
    assert_one_line_error(cli("models", "prune"), 2, "--yes")  # no terminal to ask on
    assert cli("models", "prune", "--yes").exit_code == 0
    assert not crashed.exists() and not store.has_checkpoint("old-run")
    assert in_progress.exists() and store.has_checkpoint("new-run")
    everything = json.loads(cli("models", "prune", "--older-than", "0", "--yes", "--json").stdout)
    assert [Path(entry["path"]).name for entry in everything["removed"]] == ["new-run"]


def test_prune_keeps_the_checkpoint_of_a_running_run(cli, isolated_home: Path) -> None:
    store = ModelStore(isolated_home)
    store.save_checkpoint("busy", {"w": torch.zeros(3)}, {"kind": "autoencoder", "epoch": 1})
    with store.exclusive_run("busy"):
        result = cli("models", "prune", "--older-than", "0", "--yes", "--json")
    assert json.loads(result.stdout)["removed"] == []
    assert store.has_checkpoint("busy")
