"""The GAN recipe: config in, trained generator plus loss history and sample grids out.

Both networks and both optimisers are checkpointed every epoch, so Ctrl-C and ``--resume``
behave as for the autoencoder. Noise comes from one seeded CPU generator (device-independent
draws, saved in the checkpoint), batches from another.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import (
    GAN_LOSSES,
    NUM_CLASSES,
    EngineConfig,
    GanTrainConfig,
    config_to_dict,
)
from fmnist_toolkit.data import DeviceSplit, dataset_sha256
from fmnist_toolkit.engine import checkpoint as checkpointing
from fmnist_toolkit.engine.averaging import WeightAverage
from fmnist_toolkit.engine.callbacks import Checkpoint, TimeBudget
from fmnist_toolkit.engine.device import (
    adam_options,
    place_model,
    resolve_device,
    resolve_engine,
    seed_everything,
)

# The training step has its own module; its names are re-exported here.
from fmnist_toolkit.engine.gan_step import (
    adversarial_step,
    batches_with_noise,
    to_tanh_range,
)
from fmnist_toolkit.engine.graphs import accelerated_step, graph_ready
from fmnist_toolkit.engine.loop import Callback, LoopState, Step, fit
from fmnist_toolkit.engine.run import TrainingRun, run_description
from fmnist_toolkit.engine.sample import generate, grid_bytes
from fmnist_toolkit.errors import UsageError
from fmnist_toolkit.models import architectures, create_model
from fmnist_toolkit.storage import ModelStore

__all__ = [
    "GanTrainResult",
    "GanTraining",
    "adversarial_step",
    "batches_with_noise",
    "check_gan_config",
    "recalibrate_batch_norm",
    "to_tanh_range",
    "train_gan",
    "write_gan_plots",
    "write_grid",
]

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
    # {"seconds": budget, "epochs": epochs trained} when --time-budget ended the run early.
    stopped_by_time_budget: dict[str, float] | None = None
    planned_epochs: int = 0  # the recipe's (the checkpoint's on --resume)


def check_gan_config(config: GanTrainConfig) -> None:
    """Values that can never train: a usage error before any data is read."""
    sizes = (config.epochs, config.batch_size, config.latent_size, config.hidden_size, config.width)
    if min(sizes) < 1:
        raise UsageError("epochs, batch size, latent, hidden size and width must be at least 1")
    for rate in (config.lr, config.discriminator_lr):
        if not (math.isfinite(rate) and rate > 0):
            raise UsageError("the learning rates (--lr, --d-lr) must be finite numbers > 0")
    if not (0 <= config.beta1 < 1 and 0 <= config.beta2 < 1):
        raise UsageError("Adam's betas must be in [0, 1)")
    if not 0 <= config.ema < 1:
        raise UsageError("--ema must be in [0, 1) (0 keeps no average)")
    known = [arch for kind, arch in architectures("generator")]
    if config.architecture not in known:
        raise UsageError(f"unknown architecture {config.architecture!r}; use {' or '.join(known)}")
    if config.loss not in GAN_LOSSES:
        raise UsageError(f"unknown loss {config.loss!r}; use {' or '.join(GAN_LOSSES)}")
    if config.architecture != "dcgan" and (config.conditional or config.spectral_norm):
        raise UsageError("--conditional and --spectral-norm need --arch dcgan")


class SampleGrids(Callback):
    """Draws the fixed noise batch into ``<name>-epoch-NNNN.png`` every ``every`` epochs
    (a conditional generator: the classes in turn, one column each)."""

    def __init__(
        self, generator: nn.Module, noise: torch.Tensor, folder: Path, name: str, every: int
    ) -> None:
        self.generator = generator
        self.noise = noise
        self.labels = cycled_labels(len(noise)) if generator.num_classes else None
        self.folder = folder
        self.name = name
        self.every = every
        self.written: list[Path] = []

    def on_epoch_end(self, state: LoopState) -> None:
        if state.epoch % self.every == 0 or state.epoch == state.epochs:
            path = self.folder / f"{self.name}-epoch-{state.epoch:04d}.png"
            images = generate(self.generator, self.noise, self.labels)
            write_grid(images, path, nrow=NUM_CLASSES if self.labels is not None else 8)
            self.written.append(path)


def cycled_labels(count: int) -> torch.Tensor:
    """Class labels 0, 1, …, 9, 0, 1, … [count]: every class equally often, nothing drawn."""
    import torch

    return torch.arange(count) % NUM_CLASSES


def recalibrate_batch_norm(generator: nn.Module, seed: int) -> None:
    """Recompute the generator's batch-norm statistics for its final weights.

    During training the running statistics trail the weights (an average over the last few
    dozen batches, made by earlier weights; the averaged generator's are an average of those),
    yet sampling uses them. One pass over fresh seeded noise gives the "standing statistics"
    of the weights actually saved; a generator without batch norm (mlp) is left as it is.
    A conditional generator gets every class equally often.
    """
    import torch
    from torch.optim.swa_utils import update_bn

    draws = torch.Generator().manual_seed(seed + 2)  # seed, seed + 1: grids and training noise
    device = next(generator.parameters()).device
    noise = (
        generator.noise(STANDING_STATS_BATCH_SIZE, draws) for _ in range(STANDING_STATS_BATCHES)
    )
    if not generator.num_classes:
        update_bn(noise, generator, device=device)
        return

    class WithLabels(torch.nn.Module):
        """update_bn hands the model one tensor: this gives the generator labels beside it."""

        def __init__(self) -> None:
            super().__init__()
            self.generator = generator
            self.labels = cycled_labels(STANDING_STATS_BATCH_SIZE).to(device)

        def forward(self, noise: torch.Tensor) -> torch.Tensor:
            return self.generator(noise, self.labels)

    # update_bn leaves the model in the mode it found it: the generator's.
    update_bn(noise, WithLabels().train(generator.training), device=device)


class Snapshots(Callback):
    """Calls ``save(epoch)`` every ``every`` epochs before the last (which the run saves)."""

    def __init__(self, save: Callable[[int], object], every: int) -> None:
        self.save = save
        self.every = every

    def on_epoch_end(self, state: LoopState) -> None:
        if state.epoch % self.every == 0 and state.epoch < state.epochs:
            self.save(state.epoch)


def write_grid(images: torch.Tensor, path: Path, *, nrow: int) -> Path:
    """A grid PNG of [0, 1] images (the same grid as ``fmt gan sample``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(grid_bytes(images, nrow=nrow))
    return path


@dataclass
class GanTraining:
    """What one GAN run trains with: both networks, both optimisers, the generator average
    and the two seeded random generators (batch order, noise)."""

    config: GanTrainConfig
    engine: EngineConfig  # its precision resolved for this device
    device: torch.device
    shuffle: torch.Generator  # orders the batches
    noise: torch.Generator  # draws the training noise
    generator: nn.Module
    discriminator: nn.Module
    generator_optimizer: torch.optim.Optimizer
    discriminator_optimizer: torch.optim.Optimizer
    averaging: WeightAverage | None

    @classmethod
    def build(
        cls, config: GanTrainConfig, engine: EngineConfig, device: torch.device
    ) -> GanTraining:
        """Seed, then fresh networks on ``device`` and their optimisers."""
        import torch

        engine = resolve_engine(engine, device, "gan")
        shuffle = seed_everything(config.seed)
        noise = torch.Generator().manual_seed(config.seed + 1)
        generator = place_model(create_model(config.generator_spec()), device)
        discriminator = place_model(create_model(config.discriminator_spec()), device)
        adam = {"betas": (config.beta1, config.beta2), **adam_options(device)}
        return cls(
            config=config,
            engine=engine,
            device=device,
            shuffle=shuffle,
            noise=noise,
            generator=generator,
            discriminator=discriminator,
            generator_optimizer=torch.optim.Adam(generator.parameters(), lr=config.lr, **adam),
            discriminator_optimizer=torch.optim.Adam(
                discriminator.parameters(), lr=config.discriminator_lr, **adam
            ),
            averaging=WeightAverage(generator, config.ema) if config.ema else None,
        )

    @property
    def final_generator(self) -> nn.Module:
        """What is saved and drawn: the average when one is kept."""
        return self.averaging.average.module if self.averaging is not None else self.generator

    def networks(self) -> dict[str, nn.Module]:
        """The networks in a checkpoint, by key prefix."""
        networks = {"generator.": self.generator, "discriminator.": self.discriminator}
        if self.averaging is not None:
            networks["generator_average."] = self.averaging.average
        return networks

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers in a checkpoint, by key prefix."""
        return {
            "generator_optimizer.": self.generator_optimizer,
            "discriminator_optimizer.": self.discriminator_optimizer,
        }

    def checkpoint(self) -> Checkpoint:
        """Both networks (and the average), both optimisers, both random generators."""
        tensors: dict[str, torch.Tensor] = {
            "rng.shuffle": self.shuffle.get_state(),
            "rng.noise": self.noise.get_state(),
        }
        optimizer_meta = {}
        for prefix, network in self.networks().items():
            tensors.update(checkpointing.model_tensors(network, prefix))
        for prefix, optimizer in self.optimizers().items():
            optimizer_tensors, optimizer_meta[prefix] = checkpointing.optimizer_to_tensors(
                optimizer, prefix + "state."
            )
            tensors.update(optimizer_tensors)
        return tensors, {"optimizers": optimizer_meta}

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], label: str) -> None:
        """Inverse of :meth:`checkpoint`."""
        for prefix, network in self.networks().items():
            checkpointing.restore_model(network, tensors, label, prefix)
        for prefix, optimizer in self.optimizers().items():
            checkpointing.restore_optimizer(
                optimizer, tensors, meta["optimizers"][prefix], prefix + "state."
            )
        self.shuffle.set_state(tensors["rng.shuffle"])
        self.noise.set_state(tensors["rng.noise"])

    def step(self) -> Step:
        """The adversarial step, replayed as a CUDA graph where it can be; make it after any
        checkpoint is restored into the optimisers."""
        graphs = all(
            [
                graph_ready(optimizer, self.device, enabled=self.engine.cuda_graphs)
                for optimizer in self.optimizers().values()
            ]
        )
        step = adversarial_step(
            self.generator,
            self.discriminator,
            (self.generator_optimizer, self.discriminator_optimizer),
            average=self.averaging,
            precision=self.engine.precision,
            loss=self.config.loss,
        )
        return accelerated_step(
            step, self.device, cuda_graphs=graphs, precision=self.engine.precision
        )

    def fit(self, train: DeviceSplit, state: LoopState, callbacks: Sequence[Callback]) -> None:
        """Train epochs ``state.epoch + 1 .. state.epochs`` on ``train``."""
        self.generator.train()
        self.discriminator.train()
        config = self.config
        fit(
            self.step(),
            lambda: batches_with_noise(
                train, config.batch_size, self.shuffle, self.noise, config.latent_size
            ),
            state,
            train_metric=GAN_METRICS,
            callbacks=callbacks,
        )


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
    time_budget: float | None = None,
    snapshot_every: int | None = None,
    callbacks: Sequence[Callback] = (),
) -> GanTrainResult:
    """Train generator and discriminator on the 60,000 training images; save the generator.

    Checkpoints every epoch (both networks, both optimisers, both random generators); with
    ``resume`` the run continues exactly. A diverged run (a loss that is not finite) stops
    with :class:`TrainingDiverged` and keeps the last good checkpoint. With ``time_budget``
    (seconds) training ends after the last epoch that fits in it, and is saved as finished.
    With ``snapshot_every`` the generator to be saved (the average, its batch-norm statistics
    recomputed on a copy) is also saved every that many epochs as ``NAME-eNNNN``, to measure
    how quality grows with training.
    """
    import torch

    if sample_every < 1:
        raise UsageError("--sample-every must be at least 1")
    if time_budget is not None and not (math.isfinite(time_budget) and time_budget > 0):
        raise UsageError("--time-budget must be a number of seconds > 0")
    budget = [TimeBudget(time_budget)] if time_budget is not None else []
    if snapshot_every is not None and snapshot_every < 1:
        raise UsageError("--snapshot-every must be at least 1")
    with TrainingRun.exclusive(
        store,
        name,
        resume=resume,
        restart=restart,
        engine=engine,
        plots_dir=plots_dir,
        kind="generator",
    ) as run:
        config, engine = run.settings(GanTrainConfig, config, engine)
        check_gan_config(config)

        device = resolve_device(engine.device)
        train = DeviceSplit.load("train", data_dir, device)
        data_sha256 = dataset_sha256(train.images, train.labels)

        training = GanTraining.build(config, engine, device)
        fixed_noise = torch.randn(
            GRID_SAMPLES, config.latent_size, generator=torch.Generator().manual_seed(config.seed)
        )
        state = LoopState(config.epochs, train.num_batches(config.batch_size))
        run.begin(
            training,
            state,
            description=run_description(
                config.generator_spec(),
                config,
                training.engine,
                discriminator=config_to_dict(config.discriminator_spec()),
            ),
            data_sha256=data_sha256,
            device=device,
        )
        grids = (
            [SampleGrids(training.final_generator, fixed_noise, plots_dir, name, sample_every)]
            if plots_dir is not None
            else []
        )

        def snapshot(epoch: int) -> None:
            copy = deepcopy(training.final_generator)
            recalibrate_batch_norm(copy, config.seed)
            results = {"metrics": dict(state.last), "snapshot_of": name, "epoch": epoch}
            run.save_snapshot(f"{name}-e{epoch:04d}", copy.state_dict(), results)

        snapshots = [Snapshots(snapshot, snapshot_every)] if snapshot_every else []
        run.fit(
            lambda loop_callbacks: training.fit(train, state, loop_callbacks),
            [*grids, *snapshots, *callbacks, *budget],
        )
        recalibrate_batch_norm(training.final_generator, config.seed)
        final = {key: state.last[key] for key in GAN_METRICS}
        results: dict[str, Any] = {"metrics": final}
        if budget and budget[0].stopped:
            results["stopped_by_time_budget"] = {"seconds": time_budget, "epochs": state.epoch}
        path = run.save(training.final_generator.state_dict(), results)

    plots = [written for grid in grids for written in grid.written]
    if plots_dir is not None:
        plots += write_gan_plots(state.history, name, plots_dir)
    return GanTrainResult(
        name=name,
        path=path,
        epochs=state.epoch,
        final=final,
        seconds=run.seconds,
        device=run.device_name,
        resumed_from_epoch=run.resumed_from,
        plots=plots,
        history=state.history,
        stopped_by_time_budget=results.get("stopped_by_time_budget"),
        planned_epochs=config.epochs,
    )


def write_gan_plots(history: list[dict[str, float]], name: str, folder: Path) -> list[Path]:
    """Both losses, and the discriminator's mean outputs on real and generated images."""
    from fmnist_toolkit import plots

    losses = plots.loss_curves(
        history,
        metrics=("d_loss", "g_loss"),
        title=f"GAN losses — {name}",
        ylabel="loss (binary cross-entropy or hinge)",
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
