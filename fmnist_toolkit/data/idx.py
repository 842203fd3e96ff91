"""IDX files: where the four Fashion-MNIST files are, and reading them into tensors."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist_toolkit.errors import DataCorruptError, DataMissingError, UsageError

if TYPE_CHECKING:
    import torch


DATA_DIR_ENV = "FMT_DATA_DIR"
SPLITS = ("train", "test")
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SIZE = 28
_IMAGES_MAGIC = 0x00000803  # IDX: unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # IDX: unsigned byte, 1 dimension
_GZIP_MAGIC = b"\x1f\x8b"

# MD5 of each *decompressed* file, as published by Zalando Research. Checked instead of the
# archive's MD5 because a re-compressed .gz is the same data with different bytes.
RAW_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetFile:
    """One of the four files: its IDX name, decompressed MD5 and (when known) archive MD5."""

    name: str
    raw_md5: str
    archive_md5: str | None = None


@dataclass(frozen=True)
class FileCheck:
    """The outcome of verifying one file."""

    name: str
    path: Path | None
    ok: bool
    problem: str = ""


ProgressHook = Callable[[str, int, int | None], None]
"""Called as ``hook(file_name, bytes_done, bytes_total_or_None)`` while a file transfers."""


def default_data_dir() -> Path:
    """The per-user data directory (platformdirs) used when neither flag nor env var is set."""
    import platformdirs

    return Path(platformdirs.user_data_dir("fmnist-toolkit", appauthor=False)) / "fashion-mnist"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the data lives: the argument, else ``FMT_DATA_DIR``, else the per-user directory."""
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    return default_data_dir()


def fetch_command(data_dir: Path) -> str:
    """The command that downloads the data into ``data_dir``: a hint that fills the folder
    the user is using, not the default one."""
    import shlex

    if data_dir == resolve_data_dir():
        return "fmt data fetch"
    return f"fmt data fetch --data-dir {shlex.quote(str(data_dir))}"


def _candidates(data_dir: Path, name: str) -> list[Path]:
    folders = (data_dir, data_dir / "FashionMNIST" / "raw")
    return [folder / (name + suffix) for folder in folders for suffix in ("", ".gz")]


def find_file(data_dir: Path, name: str) -> Path | None:
    """The file holding IDX ``name`` in ``data_dir`` (plain or .gz, flat or torchvision layout)."""
    return next((path for path in _candidates(data_dir, name) if path.is_file()), None)


def _missing_message(data_dir: Path, name: str) -> str:
    return (
        f"Fashion-MNIST not found: no {name}[.gz] in {data_dir}; run `{fetch_command(data_dir)}`, "
        "or pass --data-dir with the folder that has the files"
    )


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed bytes of an IDX file, gzipped or not."""
    try:
        content = path.read_bytes()
    except OSError as error:
        raise DataCorruptError(f"{path}: cannot read ({error.strerror})") from error
    if content[:2] != _GZIP_MAGIC:
        return content
    try:
        return gzip.decompress(content)
    except (EOFError, OSError, zlib.error) as error:
        raise DataCorruptError(f"{path}: broken or truncated gzip stream ({error})") from error


def parse_idx(content: bytes, *, path: Path, expect_magic: int) -> tuple[tuple[int, ...], bytes]:
    """Check an IDX header against its payload; return the dimensions and the payload."""
    if len(content) < 8:
        raise DataCorruptError(f"{path}: truncated, only {len(content)} bytes")
    (magic,) = struct.unpack(">I", content[:4])
    if magic != expect_magic:
        kind = "image" if expect_magic == _IMAGES_MAGIC else "label"
        raise DataCorruptError(
            f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expect_magic:08x} "
            f"(an IDX {kind} file)"
        )
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataCorruptError(f"{path}: truncated inside its header")
    dims = struct.unpack(f">{ndim}I", content[4:header_size])
    expected = 1
    for size in dims:
        expected *= size
    payload = content[header_size:]
    if len(payload) != expected:
        shape = "x".join(map(str, dims))
        problem = "truncated" if len(payload) < expected else "has trailing bytes"
        raise DataCorruptError(
            f"{path}: {problem}: header says {shape} = {expected} bytes, file has {len(payload)}"
        )
    return dims, payload


def _check_split_name(split: str) -> None:
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; use one of: {', '.join(SPLITS)}")


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as ``(images uint8 [N, 28, 28], labels int64 [N])`` CPU tensors."""
    import torch

    _check_split_name(split)
    folder = resolve_data_dir(data_dir)
    images_name, labels_name = SPLIT_FILES[split]
    paths = {}
    for name in (images_name, labels_name):
        path = find_file(folder, name)
        if path is None:
            raise DataMissingError(_missing_message(folder, name))
        paths[name] = path

    image_dims, image_bytes = parse_idx(
        read_idx_bytes(paths[images_name]), path=paths[images_name], expect_magic=_IMAGES_MAGIC
    )
    label_dims, label_bytes = parse_idx(
        read_idx_bytes(paths[labels_name]), path=paths[labels_name], expect_magic=_LABELS_MAGIC
    )
    if image_dims[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataCorruptError(f"{paths[images_name]}: images are {image_dims[1:]}, not 28x28")
    if image_dims[0] == 0:
        raise DataCorruptError(f"{paths[images_name]}: holds no images")
    if image_dims[0] != label_dims[0]:
        raise DataCorruptError(
            f"{paths[labels_name]}: {label_dims[0]} labels for {image_dims[0]} images"
        )
    images = torch.frombuffer(bytearray(image_bytes), dtype=torch.uint8).view(*image_dims)
    labels = torch.frombuffer(bytearray(label_bytes), dtype=torch.uint8).to(torch.int64)
    if labels.numel() and int(labels.max()) >= len(CLASS_NAMES):
        raise DataCorruptError(f"{paths[labels_name]}: label {int(labels.max())} is not a class")
    return images, labels


def dataset_sha256(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of a split's pixels and labels, recorded in every model trained on it."""
    digest = hashlib.sha256()
    digest.update(images.contiguous().cpu().numpy().tobytes())
    digest.update(labels.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()
