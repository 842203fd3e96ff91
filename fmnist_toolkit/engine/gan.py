"""The GAN recipe: config in, trained generator plus loss history and sample grids out.

Both networks and both optimisers are checkpointed every epoch, so Ctrl-C and ``--resume``
behave as for the autoencoder. Noise comes from one seeded CPU generator (device-independent
draws, saved in the checkpoint), batches from another.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit._version import __version__
from fmnist_toolkit.config import (
    EngineConfig,
    GanTrainConfig,
    config_to_dict,
)
from fmnist_toolkit.data import (
    DeviceSplit,
    dataset_sha256,
    epoch_order,
    row_batches,
    to_unit_float,
)
from fmnist_toolkit.engine import checkpoint as checkpointing
from fmnist_toolkit.engine.ae import ensure_writable_folder
from fmnist_toolkit.engine.callbacks import Checkpoint, CheckpointCallback
from fmnist_toolkit.engine.device import (
    adam_options,
    autocast,
    check_precision,
    describe_device,
    place_model,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from fmnist_toolkit.engine.graphs import accelerated_step, graph_ready
from fmnist_toolkit.engine.loop import Callback, LoopState, Step, fit
from fmnist_toolkit.engine.sample import generate, grid_bytes
from fmnist_toolkit.errors import (
    TrainingDiverged,
    TrainingInterrupted,
    UsageError,
)
from fmnist_toolkit.models import architectures, create_model
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
    *,
    average: GeneratorAverage | None = None,
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


class GeneratorAverage:
    """An exponential moving average of the generator's weights, updated by the training step.

    The average is what gets saved and drawn: it smooths the step-to-step wandering of
    adversarial training (the generator averaging of Karras et al. 2018 and BigGAN). It lives
    in torch's ``AveragedModel`` (the checkpoint layout) and starts as its copy of the initial
    generator; each update moves it ``1 - decay`` of the way with a fixed weight and reads
    nothing back to the host, so the update is part of a step's CUDA graph. (AveragedModel's
    own update copies at its first call, a host-side branch; the initial weights' share of the
    average is decay ** steps, under 1e-20 after one epoch at 0.999.)
    """

    def __init__(self, generator: nn.Module, decay: float) -> None:
        import itertools

        from torch.optim.swa_utils import AveragedModel

        device = next(generator.parameters()).device
        self.average = AveragedModel(generator, device=device, use_buffers=True)
        self.decay = decay
        pairs = list(
            zip(
                itertools.chain(self.average.module.parameters(), self.average.module.buffers()),
                itertools.chain(generator.parameters(), generator.buffers()),
                strict=True,
            )
        )
        floating = [(mean.detach(), now.detach()) for mean, now in pairs if now.is_floating_point()]
        self.means = [mean for mean, _ in floating]
        self.current = [now for _, now in floating]
        self.counters = [(mean, now) for mean, now in pairs if not now.is_floating_point()]

    def update(self) -> None:
        import torch

        with torch.no_grad():
            torch._foreach_lerp_(self.means, self.current, 1.0 - self.decay)
            for mean, now in self.counters:
                mean.copy_(now)
            self.average.n_averaged.add_(1)


class StopOnDivergence(Callback):
    """Ends training at the first epoch whose losses are not finite, before it is saved."""

    def __init__(self, checkpoints: CheckpointCallback) -> None:
        self.checkpoints = checkpoints

    def on_epoch_end(self, state: LoopState) -> None:
        bad = [key for key in GAN_METRICS if not math.isfinite(state.last.get(key, 0.0))]
        if bad:
            raise TrainingDiverged(
                f"training diverged at epoch {state.epoch} ({bad[0]} is "
                f"{state.last[bad[0]]}); the checkpoint of epoch {self.checkpoints.saved_epoch} is "
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
    engine = dataclasses.replace(
        engine, precision=resolve_precision(engine.precision, device, "gan")
    )
    train = DeviceSplit.load("train", data_dir, device)
    data_sha256 = dataset_sha256(train.images, train.labels)

    shuffle = seed_everything(config.seed)
    noise = torch.Generator().manual_seed(config.seed + 1)
    fixed_noise = torch.randn(
        GRID_SAMPLES, config.latent_size, generator=torch.Generator().manual_seed(config.seed)
    )
    generator_spec, discriminator_spec = config.generator_spec(), config.discriminator_spec()
    generator = place_model(create_model(generator_spec), device)
    discriminator = place_model(create_model(discriminator_spec), device)
    adam = {"lr": config.lr, "betas": (config.beta1, config.beta2), **adam_options(device)}
    generator_optimizer = torch.optim.Adam(generator.parameters(), **adam)
    discriminator_optimizer = torch.optim.Adam(discriminator.parameters(), **adam)
    networks = {"generator.": generator, "discriminator.": discriminator}
    averaging = GeneratorAverage(generator, config.ema) if config.ema else None
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

    def collect_checkpoint(loop: LoopState) -> Checkpoint:
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
        return tensors, meta

    checkpoints = CheckpointCallback(
        collect_checkpoint, lambda checkpoint: store.save_checkpoint(name, *checkpoint)
    )
    grids = (
        SampleGrids(final_generator, fixed_noise, plots_dir, name, sample_every)
        if plots_dir is not None
        else None
    )
    generator.train()
    discriminator.train()
    for optimizer in optimizers.values():
        graph_ready(optimizer, device, enabled=engine.cuda_graphs)
    step = accelerated_step(
        adversarial_step(
            generator,
            discriminator,
            (generator_optimizer, discriminator_optimizer),
            average=averaging,
            precision=engine.precision,
        ),
        device,
        cuda_graphs=engine.cuda_graphs,
    )
    try:
        fit(
            step,
            lambda: batches_with_noise(
                train, config.batch_size, shuffle, noise, config.latent_size
            ),
            state,
            train_metric=GAN_METRICS,
            # Divergence first (nothing diverged is saved), then the checkpoint, then the rest.
            callbacks=[
                StopOnDivergence(checkpoints),
                checkpoints,
                *([grids] if grids else []),
                *callbacks,
            ],
        )
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted; {checkpoints.saved_epoch}/{config.epochs} epochs are saved in a "
            "checkpoint",
            model_name=name,
            completed_epochs=checkpoints.saved_epoch,
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
