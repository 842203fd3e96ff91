"""The models a command uses when none is named, chosen in one place: the best autoencoder
(encoder), the best denoiser, the best classifier (prediction, Fréchet features), the
generator."""

from __future__ import annotations

import math
from typing import Any

from fmnist_toolkit.errors import ModelNotFoundError
from fmnist_toolkit.storage import ModelStore

# In the order of their measured sample quality (docs/gan.md: Fréchet distance 9.4, 54.0 and
# 118.7). The class-conditional one, given every class equally often, is the best of the three.
DEFAULT_GENERATORS = ("gan-dcgan-cond", "gan-dcgan", "gan-mlp")
# What ``fmt gan sample --class`` draws from when no --model is named.
DEFAULT_CONDITIONAL_GENERATOR = "gan-dcgan-cond"


def finite_metric(config: dict[str, Any], key: str) -> float | None:
    """A saved model's metric as a number, or None when it has none or it is not finite (a
    model that diverged before its run could stop it is never anyone's best)."""
    metrics = config.get("metrics")
    if not isinstance(metrics, dict):  # none, or a damaged config
        return None
    try:
        value = float(metrics.get(key))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def latent_autoencoders(store: ModelStore, latent_dim: int = 16) -> list[str]:
    """The store's latent-``latent_dim`` autoencoders trained to reconstruct, lowest test MSE
    first."""
    candidates = []
    for model in store.available():
        params = model.config.get("model", {}).get("params", {})
        test_mse = finite_metric(model.config, "test_mse")
        if (
            model.kind == "autoencoder"
            and params.get("latent_dim") == latent_dim
            and test_mse is not None
            and not trained_to_denoise(model.config)
        ):
            candidates.append((test_mse, model.name))
    return [name for _, name in sorted(candidates)]


def best_autoencoder(store: ModelStore, latent_dim: int = 16, *, purpose: str, option: str) -> str:
    """The latent-``latent_dim`` autoencoder with the lowest test MSE: the default denoiser and
    encoder. ``purpose`` ("to denoise with") and ``option`` complete the message if none is."""
    candidates = latent_autoencoders(store, latent_dim)
    if not candidates:
        raise ModelNotFoundError(
            f"no latent-{latent_dim} autoencoder in the store {purpose}; train one with "
            f"fmt ae train, or name one with {option}"
        )
    return candidates[0]


def trained_to_denoise(config: dict[str, Any]) -> bool:
    """Whether a saved model was trained with ``--objective denoise`` (its test MSE is then
    measured on corrupted images: not comparable with reconstruction MSEs)."""
    return config.get("recipe", {}).get("objective") == "denoise"


def best_denoiser(store: ModelStore) -> str | None:
    """The model trained with ``--objective denoise`` with the lowest test MSE (all measured on
    the same corrupted test images), or None when the store has none."""
    candidates = [
        (test_mse, model.name)
        for model in store.available()
        if trained_to_denoise(model.config)
        and (test_mse := finite_metric(model.config, "test_mse")) is not None
    ]
    return min(candidates)[1] if candidates else None


def default_denoiser(store: ModelStore) -> str:
    """The model trained to denoise with the lowest test MSE (the bundled ``denoiser-unet``
    unless you trained a better one), else the latent-16 autoencoder with the lowest test MSE."""
    return best_denoiser(store) or best_autoencoder(
        store, purpose="to denoise with", option="--denoiser"
    )


def denoiser_for(store: ModelStore, recorded: str | None) -> str:
    """The denoiser for a generator's samples: the one its config records (``recorded``, the
    one they measured closest with; ``gan-mlp`` records one) when the store has it, else
    :func:`default_denoiser`."""
    if recorded is not None and store.exists(recorded):
        return recorded
    return default_denoiser(store)


def best_classifier(store: ModelStore, *, purpose: str, option: str) -> str:
    """The classifier with the highest test accuracy: the default for prediction and for the
    feature space of Fréchet distances. ``purpose`` and ``option`` complete the message."""
    candidates = [
        (accuracy, model.name)
        for model in store.available()
        if model.kind == "classifier"
        and (accuracy := finite_metric(model.config, "test_accuracy")) is not None
    ]
    if not candidates:
        raise ModelNotFoundError(
            f"no classifier in the store {purpose}; train one with fmt clf finetune "
            f"or name one with {option}"
        )
    return max(candidates)[1]


def is_conditional(config: dict[str, Any]) -> bool:
    """Whether a saved generator's config describes a class-conditional one."""
    return bool(config.get("model", {}).get("params", {}).get("num_classes"))


def default_generator(store: ModelStore, *, conditional: bool = False) -> str:
    """The generator used when none is named: gan-dcgan-cond (drawing every class equally
    often), else gan-dcgan, else gan-mlp, else the newest one;
    ``conditional`` (``--class``): gan-dcgan-cond, else the newest class-conditional one."""
    generators = [model for model in store.available() if model.kind == "generator"]
    if conditional:
        conditionals = [model for model in generators if is_conditional(model.config)]
        if not conditionals:
            raise ModelNotFoundError(
                "no class-conditional generator in the store; train one with: "
                "fmt gan train --arch dcgan --conditional"
            )
        names = [model.name for model in conditionals]
        if DEFAULT_CONDITIONAL_GENERATOR in names:
            return DEFAULT_CONDITIONAL_GENERATOR
        return max(conditionals, key=lambda model: str(model.config.get("created", ""))).name
    names = [model.name for model in generators]
    for name in DEFAULT_GENERATORS:
        if name in names:
            return name
    if generators:
        return max(generators, key=lambda model: str(model.config.get("created", ""))).name
    raise ModelNotFoundError("no generator in the store; train one with: fmt gan train")
