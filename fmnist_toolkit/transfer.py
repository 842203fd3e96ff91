"""Models that travel, and a tidy store: zip archives in and out, sizes, pruning.

An archive holds exactly ``model.safetensors``, ``config.json`` and ``manifest.json`` (the
SHA-256 of both). Reading one trusts nothing: members are checked by name, type and declared
size before a byte is extracted (no pickles, no ``../``, no symlinks, no zip bombs), and
extracted bytes must match the manifest. Whether the weights fit the config's architecture is
the engine's check (``engine.model_io``); this module never imports torch's model code.

Kept beside ``storage.py`` (the same layer) so the store itself stays small.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fmnist_toolkit.errors import (
    ModelCorruptError,
    ModelNotFoundError,
    OutputError,
    RunInProgressError,
    UsageError,
)
from fmnist_toolkit.storage import (
    _CHECKPOINTS,
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelStore,
    cannot_write,
    sha256_hex,
    write_file_atomically,
)

ARCHIVE_MANIFEST = "manifest.json"
ARCHIVE_FORMAT = "fmnist-toolkit-model/1"
ARCHIVE_MEMBERS = (WEIGHTS_FILE, CONFIG_FILE, ARCHIVE_MANIFEST)
# Far above any model this toolkit trains (the widest is a few MB), far below a zip bomb.
MAX_MEMBER_BYTES = 200 * 1024 * 1024
# A staging folder younger than this may belong to a save in progress in another process.
LEFTOVER_AGE_S = 3600.0
# storage.py stages writes in .tmp-*, moves replaced models to .trash-*; prune() uses .pruning-*.
_LEFTOVER_PREFIXES = (".tmp-", ".trash-", ".pruning-")


def folder_size(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it vanished while we looked)."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink():
                total += path.stat().st_size
    return total


# ----------------------------------------------------------------- export
def export_model(store: ModelStore, name: str, archive: Path) -> Path:
    """Write model ``name`` (the user's or a bundled one) into the zip ``archive``, atomically:
    a temporary file renamed into place, so a failed export leaves no half zip."""
    folder = store.require(name)
    if store.source(name) == "bundled":
        store._verify_bundled(name, folder)
    try:
        files = {file: (folder / file).read_bytes() for file in (WEIGHTS_FILE, CONFIG_FILE)}
    except OSError as error:
        raise ModelCorruptError(f"model {name!r}: cannot read its files ({error})") from error
    manifest = {
        "format": ARCHIVE_FORMAT,
        "name": name,
        "sha256": {file: sha256_hex(content) for file, content in files.items()},
    }
    files[ARCHIVE_MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
    archive = archive.expanduser()
    if archive.is_dir():
        raise OutputError(f"{archive} is a folder; give the path of the .zip to write")
    if archive.suffix.lower() != ".zip":
        raise UsageError(f"{archive}: an export is a zip archive; give it a .zip name")

    def pack(path: Path) -> None:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for file, content in files.items():
                # A fixed timestamp: the same model always packs into the same bytes.
                member = zipfile.ZipInfo(file, date_time=(1980, 1, 1, 0, 0, 0))
                member.compress_type = zipfile.ZIP_DEFLATED
                bundle.writestr(member, content)

    write_file_atomically(archive, pack)
    return archive


# ----------------------------------------------------------------- import
def _check_members(bundle: zipfile.ZipFile, label: str) -> None:
    """Refuse anything but the three expected regular files of sane size, before extracting."""
    names = [info.filename for info in bundle.infolist()]
    for info in bundle.infolist():
        name = info.filename
        if name.startswith(("/", "\\")) or ".." in name.replace("\\", "/").split("/"):
            raise ModelCorruptError(f"{label}: refusing member {name!r} (a path outside the model)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ModelCorruptError(f"{label}: refusing member {name!r} (a symbolic link)")
        if name not in ARCHIVE_MEMBERS:
            raise ModelCorruptError(
                f"{label}: unexpected member {name!r}; a model archive holds only "
                f"{', '.join(ARCHIVE_MEMBERS)} (pickles are never loaded)"
            )
        if info.file_size > MAX_MEMBER_BYTES:
            raise ModelCorruptError(
                f"{label}: member {name!r} would unpack to {info.file_size} bytes, over the "
                f"{MAX_MEMBER_BYTES // 2**20} MiB limit"
            )
    if len(names) != len(set(names)):
        raise ModelCorruptError(f"{label}: a member appears twice")
    missing = [member for member in ARCHIVE_MEMBERS if member not in names]
    if missing:
        raise ModelCorruptError(f"{label}: not a model archive (missing {', '.join(missing)})")


def _read_member(bundle: zipfile.ZipFile, name: str, label: str) -> bytes:
    """A member's bytes, never more than the cap even if its header lies."""
    with bundle.open(name) as member:
        content = member.read(MAX_MEMBER_BYTES + 1)
    if len(content) > MAX_MEMBER_BYTES:
        raise ModelCorruptError(f"{label}: member {name!r} unpacks past the size limit")
    return content


def read_archive(archive: Path) -> tuple[dict[str, bytes], dict]:
    """The model files of an archive (name -> bytes) and its manifest, after every check that
    needs no torch: member names, types and sizes, then each file's SHA-256."""
    archive = Path(archive).expanduser()
    label = str(archive)
    if archive.is_dir():
        raise UsageError(f"{archive} is a folder; give the .zip that fmt models export wrote")
    if not archive.is_file():
        raise ModelNotFoundError(f"no model archive at {archive}")
    try:
        with zipfile.ZipFile(archive) as bundle:
            _check_members(bundle, label)
            contents = {name: _read_member(bundle, name, label) for name in ARCHIVE_MEMBERS}
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        EOFError,
        NotImplementedError,
        zlib.error,  # a damaged deflate stream: zipfile lets zlib's own error through
    ) as error:
        raise ModelCorruptError(f"{label}: not a readable zip archive ({error})") from None
    except (OSError, RuntimeError) as error:  # RuntimeError: encrypted members
        raise ModelCorruptError(f"{label}: cannot read the archive ({error})") from None
    try:
        manifest = json.loads(contents.pop(ARCHIVE_MANIFEST))
    except ValueError as error:
        raise ModelCorruptError(f"{label}: its {ARCHIVE_MANIFEST} is not JSON") from error
    kind = manifest.get("format") if isinstance(manifest, dict) else None
    if kind != ARCHIVE_FORMAT:
        raise ModelCorruptError(
            f"{label}: not a model archive this version reads (format {kind!r}, "
            f"expected {ARCHIVE_FORMAT!r})"
        )
    hashes = manifest.get("sha256")
    if not isinstance(hashes, dict):
        raise ModelCorruptError(f"{label}: its {ARCHIVE_MANIFEST} lists no SHA-256")
    for file, content in contents.items():
        if hashes.get(file) != sha256_hex(content):
            raise ModelCorruptError(
                f"{label}: {file} does not match the archive's manifest (SHA-256); "
                "the archive is damaged or was altered"
            )
    try:
        config = json.loads(contents[CONFIG_FILE])
    except ValueError as error:
        raise ModelCorruptError(f"{label}: its {CONFIG_FILE} is not JSON") from error
    if not isinstance(config, dict):
        raise ModelCorruptError(f"{label}: its {CONFIG_FILE} is not a JSON object")
    return contents, manifest


