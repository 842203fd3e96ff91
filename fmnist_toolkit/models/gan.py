"""GAN generators and discriminators: the report's MLP pair and a small DCGAN pair for 28x28.

Generators map noise [N, latent_size] to images [N, 1, 28, 28] in [-1, 1] (tanh).
Discriminators map such images to one logit each; ``probability`` applies the sigmoid the
report's discriminator ends with (the loss works on logits: the same maths, stable in float).

The DCGAN pair can be class-conditional (``num_classes=10``): the generator then takes
``(noise, labels)``, the one-hot label concatenated to the noise, and the discriminator
``(images, labels)``, a projection discriminator (Miyato & Koyama 2018: the logit plus the inner
product of a class embedding with the features). ``spectral_norm=True`` normalises every layer
of the discriminator (Miyato et al. 2018) and drops its batch norm.
"""

from __future__ import annotations

import torch
from torch import nn

from fmnist_toolkit.models._registry import register

IMAGE_PIXELS = 28 * 28
MAX_TRUNCATION = 2.0


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Labels [N] as float one-hot rows [N, num_classes].

    A comparison rather than ``nn.Embedding`` or ``F.one_hot``: plain element-wise and matrix
    arithmetic, forward and backward, so a training step stays capturable as a CUDA graph
    (no host-side index checks, no sort in the backward pass).
    """
    classes = torch.arange(num_classes, device=labels.device)
    return (labels[:, None] == classes).float()


class Generator(nn.Module):
    """What every generator offers: its noise size, a seeded noise batch, and the number of
    classes it is conditioned on (0: unconditional, called with noise alone)."""

    latent_size: int
    num_classes: int = 0
    #: The scale of the noise sampling draws from (the truncation trick; 1: none). A saved
    #: model's config may record its own under "sampling" (load_model sets it); training and
    #: :meth:`noise` ignore it.
    truncation: float = 1.0
    #: The denoiser its samples measured closest with, by name: ``--denoise`` uses it when the
    #: store has it (recorded as "sampling"."denoiser"; load_model sets it).
    denoiser: str | None = None

    def noise(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Standard normal noise [count, latent_size] on the CPU (device-independent draws)."""
        return torch.randn(count, self.latent_size, generator=generator)


class Discriminator(nn.Module):
    """Images to logits [N]; ``probability`` is the report's sigmoid output."""

    def probability(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self(images) if labels is None else self(images, labels))


@register("generator", "mlp")
class MLPGenerator(Generator):
    """The report's generator: z → h → h → 784 with ReLU, then tanh."""

    def __init__(self, latent_size: int = 100, hidden_size: int = 784) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.net = nn.Sequential(
            nn.Linear(latent_size, hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_size, IMAGE_PIXELS),
            nn.Tanh(),
        )

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        return self.net(noise).view(-1, 1, 28, 28)


@register("discriminator", "mlp")
class MLPDiscriminator(Discriminator):
    """The report's discriminator: 784 → h → h → 1 with LeakyReLU(0.2) (sigmoid in the loss)."""

    def __init__(self, hidden_size: int = 784) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(IMAGE_PIXELS, hidden_size),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden_size, hidden_size),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(hidden_size, 1),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.flatten(1)).squeeze(1)


@register("generator", "dcgan")
class DCGANGenerator(Generator):
    """z → 2wx7x7 → (transposed conv) wx14x14 → 1x28x28, batch norm and ReLU between, tanh."""

    def __init__(self, latent_size: int = 100, width: int = 64, num_classes: int = 0) -> None:
        super().__init__()
        self.latent_size = latent_size
        self.width = width
        self.num_classes = num_classes
        # Conditional: the one-hot label beside the noise, so the first layer learns a class
        # embedding of its full width (10 x 2w x 7 x 7 weights: 0.06 M at w = 64). The label is
        # scaled to the noise's norm (sqrt(latent_size)): unscaled, it moved the first layer a
        # tenth as much as the noise did, and the classes were slow to separate.
        self.label_scale = float(latent_size) ** 0.5
        self.project = nn.Sequential(
            nn.Linear(latent_size + num_classes, 2 * width * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * width * 7 * 7),
            nn.ReLU(inplace=True),
        )
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),
            nn.Tanh(),
        )

    def forward(self, noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("a class-conditional generator needs labels: model(z, labels)")
            classes = one_hot(labels, self.num_classes).to(noise.dtype) * self.label_scale
            noise = torch.cat([noise, classes], dim=1)
        return self.net(self.project(noise).view(-1, 2 * self.width, 7, 7))


@register("discriminator", "dcgan")
class DCGANDiscriminator(Discriminator):
    """1x28x28 → (strided conv) wx14x14 → 2wx7x7 → logit, LeakyReLU(0.2), batch norm inside."""

    def __init__(self, width: int = 64, num_classes: int = 0, spectral_norm: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        features = 2 * width * 7 * 7
        if spectral_norm:
            # Spectral normalisation bounds each layer's Lipschitz constant; batch norm would
            # undo that, so it goes (as in SNGAN's discriminator).
            from torch.nn.utils.parametrizations import spectral_norm as normalised

            self.net = nn.Sequential(
                normalised(nn.Conv2d(1, width, 4, stride=2, padding=1)),
                nn.LeakyReLU(0.2, inplace=True),
                normalised(nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Flatten(),
                normalised(nn.Linear(features, 1)),
            )
            embed = nn.Linear(num_classes, features, bias=False) if num_classes else None
            self.embed = normalised(embed) if embed is not None else None
        else:
            self.net = nn.Sequential(
                nn.Conv2d(1, width, 4, stride=2, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(2 * width),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Flatten(),
                nn.Linear(features, 1),
            )
            self.embed = nn.Linear(num_classes, features, bias=False) if num_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        features = self.net[:-1](images)  # the last layer is the unconditional logit
        logits = self.net[-1](features).squeeze(1)
        if self.embed is not None:
            if labels is None:
                raise ValueError("a class-conditional discriminator needs labels: model(x, labels)")
            classes = one_hot(labels, self.num_classes).to(features.dtype)
            logits = logits + (self.embed(classes) * features).sum(dim=1)
        return logits
