"""Convolutional autoencoders for 1x28x28 images in [0, 1]."""

from __future__ import annotations

import torch
from torch import nn

from fmnist_toolkit.models._registry import register
from fmnist_toolkit.models.denoiser import checked_sharpen, unsharp_mask


class Autoencoder(nn.Module):
    """What every autoencoder family shares: an ``encoder`` and a ``decoder`` module.

    ``sharpen``: one trained to denoise (``--objective denoise``) may end its cleaning, in eval
    mode, with an unsharp mask of this strength: a redraw from a code is softer than the
    clothes it stands for (docs/gan.md). Training, codes and decoding are untouched.
    """

    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, sharpen: float = 0.0) -> None:
        super().__init__()
        self.sharpen = checked_sharpen(sharpen)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images [N, 1, 28, 28] in [0, 1] to latent codes [N, latent_dim]."""
        return self.encoder(images)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Latent codes [N, latent_dim] to images [N, 1, 28, 28] in [0, 1]."""
        return self.decoder(codes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        decoded = self.decode(self.encode(images))
        if self.training or not self.sharpen:
            return decoded
        return unsharp_mask(decoded, self.sharpen)


@register("autoencoder", "seed")
class SeedAutoencoder(Autoencoder):
    """The course report's autoencoder: three strided convolutions, two linear layers, mirrored.

    Encoder: 1x28x28 -> 8x14x14 -> 16x7x7 -> 32x3x3 -> 288 -> 64 -> ``latent_dim``.
    Decoder: the mirror image with transposed convolutions, sigmoid output in [0, 1].
    """

    def __init__(self, latent_dim: int = 16, sharpen: float = 0.0) -> None:
        super().__init__(sharpen)
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=0),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(32 * 3 * 3, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 64),
            nn.ReLU(inplace=True),
            nn.Linear(64, 32 * 3 * 3),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (32, 3, 3)),
            nn.ConvTranspose2d(32, 16, 3, stride=2, output_padding=0),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(16, 8, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(8, 1, 3, stride=2, padding=1, output_padding=1),
            nn.Sigmoid(),
        )


def _conv_block(conv: nn.Module, channels: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


def _wide_encoder(latent_dim: int) -> nn.Sequential:
    """1x28x28 -> 32x28x28 -> 64x14x14 -> 128x7x7 -> ``latent_dim``: ``wide``'s and
    ``residual``'s encoder."""
    return nn.Sequential(
        *_conv_block(nn.Conv2d(1, 32, 3, padding=1), 32),
        *_conv_block(nn.Conv2d(32, 64, 3, stride=2, padding=1), 64),
        *_conv_block(nn.Conv2d(64, 128, 3, stride=2, padding=1), 128),
        nn.Flatten(),
        nn.Linear(128 * 7 * 7, latent_dim),
    )


@register("autoencoder", "wide")
class WideAutoencoder(Autoencoder):
    """A stronger autoencoder at the same latent size: 32/64/128 channels with batch norm.

    Encoder: 1x28x28 -> 32x28x28 -> 64x14x14 -> 128x7x7 -> ``latent_dim`` (one linear layer).
    Decoder: linear back to 128x7x7, two transposed convolutions to 32x28x28, a 3x3 convolution
    to one channel and a sigmoid. About 60 times the seed model's arithmetic per image.
    """

    def __init__(self, latent_dim: int = 16, sharpen: float = 0.0) -> None:
        super().__init__(sharpen)
        self.latent_dim = latent_dim
        self.encoder = _wide_encoder(latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 128 * 7 * 7),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (128, 7, 7)),
            *_conv_block(nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), 64),
            *_conv_block(nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), 32),
            nn.Conv2d(32, 1, 3, padding=1),
            nn.Sigmoid(),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, added to their input (He et al. 2016)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_block(nn.Conv2d(channels, channels, 3, padding=1, bias=False), channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


@register("autoencoder", "residual")
class ResidualAutoencoder(Autoencoder):
    """The ``wide`` autoencoder with a deeper decoder: residual blocks at 7x7 and 14x14.

    Encoder: ``wide``'s (so its classifiers cost what ``wide``'s do). Decoder: linear to
    128x7x7, a residual block, transposed convolution to 64x14x14, a residual block, transposed
    convolution to 32x28x28, a 3x3 convolution to one channel and a sigmoid. The extra depth
    goes where the work is: drawing 784 pixels from 16 numbers. About 2.5 times ``wide``'s
    arithmetic per image.
    """

    def __init__(self, latent_dim: int = 16, sharpen: float = 0.0) -> None:
        super().__init__(sharpen)
        self.latent_dim = latent_dim
        self.encoder = _wide_encoder(latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 128 * 7 * 7),
            nn.ReLU(inplace=True),
            nn.Unflatten(1, (128, 7, 7)),
            ResidualBlock(128),
            *_conv_block(nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1), 64),
            ResidualBlock(64),
            *_conv_block(nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=1), 32),
            nn.Conv2d(32, 1, 3, padding=1),
            nn.Sigmoid(),
        )
