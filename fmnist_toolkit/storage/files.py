"""Files of the store, written so that a reader never sees half of one: a model bundle
(safetensors weights + JSON config with the weights' SHA-256), and any single output file
written through a temporary file beside it and renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.errors import ModelCorruptError, ModelNotFoundError, OutputError

if TYPE_CHECKING:
    import torch

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def usual_mode(path: Path, *, folder: bool) -> None:
    """The permissions a plain open() or mkdir() would have given (tempfile's are private)."""
    umask = os.umask(0)
    os.umask(umask)
    path.chmod((0o777 if folder else 0o666) & ~umask)


def cannot_write(target: Path, error: OSError) -> OutputError:
    """The one-line error for an output that could not be written, naming the user's path."""
    return OutputError(f"cannot write {target} ({error.strerror or error})")


def temporary_beside(target: Path, *, folder: bool = False, suffix: str = "") -> Path:
    """A new, empty, private file (or ``folder``) beside ``target``, to be renamed into place
    once written. If it cannot be made, the one-line error names ``target``, not the
    temporary name that the user never asked for."""
    parent = target.parent if target.name else target
    prefix = f".{target.name or 'output'}."
    try:
        if folder:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent))
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
    except OSError as error:
        raise cannot_write(target, error) from None
    os.close(handle)
    return Path(name)


def write_file_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside ``target`` (``write`` fills it), give it the usual
    permissions, then rename it into place; on any failure the temporary file is removed, and
    an OSError (a full disk, say) becomes a one-line error naming ``target``."""
    temporary = temporary_beside(target)
    try:
        write(temporary)
        usual_mode(temporary, folder=False)
        os.replace(temporary, target)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise cannot_write(target, error) from None
        raise


#: A config's ``weights_dtype`` when its float32 weights are kept as float16 (bundled models,
#: to halve their bytes: scripts/bundle_models.py --half); reading widens them back.
KEPT_IN_HALF = "float16"


def sha256_hex(content: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(content).hexdigest()


def write_bundle(folder: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write weights and JSON into ``folder``; the JSON records the weights' SHA-256."""
    from safetensors.torch import save

    payload = save({key: value.detach().cpu().contiguous() for key, value in tensors.items()})
    meta = {**meta, "weights_sha256": sha256_hex(payload)}
    (folder / WEIGHTS_FILE).write_bytes(payload)
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")


def read_config_file(folder: Path, label: str) -> dict[str, Any]:
    """The JSON config of a bundle, or a one-line error naming what is wrong."""
    path = folder / CONFIG_FILE
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise ModelNotFoundError(f"{label}: no {CONFIG_FILE} in {folder}") from error
    except (OSError, ValueError) as error:
        raise ModelCorruptError(f"{label}: unreadable {path} ({error})") from error
    if not isinstance(config, dict):
        raise ModelCorruptError(f"{label}: {path} is not a JSON object")
    return config


def read_bundle(folder: Path, label: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and JSON of a bundle, after checking the weights' SHA-256 and format."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    config = read_config_file(folder, label)
    weights_path = folder / WEIGHTS_FILE
    try:
        payload = weights_path.read_bytes()
    except OSError as error:
        raise ModelCorruptError(f"{label}: cannot read {weights_path} ({error})") from error
    expected = config.get("weights_sha256")
    if expected and sha256_hex(payload) != expected:
        raise ModelCorruptError(
            f"{label}: {weights_path} is corrupt or truncated (SHA-256 does not match its config)"
        )
    try:
        tensors = load(payload)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise ModelCorruptError(f"{label}: {weights_path} is not valid safetensors") from error
    if config.get("weights_dtype") == KEPT_IN_HALF:
        tensors = {key: widened(value) for key, value in tensors.items()}
    return tensors, config


def widened(tensor: torch.Tensor) -> torch.Tensor:
    """A float16 tensor as float32 (exactly: every float16 is a float32); others as they are."""
    import torch

    return tensor.float() if tensor.dtype == torch.float16 else tensor
