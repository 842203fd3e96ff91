"""The autoencoder recipe: config in, trained and saved model plus metrics out."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import (
    AUTOENCODER_ARCHITECTURES,
    DENOISER_ARCHITECTURES,
    OBJECTIVES,
    OPTIMIZERS,
    SCHEDULES,
    AutoencoderTrainConfig,
    EngineConfig,
)
from fmnist_toolkit.data import CLASS_NAMES, DeviceSplit, dataset_sha256
from fmnist_toolkit.engine import checkpoint as checkpointing
from fmnist_toolkit.engine import denoise
from fmnist_toolkit.engine.callbacks import Checkpoint, LearningRateSchedule
from fmnist_toolkit.engine.device import (
    adam_options,
    autocast,
    maybe_compile,
    place_model,
    resolve_device,
    resolve_engine,
    seed_everything,
)
from fmnist_toolkit.engine.graphs import accelerated_step, graph_ready
from fmnist_toolkit.engine.inference import INFERENCE_BATCH
from fmnist_toolkit.engine.loop import Callback, LoopState, Step, fit
from fmnist_toolkit.engine.run import TrainingRun, run_description
from fmnist_toolkit.errors import UsageError
from fmnist_toolkit.models import create_model
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from torch import nn


@dataclass
class AutoencoderTrainResult:
    """What ``fmt ae train`` reports."""

    name: str
    path: Path
    epochs: int
    train_mse: float
    test_mse: float
    seconds: float
    device: str
    resumed_from_epoch: int = 0
    plots: list[Path] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    clean_mse: float | None = None  # --objective denoise: mean squared change of clean images


def check_train_config(config: AutoencoderTrainConfig) -> None:
    """Values that can never train: a usage error before any data is read."""
    if min(config.epochs, config.batch_size, config.latent_dim, config.width) < 1:
        raise UsageError("epochs, batch size, latent dimension and width must be at least 1")
    if not (math.isfinite(config.lr) and math.isfinite(config.weight_decay)):
        raise UsageError("the learning rate and weight decay must be finite numbers")
    if config.lr <= 0 or config.weight_decay < 0:
        raise UsageError("the learning rate must be > 0 and the weight decay >= 0")
    known = sorted(AUTOENCODER_ARCHITECTURES) + sorted(DENOISER_ARCHITECTURES)  # not "gated"
    if config.architecture not in known:
        raise UsageError(f"unknown architecture {config.architecture!r}; use {' or '.join(known)}")
    if config.objective not in OBJECTIVES:
        raise UsageError(f"unknown objective {config.objective!r}; use {' or '.join(OBJECTIVES)}")
    if config.architecture in DENOISER_ARCHITECTURES and config.objective != "denoise":
        raise UsageError(
            f"--arch {config.architecture} is a denoiser (it would learn to copy its input): "
            "train it with --objective denoise"
        )
    if config.optimizer not in OPTIMIZERS:
        raise UsageError(f"unknown optimizer {config.optimizer!r}; use {' or '.join(OPTIMIZERS)}")
    if config.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {config.schedule!r}; use {' or '.join(SCHEDULES)}")
    if config.clean_samples and config.objective != "denoise":
        raise UsageError("--clean-samples trains a denoiser: use it with --objective denoise")
    if config.sharpen and config.objective != "denoise":
        raise UsageError("--sharpen ends a denoiser's cleaning: use it with --objective denoise")
    if config.clean_sample_count < 1:
        raise UsageError("--clean-sample-count must be at least 1")


def make_optimizer(model: nn.Module, config: AutoencoderTrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimiser (Adam, or plain SGD without momentum as in the report)."""
    import torch

    device = next(model.parameters()).device
    if config.optimizer == "adam":
        return torch.optim.Adam(
            model.parameters(),
            lr=config.lr,
            weight_decay=config.weight_decay,
            **adam_options(device),
        )
    return torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def reconstruction_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, *, precision: str = "fp32"
) -> Step:
    """One optimiser step on the MSE between the model's output for a batch's inputs and its
    targets: (images, images) to reconstruct, (corrupted, clean) to denoise."""
    import torch

    device = next(model.parameters()).device

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        inputs, images = batch
        with autocast(device, precision):
            loss = torch.nn.functional.mse_loss(model(inputs).float(), images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach(), images.shape[0]

    return step


def reconstruction_mse(model: nn.Module, split: DeviceSplit, *, precision: str = "fp32") -> float:
    """Mean squared error per pixel of ``model``'s reconstructions of a whole split."""
    import torch

    was_training = model.training
    model.eval()
    total = torch.zeros((), device=split.images.device, dtype=torch.float64)
    with torch.inference_mode(), autocast(split.images.device, precision):
        for images, _ in split.batches(INFERENCE_BATCH):
            reconstructions = model(images).float()
            total += torch.nn.functional.mse_loss(reconstructions, images, reduction="sum")
    model.train(was_training)
    return float(total) / (len(split) * split.images[0].numel())


@dataclass
class AutoencoderTraining:
    """What one autoencoder run trains with: the seed → model → optimiser → schedule → step
    chain that ``fmt ae train`` and every ``fmt ae tune`` trial share."""

    config: AutoencoderTrainConfig
    engine: EngineConfig  # its precision resolved for this device
    device: torch.device
    shuffle: torch.Generator  # orders the batches
    model: nn.Module  # the network whose weights are saved
    trainable: nn.Module  # the same, compiled when asked for
    optimizer: torch.optim.Optimizer
    schedule: LearningRateSchedule
    # --objective denoise: draws the corruptions (its own generator, so that they never
    # change a seed's batch order); None to reconstruct.
    corruption: torch.Generator | None = None

    @classmethod
    def build(
        cls, config: AutoencoderTrainConfig, engine: EngineConfig, device: torch.device
    ) -> AutoencoderTraining:
        """Seed, then a fresh model on ``device``, its optimiser and learning-rate schedule."""
        import torch

        engine = resolve_engine(engine, device, "autoencoder")
        shuffle = seed_everything(config.seed)
        model = place_model(create_model(config.model_spec()), device)
        optimizer = make_optimizer(model, config)
        return cls(
            config=config,
            engine=engine,
            device=device,
            shuffle=shuffle,
            model=model,
            trainable=maybe_compile(model, device, engine.compile),
            optimizer=optimizer,
            # Made before a resume can change the rates: the schedule keeps the base ones.
            schedule=LearningRateSchedule(optimizer, config.schedule),
            corruption=(
                torch.Generator().manual_seed(config.seed)
                if config.objective == "denoise"
                else None
            ),
        )

    def step(self) -> Step:
        """The training step, replayed as a CUDA graph where it can be; make it after any
        checkpoint is restored into the optimiser."""
        enabled = self.engine.cuda_graphs and not self.engine.compile
        graphs = graph_ready(self.optimizer, self.device, enabled=enabled)
        step = reconstruction_step(self.trainable, self.optimizer, precision=self.engine.precision)
        return accelerated_step(
            step,
            self.device,
            cuda_graphs=graphs,
            precision=self.engine.precision,
            per_batch_callbacks=self.schedule.per_step,
        )

    def batches(self, train: DeviceSplit) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """An epoch of (inputs, targets): the images twice, or corrupted and clean. The
        corruptions are drawn here, outside the step, so that a CUDA graph can replay it."""
        for images, _ in train.batches(self.config.batch_size, self.shuffle):
            if self.corruption is None:
                yield images, images
            else:
                yield denoise.corrupt(images, self.corruption), images

    def evaluate(self, test: DeviceSplit) -> Callable[[], dict[str, float]]:
        """The objective's test metrics, every epoch."""
        if self.corruption is None:
            return lambda: {"test_mse": self.mse(test)}
        return partial(
            denoise.denoising_metrics,
            self.trainable,
            test,
            denoise.corrupted_test_images(test),
            precision=self.engine.precision,
        )

    def fit(
        self,
        train: DeviceSplit,
        state: LoopState,
        *,
        evaluate: Callable[[], dict[str, float]],
        callbacks: Sequence[Callback],
    ) -> LoopState:
        """Train epochs ``state.epoch + 1 .. state.epochs`` on ``train``."""
        self.model.train()
        return fit(
            self.step(),
            lambda: self.batches(train),
            state,
            evaluate=evaluate,
            train_metric="train_mse",
            callbacks=[self.schedule, *callbacks],
        )

    def mse(self, split: DeviceSplit) -> float:
        """The model's reconstruction MSE on ``split``."""
        return reconstruction_mse(self.trainable, split, precision=self.engine.precision)

    def checkpoint(self) -> Checkpoint:
        """Weights, optimiser and the random generators, for an exact resume."""
        tensors, meta = checkpointing.model_optimizer_and_order(
            self.model, self.optimizer, self.shuffle
        )
        if self.corruption is not None:
            tensors["rng.corruption"] = self.corruption.get_state()
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], label: str) -> None:
        """Inverse of :meth:`checkpoint`."""
        checkpointing.restore_model_optimizer_and_order(
            self.model, self.optimizer, self.shuffle, tensors, meta, label
        )
        if self.corruption is not None:
            self.corruption.set_state(tensors["rng.corruption"])


