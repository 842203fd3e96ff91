"""Fashion-MNIST on disk and on the device: find, read, verify, fetch, and batch it.

The four official IDX files are read gzipped or not, from a data directory or from
torchvision's ``FashionMNIST/raw/`` layout inside it. A split is held as one uint8 tensor on the
training device; a batch is an index slice converted to float there, with no DataLoader.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import shutil
import struct
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist_toolkit.errors import DataCorruptError, DataMissingError, DownloadError, UsageError

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


def official_files() -> list[DatasetFile]:
    """The four files with torchvision's archive checksums and the published raw ones."""
    from torchvision.datasets import FashionMNIST

    archive_md5 = {name.removesuffix(".gz"): md5 for name, md5 in FashionMNIST.resources}
    return [DatasetFile(name, md5, archive_md5.get(name)) for name, md5 in RAW_MD5.items()]


def official_mirrors() -> list[str]:
    """The download mirrors torchvision keeps for Fashion-MNIST."""
    from torchvision.datasets import FashionMNIST

    return list(FashionMNIST.mirrors)


def _candidates(data_dir: Path, name: str) -> list[Path]:
    folders = (data_dir, data_dir / "FashionMNIST" / "raw")
    return [folder / (name + suffix) for folder in folders for suffix in ("", ".gz")]


def find_file(data_dir: Path, name: str) -> Path | None:
    """The file holding IDX ``name`` in ``data_dir`` (plain or .gz, flat or torchvision layout)."""
    return next((path for path in _candidates(data_dir, name) if path.is_file()), None)


def _missing_message(data_dir: Path, name: str) -> str:
    return (
        f"Fashion-MNIST not found: no {name}[.gz] in {data_dir}; "
        "run `fmt data fetch` or pass --data-dir DIR"
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


# --------------------------------------------------------------------------- verification


def _md5(content: bytes) -> str:
    return hashlib.md5(content, usedforsecurity=False).hexdigest()


def check_file(path: Path, expected: DatasetFile) -> str:
    """Empty when ``path`` holds exactly the published content of ``expected``; else the problem."""
    try:
        content = read_idx_bytes(path)
    except DataCorruptError as error:
        return str(error).removeprefix(f"{path}: ")
    actual = _md5(content)
    if actual != expected.raw_md5:
        return f"MD5 of the decompressed content is {actual}, expected {expected.raw_md5}"
    return ""


def verify_dataset(
    data_dir: str | os.PathLike[str] | None = None, files: Sequence[DatasetFile] | None = None
) -> list[FileCheck]:
    """Check each file by the MD5 of its decompressed content against the published one."""
    folder = resolve_data_dir(data_dir)
    checks = []
    for expected in files or _raw_files():
        path = find_file(folder, expected.name)
        if path is None:
            checks.append(FileCheck(expected.name, None, False, "missing"))
            continue
        problem = check_file(path, expected)
        checks.append(FileCheck(expected.name, path, not problem, problem))
    return checks


def _raw_files() -> list[DatasetFile]:
    return [DatasetFile(name, md5) for name, md5 in RAW_MD5.items()]


# --------------------------------------------------------------------------- fetching


@contextlib.contextmanager
def _fetch_lock(folder: Path) -> Iterator[None]:
    """One fetch or copy at a time per data folder; a second one fails at once, saying why."""
    from filelock import FileLock, Timeout

    folder.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(folder / ".fetch.lock"), timeout=0):
            yield
    except Timeout:
        raise DownloadError(
            f"another `fmt data fetch` is writing to {folder}; wait for it to finish"
        ) from None


def _temporary_beside(final: Path) -> Path:
    handle, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    os.close(handle)
    return Path(name)


def _publish(tmp_path: Path, final: Path, expected: DatasetFile) -> Path:
    """Rename a verified file into place and drop any other copy that would shadow it."""
    os.replace(tmp_path, final)
    for other in _candidates(final.parent, expected.name):
        if other != final and other.parent == final.parent and other.is_file():
            other.unlink()  # e.g. a corrupt uncompressed file that find_file would prefer
    return final


def _download_to(url: str, target: Path, *, name: str, timeout: float, hook: ProgressHook) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "fmnist-toolkit"})
    with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        hook(name, done, total)
        while chunk := response.read(1 << 16):
            out.write(chunk)
            done += len(chunk)
            hook(name, done, total)


