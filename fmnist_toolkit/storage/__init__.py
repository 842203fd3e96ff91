"""The per-user model store: safetensors weights + a JSON config per model; no pickle, ever.

Layout: ``<root>/<name>/model.safetensors`` and ``<root>/<name>/config.json``; checkpoints of
unfinished runs in ``<root>/.checkpoints/<name>/`` in the same two-file form. Writes build a
temporary directory and swap it in under a per-name lock, so readers never see a half-written
model and two writers never leave a mixed one.

Models bundled with the package (``fmnist_toolkit/pretrained/``, listed with their SHA-256 in
its ``manifest.json``) are a read-only second layer: found when the user's store has no model
of that name, verified against the manifest when loaded. A user's model of the same name wins,
and listings say so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.errors import (
    InvalidNameError,
    ModelCorruptError,
    ModelNotFoundError,
    OutputError,
    ReadOnlyModelError,
    RunInProgressError,
    with_article,
)
from fmnist_toolkit.storage.files import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    cannot_write,
    read_bundle,
    read_config_file,
    sha256_hex,
    temporary_beside,
    usual_mode,
    write_bundle,
    write_file_atomically,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "InterruptedRun",
    "ModelStore",
    "StoredModel",
    "cannot_write",
    "read_bundle",
    "read_config_file",
    "sha256_hex",
    "temporary_beside",
    "usual_mode",
    "validate_name",
    "write_bundle",
    "write_file_atomically",
]

STORE_ENV = "FMT_HOME"
BUNDLED_ENV = "FMT_BUNDLED_MODELS"  # "0" hides the bundled models; a folder replaces them
BUNDLED_ROOT = Path(__file__).resolve().parent.parent / "pretrained"
MANIFEST_FILE = "manifest.json"
# Models once bundled and later replaced by a better one of the same kind: a user who asks for
# one by name is told what to use instead.
RETIRED_BUNDLED = {
    "ae-wide-16": (
        "no longer bundled: ae-wide-16-onecycle, the same architecture with a one-cycle "
        "schedule, replaces it (test MSE 0.008362 against 0.008891); "
        "fmt ae train --arch wide trains it again"
    ),
    "clf-ae-wide-16": (
        "no longer bundled: clf-ae-wide-16-onecycle, a frozen head on ae-wide-16-onecycle "
        "trained with the field's tools, replaces it (test accuracy 89.90 % against 88.78 %)"
    ),
    "ae-wide-64-denoise": (
        "no longer bundled on its own: denoiser-gan-mlp holds it behind a detector of "
        "gan-mlp's samples, which leaves real images almost unchanged (load_model"
        "('denoiser-gan-mlp').denoiser is the plain redraw; docs/gan.md)"
    ),
}
_CHECKPOINTS = ".checkpoints"
_SETTLE_SECONDS = 10  # the longest a look waits for another process's save or remove
# The tuning studies' default SQLite file beside the models (fmt ae tune); SQLite adds its
# -journal, -wal and -shm files next to it. No model may take these names.
STUDIES_FILE = "studies.sqlite3"
_LOCKS = ".locks"
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def default_store_root() -> Path:
    """``FMT_HOME`` if set, else the per-user cache directory of fmnist-toolkit."""
    from_env = os.environ.get(STORE_ENV)
    if from_env:
        return Path(from_env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("fmnist-toolkit", appauthor=False))


# Names Windows keeps for devices, with any extension ("con.txt" too): a folder of such a
# name cannot be made there, so an exported model of that name could not be imported.
_WINDOWS_DEVICES = {"con", "prn", "aux", "nul"} | {
    f"{port}{n}" for port in ("com", "lpt") for n in range(1, 10)
}


def validate_name(name: str) -> str:
    """A model name: letters, digits and ``-_.``, starting with a letter or digit, no ``..``."""
    if not _NAME_PATTERN.fullmatch(name) or ".." in name:
        raise InvalidNameError(
            f"invalid model name {name!r}: use letters, digits, '-', '_' and '.', "
            "starting with a letter or digit, without '..' (at most 100 characters)"
        )
    return name


def bundled_root() -> Path | None:
    """The package's bundled models; ``FMT_BUNDLED_MODELS=0`` hides them, and a folder (with
    its own manifest) stands in for them."""
    setting = os.environ.get(BUNDLED_ENV, "")
    if setting == "0":
        return None
    return Path(setting).expanduser() if setting not in ("", "1") else BUNDLED_ROOT


@dataclass(frozen=True)
class StoredModel:
    """One entry of the store as ``fmt models list`` shows it."""

    name: str
    kind: str
    path: Path
    config: dict[str, Any]
    source: str = "user"  # or "bundled" (read-only, shipped with the package)
    shadowed: bool = False  # a bundled model hidden by the user's model of the same name


@dataclass(frozen=True)
class InterruptedRun:
    """The checkpoint of a run that stopped before it saved its model (``--resume`` goes on)."""

    name: str
    kind: str
    path: Path
    epoch: int | None  # epochs done
    epochs: int | None  # epochs the recipe asked for
    state: dict[str, Any]


_DEFAULT = object()


def _inode(folder: Path) -> int | None:
    """Which directory is at ``folder`` now (None: none), to notice that a save replaced it."""
    try:
        return folder.stat().st_ino
    except OSError:
        return None


def _bundles_in(root: Path | None) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """(folder, config) of each bundle under ``root`` by name; config None when damaged."""
    if root is None or not root.is_dir():
        return
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not (folder / CONFIG_FILE).is_file():
            continue
        try:
            yield folder, read_config_file(folder, folder.name)
        except ModelNotFoundError:
            continue  # replaced or removed while we looked
        except ModelCorruptError:
            yield folder, None


def _models_in(root: Path | None, source: str) -> list[StoredModel]:
    return [
        StoredModel(
            folder.name,
            str(config.get("kind", "unknown")) if config is not None else "corrupt",
            folder,
            config or {},
            source=source,
        )
        for folder, config in _bundles_in(root)
    ]


class ModelStore:
    """Models by name under one root directory, over the package's read-only bundled models."""

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, bundled: Any = _DEFAULT
    ) -> None:
        self.root = Path(root).expanduser() if root is not None else default_store_root()
        self.bundled: Path | None = bundled_root() if bundled is _DEFAULT else bundled
        self._manifest: dict[str, Any] | None = None

    # ----------------------------------------------------------------- bundled models
    def bundled_manifest(self) -> dict[str, Any]:
        """name -> {kind, files: {file: sha256}} of the bundled models ({} when none)."""
        if self._manifest is None:
            self._manifest = {}
            if self.bundled is not None and (self.bundled / MANIFEST_FILE).is_file():
                manifest = json.loads((self.bundled / MANIFEST_FILE).read_text())
                self._manifest = dict(manifest.get("models", {}))
        return self._manifest

    def _bundled_dir(self, name: str) -> Path | None:
        if self.bundled is None or name not in self.bundled_manifest():
            return None
        folder = self.bundled / name
        return folder if (folder / CONFIG_FILE).is_file() else None

    def source(self, name: str) -> str:
        """Where ``name`` comes from: "user" (the store wins) or "bundled"."""
        return "user" if (self.model_dir(name) / CONFIG_FILE).is_file() else "bundled"

    def _verify_bundled(self, name: str, folder: Path) -> None:
        """Both files of a bundled model must match the manifest's SHA-256."""
        expected = self.bundled_manifest()[name].get("sha256", {})
        for file in (WEIGHTS_FILE, CONFIG_FILE):
            try:
                actual = sha256_hex((folder / file).read_bytes())
            except OSError as error:
                raise ModelCorruptError(
                    f"bundled model {name!r}: cannot read {file} ({error})"
                ) from None
            if actual != expected.get(file):
                raise ModelCorruptError(
                    f"bundled model {name!r}: {file} does not match the package's manifest "
                    "(SHA-256); reinstall fmnist-toolkit"
                )

    def check_bundled(self) -> dict[str, str]:
        """Each bundled model's problem ("" when both files match the manifest's SHA-256)."""
        problems = {}
        for name in self.bundled_manifest():
            folder = self.bundled / name if self.bundled is not None else None
            try:
                if folder is None or not (folder / CONFIG_FILE).is_file():
                    raise ModelCorruptError(f"bundled model {name!r}: its folder is missing")
                self._verify_bundled(name, folder)
                problems[name] = ""
            except ModelCorruptError as error:
                problems[name] = str(error)
        return problems

    # ----------------------------------------------------------------- paths and locks
    def model_dir(self, name: str) -> Path:
        """The folder of model ``name`` (which may not exist yet)."""
        return self.root / validate_name(name)

    def checkpoint_dir(self, name: str) -> Path:
        """The folder of the checkpoint of an unfinished run of ``name``."""
        return self.root / _CHECKPOINTS / validate_name(name)

    def _lock(self, purpose: str, name: str, *, timeout: float = -1):
        """A cross-process lock per (purpose, name); purposes live in separate folders so that
        no model name can collide with another purpose's lock."""
        from filelock import FileLock

        lock_dir = self.root / _LOCKS / purpose
        try:
            lock_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # the first write to the store: say which store, and why
            raise OutputError(
                f"the model store {self.described_root} is not a writable folder "
                f"({error.strerror or error}: {error.filename}); see fmt doctor"
            ) from None
        return FileLock(str(lock_dir / f"{validate_name(name)}.lock"), timeout=timeout)

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        # Never nested for one name: two FileLock objects on one file block each other even
        # within one process.
        with self._lock("write", name):
            yield

    @contextlib.contextmanager
    def exclusive_run(self, name: str) -> Iterator[None]:
        """Held while a run trains ``name``, so two runs never interleave one checkpoint."""
        from filelock import Timeout

        try:
            with self._lock("run", name, timeout=0):
                yield
        except Timeout:
            raise RunInProgressError(
                f"another run is training {name!r} right now; wait for it or choose another --name"
            ) from None

    def _replace_atomically(
        self, target: Path, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> Path:
        target.parent.mkdir(parents=True, exist_ok=True)
        # mkdir, not tempfile.mkdtemp: mkdtemp makes the folder 0700, so a shared FMT_HOME
        # would hide every model from the others; a plain mkdir honours the umask like any file.
        staging = target.parent / f".tmp-{name}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            write_bundle(staging, tensors, meta)
            with self._locked(name):
                # POSIX cannot rename a directory over a non-empty one: move the old aside first,
                # and put it back if anything (Ctrl-C included) stops the swap half-way.
                trash = None
                try:
                    if target.exists():
                        trash = target.parent / f".trash-{name}-{uuid.uuid4().hex}"
                        os.replace(target, trash)
                    os.replace(staging, target)
                except BaseException:
                    if trash is not None and not target.exists():
                        os.replace(trash, target)
                    raise
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return target

    # ----------------------------------------------------------------- models
    def exists(self, name: str) -> bool:
        """Whether a model ``name`` is saved (by the user, or bundled)."""
        return (self.model_dir(name) / CONFIG_FILE).is_file() or self._bundled_dir(name) is not None

    def check_new_name(self, name: str, *, kind: str | None = None) -> str:
        """``name``, fit for a model (of ``kind``, when given) about to be made: valid; not a
        bundled model's name unless of the same kind (a generator named ``ae-16`` would hide
        the autoencoder that commands default to); not the store's tuning studies file nor a
        folder of the store that is not a model; not the name of the user's model of another
        kind (it would be replaced); and, unless a model or an interrupted run
        of exactly that name is already here (replacing or resuming it is fine), a folder name
        on every system: no Windows device name, no trailing dot, and unlike every other model
        of this store in case alone (macOS and Windows take "AE-2" and "ae-2" for one folder,
        so the second would replace the first there)."""
        validate_name(name)
        bundled_kind = self.bundled_manifest().get(name, {}).get("kind")
        if kind is not None and bundled_kind is not None and bundled_kind != kind:
            raise InvalidNameError(
                f"{name!r} is the name of a bundled {bundled_kind}: {with_article(kind)} of "
                "that name would hide it from the commands that use it; pick another name"
            )
        folder = self.root / name
        if name.lower().startswith(STUDIES_FILE):
            raise InvalidNameError(
                f"{name!r} is the name of the store's tuning studies file; pick another name"
            )
        if self._in_the_way(folder, name):
            raise InvalidNameError(
                f"{folder} is in the way and is not a model (it has no {CONFIG_FILE}); move "
                "or delete it yourself, or pick another name"
            )
        if kind is not None and (existing := self._user_kind(name)) not in (None, kind):
            raise InvalidNameError(
                f"{name!r} is already your {existing}: {with_article(kind)} of that name would "
                f"replace it; pick another name, or remove it first (fmt models rm {name})"
            )
        names = self._names()
        if name in names:
            return name
        if name.endswith(".") or name.split(".")[0].lower() in _WINDOWS_DEVICES:
            raise InvalidNameError(
                f"invalid model name {name!r}: Windows cannot make a folder of that name "
                "(a device name, or a dot at the end); pick another"
            )
        twin = next((other for other in sorted(names) if other.lower() == name.lower()), None)
        if twin is not None:
            raise InvalidNameError(
                f"model name {name!r} differs from the existing {twin!r} only in case, which "
                "macOS and Windows do not tell apart; pick another name"
            )
        return name

    def _in_the_way(self, folder: Path, name: str) -> bool:
        """Whether ``folder`` exists and is not a model. A save or remove in another process
        swaps a model's folder away for a moment under the write lock, so a folder that looks
        config-less is looked at again under that lock before being called in the way."""
        if not folder.exists() or (folder / CONFIG_FILE).is_file():
            return False
        with self._settled(name):
            return folder.exists() and not (folder / CONFIG_FILE).is_file()

    @contextlib.contextmanager
    def _settled(self, name: str) -> Iterator[None]:
        """Held while looking again at ``name``'s folder: its write lock, under which no save
        or remove is half-way through swapping the folder. A name never saved or removed here
        (no lock file: a typo, say) or a store read-only to us has no swap to wait for, and a
        look waits at most a few seconds (a swap takes two renames)."""
        from filelock import Timeout

        lock_file = self.root / _LOCKS / "write" / f"{validate_name(name)}.lock"
        if not os.access(lock_file, os.W_OK):
            yield
            return
        try:
            lock = self._lock("write", name, timeout=_SETTLE_SECONDS)
            lock.acquire()
        except Timeout:
            yield  # a stuck writer: look as things are
            return
        try:
            yield
        finally:
            lock.release()

    def _user_kind(self, name: str) -> str | None:
        """The kind of the user's saved model ``name`` (None: no such model, or unreadable)."""
        try:
            kind = read_config_file(self.model_dir(name), name).get("kind")
        except (ModelNotFoundError, ModelCorruptError):
            return None
        return str(kind) if kind is not None else None

    @property
    def described_root(self) -> str:
        """The root for a message: ``FMT_HOME=...`` when that variable chose it (a user
        looks there first), else the path."""
        return f"{STORE_ENV}={self.root}" if os.environ.get(STORE_ENV) else str(self.root)

    @property
    def studies_path(self) -> Path:
        """The SQLite file of the tuning studies when no --storage is named."""
        return self.root / STUDIES_FILE

    def _names(self) -> set[str]:
        """Names of the saved, interrupted and bundled models, from folder names alone."""
        names = set(self.bundled_manifest())
        for parent in (self.root, self.root / _CHECKPOINTS):
            if parent.is_dir():
                names |= {
                    folder.name
                    for folder in parent.iterdir()
                    if (folder / CONFIG_FILE).is_file() and _NAME_PATTERN.fullmatch(folder.name)
                }
        return names

    def require(self, name: str) -> Path:
        """The directory of an existing model (the user's first, then a bundled one), or a
        one-line error that lists what exists."""
        folder = self.model_dir(name)
        if (folder / CONFIG_FILE).is_file():
            return folder
        bundled = self._bundled_dir(name)
        if bundled is not None:
            return bundled
        with self._settled(name):  # a save in another process may be swapping it in right now
            if (folder / CONFIG_FILE).is_file():
                return folder
        raise ModelNotFoundError(self._not_found_message(name))

    def _not_found_message(self, name: str) -> str:
        """What to say about a name that is not here: its interrupted run, the closest names,
        or what exists."""
        message = f"no model named {name!r} in {self.root}"
        if name in RETIRED_BUNDLED and self.bundled is not None:
            return f"{message}; {name} is {RETIRED_BUNDLED[name]}"
        if self.has_checkpoint(name):
            return (
                f"{message}: its run was interrupted; finish it with --resume, "
                f"or delete its checkpoint with fmt models rm {name}"
            )
        folder = self.root / name
        if folder.is_dir() and not (folder / CONFIG_FILE).is_file():
            # Not ours to delete (a half-copied model, a user's folder): say what it is.
            return (
                f"{message}: {folder} is a folder without {CONFIG_FILE}, not a model; "
                "fmt leaves it alone, so move or delete it yourself"
            )
        names = sorted({model.name for model in self.list()})
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        if close:
            return f"{message}; did you mean {' or '.join(repr(c) for c in close)}?"
        return (
            f"{message}; models here: {', '.join(names)}"
            if names
            else f"{message}; the store is empty"
        )

    def save(self, name: str, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
        """Save (or replace) a model atomically; return its directory."""
        return self._replace_atomically(self.model_dir(name), name, tensors, config)

    def load(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Weights and config of a saved model, checked by SHA-256 (bundled ones also against
        the package's manifest)."""
        folder = self.require(name)
        # Bundled when require() fell back to the package's copy. Not source(): a save in
        # another process may swap the user's folder between two looks at it.
        if self.bundled is not None and folder == self.bundled / name:
            self._verify_bundled(name, folder)
            return read_bundle(folder, f"model {name!r}")
        # A save in another process may swap the folder between our reads of its config and its
        # weights: a mismatch then is that race, not damage, and the new model is whole.
        for attempt in range(3):
            before = _inode(folder)
            try:
                return read_bundle(folder, f"model {name!r}")
            except (ModelCorruptError, ModelNotFoundError):
                if attempt == 2 or _inode(folder) == before:
                    raise
        raise AssertionError("unreachable")

    def read_config(self, name: str) -> dict[str, Any]:
        """The config of a saved model, without reading its weights."""
        return read_config_file(self.require(name), f"model {name!r}")

    def check_removable(self, name: str) -> list[Path]:
        """What ``remove(name)`` would delete: the user's model and the checkpoint of an
        interrupted run of that name; a bundled model is read-only, nothing is not found."""
        folders = [self.model_dir(name), self.checkpoint_dir(name)]
        found = [folder for folder in folders if (folder / CONFIG_FILE).is_file()]
        if not found and self._bundled_dir(name) is not None:
            raise ReadOnlyModelError(
                f"model {name!r} is bundled with fmnist-toolkit and read-only; "
                "hide all bundled models with FMT_BUNDLED_MODELS=0"
            )
        if not found:
            raise ModelNotFoundError(self._not_found_message(name))
        return found

    def remove(self, name: str) -> list[Path]:
        """Delete a model and any checkpoint of its name: renamed away under the lock first, so
        neither is ever half there. Returns the folders removed."""
        found = self.check_removable(name)
        trashes = []
        with self._locked(name):
            for folder in found:
                trash = self.root / f".trash-{name}-{uuid.uuid4().hex}"
                try:
                    os.replace(folder, trash)
                except FileNotFoundError:
                    continue  # gone since we looked: its run finished, or another rm
                trashes.append(trash)
        for trash in trashes:
            shutil.rmtree(trash, ignore_errors=True)
        return found

    def list(self) -> list[StoredModel]:
        """The user's models, then the bundled ones, each sorted by name; a bundled model of a
        name the user also has is marked shadowed. A damaged config shows as kind 'corrupt'."""
        users = _models_in(self.root, "user")
        taken = {model.name for model in users}
        bundled = [
            dataclasses.replace(model, shadowed=model.name in taken)
            for model in _models_in(self.bundled, "bundled")
            if model.name in self.bundled_manifest()
        ]
        return users + bundled

    def available(self) -> list[StoredModel]:
        """The models a name resolves to: the user's, and the bundled ones not shadowed."""
        return [model for model in self.list() if not model.shadowed]

    # ----------------------------------------------------------------- checkpoints
    def save_checkpoint(
        self, name: str, tensors: dict[str, torch.Tensor], state: dict[str, Any]
    ) -> Path:
        """Save (or replace) the checkpoint of a run atomically."""
        return self._replace_atomically(self.checkpoint_dir(name), name, tensors, state)

    def interrupted(self) -> list[InterruptedRun]:
        """The runs that stopped before saving their model, sorted by name."""
        runs = []
        for folder, config in _bundles_in(self.root / _CHECKPOINTS):
            state = config or {}
            recipe = state.get("recipe") if isinstance(state.get("recipe"), dict) else {}
            epoch, epochs = state.get("epoch"), recipe.get("epochs")
            runs.append(
                InterruptedRun(
                    name=folder.name,
                    kind=str(state.get("kind", "unknown")),
                    path=folder,
                    epoch=epoch if isinstance(epoch, int) else None,
                    epochs=epochs if isinstance(epochs, int) else None,
                    state=state,
                )
            )
        return runs

    def has_checkpoint(self, name: str) -> bool:
        """Whether an unfinished run of ``name`` left a checkpoint."""
        return (self.checkpoint_dir(name) / CONFIG_FILE).is_file()

    def read_checkpoint_state(self, name: str) -> dict[str, Any]:
        """The JSON state of the checkpoint of ``name`` (epoch, recipe), without its tensors."""
        return read_config_file(self.checkpoint_dir(name), f"checkpoint of {name!r}")

    def load_checkpoint(self, name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Tensors and JSON state of the checkpoint of ``name``."""
        return read_bundle(self.checkpoint_dir(name), f"checkpoint of {name!r}")

    def remove_checkpoint(self, name: str) -> None:
        """Forget the checkpoint of ``name`` (after its run finished)."""
        folder = self.checkpoint_dir(name)
        if folder.exists():
            with self._locked(name):
                shutil.rmtree(folder, ignore_errors=True)


from fmnist_toolkit.storage.bundling import bundle_models as bundle_models  # noqa: E402