def train_autoencoder(
    name: str,
    config: AutoencoderTrainConfig,
    engine: EngineConfig,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    resume: bool = False,
    restart: bool = False,
    plots_dir: Path | None = None,
    callbacks: Sequence[Callback] = (),
    provenance: dict[str, Any] | None = None,
) -> AutoencoderTrainResult:
    """Train the autoencoder, checkpointing every epoch; save it under ``name`` at the end.

    With ``resume`` the recipe, weights, optimizer, RNG state and history come from the
    checkpoint of the interrupted run, so the result is the one an uninterrupted run gives.
    A model already saved under ``name`` is replaced only when the run finishes. An unfinished
    run of ``name`` is never discarded silently: pass ``resume`` or ``restart``.
    ``provenance`` (e.g. the tuning study the recipe came from) is recorded in the config.
    """
    with TrainingRun.exclusive(
        store,
        name,
        resume=resume,
        restart=restart,
        engine=engine,
        plots_dir=plots_dir,
        kind=config.model_spec().kind,
    ) as run:
        config, engine = run.settings(AutoencoderTrainConfig, config, engine)
        check_train_config(config)

        device = resolve_device(engine.device)
        train = DeviceSplit.load("train", data_dir, device)
        data_sha256 = dataset_sha256(train.images, train.labels)
        test = DeviceSplit.load("test", data_dir, device)
        if config.clean_samples:
            train = with_clean_samples(train, config, store or ModelStore(), device)

        training = AutoencoderTraining.build(config, engine, device)
        spec = config.model_spec()
        state = LoopState(config.epochs, train.num_batches(config.batch_size))
        provenance = run.saved_value("provenance", provenance)
        run.begin(
            training,
            state,
            description=run_description(spec, config, training.engine),
            data_sha256=data_sha256,
            device=device,
            notes={"provenance": provenance} if provenance else {},
        )
        run.fit(
            lambda loop_callbacks: training.fit(
                train,
                state,
                evaluate=training.evaluate(test),
                callbacks=loop_callbacks,
            ),
            callbacks,
        )
        final = state.last
        path = run.save(
            training.model.state_dict(),
            {
                "metrics": {
                    key: final[key]
                    for key in ("train_mse", "test_mse", "clean_mse")
                    if key in final
                }
            },
        )

    plots = []
    if plots_dir is not None:
        plots = write_autoencoder_plots(
            training.model, test, state.history, name, config, plots_dir
        )
    return AutoencoderTrainResult(
        name=name,
        path=path,
        epochs=state.epoch,
        train_mse=final["train_mse"],
        test_mse=final["test_mse"],
        seconds=run.seconds,
        device=run.device_name,
        resumed_from_epoch=run.resumed_from,
        plots=plots,
        history=state.history,
        clean_mse=final.get("clean_mse"),
    )


