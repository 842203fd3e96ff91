"""Output paths checked before any work is done: folders for plots, figure files, sample targets.

Each check fails with an :class:`OutputError` (one line) before hours of training or drawing,
not after.
"""

from __future__ import annotations

import os
from pathlib import Path

from fmnist_toolkit.errors import OutputError


def ensure_writable_folder(folder: Path, what: str = "") -> None:
    """Create ``folder`` if needed and check it can be written; ``what`` (an option such as
    ``--plots``) starts the message."""
    label = f"{what} {folder}" if what else str(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{label}: cannot create it ({error.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{label}: not writable")


def ensure_writable_file(path: Path) -> Path:
    """Create the folder of an output file if needed; the file must be writable, not a folder."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{path}: cannot create its folder ({error.strerror})") from None
    if not os.access(folder, os.W_OK) or path.is_dir():
        raise OutputError(f"{path}: not writable")
    return path


def check_sample_target(out: str, kind: str) -> None:
    """Where ``fmt gan sample`` writes: a file in an existing writable folder, or a new or
    empty folder (``kind`` "folder"); "-" is stdout."""
    if out == "-":
        return
    target = Path(out)
    parent = target.parent if kind != "folder" or target.name else target
    if not parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {out}: folder {parent} is not writable")
    if kind == "folder" and target.is_dir() and any(target.iterdir()):
        raise OutputError(f"folder {out} is not empty; name a new or empty folder")
    if kind != "folder" and target.is_dir():
        raise OutputError(f"{out} is a folder; name a file")
