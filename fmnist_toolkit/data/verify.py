"""Verification: the four files against the MD5s Zalando Research published."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist_toolkit.data.idx import (
    RAW_MD5,
    DatasetFile,
    FileCheck,
    find_file,
    read_idx_bytes,
    resolve_data_dir,
)
from fmnist_toolkit.errors import DataCorruptError

if TYPE_CHECKING:
    pass


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
