"""The autoencoder recipe: config in, trained and saved model plus metrics out."""

from __future__ import annotations

import datetime
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit._version import __version__
from fmnist_toolkit.config import (
    DENOISER_ARCHITECTURES,
    OBJECTIVES,
    OPTIMIZERS,
    SCHEDULES,
    AutoencoderTrainConfig,
    EngineConfig,
    config_to_dict,
)
from fmnist_toolkit.data import CLASS_NAMES, DeviceSplit, dataset_sha256
from fmnist_toolkit.engine import checkpoint as checkpointing
from fmnist_toolkit.engine import denoise
from fmnist_toolkit.engine.callbacks import CheckpointCallback, LearningRateSchedule
from fmnist_toolkit.engine.device import (
    autocast,
    check_precision,
    describe_device,
    maybe_compile,
    place_model,
    resolve_device,
    seed_everything,
)
from fmnist_toolkit.engine.inference import INFERENCE_BATCH
from fmnist_toolkit.engine.loop import Callback, LoopState, Step, fit
from fmnist_toolkit.errors import (
    OutputError,
    TrainingInterrupted,
    UsageError,
)
from fmnist_toolkit.models import architectures, build_model
from fmnist_toolkit.storage import ModelStore, validate_name

if TYPE_CHECKING:
    import torch
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


def ensure_writable_folder(folder: Path, what: str) -> None:
    """Fail before hours of training, not after, when an output folder cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{what} {folder}: cannot create it ({error.strerror})") from None
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{what} {folder}: not writable")


def check_train_config(config: AutoencoderTrainConfig) -> None:
    """Values that can never train: a usage error before any data is read."""
    if min(config.epochs, config.batch_size, config.latent_dim, config.width) < 1:
        raise UsageError("epochs, batch size, latent dimension and width must be at least 1")
    if not (math.isfinite(config.lr) and math.isfinite(config.weight_decay)):
        raise UsageError("the learning rate and weight decay must be finite numbers")
    if config.lr <= 0 or config.weight_decay < 0:
        raise UsageError("the learning rate must be > 0 and the weight decay >= 0")
    known = [arch for kind, arch in architectures("autoencoder") + architectures("denoiser")]
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


def make_optimizer(model: nn.Module, config: AutoencoderTrainConfig) -> torch.optim.Optimizer:
    """The recipe's optimiser (Adam, or plain SGD without momentum as in the report)."""
    import torch

    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def reconstruction_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    precision: str = "fp32",
    inputs: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Step:
    """One optimiser step on the MSE between a batch of images and the model's output for
    ``inputs(images)`` (the images themselves by default; corrupted ones to denoise)."""
    import torch

    device = next(model.parameters()).device

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        images = batch[0]
        given = images if inputs is None else inputs(images)
        with autocast(device, precision):
            loss = torch.nn.functional.mse_loss(model(given).float(), images)
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
    with torch.no_grad(), autocast(split.images.device, precision):
        for images, _ in split.batches(INFERENCE_BATCH):
            reconstructions = model(images).float()
            total += torch.nn.functional.mse_loss(reconstructions, images, reduction="sum")
    model.train(was_training)
    return float(total) / (len(split) * split.images[0].numel())


def reconstruction_metrics(
    model: nn.Module, test: DeviceSplit, *, precision: str = "fp32"
) -> dict[str, float]:
    """The reconstruction objective's test metric, every epoch."""
    return {"test_mse": reconstruction_mse(model, test, precision=precision)}


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

    store = store or ModelStore()
    validate_name(name)
    check_precision(engine.precision)
    if plots_dir is not None:
        ensure_writable_folder(plots_dir, "--plots")
    with store.exclusive_run(name):
        return _train_autoencoder(
            name,
            config,
            engine,
            data_dir=data_dir,
            store=store,
            resume=resume,
            restart=restart,
            plots_dir=plots_dir,
            callbacks=callbacks,
            provenance=provenance,
        )


