"""The GAN recipe: config in, trained generator plus loss history and sample grids out.

Both networks and both optimisers are checkpointed every epoch, so Ctrl-C and ``--resume``
behave as for the autoencoder. Noise comes from one seeded CPU generator (device-independent
draws, saved in the checkpoint), batches from another.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit._version import __version__
from fmnist_toolkit.config import (
    EngineConfig,
    GanTrainConfig,
    ModelSpec,
    config_to_dict,
)
from fmnist_toolkit.data import DeviceSplit, dataset_sha256
from fmnist_toolkit.engine import checkpoint as checkpointing
from fmnist_toolkit.engine.ae import ensure_writable_folder
from fmnist_toolkit.engine.callbacks import CheckpointCallback
from fmnist_toolkit.engine.device import (
    autocast,
    check_precision,
    describe_device,
    place_model,
    resolve_device,
    seed_everything,
)
from fmnist_toolkit.engine.loop import Callback, LoopState, Step, fit
from fmnist_toolkit.engine.sample import generate, grid_bytes
from fmnist_toolkit.errors import (
    TrainingDiverged,
    TrainingInterrupted,
    UsageError,
)
from fmnist_toolkit.models import architectures, build_model
from fmnist_toolkit.storage import ModelStore, validate_name

if TYPE_CHECKING:
    import torch
    from torch import nn

GAN_METRICS = ("d_loss", "g_loss", "d_real", "d_fake")
GRID_SAMPLES = 64  # the fixed noise batch drawn into the sample grids
# Standing batch-norm statistics: 20 x 500 noise vectors pin the running means and variances
# of the final weights far below the sampling noise of a 10,000-image Fréchet distance.
STANDING_STATS_BATCHES = 20
STANDING_STATS_BATCH_SIZE = 500


@dataclass
class GanTrainResult:
    """What ``fmt gan train`` reports."""

    name: str
    path: Path
    epochs: int
    final: dict[str, float]
    seconds: float
    device: str
    resumed_from_epoch: int = 0
    plots: list[Path] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


def check_gan_config(config: GanTrainConfig) -> None:
    """Values that can never train: a usage error before any data is read."""
    sizes = (config.epochs, config.batch_size, config.latent_size, config.hidden_size, config.width)
    if min(sizes) < 1:
        raise UsageError("epochs, batch size, latent, hidden size and width must be at least 1")
    if not (math.isfinite(config.lr) and config.lr > 0):
        raise UsageError("the learning rate must be a finite number > 0")
    if not (0 <= config.beta1 < 1 and 0 <= config.beta2 < 1):
        raise UsageError("Adam's betas must be in [0, 1)")
    if not 0 <= config.ema < 1:
        raise UsageError("--ema must be in [0, 1) (0 keeps no average)")
    known = [arch for kind, arch in architectures("generator")]
    if config.architecture not in known:
        raise UsageError(f"unknown architecture {config.architecture!r}; use {' or '.join(known)}")


def to_tanh_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images to the generator's [-1, 1]."""
    return images * 2 - 1


def adversarial_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizers: tuple[torch.optim.Optimizer, torch.optim.Optimizer],
    noise: torch.Generator,
    *,
    precision: str = "fp32",
) -> Step:
    """One discriminator step then one generator step (binary cross-entropy on logits,
    non-saturating generator loss); returns d_loss, g_loss, mean D(x) and mean D(G(z))."""
    import torch
    from torch.nn.functional import binary_cross_entropy_with_logits as bce

    device = next(generator.parameters()).device
    generator_optimizer, discriminator_optimizer = optimizers
    latent_size = generator.latent_size

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        real = to_tanh_range(batch[0])
        count = real.shape[0]
        ones = torch.ones(count, device=device)
        zeros = torch.zeros(count, device=device)
        z = torch.randn(count, latent_size, generator=noise).to(device, non_blocking=True)
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


class AverageGenerator(Callback):
    """Keeps an exponential moving average of the generator's weights after every step.

    The average is what gets saved and drawn: it smooths the step-to-step wandering of
    adversarial training (the generator averaging of Karras et al. 2018 and BigGAN).
    """

    def __init__(self, generator: nn.Module, decay: float) -> None:
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        self.generator = generator
        self.average = AveragedModel(
            generator, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True
        )

    def on_batch_end(self, state: LoopState) -> None:
        self.average.update_parameters(self.generator)


class StopOnDivergence(Callback):
    """Ends training at the first epoch whose losses are not finite, before it is saved."""

    def __init__(self, saved_epochs: list[int]) -> None:
        self.saved_epochs = saved_epochs

    def on_epoch_end(self, state: LoopState) -> None:
        bad = [key for key in GAN_METRICS if not math.isfinite(state.last.get(key, 0.0))]
        if bad:
            raise TrainingDiverged(
                f"training diverged at epoch {state.epoch} ({bad[0]} is "
                f"{state.last[bad[0]]}); the checkpoint of epoch {self.saved_epochs[0]} is "
                "kept: resume it with --resume, or start again with a lower --lr and --restart"
            )


