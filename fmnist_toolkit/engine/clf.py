"""The classifier recipe: an autoencoder's encoder plus the report's head, frozen or fine-tuned."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import SCHEDULES, ClassifierTrainConfig, EngineConfig, ModelSpec
from fmnist_toolkit.data import (
    CLASS_NAMES,
    DeviceSplit,
    augment_batch,
    cutout_batch,
    dataset_sha256,
    epoch_order,
    mixup,
    row_batches,
    split_indices,
)
from fmnist_toolkit.engine import checkpoint as checkpointing
from fmnist_toolkit.engine.averaging import WeightAverage
from fmnist_toolkit.engine.callbacks import Checkpoint, LearningRateSchedule

# Measuring and using a classifier has its own module; its names are re-exported here.
from fmnist_toolkit.engine.clf_eval import (
    ClassifierMetrics,
    classify,
    evaluate_classifier,
    predict_images,
    test_metrics,
)
from fmnist_toolkit.engine.device import (
    adam_options,
    autocast,
    place_model,
    resolve_device,
    resolve_engine,
    seed_everything,
)
from fmnist_toolkit.engine.graphs import accelerated_step, graph_ready
from fmnist_toolkit.engine.inference import predict_split
from fmnist_toolkit.engine.loop import Callback, LoopState, Step, fit
from fmnist_toolkit.engine.model_io import check_state_dict, read_model_of_kind
from fmnist_toolkit.engine.run import TrainingRun, run_description
from fmnist_toolkit.errors import ModelCorruptError, UsageError
from fmnist_toolkit.models import create_model
from fmnist_toolkit.models.classifier import NUM_CLASSES, mean_of_probabilities
from fmnist_toolkit.storage import ModelStore

__all__ = [
    "ClassifierMetrics",
    "ClassifierTrainResult",
    "ClassifierTraining",
    "KeepBest",
    "check_classifier_config",
    "classify",
    "evaluate_classifier",
    "predict_images",
    "test_metrics",
    "train_classifier",
    "write_classifier_plots",
]

if TYPE_CHECKING:
    import torch
    from torch import nn

_BEST = "best."  # checkpoint keys of the best epoch's weights
_AVERAGE = "average."  # checkpoint keys of the weight average (--ema)


@dataclass
class ClassifierTrainResult:
    """What ``fmt clf finetune`` reports."""

    name: str
    path: Path
    encoder: str
    unfreeze: bool
    epochs: int
    best_epoch: int
    val_accuracy: float
    test: ClassifierMetrics
    seconds: float
    device: str
    resumed_from_epoch: int = 0
    plots: list[Path] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


def check_classifier_config(config: ClassifierTrainConfig) -> None:
    """Values that can never train: a usage error before any data is read."""
    if config.epochs < 1 or config.batch_size < 1:
        raise UsageError("epochs and batch size must be at least 1")
    for label, value in (
        ("learning rate", config.lr),
        ("encoder learning rate", config.encoder_lr),
    ):
        if not math.isfinite(value) or value <= 0:
            raise UsageError(f"the {label} must be a finite number > 0")
    if not math.isfinite(config.weight_decay) or config.weight_decay < 0:
        raise UsageError("the weight decay must be a finite number >= 0")
    if not 0 < config.val_fraction < 1:
        raise UsageError("--val-fraction must be between 0 and 1")
    if config.schedule not in SCHEDULES:
        raise UsageError(f"unknown schedule {config.schedule!r}; use {' or '.join(SCHEDULES)}")
    if not 0 <= config.label_smoothing < 1:
        raise UsageError("--label-smoothing must be in [0, 1)")
    if not (math.isfinite(config.mixup) and config.mixup >= 0):
        raise UsageError("--mixup must be a finite number >= 0 (0: no mixup)")
    if not 0 <= config.ema < 1:
        raise UsageError("--ema must be in [0, 1) (0 keeps no average)")
    if config.cutout < 0:
        raise UsageError("--cutout must be >= 0 (0: no cutout)")
    if config.augment_codes and config.unfreeze:
        raise UsageError("--augment-codes is for a frozen encoder; with --unfreeze use --augment")
    if config.cutout and not config.unfreeze:
        raise UsageError(
            "--cutout changes images: use it with --unfreeze (a frozen encoder's "
            "codes are computed once)"
        )


class KeepBest(Callback):
    """Keeps a copy of the weights of the epoch with the best validation accuracy."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.epoch = 0
        self.val_accuracy = -1.0  # epoch 1 always improves on it
        self.weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, state: LoopState) -> None:
        row = state.last
        if row["val_accuracy"] > self.val_accuracy:
            self.epoch = state.epoch
            self.val_accuracy = row["val_accuracy"]
            self.weights = copy.deepcopy(self.model.state_dict())


