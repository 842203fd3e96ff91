"""fmnist-toolkit: unsupervised deep learning on Fashion-MNIST, as the ``fmt`` command.

Importing this package is cheap: torch and friends load only when a function needs them.

>>> import fmnist_toolkit
>>> images, labels = fmnist_toolkit.load_fashion_mnist("test")      # doctest: +SKIP
>>> model = fmnist_toolkit.load_model("ae-16")                       # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fmnist_toolkit._version import __version__

__all__ = ["__version__", "load_fashion_mnist", "load_model"]

if TYPE_CHECKING:
    import torch
    from torch import nn


def load_model(name_or_path: str | os.PathLike[str]) -> nn.Module:
    """A saved model, by store name or path to its folder, as an ``nn.Module`` in eval mode on CPU.

    An autoencoder maps images [N, 1, 28, 28] in [0, 1] to reconstructions of the same shape,
    and has ``encode`` and ``decode``; a classifier maps them to log-probabilities [N, 10].
    """
    from fmnist_toolkit.engine.model_io import load_model as _load_model

    return _load_model(name_or_path, device="cpu")


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike[str] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One split (``"train"`` or ``"test"``) as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    ``data_dir`` defaults to ``FMT_DATA_DIR``, then the per-user data directory.
    """
    from fmnist_toolkit.data import load_fashion_mnist as _load

    return _load(split, data_dir)
