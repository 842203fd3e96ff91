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
    """An output file goes into an existing, writable folder (as with a shell's ``>``: a typo in
    a folder's name is an error, not a new folder) and must not be a folder itself."""
    _check_parent(path, path.parent)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; name a file")
    return path


def _check_parent(out: Path | str, parent: Path) -> None:
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {out}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise OutputError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {out}: folder {parent} is not writable")


def check_sample_target(out: str, kind: str) -> None:
    """Where ``fmt gan sample`` writes: a file in an existing writable folder, or a new or
    empty folder (``kind`` "folder"); "-" is stdout."""
    if out == "-":
        return
    target = Path(out)
    if kind != "folder":
        ensure_writable_file(target)
        return
    _check_parent(out, target.parent if target.name else target)
    if target.is_dir() and any(target.iterdir()):
        raise OutputError(f"folder {out} is not empty; name a new or empty folder")