@dataclass
class ClassifierTraining:
    """What one classifier run trains with: the model on its encoder, the optimiser, the
    training and validation splits (or, with the encoder frozen, their codes), the seeded
    random generators (batch order, augmentation) and the best epoch so far."""

    config: ClassifierTrainConfig
    engine: EngineConfig  # its precision resolved for this device
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator  # orders the batches
    augmentation: torch.Generator  # mirrors and shifts fine-tuning images
    train: DeviceSplit
    val: DeviceSplit
    features: torch.Tensor  # the training split's codes under the initial encoder
    val_features: torch.Tensor | None  # the validation codes, with the encoder frozen
    best: KeepBest
    schedule: LearningRateSchedule
    averaging: WeightAverage | None = None  # --ema: the average is validated and kept
    # --tta-flip with the encoder frozen: the codes of the mirrored validation images.
    val_mirrored_features: torch.Tensor | None = None

    @property
    def evaluated(self) -> nn.Module:
        """The network that is validated, kept and saved: the weight average when one is kept."""
        return self.averaging.average.module if self.averaging is not None else self.model

    @classmethod
    def build(
        cls,
        config: ClassifierTrainConfig,
        engine: EngineConfig,
        device: torch.device,
        spec: ModelSpec,
        encoder_weights: dict[str, torch.Tensor],
        encoder_label: str,
        train: DeviceSplit,
        val: DeviceSplit,
    ) -> ClassifierTraining:
        """Seed, then the model with the encoder's weights, its optimiser and code statistics."""
        import torch

        engine = resolve_engine(engine, device, "classifier")
        shuffle = seed_everything(config.seed)
        model = place_model(create_model(spec), device)
        check_state_dict(model.encoder, encoder_weights, encoder_label)
        model.encoder.load_state_dict(encoder_weights)
        groups = [{"params": model.head.parameters(), "lr": config.lr}]
        if config.unfreeze:
            groups.append({"params": model.encoder.parameters(), "lr": config.encoder_lr})
        else:
            model.encoder.requires_grad_(False)
        optimizer = torch.optim.Adam(
            groups, weight_decay=config.weight_decay, **adam_options(device)
        )
        features = predict_split(model, train, model.encode)
        with torch.no_grad():
            model.code_mean.copy_(features.mean(0))
            model.code_std.copy_(features.std(0).clamp_min(1e-6))
        # Made after the code statistics are set, so the average starts with them.
        averaging = WeightAverage(model, config.ema) if config.ema else None
        evaluated = averaging.average.module if averaging is not None else model
        mirrored = None
        if config.tta_flip and not config.unfreeze:
            mirrored = predict_split(model, val, lambda images: model.encode(images.flip(-1)))
        return cls(
            config=config,
            engine=engine,
            device=device,
            model=model,
            optimizer=optimizer,
            shuffle=shuffle,
            augmentation=torch.Generator().manual_seed(config.seed + 1),
            train=train,
            val=val,
            features=features,
            # Frozen encoder: codes never change, so encode once and train the head on them.
            val_features=None if config.unfreeze else predict_split(model, val, model.encode),
            best=KeepBest(evaluated),
            # Made before a resume can change the rates: the schedule keeps the base ones.
            schedule=LearningRateSchedule(optimizer, config.schedule),
            averaging=averaging,
            val_mirrored_features=mirrored,
        )

    def batches(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """An epoch of (inputs, targets): images when fine-tuning, codes with a frozen encoder;
        class labels, or class distributions [B, 10] with label smoothing or mixup.

        Every random draw (mirror, shift, cutout, mixup) happens here, outside the step, from
        the run's seeded generator, so that a CUDA graph can replay the step.
        """
        config = self.config
        if not config.unfreeze and not config.augment_codes:
            epoch = epoch_order((self.features, self.train.labels), self.shuffle)
            for codes, labels in row_batches(epoch, config.batch_size):
                yield self._targets(codes, labels)
            return
        if not config.unfreeze:  # --augment-codes: the frozen encoder encodes augmented images
            for images, labels in self.train.batches(config.batch_size, self.shuffle):
                yield self._targets(self._frozen_codes(images), labels)
            return
        for images, labels in self.train.batches(config.batch_size, self.shuffle):
            # A fine-tuned encoder fits the training set within ~20 epochs and then only
            # overfits; mirrored and shifted copies keep validation accuracy rising.
            if config.augment:
                images = augment_batch(images, self.augmentation)
            if config.cutout:
                images = cutout_batch(images, self.augmentation, config.cutout)
            yield self._targets(images, labels)

    def _frozen_codes(self, images: torch.Tensor) -> torch.Tensor:
        """Codes of mirrored and shifted ``images`` under the frozen encoder (in eval mode: its
        batch-norm statistics stay the autoencoder's)."""
        import torch

        encoder = self.model.encoder
        was_training = encoder.training
        encoder.eval()
        try:
            with torch.no_grad(), autocast(self.device, self.engine.precision):
                return encoder(augment_batch(images, self.augmentation)).float()
        finally:
            encoder.train(was_training)

    def _targets(
        self, inputs: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) as they are, or smoothed and mixed up (inputs and distributions)."""
        import torch

        config = self.config
        if not (config.label_smoothing or config.mixup):
            return inputs, labels
        targets = torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
        targets = targets * (1 - config.label_smoothing) + config.label_smoothing / NUM_CLASSES
        if config.mixup:
            inputs, targets = mixup(inputs, targets, self.augmentation, config.mixup)
        return inputs, targets

    def step(self) -> Step:
        """Cross-entropy on the head (and encoder), with the batch accuracy; replayed as a
        CUDA graph where it can be."""
        import torch

        forward = self.model if self.config.unfreeze else self.model.classify_codes
        optimizer, device, precision = self.optimizer, self.device, self.engine.precision
        averaging = self.averaging

        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
            inputs, targets = batch
            with autocast(device, precision):
                log_probs = forward(inputs).float()
                if targets.dim() == 1:  # class labels
                    loss = torch.nn.functional.nll_loss(log_probs, targets)
                else:  # class distributions (label smoothing, mixup)
                    loss = -(targets * log_probs).sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if averaging is not None:
                averaging.update()
            # Accuracy on the device (against a distribution's likeliest class), averaged over
            # the epoch by fit like the loss.
            labels = targets if targets.dim() == 1 else targets.argmax(1)
            accuracy = (log_probs.detach().argmax(1) == labels).float().mean()
            return torch.stack([loss.detach(), accuracy]), targets.shape[0]

        graphs = graph_ready(optimizer, device, enabled=self.engine.cuda_graphs)
        return accelerated_step(
            step,
            device,
            cuda_graphs=graphs,
            precision=precision,
            per_batch_callbacks=self.schedule.per_step,
        )

    def evaluate(self) -> dict[str, float]:
        """Loss and accuracy on the validation split."""
        import torch

        model = self.evaluated
        if self.val_features is not None:
            with torch.inference_mode(), autocast(self.device, self.engine.precision):
                log_probs = model.classify_codes(self.val_features).float()
                if self.val_mirrored_features is not None:
                    mirrored = model.classify_codes(self.val_mirrored_features).float()
                    log_probs = mean_of_probabilities(log_probs, mirrored)
        else:
            # The model's own forward: with tta_flip it predicts from both mirror images.
            log_probs = predict_split(model, self.val, precision=self.engine.precision)
        labels = self.val.labels
        return {
            "val_loss": float(torch.nn.functional.nll_loss(log_probs, labels)),
            "val_accuracy": float((log_probs.argmax(1) == labels).float().mean()),
        }

    def fit(self, state: LoopState, callbacks: Sequence[Callback]) -> None:
        """Train epochs ``state.epoch + 1 .. state.epochs``, keeping the best epoch first."""
        fit(
            self.step(),
            self.batches,
            state,
            evaluate=self.evaluate,
            train_metric=("train_loss", "train_accuracy"),
            callbacks=[self.schedule, *callbacks],
        )

    def checkpoint(self) -> Checkpoint:
        """Weights, optimiser, random generators and the best epoch's weights so far."""
        tensors, meta = checkpointing.model_optimizer_and_order(
            self.model, self.optimizer, self.shuffle
        )
        if self.best.weights is not None:
            tensors.update(checkpointing.prefixed(_BEST, self.best.weights))
        if self.averaging is not None:
            tensors.update(checkpointing.model_tensors(self.averaging.average, _AVERAGE))
        tensors["rng.augmentation"] = self.augmentation.get_state()
        meta["best"] = {"epoch": self.best.epoch, "val_accuracy": self.best.val_accuracy}
        return tensors, meta

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], label: str) -> None:
        """Inverse of :meth:`checkpoint`."""
        checkpointing.restore_model_optimizer_and_order(
            self.model, self.optimizer, self.shuffle, tensors, meta, label
        )
        if self.averaging is not None:
            checkpointing.restore_model(self.averaging.average, tensors, label, _AVERAGE)
        self.augmentation.set_state(tensors["rng.augmentation"])
        self.best.epoch = int(meta["best"]["epoch"])
        self.best.val_accuracy = float(meta["best"]["val_accuracy"])
        if self.best.epoch:
            best = checkpointing.unprefixed(_BEST, tensors)
            check_state_dict(self.model, best, label)
            self.best.weights = {key: value.to(self.device) for key, value in best.items()}


