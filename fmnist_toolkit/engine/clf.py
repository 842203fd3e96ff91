"""The classifier recipe: an autoencoder's encoder plus the report's head, frozen or fine-tuned."""

from __future__ import annotations

import copy
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
from fmnist_toolkit.config import ClassifierTrainConfig, EngineConfig, ModelSpec, config_to_dict
from fmnist_toolkit.data import (
    CLASS_NAMES,
    DeviceSplit,
    augment_batch,
    dataset_sha256,
    epoch_order,
    row_batches,
    split_indices,
)
from fmnist_toolkit.engine.ae import ensure_writable_folder
from fmnist_toolkit.engine.checkpoint import check_state_dict
from fmnist_toolkit.engine.device import (
    adam_options,
    autocast,
    describe_device,
    place_model,
    resolve_device,
    resolve_precision,
    seed_everything,
)
from fmnist_toolkit.engine.graphs import accelerated_step, graph_ready
from fmnist_toolkit.engine.inference import predict_split
from fmnist_toolkit.engine.loop import Callback, LoopState, fit
from fmnist_toolkit.engine.model_io import load_model, read_model_of_kind
from fmnist_toolkit.errors import ModelCorruptError, TrainingInterrupted, UsageError
from fmnist_toolkit.models import create_model
from fmnist_toolkit.storage import ModelStore, validate_name

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class ClassifierMetrics:
    """Test-set figures of a classifier."""

    accuracy: float
    per_class: list[dict[str, Any]]  # class, precision, recall, f1, support
    confusion: list[list[int]]  # rows: true class, columns: predicted class


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


def classify(model: nn.Module, split: DeviceSplit, precision: str = "fp32") -> torch.Tensor:
    """Predicted classes [N] (CPU) of a whole split."""
    return predict_split(model, split, precision=precision).argmax(1).cpu()