class SampleGrids(Callback):
    """Draws the fixed noise batch into ``<name>-epoch-NNNN.png`` every ``every`` epochs."""

    def __init__(
        self, generator: nn.Module, noise: torch.Tensor, folder: Path, name: str, every: int
    ) -> None:
        self.generator = generator
        self.noise = noise
        self.folder = folder
        self.name = name
        self.every = every
        self.written: list[Path] = []

    def on_epoch_end(self, state: LoopState) -> None:
        if state.epoch % self.every == 0 or state.epoch == state.epochs:
            path = self.folder / f"{self.name}-epoch-{state.epoch:04d}.png"
            write_grid(generate(self.generator, self.noise), path, nrow=8)
            self.written.append(path)


def recalibrate_batch_norm(generator: nn.Module, seed: int) -> None:
    """Recompute the generator's batch-norm statistics for its final weights.

    During training the running statistics trail the weights (an average over the last few
    dozen batches, made by earlier weights; the averaged generator's are an average of those),
    yet sampling uses them. One pass over fresh seeded noise gives the "standing statistics"
    of the weights actually saved; a generator without batch norm (mlp) is left as it is.
    """
    import torch
    from torch.optim.swa_utils import update_bn

    draws = torch.Generator().manual_seed(seed + 2)  # seed, seed + 1: grids and training noise
    device = next(generator.parameters()).device
    noise = (
        generator.noise(STANDING_STATS_BATCH_SIZE, draws) for _ in range(STANDING_STATS_BATCHES)
    )
    update_bn(noise, generator, device=device)


