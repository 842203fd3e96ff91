"""Device batches: a split held as one uint8 tensor on the device, sliced into batches."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmnist_toolkit.data.idx import load_fashion_mnist
from fmnist_toolkit.errors import UsageError

if TYPE_CHECKING:
    import torch


@dataclass
class DeviceSplit:
    """A split held whole on one device as uint8; batches are index slices made float there."""

    images: torch.Tensor  # uint8 [N, 28, 28]
    labels: torch.Tensor  # int64 [N]

    @classmethod
    def load(
        cls, split: str, data_dir: str | os.PathLike[str] | None, device: torch.device
    ) -> DeviceSplit:
        """Read a split from disk and move it to ``device`` whole."""
        images, labels = load_fashion_mnist(split, data_dir)
        return cls(images.to(device), labels.to(device))

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def num_batches(self, batch_size: int) -> int:
        """Batches per epoch, the last one possibly short."""
        return -(-len(self) // batch_size)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Float images [B, 1, 28, 28] in [0, 1] and labels; shuffled when given a generator.

        The epoch's images are put in order and made float in one operation, and each batch
        is a view of that: no work, and no kernel launch on an accelerator, per batch.
        """
        images, labels = epoch_order((self.images, self.labels), generator)
        yield from row_batches((to_unit_float(images), labels), batch_size)

    def subset(self, index: torch.Tensor) -> DeviceSplit:
        """The images and labels at ``index`` (e.g. a validation split), on the same device."""
        index = index.to(self.images.device)
        return DeviceSplit(self.images[index], self.labels[index])


def epoch_order(
    tensors: Sequence[torch.Tensor], generator: torch.Generator | None
) -> tuple[torch.Tensor, ...]:
    """Equally long tensors with their rows in one seeded random order (as they are without a
    generator); the order is drawn on the CPU, so it is the same on every device."""
    if generator is None:
        return tuple(tensors)
    order = shuffled_order(len(tensors[0]), generator).to(tensors[0].device)
    return tuple(tensor[order] for tensor in tensors)


def row_batches(
    tensors: Sequence[torch.Tensor], batch_size: int
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Consecutive batches of rows (views) of equally long tensors, the last possibly short."""
    for start in range(0, len(tensors[0]), batch_size):
        yield tuple(tensor[start : start + batch_size] for tensor in tensors)


def shuffled_order(count: int, generator: torch.Generator) -> torch.Tensor:
    """A permutation of ``range(count)`` drawn on the CPU: the same order on every device."""
    import torch

    return torch.randperm(count, generator=generator)


def split_indices(count: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (train, validation) partition of ``range(count)``; the same seed gives the same
    split, so every run of a recipe validates on the same images."""
    import torch

    if not 0 < fraction < 1:
        raise UsageError(f"the validation fraction must be between 0 and 1, not {fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    held_out = max(1, round(count * fraction))
    return order[held_out:].sort().values, order[:held_out].sort().values


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 28, 28] to float [N, 1, 28, 28] in [0, 1], on the tensor's own device."""
    return images.unsqueeze(1).float().div_(255.0)