@contextlib.contextmanager
def unpacked(archive: Path) -> Iterator[Path]:
    """A temporary model folder holding an archive's checked files; removed afterwards."""
    contents, _ = read_archive(archive)
    with tempfile.TemporaryDirectory(prefix="fmt-import-") as temporary:
        folder = Path(temporary)
        for file, content in contents.items():
            (folder / file).write_bytes(content)
        yield folder


def archive_name(archive: Path) -> str | None:
    """The model name an archive was exported under (None when it does not say)."""
    _, manifest = read_archive(archive)
    name = manifest.get("name")
    return name if isinstance(name, str) else None


def install(store: ModelStore, folder: Path, name: str) -> Path:
    """Put a checked model folder into the store as ``name``, atomically; refuse to replace."""
    if store.exists(name):
        raise UsageError(
            f"a model named {name!r} already exists; import under another name with --name"
        )
    from safetensors.torch import load

    tensors = load((folder / WEIGHTS_FILE).read_bytes())
    config = json.loads((folder / CONFIG_FILE).read_text())
    if "name" in config:  # the store's name, not the exporter's
        config["name"] = name
    try:
        return store.save(name, tensors, config)
    except OSError as error:
        raise cannot_write(store.model_dir(name), error) from None


# ----------------------------------------------------------------- prune
@dataclass(frozen=True)
class PruneCandidate:
    """Something ``fmt models prune`` would delete, and why."""

    path: Path
    reason: str  # "checkpoint" (of an interrupted run) or "leftover" (a crashed write's folder)
    size: int


def _age_s(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def prune_candidates(store: ModelStore, *, older_than_days: float) -> list[PruneCandidate]:
    """Checkpoints of interrupted runs older than ``older_than_days`` whose run is not going on
    now, and temporary folders the store's atomic writes left behind after a crash."""
    if older_than_days < 0:
        raise UsageError(f"--older-than must be 0 or more days, not {older_than_days}")
    now = time.time()
    found = []
    for run in store.interrupted():
        if _age_s(run.path / CONFIG_FILE, now) < older_than_days * 86400:
            continue
        if _run_in_progress(store, run.name):
            continue
        found.append(PruneCandidate(run.path, "checkpoint", folder_size(run.path)))
    for parent in (store.root, store.root / _CHECKPOINTS):
        if not parent.is_dir():
            continue
        for folder in sorted(parent.iterdir()):
            leftover = folder.name.startswith(_LEFTOVER_PREFIXES) and folder.is_dir()
            if leftover and _age_s(folder, now) >= LEFTOVER_AGE_S:
                found.append(PruneCandidate(folder, "leftover", folder_size(folder)))
    return found


def _run_in_progress(store: ModelStore, name: str) -> bool:
    try:
        with store.exclusive_run(name):
            return False
    except RunInProgressError:
        return True


def prune(candidates: list[PruneCandidate]) -> list[PruneCandidate]:
    """Delete the candidates (renamed away first, so none is ever half there); return them."""
    removed = []
    for candidate in candidates:
        trash = candidate.path.parent / f".pruning-{candidate.path.name}-{os.getpid()}"
        try:
            os.replace(candidate.path, trash)
        except FileNotFoundError:
            continue  # gone already (another prune)
        except OSError as error:
            raise OutputError(
                f"cannot remove {candidate.path} ({error.strerror or error})"
            ) from None
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(candidate)
    return removed