def with_clean_samples(
    train: DeviceSplit, config: AutoencoderTrainConfig, store: ModelStore, device: torch.device
) -> DeviceSplit:
    """The training images followed by the samples of ``config.clean_samples`` (label -1)."""
    import torch

    samples = denoise.generator_samples(
        tuple(config.clean_samples), config.clean_sample_count, store, device
    )
    labels = torch.full((len(samples),), -1, dtype=train.labels.dtype, device=device)
    return DeviceSplit(torch.cat([train.images, samples]), torch.cat([train.labels, labels]))


def first_of_each_class(split: DeviceSplit) -> torch.Tensor:
    """Index of the first image of every class present, in class order."""
    import torch

    indices = [
        int(torch.nonzero(split.labels == label)[0])
        for label in range(len(CLASS_NAMES))
        if bool((split.labels == label).any())
    ]
    return torch.tensor(indices, device=split.images.device)


def _subtitle(name: str, config: AutoencoderTrainConfig, epochs: int) -> str:
    size = config.architecture if config.objective == "denoise" else f"latent {config.latent_dim}"
    return f"{name}: {size}, {epochs} epochs"


def loss_figure(
    history: list[dict[str, float]], name: str, config: AutoencoderTrainConfig
) -> Figure:
    """Train and test MSE per epoch (and clean MSE for a denoiser), on a log scale."""
    from fmnist_toolkit import plots

    denoising = config.objective == "denoise"
    what = "Denoising" if denoising else "Reconstruction"
    return plots.loss_curves(
        history,
        metrics=("train_mse", "test_mse", *(("clean_mse",) if denoising else ())),
        title=f"{what} MSE — {_subtitle(name, config, len(history))}",
        ylabel="MSE per pixel",
    )


