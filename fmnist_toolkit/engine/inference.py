"""Whole-split inference: one place for the batching, eval mode and autocast it needs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from fmnist_toolkit.engine.device import autocast

if TYPE_CHECKING:
    import torch
    from torch import nn

    from fmnist_toolkit.data import DeviceSplit

INFERENCE_BATCH = 2048


def predict_split(
    model: nn.Module,
    split: DeviceSplit,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    *,
    precision: str = "fp32",
) -> torch.Tensor:
    """``forward(images)`` (default: ``model(images)``) over a whole split, float32, concatenated
    on the split's device; in eval mode and without gradients, the model's mode restored after."""
    import torch

    forward = forward or model
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast(split.images.device, precision):
            return torch.cat(
                [forward(images).float() for images, _ in split.batches(INFERENCE_BATCH)]
            )
    finally:
        model.train(was_training)
