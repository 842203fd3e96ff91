"""Shared fixtures: tiny synthetic IDX files, an isolated store, the real data when present."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "fashion-mnist"


def idx_bytes(array_bytes: bytes, dims: tuple[int, ...]) -> bytes:
    """An IDX file of unsigned bytes: magic 0x0800|ndim, big-endian dims, payload."""
    return (
        struct.pack(">I", 0x0800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims) + array_bytes
    )


def synthetic_split(count: int, seed: int) -> tuple[bytes, bytes]:
    """Images whose class is visible: a bright block at a class-dependent place, plus noise."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 10
    images = torch.randint(0, 40, (count, 28, 28), generator=generator)
    for index, label in enumerate(labels.tolist()):
        row, col = 2 + (label // 5) * 12, 2 + (label % 5) * 5
        images[index, row : row + 12, col : col + 5] = 200 + label * 5
    return images.to(torch.uint8).numpy().tobytes(), labels.to(torch.uint8).numpy().tobytes()


def write_dataset(folder: Path, *, train: int = 256, test: int = 128, gzipped: bool = True) -> Path:
    """Write the four files (gzipped or not) into ``folder``; return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", train, 1), ("t10k", test, 2)):
        images, labels = synthetic_split(count, seed)
        files = {
            f"{split}-images-idx3-ubyte": idx_bytes(images, (count, 28, 28)),
            f"{split}-labels-idx1-ubyte": idx_bytes(labels, (count,)),
        }
        for name, content in files.items():
            if gzipped:
                (folder / f"{name}.gz").write_bytes(gzip.compress(content))
            else:
                (folder / name).write_bytes(content)
    return folder


def raw_files_of(folder: Path):
    """DatasetFile records with the MD5s of a synthetic dataset (for fetch/verify tests)."""
    from fmnist_toolkit.data import RAW_MD5, DatasetFile, read_idx_bytes

    records = []
    for name in RAW_MD5:
        path = folder / f"{name}.gz" if (folder / f"{name}.gz").exists() else folder / name
        digest = hashlib.md5(read_idx_bytes(path)).hexdigest()
        records.append(DatasetFile(name, digest))
    return records


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only-by-convention synthetic dataset shared by the whole session."""
    return write_dataset(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own empty model store and no data-dir or device from the caller."""
    home = tmp_path / "fmt-home"
    monkeypatch.setenv("FMT_HOME", str(home))
    monkeypatch.delenv("FMT_DATA_DIR", raising=False)
    monkeypatch.delenv("FMT_DEVICE", raising=False)
    # The package's bundled models would make every store non-empty; tests that want them
    # say so (tests/test_bundled.py).
    monkeypatch.setenv("FMT_BUNDLED_MODELS", "0")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    return home


@pytest.fixture
def real_data() -> Path:
    """The real Fashion-MNIST (../shared/fashion-mnist or FMT_REAL_DATA_DIR); skip when absent."""
    folder = Path(os.environ.get("FMT_REAL_DATA_DIR", SHARED_DATA))
    if (
        not (folder / "train-images-idx3-ubyte.gz").exists()
        and not (folder / "train-images-idx3-ubyte").exists()
    ):
        pytest.skip(f"real Fashion-MNIST not found at {folder}")
    return folder


@pytest.fixture
def runner():
    from typer.testing import CliRunner

    return CliRunner()


@pytest.fixture
def cli(runner):
    """Invoke ``fmt`` in-process: ``cli("ae", "train", ...)`` returns click's Result."""
    from fmnist_toolkit.cli import app

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [str(arg) for arg in args], input=input)

    return invoke


def has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if has_cuda():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip_gpu)