def train_classifier(
    name: str,
    config: ClassifierTrainConfig,
    engine: EngineConfig,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    resume: bool = False,
    restart: bool = False,
    plots_dir: Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> ClassifierTrainResult:
    """Train the head (and with ``unfreeze`` the encoder) and save the best-validation epoch.

    A validation split held out from the training set picks the epoch; the test set is only
    measured, at the end. With the encoder frozen its features never change, so they are
    computed once on the device and the head trains on them directly. Checkpoints every
    epoch, like the autoencoder: ``resume`` continues an interrupted run exactly, and an
    unfinished run of ``name`` is never discarded silently (pass ``resume`` or ``restart``).
    """
    with TrainingRun.exclusive(
        store,
        name,
        resume=resume,
        restart=restart,
        engine=engine,
        plots_dir=plots_dir,
        kind="classifier",
    ) as run:
        config, engine = run.settings(ClassifierTrainConfig, config, engine)
        check_classifier_config(config)
        encoder_tensors, encoder_config, encoder_label, encoder_spec = read_model_of_kind(
            config.encoder, "autoencoder", store, hint="--encoder takes an autoencoder"
        )
        latent_dim = encoder_spec.params.get("latent_dim")
        if not isinstance(latent_dim, int) or latent_dim < 1:
            raise ModelCorruptError(f"{encoder_label}: its config has no valid latent_dim")
        encoder = {
            "name": str(config.encoder),
            "weights_sha256": encoder_config.get("weights_sha256"),
            "test_mse": encoder_config.get("metrics", {}).get("test_mse"),
        }
        if run.saved_value("encoder", encoder) != encoder:
            raise UsageError(
                f"the encoder {config.encoder!r} changed since the run of {name!r} was "
                "interrupted; start again with --restart"
            )

        device = resolve_device(engine.device)
        full_train = DeviceSplit.load("train", data_dir, device)
        data_sha256 = dataset_sha256(full_train.images, full_train.labels)
        train_index, val_index = split_indices(len(full_train), config.val_fraction, config.seed)
        train, val = full_train.subset(train_index), full_train.subset(val_index)
        if len(train) < 2:
            raise UsageError(f"only {len(train)} training image(s) left after --val-fraction")
        test = DeviceSplit.load("test", data_dir, device)

        spec = ModelSpec(
            "classifier",
            "encoder-mlp",
            {
                "encoder_architecture": encoder_spec.architecture,
                "latent_dim": latent_dim,
                # Only when set: a spec without it is the model it always was.
                **({"tta_flip": True} if config.tta_flip else {}),
            },
        )
        encoder_weights = {
            key.removeprefix("encoder."): value
            for key, value in encoder_tensors.items()
            if key.startswith("encoder.")
        }
        training = ClassifierTraining.build(
            config, engine, device, spec, encoder_weights, encoder_label, train, val
        )
        state = LoopState(config.epochs, -(-len(train) // config.batch_size))
        run.begin(
            training,
            state,
            description=run_description(spec, config, training.engine, encoder=encoder),
            data_sha256=data_sha256,
            device=device,
        )
        best = training.best
        run.fit(
            lambda loop_callbacks: training.fit(state, loop_callbacks),
            callbacks,
            before=[best],  # the checkpoint holds the best epoch including this one
        )
        assert best.weights is not None  # epoch 1 always improves on -1
        training.model.load_state_dict(best.weights)
        metrics = test_metrics(
            classify(training.model, test, training.engine.precision), test.labels
        )
        path = run.save(
            training.model.state_dict(),
            {
                "best_epoch": best.epoch,
                "metrics": {
                    "val_accuracy": best.val_accuracy,
                    "test_accuracy": metrics.accuracy,
                    "per_class": metrics.per_class,
                    "confusion": metrics.confusion,
                },
            },
        )

    plots = []
    if plots_dir is not None:
        plots = write_classifier_plots(name, config, state.history, best.epoch, metrics, plots_dir)
    return ClassifierTrainResult(
        name=name,
        path=path,
        encoder=str(config.encoder),
        unfreeze=config.unfreeze,
        epochs=state.epoch,
        best_epoch=best.epoch,
        val_accuracy=best.val_accuracy,
        test=metrics,
        seconds=run.seconds,
        device=run.device_name,
        resumed_from_epoch=run.resumed_from,
        plots=plots,
        history=state.history,
    )


def write_classifier_plots(
    name: str,
    config: ClassifierTrainConfig,
    history: list[dict[str, float]],
    best_epoch: int,
    metrics: ClassifierMetrics,
    plots_dir: Path,
) -> list[Path]:
    """Loss and accuracy curves, and the confusion matrix (counts and row-normalised)."""
    from fmnist_toolkit import plots

    mode = "fine-tuned encoder" if config.unfreeze else "frozen encoder"
    curves = plots.training_curves(
        history,
        best_epoch=best_epoch,
        title=f"{name}: {mode} ({config.encoder}), best epoch {best_epoch}",
    )
    confusion = plots.confusion_matrices(
        metrics.confusion,
        CLASS_NAMES,
        title=f"{name}: test accuracy {metrics.accuracy:.2%} ({mode})",
    )
    return [
        plots.save_figure(curves, plots_dir / f"{name}-curves.png"),
        plots.save_figure(confusion, plots_dir / f"{name}-confusion.png"),
    ]
