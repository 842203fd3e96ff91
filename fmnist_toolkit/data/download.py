"""Fetching: downloads from the official mirrors or copies from a folder, verified and
renamed into place under a lock."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist_toolkit.data.idx import (
    RAW_MD5,
    DatasetFile,
    ProgressHook,
    _candidates,
    find_file,
    resolve_data_dir,
)
from fmnist_toolkit.data.verify import _raw_files, check_file
from fmnist_toolkit.errors import DataCorruptError, DataMissingError, DownloadError
from fmnist_toolkit.storage import temporary_beside, usual_mode

if TYPE_CHECKING:
    pass


def official_files() -> list[DatasetFile]:
    """The four files with torchvision's archive checksums and the published raw ones."""
    from torchvision.datasets import FashionMNIST

    archive_md5 = {name.removesuffix(".gz"): md5 for name, md5 in FashionMNIST.resources}
    return [DatasetFile(name, md5, archive_md5.get(name)) for name, md5 in RAW_MD5.items()]


def official_mirrors() -> list[str]:
    """The download mirrors torchvision keeps for Fashion-MNIST."""
    from torchvision.datasets import FashionMNIST

    return list(FashionMNIST.mirrors)


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


def _publish(tmp_path: Path, final: Path, expected: DatasetFile) -> Path:
    """Rename a verified file into place and drop any other copy that would shadow it."""
    usual_mode(tmp_path, folder=False)  # mkstemp made it private (0600)
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
        tmp_path = temporary_beside(archive, suffix=".part")
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
            tmp_path = temporary_beside(final, suffix=".part")
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