def fetch_dataset(
    dest: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    files: Sequence[DatasetFile] | None = None,
    timeout: float = 30.0,
    progress: ProgressHook | None = None,
) -> list[Path]:
    """Download every missing or bad file from the mirrors into ``dest``; return the file paths.

    Each file is written to a temporary file in ``dest``, verified, then renamed into place, so
    a crash never leaves a half-written file under the real name. A corrupt or failed download
    moves on to the next mirror. A lock keeps two fetches from writing the same files.
    """
    folder = resolve_data_dir(dest)
    mirrors = list(mirrors) if mirrors is not None else official_mirrors()
    files = list(files) if files is not None else official_files()
    hook = progress or (lambda *_: None)
    written = []
    with _fetch_lock(folder):
        for expected in files:
            present = find_file(folder, expected.name)
            if present is not None and not check_file(present, expected):
                written.append(present)
                continue
            written.append(_fetch_one(folder, expected, mirrors, timeout, hook))
    return written


def _fetch_one(
    folder: Path, expected: DatasetFile, mirrors: Sequence[str], timeout: float, hook: ProgressHook
) -> Path:
    archive = folder / (expected.name + ".gz")
    tried = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + archive.name
        tmp_path = _temporary_beside(archive)
        try:
            try:
                _download_to(url, tmp_path, name=archive.name, timeout=timeout, hook=hook)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
                reason = getattr(error, "reason", None) or error
                tried.append(f"{url} ({reason})")
                continue
            problem = check_file(tmp_path, expected)
            if problem:
                tried.append(f"{url} (corrupt: {problem})")
                continue
            return _publish(tmp_path, archive, expected)
        finally:
            tmp_path.unlink(missing_ok=True)
    raise DownloadError(f"could not download {archive.name}; tried: {'; '.join(tried)}")


def copy_dataset(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str] | None = None,
    *,
    files: Sequence[DatasetFile] | None = None,
    progress: ProgressHook | None = None,
) -> list[Path]:
    """Copy and verify a local copy of the dataset (for offline machines) into ``dest``."""
    source_dir = Path(source).expanduser()
    folder = resolve_data_dir(dest)
    if not source_dir.is_dir():
        raise DataMissingError(f"{source_dir} is not a directory")
    files = list(files) if files is not None else _raw_files()
    hook = progress or (lambda *_: None)
    # Check everything before writing anything, so a bad source leaves dest untouched.
    sources = []
    for expected in files:
        path = find_file(source_dir, expected.name)
        if path is None:
            raise DataMissingError(f"no {expected.name}[.gz] in {source_dir}")
        problem = check_file(path, expected)
        if problem:
            raise DataCorruptError(f"{path}: {problem}")
        sources.append((path, expected))
    written = []
    with _fetch_lock(folder):
        for path, expected in sources:
            final = folder / path.name
            if final.exists() and final.resolve() == path.resolve():
                written.append(final)
                continue
            tmp_path = _temporary_beside(final)
            try:
                shutil.copyfile(path, tmp_path)
                problem = check_file(tmp_path, expected)  # the copy, not only the source
                if problem:
                    raise DataCorruptError(f"{final}: copy failed verification ({problem})")
                size = path.stat().st_size
                hook(path.name, size, size)
                written.append(_publish(tmp_path, final, expected))
            finally:
                tmp_path.unlink(missing_ok=True)
    return written


# --------------------------------------------------------------------------- device batches