def write_grid(images: torch.Tensor, path: Path, *, nrow: int) -> Path:
    """A grid PNG of [0, 1] images (the same grid as ``fmt gan sample``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(grid_bytes(images, nrow=nrow))
    return path


def train_gan(
    name: str,
    config: GanTrainConfig,
    engine: EngineConfig,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    resume: bool = False,
    restart: bool = False,
    plots_dir: Path | None = None,
    sample_every: int = 10,
    callbacks: Sequence[Callback] = (),
) -> GanTrainResult:
    """Train generator and discriminator on the 60,000 training images; save the generator.

    Checkpoints every epoch (both networks, both optimisers, both random generators); with
    ``resume`` the run continues exactly. A diverged run (a loss that is not finite) stops
    with :class:`TrainingDiverged` and keeps the last good checkpoint.
    """
    store = store or ModelStore()
    validate_name(name)
    check_precision(engine.precision)
    if sample_every < 1:
        raise UsageError("--sample-every must be at least 1")
    if plots_dir is not None:
        ensure_writable_folder(plots_dir, "--plots")
    with store.exclusive_run(name):
        saved_state = checkpointing.checkpoint_to_resume(
            store, name, resume=resume, restart=restart
        )
        if saved_state is not None:
            config, engine = checkpointing.settings_from_checkpoint(
                GanTrainConfig, saved_state[1], engine, name
            )
        check_gan_config(config)
        return _train_gan(
            name, config, engine, data_dir, store, saved_state, plots_dir, sample_every, callbacks
        )


def _train_gan(
    name: str,
    config: GanTrainConfig,
    engine: EngineConfig,
    data_dir: str | os.PathLike[str] | None,
    store: ModelStore,
    saved_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None,
    plots_dir: Path | None,
    sample_every: int,
    callbacks: Sequence[Callback],
) -> GanTrainResult:
    import torch

    device = resolve_device(engine.device)
    train = DeviceSplit.load("train", data_dir, device)
    data_sha256 = dataset_sha256(train.images, train.labels)

    shuffle = seed_everything(config.seed)
    noise = torch.Generator().manual_seed(config.seed + 1)
    fixed_noise = torch.randn(
        GRID_SAMPLES, config.latent_size, generator=torch.Generator().manual_seed(config.seed)
    )
    generator_spec, discriminator_spec = config.generator_spec(), config.discriminator_spec()
    generator = place_model(build_network(generator_spec), device)
    discriminator = place_model(build_network(discriminator_spec), device)
    betas = (config.beta1, config.beta2)
    generator_optimizer = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=betas)
    discriminator_optimizer = torch.optim.Adam(
        discriminator.parameters(), lr=config.lr, betas=betas
    )
    networks = {"generator.": generator, "discriminator.": discriminator}
    averaging = AverageGenerator(generator, config.ema) if config.ema else None
    if averaging is not None:
        networks["generator_average."] = averaging.average
    # What is saved and drawn: the average when one is kept.
    final_generator = averaging.average.module if averaging is not None else generator
    optimizers = {
        "generator_optimizer.": generator_optimizer,
        "discriminator_optimizer.": discriminator_optimizer,
    }
    state = LoopState(epochs=config.epochs, batches_per_epoch=train.num_batches(config.batch_size))
    elapsed_before = 0.0
    if saved_state is not None:

        def restore(tensors: dict[str, torch.Tensor], meta: dict[str, Any], label: str) -> None:
            for prefix, network in networks.items():
                checkpointing.restore_model(network, tensors, label, prefix)
            for prefix, optimizer in optimizers.items():
                checkpointing.restore_optimizer(
                    optimizer, tensors, meta["optimizers"][prefix], prefix + "state."
                )
            shuffle.set_state(tensors["rng.shuffle"])
            noise.set_state(tensors["rng.noise"])

        elapsed_before = checkpointing.restore_run(
            saved_state, state, name=name, data_sha256=data_sha256, restore=restore
        )
    resumed_from = state.epoch
    saved_epochs = [state.epoch]
    started = time.perf_counter()

    def common_meta(loop: LoopState) -> dict[str, Any]:
        return {
            "name": name,
            "kind": "generator",
            "model": config_to_dict(generator_spec),
            "discriminator": config_to_dict(discriminator_spec),
            "recipe": config_to_dict(config),
            "engine": config_to_dict(engine),
            "data_sha256": data_sha256,
            "history": loop.history,
            "seconds": elapsed_before + time.perf_counter() - started,
            "device": describe_device(device),
            "toolkit_version": __version__,
        }

    def save_checkpoint(loop: LoopState) -> None:
        tensors: dict[str, torch.Tensor] = {
            "rng.shuffle": shuffle.get_state(),
            "rng.noise": noise.get_state(),
        }
        optimizer_meta = {}
        for prefix, network in networks.items():
            tensors.update(checkpointing.model_tensors(network, prefix))
        for prefix, optimizer in optimizers.items():
            optimizer_tensors, optimizer_meta[prefix] = checkpointing.optimizer_to_tensors(
                optimizer, prefix + "state."
            )
            tensors.update(optimizer_tensors)
        meta = {**common_meta(loop), "epoch": loop.epoch, "optimizers": optimizer_meta}
        store.save_checkpoint(name, tensors, meta)
        saved_epochs[0] = loop.epoch

    grids = (
        SampleGrids(final_generator, fixed_noise, plots_dir, name, sample_every)
        if plots_dir is not None
        else None
    )
    generator.train()
    discriminator.train()
    step = adversarial_step(
        generator,
        discriminator,
        (generator_optimizer, discriminator_optimizer),
        noise,
        precision=engine.precision,
    )
    try:
        fit(
            step,
            lambda: train.batches(config.batch_size, shuffle),
            state,
            train_metric=GAN_METRICS,
            # Divergence first (nothing diverged is saved), then the checkpoint, then the rest.
            callbacks=[
                *([averaging] if averaging else []),
                StopOnDivergence(saved_epochs),
                CheckpointCallback(save_checkpoint),
                *([grids] if grids else []),
                *callbacks,
            ],
        )
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted; {saved_epochs[0]}/{config.epochs} epochs are saved in a checkpoint",
            model_name=name,
            completed_epochs=saved_epochs[0],
        ) from None

    recalibrate_batch_norm(final_generator, config.seed)
    final = {key: state.last[key] for key in GAN_METRICS}
    meta = {
        **common_meta(state),
        "metrics": final,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path = store.save(name, final_generator.state_dict(), meta)
    store.remove_checkpoint(name)
    plots = list(grids.written) if grids else []
    if plots_dir is not None:
        plots += write_gan_plots(state.history, name, plots_dir)
    return GanTrainResult(
        name=name,
        path=path,
        epochs=state.epoch,
        final=final,
        seconds=meta["seconds"],
        device=meta["device"],
        resumed_from_epoch=resumed_from,
        plots=plots,
        history=state.history,
    )


def write_gan_plots(history: list[dict[str, float]], name: str, folder: Path) -> list[Path]:
    """Both losses, and the discriminator's mean outputs on real and generated images."""
    from fmnist_toolkit import plots

    losses = plots.loss_curves(
        history,
        metrics=("d_loss", "g_loss"),
        title=f"GAN losses — {name}",
        ylabel="binary cross-entropy",
    )
    outputs = plots.loss_curves(
        history,
        metrics=("d_real", "d_fake"),
        title=f"Discriminator outputs — {name}: D(x) on real, D(G(z)) on generated",
        ylabel="mean probability of 'real'",
        log_scale=False,
    )
    return [
        plots.save_figure(losses, folder / f"{name}-losses.png"),
        plots.save_figure(outputs, folder / f"{name}-d-outputs.png"),
    ]


def build_network(spec: ModelSpec) -> nn.Module:
    return build_model(spec.kind, spec.architecture, **spec.params)
