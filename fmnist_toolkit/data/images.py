"""Augmentation of training batches (mirror, shift, cutout, mixup), and users' own pictures
made to look like Fashion-MNIST."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from fmnist_toolkit.data.idx import IMAGE_SIZE
from fmnist_toolkit.errors import DataCorruptError, DataMissingError

if TYPE_CHECKING:
    import torch


def augment_batch(
    images: torch.Tensor, generator: torch.Generator, max_shift: int = 2
) -> torch.Tensor:
    """Each image of a batch [B, 1, 28, 28] mirrored left-right with probability 1/2 and moved
    by up to ``max_shift`` pixels each way (zero fill), on the batch's own device.

    Per image, unlike torchvision's transforms on a batch tensor (one draw for the batch). The
    draws come from a seeded CPU generator, so a run augments the same on every device.
    """
    import torch

    count, size = images.shape[0], images.shape[-1]
    device = images.device
    flip = (torch.rand(count, generator=generator) < 0.5).to(device)
    offsets = torch.randint(0, 2 * max_shift + 1, (2, count), generator=generator).to(device)
    images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    span = torch.arange(size, device=device)
    rows = (offsets[0].view(-1, 1) + span).view(count, 1, size, 1)
    columns = (offsets[1].view(-1, 1) + span).view(count, 1, 1, size)
    batch = torch.arange(count, device=device).view(count, 1, 1, 1)
    return padded[batch, 0, rows, columns]


def cutout_batch(images: torch.Tensor, generator: torch.Generator, size: int) -> torch.Tensor:
    """Each image of a batch [B, 1, H, W] with a ``size`` x ``size`` square set to 0 (cutout,
    DeVries & Taylor 2017), centred anywhere in the image, so it may be cut by the border.
    Per image, drawn from a seeded CPU generator like :func:`augment_batch`."""
    import torch

    count, height, width = images.shape[0], images.shape[-2], images.shape[-1]
    device = images.device
    centres = torch.stack(
        [
            torch.randint(0, height, (count,), generator=generator),
            torch.randint(0, width, (count,), generator=generator),
        ]
    ).to(device)
    low = centres - size // 2
    rows = torch.arange(height, device=device).view(1, height, 1)
    columns = torch.arange(width, device=device).view(1, 1, width)
    inside = (
        (rows >= low[0].view(-1, 1, 1))
        & (rows < (low[0] + size).view(-1, 1, 1))
        & (columns >= low[1].view(-1, 1, 1))
        & (columns < (low[1] + size).view(-1, 1, 1))
    )
    return images.masked_fill(inside.unsqueeze(1), 0.0)


def mixup(
    inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator, alpha: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018): each input and target blended with those of another row of
    the batch, by one weight from Beta(alpha, alpha) per batch, drawn from ``generator`` (CPU)."""
    import numpy as np
    import torch

    # torch's Beta distribution takes no generator: numpy's, seeded from the run's generator.
    rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
    weight = float(rng.beta(alpha, alpha))
    partner = torch.randperm(inputs.shape[0], generator=generator).to(inputs.device)
    return (
        inputs * weight + inputs[partner] * (1 - weight),
        targets * weight + targets[partner] * (1 - weight),
    )


# --------------------------------------------------------------------------- user images


def image_like_fashion_mnist(
    path: str | os.PathLike[str], content: BinaryIO | None = None
) -> torch.Tensor:
    """A user's picture (PNG, JPEG, ... any size) as Fashion-MNIST makes its images: uint8 [28, 28].

    Following the data set's own conversion: grayscale; the garment made light on a dark
    background (inverted when the picture's border is light); the background trimmed; the longest
    side resized to 28 pixels; the rest padded to 28x28 with the garment centred. ``content``,
    when given, is read instead of the file (standard input); ``path`` then only names it.
    """
    import warnings

    import numpy as np
    import torch
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that; a picture that
        # large is refused outright rather than decoded into gigabytes.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(content or path) as opened:
                upright = ImageOps.exif_transpose(opened)
                if upright.mode == "F":  # floating-point (TIFF): brightness 0-1 or 0-255
                    pixels = np.nan_to_num(np.asarray(upright, dtype=np.float32))
                    pixels = (pixels * 255 if pixels.max() <= 1 else pixels).clip(0, 255)
                else:
                    pixels = np.asarray(upright.convert("L"), dtype=np.float32)
    except FileNotFoundError:
        raise DataMissingError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataCorruptError(f"{path}: is a folder, not a picture") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        limit = Image.MAX_IMAGE_PIXELS or 0
        raise DataCorruptError(
            f"{path}: too large a picture (over {limit / 1e6:.0f} megapixels); shrink it first"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DataCorruptError(f"{path}: not an image this tool can read ({error})") from None
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if np.median(border) > 127:  # light background, as in photos: Fashion-MNIST is inverted
        pixels = 255.0 - pixels
    background = float(
        np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]))
    )
    rows = np.flatnonzero((pixels > background + 20).any(axis=1))
    columns = np.flatnonzero((pixels > background + 20).any(axis=0))
    if not rows.size:
        raise DataCorruptError(f"{path}: no garment found (the picture is blank)")
    pixels = pixels[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]
    pixels = np.clip(pixels - background, 0, 255)
    height, width = pixels.shape
    scale = IMAGE_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(pixels.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    canvas.paste(resized, ((IMAGE_SIZE - size[0]) // 2, (IMAGE_SIZE - size[1]) // 2))
    return torch.from_numpy(np.asarray(canvas, dtype=np.uint8).copy())
