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
    loss: str = "bce",
) -> Step:
    """One discriminator step then one generator step, then the generator average; returns
    d_loss, g_loss, mean sigmoid(D(x)) and mean sigmoid(D(G(z))).

    ``loss``: "bce", binary cross-entropy on logits with the non-saturating generator loss;
    "hinge", max(0, 1 - D(x)) + max(0, 1 + D(G(z))) for the discriminator and -D(G(z)) for
    the generator. A batch is (images, labels, noise): the noise comes with the batch, so the
    step draws nothing at random and can be replayed as a CUDA graph. A class-conditional pair
    is given the batch's labels: the real images' own, and the same labels for the generated
    ones (the data's class mix, without a random draw).
    """
    import torch
    from torch.nn.functional import relu, softplus

    generator_optimizer, discriminator_optimizer = optimizers
    conditional = getattr(generator, "num_classes", 0) > 0
    hinge = loss == "hinge"
    # Without batch norm a discriminator scores each image on its own, so real and fake go
    # through it as one batch: the same numbers from half the launches.
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)
    one_pass = not any(isinstance(module, norms) for module in discriminator.modules())
    discriminator_weights = list(discriminator.parameters())

    def discriminate(real, fake, labels):  # type: ignore[no-untyped-def]
        if not one_pass:
            return discriminator(real, *labels).float(), discriminator(fake, *labels).float()
        both = [torch.cat([labels[0], labels[0]])] if labels else []
        logits = discriminator(torch.cat([real, fake.to(real.dtype)]), *both).float()
        return logits[: len(real)], logits[len(real) :]

    def step(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        real = to_tanh_range(batch[0])
        z = batch[2]
        labels = (batch[1],) if conditional else ()
        count = real.shape[0]
        with autocast(real.device, precision):
            fake = generator(z, *labels)
            real_logits, fake_logits = discriminate(real, fake.detach(), labels)
            if hinge:
                discriminator_loss = relu(1 - real_logits).mean() + relu(1 + fake_logits).mean()
            else:  # binary cross-entropy on logits: softplus(-x) for real, softplus(x) for fake
                discriminator_loss = softplus(-real_logits).mean() + softplus(fake_logits).mean()
        discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        discriminator_optimizer.step()

        # The generator's loss flows through the discriminator, whose own gradients it never
        # uses: leave them uncomputed.
        for weight in discriminator_weights:
            weight.requires_grad_(False)
        with autocast(real.device, precision):
            generated_logits = discriminator(fake, *labels).float()
            generator_loss = (
                -generated_logits.mean() if hinge else softplus(-generated_logits).mean()
            )
        generator_optimizer.zero_grad(set_to_none=True)
        generator_loss.backward()
        for weight in discriminator_weights:
            weight.requires_grad_(True)
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
