"""Making the bundled models: a build step of the package (scripts/bundle_models.py), not
something a command does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from fmnist_toolkit.storage.files import (
    CONFIG_FILE,
    KEPT_IN_HALF,
    WEIGHTS_FILE,
    read_bundle,
    read_config_file,
    sha256_hex,
    write_bundle,
)

# The whole bundle stays under 20 MB, read in decimal megabytes (the stricter reading).
BUNDLE_SIZE_LIMIT = 20_000_000


def bundle_size(bundled: Path) -> int:
    """Bytes of every file in the bundle folder (models and manifest)."""
    return sum(path.stat().st_size for path in bundled.rglob("*") if path.is_file())


def bundle_models(
    source: Path,
    names: list[str],
    bundled: Path,
    *,
    retire: tuple[str, ...] = (),
    half: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Copy models from the store at ``source`` into ``bundled`` and record them in its
    manifest (kind and SHA-256 of both files); drop the ``retire`` ones from both; return the
    manifest. The ``half`` ones keep their float32 weights as float16 (half the bytes;
    loading widens them back)."""
    from fmnist_toolkit.storage import MANIFEST_FILE, validate_name

    if stray := sorted(set(half) - set(names)):
        raise ValueError(f"--half {', '.join(stray)}: name each among the models to bundle")
    manifest_path = bundled / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    models = dict(manifest.get("models", {}))
    for name in retire:
        if models.pop(validate_name(name), None) is None:
            raise ValueError(f"{name} is not bundled")
        shutil.rmtree(bundled / name)
    for name in names:
        target = bundled / validate_name(name)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        if name in half:
            _write_in_half(source / name, target, name)
        else:
            for file in (WEIGHTS_FILE, CONFIG_FILE):
                shutil.copyfile(source / name / file, target / file)
        models[name] = {
            "kind": read_config_file(target, name).get("kind"),
            "sha256": {
                file: sha256_hex((target / file).read_bytes())
                for file in (WEIGHTS_FILE, CONFIG_FILE)
            },
        }
    manifest = {"models": dict(sorted(models.items()))}
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _write_in_half(source: Path, target: Path, name: str) -> None:
    """The model at ``source`` written to ``target`` with its float32 weights as float16; its
    config says so (``weights_dtype``) and records the new weights' SHA-256."""
    import torch

    tensors, config = read_bundle(source, name)
    halved = {
        key: value.half() if value.dtype == torch.float32 else value
        for key, value in tensors.items()
    }
    config = {key: value for key, value in config.items() if key != "weights_sha256"}
    write_bundle(target, halved, {**config, "weights_dtype": KEPT_IN_HALF})