def test_metrics(predicted: torch.Tensor, truth: torch.Tensor) -> ClassifierMetrics:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (scikit-learn)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = truth.cpu().numpy(), predicted.cpu().numpy()
    labels = list(range(len(CLASS_NAMES)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = [
        {
            "class": CLASS_NAMES[i],
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i in labels
    ]
    confusion = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return ClassifierMetrics(float((y_true == y_pred).mean()), per_class, confusion)


def train_classifier(
    name: str,
    config: ClassifierTrainConfig,
    engine: EngineConfig,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    plots_dir: Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> ClassifierTrainResult:
    """Train the head (and with ``unfreeze`` the encoder) and save the best-validation epoch.

    A validation split held out from the training set picks the epoch; the test set is only
    measured, at the end. With the encoder frozen its features never change, so they are
    computed once on the device and the head trains on them directly.
    """
    import torch

    store = store or ModelStore()
    validate_name(name)
    check_classifier_config(config)
    if plots_dir is not None:
        ensure_writable_folder(plots_dir, "--plots")
    encoder_tensors, encoder_config, encoder_label, encoder_spec = read_model_of_kind(
        config.encoder, "autoencoder", store, hint="; --encoder takes an autoencoder"
    )
    latent_dim = encoder_spec.params.get("latent_dim")
    if not isinstance(latent_dim, int) or latent_dim < 1:
        raise ModelCorruptError(f"{encoder_label}: its config has no valid latent_dim")
    device = resolve_device(engine.device)
    precision = resolve_precision(engine.precision, device, "classifier")
    engine = dataclasses.replace(engine, precision=precision)

    full_train = DeviceSplit.load("train", data_dir, device)
    data_sha256 = dataset_sha256(full_train.images, full_train.labels)
    train_index, val_index = split_indices(len(full_train), config.val_fraction, config.seed)
    train, val = full_train.subset(train_index), full_train.subset(val_index)
    if len(train) < 2:
        raise UsageError(f"only {len(train)} training image(s) left after --val-fraction")
    test = DeviceSplit.load("test", data_dir, device)

    shuffle = seed_everything(config.seed)
    spec = ModelSpec(
        "classifier",
        "encoder-mlp",
        {
            "encoder_architecture": encoder_spec.architecture,
            "latent_dim": latent_dim,
        },
    )
    model = place_model(create_model(spec), device)
    encoder_weights = {
        key.removeprefix("encoder."): value
        for key, value in encoder_tensors.items()
        if key.startswith("encoder.")
    }
    check_state_dict(model.encoder, encoder_weights, encoder_label)
    model.encoder.load_state_dict(encoder_weights)
    groups = [{"params": model.head.parameters(), "lr": config.lr}]
    if config.unfreeze:
        groups.append({"params": model.encoder.parameters(), "lr": config.encoder_lr})
    else:
        model.encoder.requires_grad_(False)
    optimizer = torch.optim.Adam(groups, weight_decay=config.weight_decay, **adam_options(device))
    nll = torch.nn.functional.nll_loss

    features = predict_split(model, train, model.encode)
    with torch.no_grad():
        model.code_mean.copy_(features.mean(0))
        model.code_std.copy_(features.std(0).clamp_min(1e-6))
    val_features = None
    if not config.unfreeze:
        # Frozen encoder: codes never change, so encode once and train the head on them.
        val_features = predict_split(model, val, model.encode)
    if config.unfreeze:
        forward = model
        augmentation = torch.Generator().manual_seed(config.seed + 1)

        def batches() -> Iterator[tuple[torch.Tensor, ...]]:
            for images, labels in train.batches(config.batch_size, shuffle):
                # A fine-tuned encoder fits the training set within ~20 epochs and then only
                # overfits; mirrored and shifted copies keep validation accuracy rising.
                yield (augment_batch(images, augmentation) if config.augment else images), labels
    else:
        forward = model.classify_codes

        def batches() -> Iterator[tuple[torch.Tensor, ...]]:
            epoch = epoch_order((features, train.labels), shuffle)
            return row_batches(epoch, config.batch_size)

    def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
        inputs, targets = batch
        with autocast(device, precision):
            log_probs = forward(inputs).float()
            loss = nll(log_probs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Accuracy on the device, averaged over the epoch by fit like the loss.
        accuracy = (log_probs.detach().argmax(1) == targets).float().mean()
        return torch.stack([loss.detach(), accuracy]), targets.shape[0]

    best: dict[str, Any] = {"epoch": 0, "val_accuracy": -1.0, "state": None}

    def evaluate() -> dict[str, float]:
        if val_features is not None:
            with torch.inference_mode(), autocast(device, precision):
                log_probs = model.classify_codes(val_features).float()
        else:
            log_probs = predict_split(model, val, precision=precision)
        return {
            "val_loss": float(nll(log_probs, val.labels)),
            "val_accuracy": float((log_probs.argmax(1) == val.labels).float().mean()),
        }

    class KeepBest(Callback):
        def on_epoch_end(self, state: LoopState) -> None:
            row = state.last
            if row["val_accuracy"] > best["val_accuracy"]:
                best.update(
                    epoch=state.epoch,
                    val_accuracy=row["val_accuracy"],
                    state=copy.deepcopy(model.state_dict()),
                )

    state = LoopState(epochs=config.epochs, batches_per_epoch=-(-len(train) // config.batch_size))
    started = time.perf_counter()
    graph_ready(optimizer, device, enabled=engine.cuda_graphs)
    try:
        fit(
            accelerated_step(step, device, cuda_graphs=engine.cuda_graphs),
            batches,
            state,
            evaluate=evaluate,
            train_metric=("train_loss", "train_accuracy"),
            callbacks=[KeepBest(), *callbacks],
        )
    except KeyboardInterrupt:
        raise TrainingInterrupted(
            f"interrupted after {state.epoch}/{config.epochs} epochs; nothing was saved "
            f"(an earlier model named {name!r} is untouched)",
            model_name=name,
            completed_epochs=state.epoch,
        ) from None
    seconds = time.perf_counter() - started

    assert best["state"] is not None  # epoch 1 always improves on -1
    model.load_state_dict(best["state"])
    metrics = test_metrics(classify(model, test, precision), test.labels)
    meta = {
        "name": name,
        "kind": spec.kind,
        "model": config_to_dict(spec),
        "recipe": config_to_dict(config),
        "engine": config_to_dict(engine),
        "encoder": {
            "name": str(config.encoder),
            "weights_sha256": encoder_config.get("weights_sha256"),
            "test_mse": encoder_config.get("metrics", {}).get("test_mse"),
        },
        "data_sha256": data_sha256,
        "history": state.history,
        "best_epoch": best["epoch"],
        "metrics": {
            "val_accuracy": best["val_accuracy"],
            "test_accuracy": metrics.accuracy,
            "per_class": metrics.per_class,
            "confusion": metrics.confusion,
        },
        "seconds": seconds,
        "device": describe_device(device),
        "toolkit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    path = store.save(name, model.state_dict(), meta)
    plots = []
    if plots_dir is not None:
        plots = write_classifier_plots(
            name, config, state.history, best["epoch"], metrics, plots_dir
        )
    return ClassifierTrainResult(
        name=name,
        path=path,
        encoder=str(config.encoder),
        unfreeze=config.unfreeze,
        epochs=state.epoch,
        best_epoch=best["epoch"],
        val_accuracy=best["val_accuracy"],
        test=metrics,
        seconds=seconds,
        device=meta["device"],
        plots=plots,
        history=state.history,
    )


def evaluate_classifier(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    store: ModelStore | None = None,
) -> ClassifierMetrics:
    """Re-measure a saved classifier on the 10,000 test images."""
    read_model_of_kind(name_or_path, "classifier", store)
    torch_device = resolve_device(device)
    model = load_model(name_or_path, store=store, device=torch_device)
    test = DeviceSplit.load("test", data_dir, torch_device)
    return test_metrics(classify(model, test), test.labels)


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


def predict_images(
    name_or_path: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    *,
    top: int = 3,
    store: ModelStore | None = None,
) -> list[dict[str, Any]]:
    """The ``top`` classes and their probabilities for each of a user's pictures (CPU)."""
    import torch

    from fmnist_toolkit.data import image_like_fashion_mnist, to_unit_float

    read_model_of_kind(name_or_path, "classifier", store)
    pictures = torch.stack([image_like_fashion_mnist(path) for path in paths])
    model = load_model(name_or_path, store=store)
    with torch.no_grad():
        probabilities = model(to_unit_float(pictures)).exp()
    results = []
    for path, row in zip(paths, probabilities, strict=True):
        values, classes = row.topk(top)
        results.append(
            {
                "image": str(path),
                "top": [
                    {"class": CLASS_NAMES[int(c)], "index": int(c), "probability": float(v)}
                    for v, c in zip(values, classes, strict=True)
                ],
            }
        )
    return results
