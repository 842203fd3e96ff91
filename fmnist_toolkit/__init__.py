"""fmnist-toolkit: unsupervised deep learning on Fashion-MNIST, as the ``fmt`` command.

Importing this package is cheap: torch and friends load only when a function needs them.

>>> import fmnist_toolkit
>>> images, labels = fmnist_toolkit.load_fashion_mnist("test")      # doctest: +SKIP
>>> [model.name for model in fmnist_toolkit.list_models()]          # doctest: +SKIP
>>> model = fmnist_toolkit.load_model("ae-16", device="cpu")         # doctest: +SKIP
"""

from __future__ import annotations

import os as _os
from typing import TYPE_CHECKING as _TYPE_CHECKING

from fmnist_toolkit._version import __version__

__all__ = ["__version__", "list_models", "load_fashion_mnist", "load_model"]

if _TYPE_CHECKING:
    import torch
    from torch import nn

    from fmnist_toolkit.storage import StoredModel


def __dir__() -> list[str]:
    """The public API, not the helpers this module imports."""
    return sorted(__all__)


def load_model(name_or_path: str | _os.PathLike[str], *, device: str = "cpu") -> nn.Module:
    """A saved model, by store name, path to its folder or to a zip from ``fmt models export``,
    as an ``nn.Module`` in eval mode on ``device`` ("cpu", "cuda", "cuda:N", "mps" or "auto").

    An autoencoder maps images [N, 1, 28, 28] in [0, 1] to reconstructions of the same shape,
    and has ``encode`` and ``decode``; a classifier maps them to log-probabilities [N, 10].
    A missing model raises ``ModelNotFoundError`` (a ``LookupError``).
    """
    from fmnist_toolkit.engine.device import resolve_device
    from fmnist_toolkit.engine.model_io import load_model as _load_model

    if str(name_or_path).endswith(".zip"):
        from fmnist_toolkit.transfer import unpacked

        with unpacked(_os.fspath(name_or_path)) as folder:
            return _load_model(folder, device=resolve_device(device))
    return _load_model(name_or_path, device=resolve_device(device))


def list_models() -> list[StoredModel]:
    """The models a name resolves to (the user's store over the bundled ones): each with
    ``name``, ``kind``, ``path``, ``source`` and its ``config``."""
    from fmnist_toolkit.storage import ModelStore

    return ModelStore().available()


def load_fashion_mnist(
    split: str = "train", data_dir: str | _os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split (``"train"`` or ``"test"``) as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    ``data_dir`` defaults to ``FMT_DATA_DIR``, then the per-user data directory.
    """
    from fmnist_toolkit.data import load_fashion_mnist as _load

    return _load(split, data_dir)
