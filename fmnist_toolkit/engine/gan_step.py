"""The GAN's training step: one discriminator then one generator update on a batch that
carries its own noise, and the generator's moving average updated inside the step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from fmnist_toolkit.data import (
    DeviceSplit,
    epoch_order,
    row_batches,
    to_unit_float,
)
from fmnist_toolkit.engine.averaging import WeightAverage
from fmnist_toolkit.engine.device import autocast
from fmnist_toolkit.engine.loop import Step

if TYPE_CHECKING:
    import torch
    from torch import nn


def to_tanh_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images to the generator's [-1, 1]."""
    return images * 2 - 1


def adversarial_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    *,
    average: WeightAverage | None = None,
    precision: str = "fp32",
) -> Step:
    """One discriminator step then one generator step (binary cross-entropy on logits,
    non-saturating generator loss), then the generator average; returns d_loss, g_loss,
    mean D(x) and mean D(G(z)).

    A batch is (images, labels, noise): the noise comes with the batch, so the step draws
    nothing at random and can be replayed as a CUDA graph.
    """
    import torch
    from torch.nn.functional import binary_cross_entropy_with_logits as bce

    device = next(generator.parameters()).device
    generator_optimizer, discriminator_optimizer = optimizers

    def step(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        real = to_tanh_range(batch[0])
        z = batch[2]
        count = real.shape[0]
        ones = torch.ones(count, device=device)
        zeros = torch.zeros(count, device=device)
        with autocast(device, precision):
            fake = generator(z)
            real_logits = discriminator(real).float()
            fake_logits = discriminator(fake.detach()).float()
            discriminator_loss = bce(real_logits, ones) + bce(fake_logits, zeros)
        discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        discriminator_optimizer.step()

        with autocast(device, precision):
            generator_loss = bce(discriminator(fake).float(), ones)
        generator_optimizer.zero_grad(set_to_none=True)
        generator_loss.backward()
        generator_optimizer.step()
        if average is not None:
            average.update()
        tracked = torch.stack(
            [
                discriminator_loss,
                generator_loss,
                torch.sigmoid(real_logits).mean(),
                torch.sigmoid(fake_logits).mean(),
            ]
        )
        return tracked.detach(), count

    return step


def batches_with_noise(
    train: DeviceSplit,
    batch_size: int,
    shuffle: torch.Generator,
    noise: torch.Generator,
    latent_size: int,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """An epoch of (images, labels, noise) batches; the epoch's noise is drawn at once, on the
    CPU from the seeded ``noise`` generator (the same draws on every device)."""
    import torch

    images, labels = epoch_order((train.images, train.labels), shuffle)
    epoch_noise = torch.randn(len(train), latent_size, generator=noise).to(images.device)
    yield from row_batches((to_unit_float(images), labels, epoch_noise), batch_size)
