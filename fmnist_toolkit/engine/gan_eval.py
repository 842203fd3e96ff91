"""A number for sample quality: the Fréchet distance in a toolkit classifier's feature space.

FD = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), the closed form of the 2-Wasserstein
distance between two Gaussians fitted to the features (means mu, covariances S) — the formula
of FID, with the 128-unit penultimate layer of a classifier trained by this toolkit in place of
Inception (which knows nothing of 28x28 grayscale clothes). It depends on N: always report it.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fmnist_toolkit.data import CLASS_NAMES, DeviceSplit, to_unit_float
from fmnist_toolkit.engine.defaults import best_classifier, default_generator
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.engine.sample import (
    MAX_SAMPLES,
    check_truncation,
    choose_denoiser,
    load_generator,
    sample_batches,
    sample_labels,
    truncation_of,
)
from fmnist_toolkit.errors import MeasurementError, UsageError
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn


@dataclass
class QualityRow:
    """One image set against the test set."""

    images: str  # "train (floor)", "raw samples", "denoised samples"
    count: int
    frechet_distance: float
    class_histogram: dict[str, int] = field(default_factory=dict)
    class_entropy: float = 0.0  # nats; ln 10 = 2.303 when every class is equally common
    # A conditional generator's samples: per requested class, the share the classifier
    # assigns to it (None for real images and unconditional generators).
    class_shares: dict[str, float] | None = None

    @property
    def mean_class_share(self) -> float | None:
        """The per-class shares' mean (classes are requested equally often)."""
        if not self.class_shares:
            return None
        return sum(self.class_shares.values()) / len(self.class_shares)


@dataclass
class QualityReport:
    generator: str
    features: str
    denoiser: str | None
    reference: str  # what the distances are measured against
    rows: list[QualityRow]
    truncation: float = 1.0  # the noise's scale the samples were drawn at


SINGULAR_OFFSET = 1e-6  # added to both covariances' diagonals when their product is singular
IMAGINARY_TOLERANCE = 1e-3  # largest imaginary part on the root's diagonal taken as noise


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] (float64).

    As pytorch-fid: when the product of the covariances is singular, both get a small offset
    on their diagonal; an imaginary part of the matrix square root is numerical noise when its
    diagonal is within 1e-3 of 0 (then dropped), and otherwise an error.
    """
    import numpy as np
    from scipy import linalg

    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a = np.cov(features_a, rowvar=False)
    cov_b = np.cov(features_b, rowvar=False)
    with warnings.catch_warnings():
        # Collapsed samples (or N below the feature count) give singular covariances.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            offset = np.eye(cov_a.shape[0]) * SINGULAR_OFFSET
            root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if not np.isfinite(root).all():
        raise MeasurementError(
            "the Fréchet distance is undefined: the feature covariances are singular even "
            "after an offset; compare more images (--n)"
        )
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=IMAGINARY_TOLERANCE):
            largest = float(np.max(np.abs(root.imag)))
            raise MeasurementError(
                "the Fréchet distance is unreliable: the matrix square root of the feature "
                f"covariances has an imaginary component of {largest:.3g}; compare more images "
                "(--n)"
            )
        root = root.real
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def _features_and_classes(
    classifier: nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate features (float64) and predicted classes of [N, 1, 28, 28] images in [0, 1],
    computed on the classifier's device and returned on the CPU."""
    features = classifier.features(images.to(next(classifier.parameters()).device))
    classes = classifier.head[-2:](features).argmax(dim=1)
    return features.double().cpu(), classes.cpu()


def _histogram(classes: torch.Tensor) -> tuple[dict[str, int], float]:
    import torch

    counts = torch.bincount(classes, minlength=len(CLASS_NAMES)).tolist()
    total = sum(counts)
    entropy = sum(c / total * math.log(total / c) for c in counts if c)
    return dict(zip(CLASS_NAMES, counts, strict=True)), entropy


