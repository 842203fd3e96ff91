"""The denoising objective: corrupt clean images the way generators do, learn to undo it.

``fmt ae train --objective denoise`` trains on (corrupted image, clean image) pairs instead of
(image, image). The corruptions imitate what GAN samples show: salt-and-pepper dots, speckle
(noise proportional to brightness), grain (the MLP generator's holes: a dense share of the
garment's pixels darkened by a random factor), stray bright dots on the background, Gaussian
noise of random strength and a mild blur; a share of images stays clean, so that a clean image
learns to pass unchanged. Every random number comes from one seeded CPU generator, so a run is
reproducible and resumes exactly (the generator's state is checkpointed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fmnist_toolkit.data import DeviceSplit, to_unit_float
from fmnist_toolkit.engine.device import autocast
from fmnist_toolkit.engine.inference import INFERENCE_BATCH

if TYPE_CHECKING:
    import torch
    from torch import nn

    from fmnist_toolkit.storage import ModelStore

CLEAN_SHARE = 0.1  # images left as they are (and those that drew no corruption: 3/32 of the rest)
CORRUPTION_CHANCE = 0.5  # each kind below is applied to a corrupted image with this chance
BLUR_CHANCE = 0.25
MAX_GAUSSIAN_SIGMA = 0.3  # standard deviation, drawn uniformly per image
MAX_SPECKLE_SIGMA = 1.0  # relative to brightness; 0.6 left the MLP generator's grain (docs/gan.md)
MAX_SALT_PEPPER = 0.15  # share of pixels set to 0 or 1
# Grain and stray dots imitate the MLP generator's holes and bright dots, but are off: at 0.5
# and 0.05 they did not bring its samples closer and moved the DCGANs' away (docs/gan.md).
MAX_GRAIN = 0.0  # share of the garment's pixels darkened, each by a factor drawn from [0, 1)
MAX_STRAY_DOTS = 0.0  # share of the background's pixels lit, each to a brightness in [0.25, 1)
GARMENT_LEVEL = 0.1  # a clean pixel brighter than this is garment, the rest background
# The weakest corruption drawn, as a share of each kind's maximum: 0 draws strengths from
# [0, maximum). Weak noise teaches the model that fine texture may be noise and is best
# smoothed away, which is what a generator's good samples must not get.
WEAKEST_SHARE = 0.0
TEST_CORRUPTION_SEED = 0  # the test set is corrupted the same way for every run: comparable MSEs
# Noise of the generators' samples that train as clean images: far from the seeds samples are
# judged with (fmt gan eval --seed 0), so that a denoiser is never judged on its training images.
CLEAN_SAMPLES_SEED = 1_000_003


def _per_image(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    return values.to(device).view(-1, 1, 1, 1)


def corrupt(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Corrupted copies of [B, 1, H, W] images in [0, 1], drawn from the CPU ``generator``.

    Each image is clean with chance :data:`CLEAN_SHARE`; otherwise it is blurred (chance
    :data:`BLUR_CHANCE`, a random mix with its 3x3 Gaussian blur), and then gets each of
    Gaussian noise, speckle, grain, stray dots and salt-and-pepper with chance
    :data:`CORRUPTION_CHANCE`, at a strength drawn uniformly per image between
    :data:`WEAKEST_SHARE` of its maximum and the maximum. The result is clamped to [0, 1].
    """
    import torch

    device, shape = images.device, images.shape
    count = shape[0]

    def uniform(*size: int) -> torch.Tensor:
        return torch.rand(size, generator=generator)

    def normal(*size: int) -> torch.Tensor:
        return torch.randn(size, generator=generator).to(device)

    corrupted_image = uniform(count) >= CLEAN_SHARE
    blur = _per_image((uniform(count) < BLUR_CHANCE) * uniform(count), device)
    maxima = torch.tensor(
        [MAX_GAUSSIAN_SIGMA, MAX_SPECKLE_SIGMA, MAX_SALT_PEPPER, MAX_GRAIN, MAX_STRAY_DOTS]
    )
    chosen = (uniform(count, len(maxima)) < CORRUPTION_CHANCE) & corrupted_image[:, None]
    strength = (WEAKEST_SHARE + (1 - WEAKEST_SHARE) * uniform(count, len(maxima))) * maxima
    gaussian, speckle, salt_pepper, grain, stray_dots = (
        _per_image(chosen[:, kind] * strength[:, kind], device) for kind in range(len(maxima))
    )
    kernel = torch.tensor([1.0, 2.0, 1.0], device=device)
    kernel = (kernel[:, None] * kernel[None, :] / 16).view(1, 1, 3, 3)
    blurred = torch.nn.functional.conv2d(images, kernel, padding=1)
    blur = blur * _per_image(corrupted_image, device)
    noisy = images + blur * (blurred - images)
    noisy = noisy + gaussian * normal(*shape) + speckle * noisy * normal(*shape)
    garment = images > GARMENT_LEVEL
    holes = (uniform(*shape).to(device) < grain) & garment
    noisy = torch.where(holes, noisy * uniform(*shape).to(device), noisy)
    lit = (uniform(*shape).to(device) < stray_dots) & ~garment
    noisy = torch.where(lit, 0.25 + 0.75 * uniform(*shape).to(device), noisy)
    dots, salt = uniform(*shape).to(device), uniform(*shape).to(device) < 0.5
    noisy = torch.where(dots < salt_pepper, salt.to(images.dtype), noisy)
    return noisy.clamp(0, 1)


