"""Denoisers for 1x28x28 images in [0, 1]: image in, the same image with its noise removed."""

from __future__ import annotations

import torch
from torch import nn

from fmnist_toolkit.config import GATED_ARCHITECTURE, IMAGE_TO_IMAGE_KINDS, MAX_SHARPEN
from fmnist_toolkit.models._registry import build_model, register


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


@register("denoiser", "unet")
class UNetDenoiser(nn.Module):
    """A small U-Net that predicts the noise of an image and subtracts it.

    Levels of ``width``, 2 ``width`` and 4 ``width`` channels at 28x28, 14x14 and 7x7 (two 3x3
    convolutions each, max-pooling down, 2x2 transposed convolutions up), with skip
    connections that carry each level's detail past the bottleneck: unlike an autoencoder's
    16-number code, nothing forces a clean image through a lossy summary. The output is the
    input minus the predicted noise, so the identity is the easy default; in eval mode it is
    clamped to [0, 1]. No batch norm: an image's result never depends on its batch.

    ``min_correction``: in eval mode, a pixel whose correction is at most this much (in [0, 1]
    brightness) keeps its value. The model learns to smooth weak noise, and a generator's good
    samples carry fine texture that looks like it; dropping the small corrections keeps that
    texture and still removes speckle and stray dots (measured in docs/gan.md). Training is
    unaffected, so the threshold can be chosen after it.

    ``sharpen``: in eval mode, the cleaned image then gets this much of an unsharp mask (its
    difference from a 3x3 binomial blur of itself, added back). Generators draw softer edges
    and texture than real clothes, and the U-Net removes noise but never adds detail; a mild
    mask brings every bundled generator's samples closer to the test images in two
    classifiers' feature spaces while clean images barely change (docs/gan.md). Like
    ``min_correction`` it leaves training alone.
    """

    def __init__(self, width: int = 16, min_correction: float = 0.0, sharpen: float = 0.0) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be at least 1, not {width}")
        if not 0 <= min_correction < 1:
            raise ValueError(f"min_correction must be in [0, 1), not {min_correction}")
        self.width = width
        self.min_correction = min_correction
        self.sharpen = checked_sharpen(sharpen)
        self.down1 = _double_conv(1, width)
        self.down2 = _double_conv(width, 2 * width)
        self.bottom = _double_conv(2 * width, 4 * width)
        self.up2 = nn.ConvTranspose2d(4 * width, 2 * width, 2, stride=2)
        self.merge2 = _double_conv(4 * width, 2 * width)
        self.up1 = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.merge1 = _double_conv(2 * width, width)
        self.noise = nn.Conv2d(width, 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        fine = self.down1(images)  # 28x28
        middle = self.down2(nn.functional.max_pool2d(fine, 2))  # 14x14
        coarse = self.bottom(nn.functional.max_pool2d(middle, 2))  # 7x7
        middle = self.merge2(torch.cat([self.up2(coarse), middle], dim=1))
        fine = self.merge1(torch.cat([self.up1(middle), fine], dim=1))
        cleaned = images - self.noise(fine)
        if self.training:
            return cleaned
        cleaned = cleaned.clamp(0, 1)
        if self.min_correction:
            kept = (images - cleaned).abs() <= self.min_correction
            cleaned = torch.where(kept, images, cleaned).clamp(0, 1)
        return unsharp_mask(cleaned, self.sharpen) if self.sharpen else cleaned


@register("denoiser", GATED_ARCHITECTURE)
class GatedDenoiser(nn.Module):
    """A denoiser that cleans only what looks generated: ``denoiser`` (a whole image-to-image
    model, rebuilt from its spec: kind, architecture, params) behind a small detector of one
    generator's samples.

    The detector (three 3x3 convolutions of ``width``, twice and twice ``width`` channels, two
    max-pools, global average pooling, one logit) says how likely an image is that
    generator's rather than a real photograph; the output moves from the image towards its
    cleaned version by that probability. A redrawing denoiser brings a weak generator's
    samples much closer to real clothes but changes a real photograph too (docs/gan.md); with
    the gate a real image passes almost unchanged. ``fmt gan gate`` trains the detector; the
    wrapped denoiser stays as it was trained, always in eval mode. No batch norm: an image's
    result never depends on its batch.
    """

    def __init__(self, denoiser: dict, width: int = 16) -> None:
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be at least 1, not {width}")
        if not isinstance(denoiser, dict) or denoiser.get("kind") not in IMAGE_TO_IMAGE_KINDS:
            raise ValueError(f"denoiser must be the spec of a {' or '.join(IMAGE_TO_IMAGE_KINDS)}")
        self.width = width
        self.denoiser = build_model(
            denoiser["kind"], denoiser.get("architecture"), **denoiser.get("params", {})
        )
        self.denoiser.requires_grad_(False)
        self.detector = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, 1),
        )
        self.denoiser.eval()

    def train(self, mode: bool = True) -> GatedDenoiser:
        super().train(mode)
        self.denoiser.eval()  # trained already: its batch norm keeps its own statistics
        return self

    def generated_logits(self, images: torch.Tensor) -> torch.Tensor:
        """[N] logits of "this image is the generator's" (the detector's training output)."""
        return self.detector(images).squeeze(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cleaned = self.denoiser(images).clamp(0, 1)
        generated = torch.sigmoid(self.generated_logits(images)).view(-1, 1, 1, 1)
        return images + generated * (cleaned - images)


def checked_sharpen(amount: float) -> float:
    """``amount`` if it is a strength ``--sharpen`` takes, else a ValueError."""
    if not 0 <= amount <= MAX_SHARPEN:
        raise ValueError(f"sharpen must be in [0, {MAX_SHARPEN:g}], not {amount}")
    return amount


def unsharp_mask(images: torch.Tensor, amount: float) -> torch.Tensor:
    """``images`` plus ``amount`` of their difference from a 3x3 binomial blur of themselves,
    clamped to [0, 1]: the edges and texture a cleaning left too soft, restored."""
    return (images + amount * (images - _binomial_blur(images))).clamp(0, 1)


def _binomial_blur(images: torch.Tensor) -> torch.Tensor:
    """Each pixel the [1, 2, 1] x [1, 2, 1] / 16 mean of its 3x3 neighbourhood (edges repeated,
    so that a flat border stays flat)."""
    row = torch.tensor([1.0, 2.0, 1.0], dtype=images.dtype, device=images.device)
    kernel = (row[:, None] * row[None, :] / 16).view(1, 1, 3, 3)
    padded = nn.functional.pad(images, (1, 1, 1, 1), mode="replicate")
    return nn.functional.conv2d(padded, kernel)