def evaluate_generator(
    *,
    generator_name: str | None = None,
    features_name: str | None = None,
    denoise: bool = False,
    denoiser_name: str | None = None,
    count: int = 10_000,
    seed: int = 0,
    truncation: float | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    device: str = "cpu",
) -> QualityReport:
    """Fréchet distances to the 10,000 test images: ``count`` samples (raw, and denoised when
    asked) drawn at ``truncation`` (default: the generator's own), and as many training images
    as the floor; plus each set's predicted-class mix. The networks run on ``device``; the
    statistics are computed on the CPU in float64."""

    from fmnist_toolkit.engine.device import resolve_device

    if not 2 <= count <= MAX_SAMPLES:
        raise UsageError(f"--n must be between 2 and {MAX_SAMPLES:,}, not {count}")
    check_truncation(truncation)
    compute = resolve_device(device)
    store = store or ModelStore()
    generator_name = generator_name or default_generator(store)
    generator = load_generator(generator_name, store, compute)
    features_name = features_name or best_classifier(
        store, purpose="for the feature space", option="--features"
    )
    hint = "--features needs a classifier"
    classifier = load_model(
        features_name, store=store, device=compute, kind="classifier", hint=hint
    )
    denoiser_name, denoiser = choose_denoiser(
        store, denoise, denoiser_name, compute, generator=generator
    )

    classes = getattr(generator, "num_classes", 0)
    if classes and count % classes:
        raise UsageError(
            f"--n {count} does not split evenly over the {classes} classes of a conditional "
            f"generator: use a multiple of {classes}"
        )
    reference, floor = reference_features(classifier, data_dir, seed, count)
    truncation = truncation_of(generator, truncation)
    samples = sample_rows(classifier, generator, denoiser, count, seed, reference, truncation)
    return QualityReport(
        truncation=truncation,
        generator=generator_name,
        features=features_name,
        denoiser=denoiser_name,
        reference=f"{len(reference):,} test images",
        rows=[floor, *samples],
    )


def reference_features(
    classifier: nn.Module, data_dir: str | os.PathLike[str] | None, seed: int, count: int
) -> tuple[np.ndarray, QualityRow]:
    """Features of the 10,000 test images (what samples are compared with), and the row of
    ``count`` training images drawn by ``seed``: the floor any generator can reach with as
    many samples (the distance grows as N shrinks, so the floor is taken at the samples' N)."""
    import torch

    cpu = torch.device("cpu")
    test = DeviceSplit.load("test", data_dir, cpu)
    train = DeviceSplit.load("train", data_dir, cpu)
    floor_index = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count]
    with torch.no_grad():
        reference = _features_and_classes(classifier, to_unit_float(test.images))[0].numpy()
        train_features, train_classes = _features_and_classes(
            classifier, to_unit_float(train.images[floor_index])
        )
    return reference, _row("train images (floor)", train_features, train_classes, reference)


def sample_rows(
    classifier: nn.Module,
    generator: nn.Module,
    denoiser: nn.Module | None,
    count: int,
    seed: int,
    reference: np.ndarray,
    truncation: float | None = None,
) -> list[QualityRow]:
    """Rows of ``count`` samples drawn by ``seed``, raw (and denoised with a denoiser). A
    conditional generator draws every class equally often, and each row also has the share of
    each class's samples that the classifier assigns to that class."""
    import torch

    sets: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {"raw": [], "denoised": []}
    labels = sample_labels(generator, count)
    with torch.no_grad():
        batches = sample_batches(generator, denoiser, count, seed, labels, truncation)
        for raw, denoised in batches:
            sets["raw"].append(_features_and_classes(classifier, raw))
            if denoised is not None:
                sets["denoised"].append(_features_and_classes(classifier, denoised))
    rows = []
    for label, parts in sets.items():
        if parts:
            features = torch.cat([part[0] for part in parts])
            classes = torch.cat([part[1] for part in parts])
            row = _row(f"{label} samples", features, classes, reference)
            if labels is not None:
                row.class_shares = class_shares(labels, classes)
            rows.append(row)
    return rows


def class_shares(requested: torch.Tensor, predicted: torch.Tensor) -> dict[str, float]:
    """Per class asked for: the share of its samples predicted as that class."""
    shares = {}
    for index, name in enumerate(CLASS_NAMES):
        asked = requested == index
        if asked.any():
            shares[name] = float((predicted[asked] == index).float().mean())
    return shares


def _row(
    label: str, features: torch.Tensor, classes: torch.Tensor, reference: np.ndarray
) -> QualityRow:
    histogram, entropy = _histogram(classes)
    return QualityRow(
        images=label,
        count=int(features.shape[0]),
        frechet_distance=frechet_distance(features.numpy(), reference),
        class_histogram=histogram,
        class_entropy=entropy,
    )
