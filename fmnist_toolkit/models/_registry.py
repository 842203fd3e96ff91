"""A small registry: (kind, architecture name) -> constructor, so a config rebuilds its model."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.errors import ModelCorruptError

if TYPE_CHECKING:
    from torch import nn

    from fmnist_toolkit.config import ModelSpec

_REGISTRY: dict[tuple[str, str], Callable[..., nn.Module]] = {}
# Modules that register architectures; imported on first lookup so that the registry costs
# nothing until a model is built.
_FAMILY_MODULES = (
    "fmnist_toolkit.models.autoencoder",
    "fmnist_toolkit.models.classifier",
    "fmnist_toolkit.models.denoiser",
    "fmnist_toolkit.models.gan",
)


def register(kind: str, architecture: str) -> Callable[[type], type]:
    """Class decorator: make ``cls`` buildable as ``build_model(kind, architecture, **params)``."""

    def decorate(cls: type) -> type:
        _REGISTRY[(kind, architecture)] = cls
        return cls

    return decorate


def _load_families() -> None:
    for module in _FAMILY_MODULES:
        importlib.import_module(module)


def architectures(kind: str | None = None) -> list[tuple[str, str]]:
    """Registered (kind, architecture) pairs, optionally of one kind."""
    _load_families()
    return sorted(key for key in _REGISTRY if kind is None or key[0] == kind)


def build_model(kind: str, architecture: str, **params: Any) -> nn.Module:
    """A freshly initialised network of a registered architecture."""
    _load_families()
    try:
        constructor = _REGISTRY[(kind, architecture)]
    except (KeyError, TypeError):  # TypeError: a damaged config names a list or an object
        known = ", ".join(f"{family}/{arch}" for family, arch in sorted(_REGISTRY))
        raise ModelCorruptError(
            f"unknown architecture {kind}/{architecture}; known: {known}"
        ) from None
    try:
        return constructor(**params)
    except (TypeError, ValueError, RuntimeError) as error:
        if isinstance(error, RuntimeError) and "alloc" in str(error).lower():
            # torch's allocator message names its C++ source line: say what it means instead.
            sizes = ", ".join(f"{key} {value}" for key, value in params.items())
            raise ModelCorruptError(
                f"{kind}/{architecture} with {sizes} does not fit in this machine's memory"
            ) from None
        raise ModelCorruptError(f"bad parameters for {kind}/{architecture}: {error}") from None


def create_model(spec: ModelSpec) -> nn.Module:
    """A freshly initialised network of the architecture a saved config's spec names."""
    return build_model(spec.kind, spec.architecture, **spec.params)