def reconstruction_figure(
    model: nn.Module, test: DeviceSplit, name: str, config: AutoencoderTrainConfig, epochs: int
) -> Figure:
    """The first test image of each class over its reconstruction (or corrupted, denoised and
    clean for a denoiser)."""
    import torch

    from fmnist_toolkit import plots
    from fmnist_toolkit.data import to_unit_float

    denoising = config.objective == "denoise"
    index = first_of_each_class(test)
    originals = to_unit_float(test.images[index])
    inputs = denoise.corrupted_test_images(test)[index] if denoising else originals
    model.eval()
    with torch.no_grad():
        reconstructions = model(inputs).float()
    columns = [CLASS_NAMES[int(label)] for label in test.labels[index]]
    rows, labels = [originals, reconstructions], ["test image", "reconstruction"]
    if denoising:
        rows, labels = [inputs, reconstructions, originals], ["corrupted", "denoised", "clean"]
    return plots.image_rows(
        rows,
        row_labels=labels,
        column_labels=columns,
        title=f"Test images and {'denoised' if denoising else 'reconstructions'} — "
        f"{_subtitle(name, config, epochs)}",
    )


def write_autoencoder_plots(
    model: nn.Module,
    test: DeviceSplit,
    history: list[dict[str, float]],
    name: str,
    config: AutoencoderTrainConfig,
    plots_dir: Path,
) -> list[Path]:
    """Loss curves and test images over their reconstructions, as PNGs in ``plots_dir``."""
    from fmnist_toolkit import plots

    return [
        plots.save_figure(loss_figure(history, name, config), plots_dir / f"{name}-loss.png"),
        plots.save_figure(
            reconstruction_figure(model, test, name, config, len(history)),
            plots_dir / f"{name}-reconstructions.png",
        ),
    ]
