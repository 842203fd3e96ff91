"""Linear probes: how much class information an encoder's code holds, measured by the accuracy
of a logistic regression on the frozen codes, beside the same probe on PCA's components."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fmnist_toolkit.data import DeviceSplit, split_indices
from fmnist_toolkit.engine.device import resolve_device, seed_everything
from fmnist_toolkit.engine.inference import predict_split
from fmnist_toolkit.engine.model_io import load_model, read_model_of_kind
from fmnist_toolkit.errors import UsageError
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    import torch

# L2 penalties tried per probe; the validation split picks one (the test set is only measured).
PROBE_PENALTIES = (0.0, 1e-4, 1e-3, 1e-2)
PROBE_ITERATIONS = 200  # L-BFGS iterations, full batch


@dataclass
class ProbeResult:
    """One probe: what it read (an encoder, or PCA with ``dimensions`` components) and its
    accuracies."""

    features: str  # the autoencoder's name, or "pca-N"
    dimensions: int
    penalty: float  # the L2 penalty the validation split chose
    train_accuracy: float
    val_accuracy: float
    test_accuracy: float
    test_mse: float | None = None  # the autoencoder's reconstruction MSE, as saved


def fit_logistic_regression(
    features: torch.Tensor, labels: torch.Tensor, *, penalty: float, classes: int = 10
) -> torch.nn.Linear:
    """A multinomial logistic regression on standardised ``features``, fitted full batch by
    L-BFGS with an L2 ``penalty`` on the weights (not the biases)."""
    import torch

    layer = torch.nn.Linear(features.shape[1], classes, device=features.device)
    torch.nn.init.zeros_(layer.weight)
    torch.nn.init.zeros_(layer.bias)
    optimizer = torch.optim.LBFGS(
        layer.parameters(), lr=1.0, max_iter=PROBE_ITERATIONS, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(features), labels)
        loss = loss + penalty * layer.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return layer


def _accuracy(layer: torch.nn.Linear, features: torch.Tensor, labels: torch.Tensor) -> float:
    import torch

    with torch.no_grad():
        return float((layer(features).argmax(1) == labels).float().mean())


def probe_features(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    *,
    test_mse: float | None = None,
) -> ProbeResult:
    """Fit one probe per penalty on ``train`` (features, labels), keep the best on ``val``,
    measure it on ``test``. Features are standardised by the training statistics."""
    mean, std = train[0].mean(0), train[0].std(0).clamp_min(1e-6)
    train_x, val_x, test_x = ((x - mean) / std for x in (train[0], val[0], test[0]))
    best: tuple[float, float, torch.nn.Linear] | None = None
    for penalty in PROBE_PENALTIES:
        layer = fit_logistic_regression(train_x, train[1], penalty=penalty)
        accuracy = _accuracy(layer, val_x, val[1])
        if best is None or accuracy > best[0]:
            best = (accuracy, penalty, layer)
    assert best is not None
    val_accuracy, penalty, layer = best
    return ProbeResult(
        features=name,
        dimensions=int(train_x.shape[1]),
        penalty=penalty,
        train_accuracy=_accuracy(layer, train_x, train[1]),
        val_accuracy=val_accuracy,
        test_accuracy=_accuracy(layer, test_x, test[1]),
        test_mse=test_mse,
    )


def pca_features(
    train: torch.Tensor, others: Sequence[torch.Tensor], components: int
) -> list[torch.Tensor]:
    """The first ``components`` principal components of flattened images, fitted on ``train``
    (float64, exact SVD), for ``train`` and each of ``others``."""
    import torch

    flat = train.flatten(1).double()
    mean = flat.mean(0)
    _, _, vh = torch.linalg.svd(flat - mean, full_matrices=False)
    basis = vh[:components].T
    return [((x.flatten(1).double() - mean) @ basis).float() for x in (train, *others)]


def linear_probes(
    encoders: Sequence[str],
    *,
    pca_components: int | None = 16,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    val_fraction: float = 0.1,
    seed: int = 0,
    store: ModelStore | None = None,
) -> list[ProbeResult]:
    """A linear probe on the frozen codes of each autoencoder in ``encoders`` and on the first
    ``pca_components`` principal components of the pixels (None: no PCA probe).

    The probe trains on the training split less a seeded validation share (the same images
    ``fmt clf finetune`` holds out with the same seed), picks its penalty on that share and
    is measured on the test set.
    """

    if not 0 < val_fraction < 1:
        raise UsageError("--val-fraction must be between 0 and 1")
    if pca_components is not None and not 1 <= pca_components <= 784:
        raise UsageError("--pca must be between 1 and 784 components")
    models = [read_model_of_kind(name, "autoencoder", store)[1] for name in encoders]
    torch_device = resolve_device(device)
    seed_everything(seed)
    full_train = DeviceSplit.load("train", data_dir, torch_device)
    train_index, val_index = split_indices(len(full_train), val_fraction, seed)
    splits = [
        full_train.subset(train_index),
        full_train.subset(val_index),
        DeviceSplit.load("test", data_dir, torch_device),
    ]
    labels = [split.labels for split in splits]
    results = []
    for name, config in zip(encoders, models, strict=True):
        model = load_model(name, store=store, device=torch_device)
        codes = [predict_split(model, split, model.encode) for split in splits]
        test_mse = config.get("metrics", {}).get("test_mse")
        results.append(
            probe_features(
                str(name),
                *zip(codes, labels, strict=True),
                test_mse=float(test_mse) if test_mse is not None else None,
            )
        )
    if pca_components is not None:
        from fmnist_toolkit.data import to_unit_float

        pixels = [to_unit_float(split.images) for split in splits]
        components = pca_features(pixels[0], pixels[1:], pca_components)
        results.append(
            probe_features(f"pca-{pca_components}", *zip(components, labels, strict=True))
        )
    return results
