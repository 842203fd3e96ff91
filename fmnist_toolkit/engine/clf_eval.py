"""A classifier measured and used: test metrics, re-evaluation of a saved one, predictions for
a user's pictures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from fmnist_toolkit.data import CLASS_NAMES, DeviceSplit
from fmnist_toolkit.engine.device import resolve_device
from fmnist_toolkit.engine.inference import predict_split
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.errors import DataCorruptError, DataMissingError
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass
class ClassifierMetrics:
    """Test-set figures of a classifier."""

    accuracy: float
    per_class: list[dict[str, Any]]  # class, precision, recall, f1, support
    confusion: list[list[int]]  # rows: true class, columns: predicted class


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


def evaluate_classifier(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    store: ModelStore | None = None,
) -> ClassifierMetrics:
    """Re-measure a saved classifier on the 10,000 test images."""
    torch_device = resolve_device(device)
    model = load_model(name_or_path, store=store, device=torch_device, kind="classifier")
    test = DeviceSplit.load("test", data_dir, torch_device)
    return test_metrics(classify(model, test), test.labels)


def predict_images(
    name_or_path: str | os.PathLike[str],
    paths: Sequence[str | os.PathLike[str]],
    *,
    top: int = 3,
    store: ModelStore | None = None,
    stdin: BinaryIO | None = None,
) -> list[dict[str, Any]]:
    """The ``top`` classes and their probabilities for each of a user's pictures (CPU), in
    order: ``{"image", "top"}``, or ``{"image", "error"}`` for a picture that cannot be read,
    so that one bad file does not cost the others their answers. A path given as the string
    ``"-"`` is read from ``stdin``."""
    import torch

    from fmnist_toolkit.data import image_like_fashion_mnist, to_unit_float

    model = load_model(name_or_path, store=store, kind="classifier")
    results: list[dict[str, Any]] = []
    pictures = []
    for path in paths:
        try:
            content = stdin if stdin is not None and path == "-" else None
            pictures.append(image_like_fashion_mnist(path, content))
            results.append({"image": str(path)})
        except (DataMissingError, DataCorruptError) as error:
            results.append({"image": str(path), "error": str(error)})
    if not pictures:
        return results
    with torch.no_grad():
        probabilities = iter(model(to_unit_float(torch.stack(pictures))).exp())
    for result in results:
        if "error" in result:
            continue
        values, classes = next(probabilities).topk(top)
        result["top"] = [
            {"class": CLASS_NAMES[int(c)], "index": int(c), "probability": float(v)}
            for v, c in zip(values, classes, strict=True)
        ]
    return results