def generator_samples(
    names: tuple[str, ...],
    count: int,
    store: ModelStore,
    device: torch.device,
    *,
    seed: int = CLEAN_SAMPLES_SEED,
) -> torch.Tensor:
    """``count`` samples of each generator in ``names`` as uint8 [N, 28, 28] on ``device``,
    drawn from ``seed`` (a conditional one draws every class equally often): extra clean
    training images for a denoiser, or what a gate learns to detect (engine/gate.py)."""
    import torch

    from fmnist_toolkit.engine.sample import (
        load_generator,
        sample_batches,
        sample_labels,
        to_uint8,
    )

    samples = []
    for name in names:
        generator = load_generator(name, store, device)
        labels = sample_labels(generator, count)
        # Untruncated draws (1): the widest variety of what generators make.
        batches = sample_batches(generator, None, count, seed, labels, truncation=1)
        for raw, _ in batches:
            samples.append(to_uint8(raw))
    return torch.cat(samples).to(device)


def corrupted_test_images(test: DeviceSplit) -> torch.Tensor:
    """The whole split corrupted once, from :data:`TEST_CORRUPTION_SEED`: the denoising test set."""
    import torch

    generator = torch.Generator().manual_seed(TEST_CORRUPTION_SEED)
    return corrupt(to_unit_float(test.images), generator)


def denoising_mse(
    model: nn.Module, test: DeviceSplit, corrupted: torch.Tensor, *, precision: str = "fp32"
) -> float:
    """Mean squared error per pixel between the model's output for ``corrupted`` (the split's
    images, corrupted) and the split's clean images."""
    import torch

    was_training = model.training
    model.eval()
    total = torch.zeros((), device=test.images.device, dtype=torch.float64)
    with torch.no_grad(), autocast(test.images.device, precision):
        for start in range(0, len(test), INFERENCE_BATCH):
            clean = to_unit_float(test.images[start : start + INFERENCE_BATCH])
            output = model(corrupted[start : start + INFERENCE_BATCH]).float()
            total += torch.nn.functional.mse_loss(output, clean, reduction="sum")
    model.train(was_training)
    return float(total) / (len(test) * test.images[0].numel())


def denoising_metrics(
    model: nn.Module, test: DeviceSplit, corrupted: torch.Tensor, *, precision: str = "fp32"
) -> dict[str, float]:
    """The denoising objective's test metrics, every epoch: ``test_mse`` on the corrupted test
    images, and ``clean_mse``, how much the model changes clean ones (0: not at all)."""
    return {
        "test_mse": denoising_mse(model, test, corrupted, precision=precision),
        "clean_mse": denoising_mse(model, test, to_unit_float(test.images), precision=precision),
    }
