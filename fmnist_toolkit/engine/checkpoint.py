"""Training state as safetensors tensors + JSON, so checkpoints need no pickle either."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fmnist_toolkit.config import EngineConfig, config_from_dict
from fmnist_toolkit.engine.loop import LoopState
from fmnist_toolkit.engine.model_io import check_state_dict
from fmnist_toolkit.errors import (
    CheckpointMissingError,
    ModelCorruptError,
    UnfinishedRunError,
    UsageError,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from fmnist_toolkit.storage import ModelStore

RecipeT = TypeVar("RecipeT")

_OPTIMIZER = "optimizer.state."
_MODEL = "model."


def prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer, prefix: str = _OPTIMIZER
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state into tensors (keys under ``prefix``) and a JSON remainder."""
    import torch

    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, slots in state_dict["state"].items():
        for slot, value in slots.items():
            key = f"{index}.{slot}"
            if isinstance(value, torch.Tensor):
                tensors[prefix + key] = value
            else:
                scalars[key] = value
    # A learning rate held in a tensor (for CUDA graphs: engine/graphs.py) is saved as a number.
    groups = [
        {
            key: float(value) if isinstance(value, torch.Tensor) else value
            for key, value in group.items()
        }
        for group in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _json_number(value: Any) -> Any:
    import torch

    return float(value) if isinstance(value, torch.Tensor) else value


def restore_optimizer(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    prefix: str = _OPTIMIZER,
) -> None:
    """Inverse of :func:`optimizer_to_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in unprefixed(prefix, tensors).items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    for key, value in meta.get("scalars", {}).items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    match_parameter_layouts(optimizer)


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each restored per-weight state tensor its weight's memory layout.

    Saved tensors come back contiguous, while a weight may be channels_last (the CPU layout of
    convolutions). The fused optimiser walks weight and state memory in step, so a mismatch
    would pair the wrong elements: the state is copied into the weight's layout.
    """
    import torch

    for group in optimizer.param_groups:
        for parameter in group["params"]:
            slots = optimizer.state.get(parameter, {})
            for slot, value in slots.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.shape == parameter.shape
                    and value.stride() != parameter.stride()
                ):
                    slots[slot] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def model_tensors(model: nn.Module, prefix: str = _MODEL) -> dict[str, torch.Tensor]:
    return prefixed(prefix, model.state_dict())


def restore_model(
    model: nn.Module, tensors: dict[str, torch.Tensor], label: str, prefix: str = _MODEL
) -> None:
    weights = unprefixed(prefix, tensors)
    check_state_dict(model, weights, label)
    model.load_state_dict(weights)


def model_optimizer_and_order(
    model: nn.Module, optimizer: torch.optim.Optimizer, shuffle: torch.Generator
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """What most recipes checkpoint: the weights, one optimiser, the generator that orders
    the batches and torch's own (as tensors, and the optimiser's JSON under "optimizer"); a
    recipe adds its own keys beside them."""
    import torch

    optimizer_tensors, optimizer_meta = optimizer_to_tensors(optimizer)
    tensors = {
        **model_tensors(model),
        **optimizer_tensors,
        "rng.shuffle": shuffle.get_state(),
        "rng.torch": torch.get_rng_state(),
    }
    return tensors, {"optimizer": optimizer_meta}


def restore_model_optimizer_and_order(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    label: str,
) -> None:
    """Inverse of :func:`model_optimizer_and_order`."""
    import torch

    restore_model(model, tensors, label)
    restore_optimizer(optimizer, tensors, meta["optimizer"])
    shuffle.set_state(tensors["rng.shuffle"])
    torch.set_rng_state(tensors["rng.torch"])


def check_resumable(store: ModelStore, name: str, *, resume: bool, restart: bool) -> None:
    """Refuse ``resume`` without an interrupted run of ``name``, and a fresh run that would
    silently discard one (neither ``resume`` nor ``restart``)."""
    if resume and not store.has_checkpoint(name):
        raise CheckpointMissingError(
            f"no interrupted run named {name!r} to resume; start one without --resume"
        )
    if not (resume or restart) and store.has_checkpoint(name):
        done = store.read_checkpoint_state(name).get("epoch", "?")
        raise UnfinishedRunError(
            f"an interrupted run of {name!r} is saved ({done} epochs done); continue it with "
            "--resume or discard it with --restart"
        )


def checkpoint_to_resume(
    store: ModelStore, name: str, *, resume: bool, restart: bool
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The interrupted run's checkpoint with ``resume``; None for a fresh run (after
    :func:`check_resumable`)."""
    check_resumable(store, name, resume=resume, restart=restart)
    return store.load_checkpoint(name) if resume else None


def settings_from_checkpoint(
    recipe_type: type[RecipeT], meta: dict[str, Any], engine: EngineConfig, name: str
) -> tuple[RecipeT, EngineConfig]:
    """The recipe and numeric settings of an interrupted run; only the device may change."""
    try:
        config = config_from_dict(recipe_type, meta["recipe"])
        saved_engine = config_from_dict(EngineConfig, meta.get("engine", {}))
    except (KeyError, TypeError) as error:
        raise ModelCorruptError(
            f"checkpoint of {name!r} is damaged ({error}); start again with --restart"
        ) from None
    engine = dataclasses.replace(
        engine, precision=saved_engine.precision, compile=saved_engine.compile
    )
    return config, engine


def restore_run(
    saved_state: tuple[dict[str, torch.Tensor], dict[str, Any]],
    state: LoopState,
    *,
    name: str,
    data_sha256: str,
    restore: Callable[[dict[str, torch.Tensor], dict[str, Any], str], None],
) -> float:
    """Put an interrupted run back: same data, the recipe's own tensors (``restore`` gets the
    tensors, the JSON and a label for messages), epoch and history. Returns the seconds the
    run had already trained. Anything missing or misshapen is one line naming --restart."""
    tensors, meta = saved_state
    if meta.get("data_sha256") != data_sha256:
        raise UsageError(
            f"the checkpoint of {name!r} was trained on other data; resume with the same "
            "--data-dir or start again without --resume"
        )
    label = f"checkpoint of {name!r}"
    try:
        restore(tensors, meta, label)
        state.epoch = int(meta["epoch"])
        state.history = list(meta["history"])
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelCorruptError(
            f"{label} is damaged ({type(error).__name__}: {error}); start again with --restart"
        ) from None
    return float(meta.get("seconds", 0.0))
