"""Saved models back to modules: by store name or by path, checked against their config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import ModelSpec, config_from_dict
from fmnist_toolkit.engine.defaults import best_autoencoder, best_classifier  # re-exported
from fmnist_toolkit.errors import (
    InvalidNameError,
    ModelCorruptError,
    ModelNotFoundError,
    UsageError,
    with_article,
)
from fmnist_toolkit.models import create_model
from fmnist_toolkit.models.gan import MAX_TRUNCATION
from fmnist_toolkit.storage import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    ModelStore,
    read_bundle,
    validate_name,
)

__all__ = ["best_autoencoder", "best_classifier"]  # chosen in engine/defaults.py

if TYPE_CHECKING:
    import torch
    from torch import nn


def check_state_dict(model: nn.Module, tensors: dict[str, torch.Tensor], label: str) -> None:
    """Weights must match the architecture the config describes: keys, shapes and dtypes."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise ModelCorruptError(f"{label}: weights do not match its config ({detail})")
    for key, reference in expected.items():
        actual = tensors[key]
        if actual.shape != reference.shape or actual.dtype != reference.dtype:
            raise ModelCorruptError(
                f"{label}: weight {key} is {actual.dtype} {tuple(actual.shape)}, its config "
                f"says {reference.dtype} {tuple(reference.shape)}"
            )


def _as_path(name_or_path: str | os.PathLike[str]) -> Path | None:
    """The bundle directory if the argument points at one on disk, else None."""
    if "://" in str(name_or_path):
        raise UsageError(
            f"{name_or_path}: URLs are not supported; download the model folder "
            f"({WEIGHTS_FILE} + {CONFIG_FILE}) and pass its path"
        )
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return path
    if path.is_file() and path.name in (WEIGHTS_FILE, CONFIG_FILE):
        return path.parent
    looks_like_path = os.sep in str(name_or_path) or str(name_or_path).endswith(".safetensors")
    if looks_like_path:
        raise ModelNotFoundError(
            f"no saved model at {path} (expected {WEIGHTS_FILE} + {CONFIG_FILE})"
        )
    return None


def read_saved_model(
    name_or_path: str | os.PathLike[str], store: ModelStore | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str]:
    """Weights, config and a label for messages, by store name or by path."""
    folder = _as_path(name_or_path)
    if folder is not None:
        label = str(folder)
        tensors, config = read_bundle(folder, label)
    else:
        label = f"model {str(name_or_path)!r}"
        tensors, config = (store or ModelStore()).load(str(name_or_path))
    return tensors, config, label


def model_spec_of(config: dict[str, Any], label: str) -> ModelSpec:
    spec = config.get("model")
    if not isinstance(spec, dict) or "kind" not in spec or "architecture" not in spec:
        raise ModelCorruptError(f"{label}: its config does not say which architecture it is")
    if not isinstance(spec.get("params", {}), dict):
        raise ModelCorruptError(f"{label}: its config's architecture parameters are damaged")
    return config_from_dict(ModelSpec, spec)


def read_model_of_kind(
    name_or_path: str | os.PathLike[str],
    kind: str | tuple[str, ...],
    store: ModelStore | None = None,
    *,
    hint: str = "",
) -> tuple[dict[str, torch.Tensor], dict[str, Any], str, ModelSpec]:
    """Weights, config, label and spec of a saved model that must be of ``kind`` (or one of
    several kinds); ``hint`` says what needed it, in the error."""
    tensors, config, label = read_saved_model(name_or_path, store)
    spec = model_spec_of(config, label)
    kinds = (kind,) if isinstance(kind, str) else kind
    if spec.kind not in kinds:
        wanted = " or ".join(with_article(each) for each in kinds)
        because = f"{hint}; " if hint else ""
        raise UsageError(
            f"{label} is {with_article(spec.kind)}, not {wanted} ({because}see `fmt models list`)"
        )
    return tensors, config, label, spec


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    store: ModelStore | None = None,
    device: str | torch.device = "cpu",
    kind: str | tuple[str, ...] | None = None,
    hint: str = "",
) -> nn.Module:
    """A saved model rebuilt from its config, weights checked and loaded, in eval mode. With
    ``kind``, a model of another kind is a usage error (``hint`` says what needed it)."""
    if kind is None:
        tensors, config, label = read_saved_model(name_or_path, store)
        spec = model_spec_of(config, label)
    else:
        tensors, config, label, spec = read_model_of_kind(name_or_path, kind, store, hint=hint)
    try:
        model = create_model(spec)
    except ModelCorruptError as error:  # say which model: an import or export names no other
        raise ModelCorruptError(f"{label}: {error}") from None
    check_state_dict(model, tensors, label)
    model.load_state_dict(tensors)
    if spec.kind == "generator":
        model.truncation = recorded_truncation(config, label)
        model.denoiser = recorded_denoiser(config, label)
    return model.to(device).eval()


def recorded_denoiser(config: dict[str, Any], label: str) -> str | None:
    """The denoiser a generator's config records for its samples (``sampling.denoiser``: the
    one they measured closest with), None when it records none."""
    sampling = config.get("sampling", {})
    value = sampling.get("denoiser") if isinstance(sampling, dict) else None
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return validate_name(value)
    except InvalidNameError:
        pass
    raise ModelCorruptError(f"{label}: its config's sampling denoiser {value!r} is no model name")


def recorded_truncation(config: dict[str, Any], label: str) -> float:
    """The noise scale a generator's config records for sampling (``sampling.truncation``), 1
    when it records none."""
    sampling = config.get("sampling", {})
    value = sampling.get("truncation", 1.0) if isinstance(sampling, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ModelCorruptError(f"{label}: its config's sampling section is damaged")
    if not 0 < value <= MAX_TRUNCATION:
        raise ModelCorruptError(
            f"{label}: its config's sampling truncation {value} is outside (0, {MAX_TRUNCATION}]"
        )
    return float(value)