def _train_autoencoder(
    name: str,
    config: AutoencoderTrainConfig,
    engine: EngineConfig,
    *,
    data_dir: str | os.PathLike[str] | None,
    store: ModelStore,
    resume: bool,
    restart: bool,
    plots_dir: Path | None,
    callbacks: Sequence[Callback],
    provenance: dict[str, Any] | None,
) -> AutoencoderTrainResult:
    import torch

    saved_state = checkpointing.checkpoint_to_resume(store, name, resume=resume, restart=restart)
    if saved_state is not None:
        config, engine = checkpointing.settings_from_checkpoint(
            AutoencoderTrainConfig, saved_state[1], engine, name
        )
    check_train_config(config)

    device = resolve_device(engine.device)
    train = DeviceSplit.load("train", data_dir, device)
    data_sha256 = dataset_sha256(train.images, train.labels)
    test = DeviceSplit.load("test", data_dir, device)

    shuffle = seed_everything(config.seed)
    denoising = config.objective == "denoise"
    # Its own generator, so that the corruptions never change the batch order of a seed.
    corruption = torch.Generator().manual_seed(config.seed)
    spec = config.model_spec()
    model = place_model(build_model(spec.kind, spec.architecture, **spec.params), device)
    optimizer = make_optimizer(model, config)
    schedule = LearningRateSchedule(optimizer, config.schedule)  # before a resume changes lr
    state = LoopState(epochs=config.epochs, batches_per_epoch=train.num_batches(config.batch_size))
    elapsed_before = 0.0
    if saved_state is not None:

        def restore(tensors: dict[str, torch.Tensor], meta: dict[str, Any], label: str) -> None:
            checkpointing.restore_model(model, tensors, label)
            checkpointing.restore_optimizer(optimizer, tensors, meta["optimizer"])
            shuffle.set_state(tensors["rng.shuffle"])
            if denoising:
                corruption.set_state(tensors["rng.corruption"])
            torch.set_rng_state(tensors["rng.torch"])

        elapsed_before = checkpointing.restore_run(
            saved_state, state, name=name, data_sha256=data_sha256, restore=restore
        )
        provenance = saved_state[1].get("provenance", provenance)
    resumed_from = state.epoch
    saved_epochs = [state.epoch]  # the epoch the newest checkpoint holds

    trainable = maybe_compile(model, device, engine.compile)
    step = reconstruction_step(
        trainable,
        optimizer,
        precision=engine.precision,
        inputs=partial(denoise.corrupt, generator=corruption) if denoising else None,
    )
    evaluate = partial(reconstruction_metrics, trainable, test, precision=engine.precision)
    if denoising:
        evaluate = partial(
            denoise.denoising_metrics,
            trainable,
            test,
            denoise.corrupted_test_images(test),
            precision=engine.precision,
        )
    started = time.perf_counter()

    def common_meta(loop: LoopState) -> dict[str, Any]:
        return {
            "name": name,
            "kind": spec.kind,
            "model": config_to_dict(spec),
            "recipe": config_to_dict(config),
            "engine": config_to_dict(engine),
            "data_sha256": data_sha256,
            "history": loop.history,
            "seconds": elapsed_before + time.perf_counter() - started,
            "device": describe_device(device),
            "toolkit_version": __version__,
            **({"provenance": provenance} if provenance else {}),
        }

    def save_checkpoint(loop: LoopState) -> None:
        optimizer_tensors, optimizer_meta = checkpointing.optimizer_to_tensors(optimizer)
        tensors = {
            **checkpointing.model_tensors(model),
            **optimizer_tensors,
            "rng.shuffle": shuffle.get_state(),
            "rng.torch": torch.get_rng_state(),
            **({"rng.corruption": corruption.get_state()} if denoising else {}),
        }
        meta = {**common_meta(loop), "epoch": loop.epoch, "optimizer": optimizer_meta}
        store.save_checkpoint(name, tensors, meta)
        saved_epochs[0] = loop.epoch

    model.train()
    try:
        fit(
            step,
            lambda: train.batches(config.batch_size, shuffle),
            state,
            evaluate=evaluate,
            train_metric="train_mse",
            # Checkpoint first: once progress reports an epoch, it is already saved.
            callbacks=[schedule, CheckpointCallback(save_checkpoint), *callbacks],
        )
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted; {saved_epochs[0]}/{config.epochs} epochs are saved in a checkpoint",
            model_name=name,
            completed_epochs=saved_epochs[0],
        ) from None

    final = state.last
    meta = {
        **common_meta(state),
        "metrics": {
            key: final[key] for key in ("train_mse", "test_mse", "clean_mse") if key in final
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path = store.save(name, model.state_dict(), meta)
    store.remove_checkpoint(name)

    plots = []
    if plots_dir is not None:
        plots = write_autoencoder_plots(model, test, state.history, name, config, plots_dir)
    return AutoencoderTrainResult(
        name=name,
        path=path,
        epochs=state.epoch,
        train_mse=final["train_mse"],
        test_mse=final["test_mse"],
        seconds=meta["seconds"],
        device=meta["device"],
        resumed_from_epoch=resumed_from,
        plots=plots,
        history=state.history,
        clean_mse=final.get("clean_mse"),
    )


def first_of_each_class(split: DeviceSplit) -> torch.Tensor:
    """Index of the first image of every class present, in class order."""
    import torch

    indices = [
        int(torch.nonzero(split.labels == label)[0])
        for label in range(len(CLASS_NAMES))
        if bool((split.labels == label).any())
    ]
    return torch.tensor(indices, device=split.images.device)


def write_autoencoder_plots(
    model: nn.Module,
    test: DeviceSplit,
    history: list[dict[str, float]],
    name: str,
    config: AutoencoderTrainConfig,
    plots_dir: Path,
) -> list[Path]:
    """Loss curves and test images over their reconstructions, as PNGs in ``plots_dir``."""
    import torch

    from fmnist_toolkit import plots
    from fmnist_toolkit.data import to_unit_float

    denoising = config.objective == "denoise"
    size = config.architecture if denoising else f"latent {config.latent_dim}"
    subtitle = f"{name}: {size}, {len(history)} epochs"
    what = "Denoising" if denoising else "Reconstruction"
    curves = plots.loss_curves(
        history,
        metrics=("train_mse", "test_mse", *(("clean_mse",) if denoising else ())),
        title=f"{what} MSE — {subtitle}",
        ylabel="MSE per pixel",
    )
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
    grid = plots.image_rows(
        rows,
        row_labels=labels,
        column_labels=columns,
        title=f"Test images and {'denoised' if denoising else 'reconstructions'} — {subtitle}",
    )
    return [
        plots.save_figure(curves, plots_dir / f"{name}-loss.png"),
        plots.save_figure(grid, plots_dir / f"{name}-reconstructions.png"),
    ]