@dataclass
class DeviceSplit:
    """A split held whole on one device as uint8; batches are index slices made float there."""

    images: torch.Tensor  # uint8 [N, 28, 28]
    labels: torch.Tensor  # int64 [N]

    @classmethod
    def load(
        cls, split: str, data_dir: str | os.PathLike[str] | None, device: torch.device
    ) -> DeviceSplit:
        """Read a split from disk and move it to ``device`` whole."""
        images, labels = load_fashion_mnist(split, data_dir)
        return cls(images.to(device), labels.to(device))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def num_batches(self, batch_size: int) -> int:
        """Batches per epoch, the last one possibly short."""
        return -(-len(self) // batch_size)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Float images [B, 1, 28, 28] in [0, 1] and labels; shuffled when given a generator.

        The epoch's images are put in order and made float in one operation, and each batch
        is a view of that: no work, and no kernel launch on an accelerator, per batch.
        """
        images, labels = epoch_order((self.images, self.labels), generator)
        yield from row_batches((to_unit_float(images), labels), batch_size)

    def subset(self, index: torch.Tensor) -> DeviceSplit:
        """The images and labels at ``index`` (e.g. a validation split), on the same device."""
        index = index.to(self.images.device)
        return DeviceSplit(self.images[index], self.labels[index])


def epoch_order(
    tensors: Sequence[torch.Tensor], generator: torch.Generator | None
) -> tuple[torch.Tensor, ...]:
    """Equally long tensors with their rows in one seeded random order (as they are without a
    generator); the order is drawn on the CPU, so it is the same on every device."""
    if generator is None:
        return tuple(tensors)
    order = shuffled_order(len(tensors[0]), generator).to(tensors[0].device)
    return tuple(tensor[order] for tensor in tensors)


def row_batches(
    tensors: Sequence[torch.Tensor], batch_size: int
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Consecutive batches of rows (views) of equally long tensors, the last possibly short."""
    for start in range(0, len(tensors[0]), batch_size):
        yield tuple(tensor[start : start + batch_size] for tensor in tensors)


def shuffled_order(count: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of ``range(count)`` drawn on the CPU: the same order on every device."""
    import torch

    return torch.randperm(count, generator=generator)


def split_indices(count: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (train, validation) partition of ``range(count)``; the same seed gives the same
    split, so every run of a recipe validates on the same images."""
    import torch

    if not 0 < fraction < 1:
        raise UsageError(f"the validation fraction must be between 0 and 1, not {fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    held_out = max(1, round(count * fraction))
    return order[held_out:].sort().values, order[:held_out].sort().values


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] to float [N, 1, 28, 28] in [0, 1], on the tensor's own device."""
    return images.unsqueeze(1).float().div_(255.0)


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, max_shift: int = 2
) -> torch.Tensor:
    """Each image of a batch [B, 1, 28, 28] mirrored left-right with probability 1/2 and moved
    by up to ``max_shift`` pixels each way (zero fill), on the batch's own device.

    Per image, unlike torchvision's transforms on a batch tensor (one draw for the batch). The
    draws come from a seeded CPU generator, so a run augments the same on every device.
    """
    import torch

    count, size = images.shape[0], images.shape[-1]
    device = images.device
    flip = (torch.rand(count, generator=generator) < 0.5).to(device)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, count), generator=generator).to(device)
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    span = torch.arange(size, device=device)
    rows = (offsets[0].view(-1, 1) + span).view(count, 1, size, 1)
    columns = (offsets[1].view(-1, 1) + span).view(count, 1, 1, size)
    batch = torch.arange(count, device=device).view(count, 1, 1, 1)
    return padded[batch, 0, rows, columns]


# --------------------------------------------------------------------------- user images


def image_like_fashion_mnist(path: str | os.PathLike[str]) -> torch.Tensor:
    """A user's picture (PNG, JPEG, ... any size) as Fashion-MNIST makes its images: uint8 [28, 28].

    Following the data set's own conversion: grayscale; the garment made light on a dark
    background (inverted when the picture's border is light); the background trimmed; the longest
    side resized to 28 pixels; the rest padded to 28x28 with the garment centred.
    """
    import numpy as np
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert("L")
    except FileNotFoundError:
        raise DataMissingError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataCorruptError(f"{path}: not an image this tool can read ({error})") from None
    pixels = np.asarray(image, dtype=np.float32)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if np.median(border) > 127:  # light background, as in photos: Fashion-MNIST is inverted
        pixels = 255.0 - pixels
    background = float(
        np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]))
    )
    rows = np.flatnonzero((pixels > background + 20).any(axis=1))
    columns = np.flatnonzero((pixels > background + 20).any(axis=0))
    if not rows.size:
        raise DataCorruptError(f"{path}: no garment found (the picture is blank)")
    pixels = pixels[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    pixels = np.clip(pixels - background, 0, 255)
    height, width = pixels.shape
    scale = IMAGE_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(pixels.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    canvas.paste(resized, ((IMAGE_SIZE - size[0]) // 2, (IMAGE_SIZE - size[1]) // 2))
    return torch.from_numpy(np.asarray(canvas, dtype=np.uint8).copy())
