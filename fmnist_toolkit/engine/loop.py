"""The one training loop: epochs of steps over batches, extended by callbacks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

Step = Callable[[Any], tuple["torch.Tensor", int]]
"""Trains on one batch; returns its mean loss (detached, still on the device) and its size.

A step that tracks several numbers (a GAN's two losses, say) returns them stacked in a 1-D
tensor and names them with ``fit(train_metric=(...))``. A step with a ``batches_per_call``
attribute (several steps in one CUDA graph, :mod:`fmnist_toolkit.engine.graphs`) is given a
list of up to that many consecutive batches per call and returns their mean and total size.
"""


@dataclass
class LoopState:
    """What callbacks see: progress so far and the per-epoch history."""

    epochs: int
    batches_per_epoch: int
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    batch: int = 0  # batches completed in the current epoch

    @property
    def last(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


class Callback:
    """Hooks into :func:`fit`; override what you need."""

    def on_fit_start(self, state: LoopState) -> None: ...

    def on_epoch_start(self, state: LoopState) -> None: ...

    def on_batch_end(self, state: LoopState) -> None: ...

    def on_epoch_end(self, state: LoopState) -> None: ...

    def on_fit_end(self, state: LoopState) -> None:
        """Runs however the fit ends (finished, interrupted or crashed)."""


def fit(
    step: Step,
    batches: Callable[[], Iterable[Any]],
    state: LoopState,
    *,
    evaluate: Callable[[], dict[str, float]] | None = None,
    train_metric: str | Sequence[str] = "train_loss",
    callbacks: Sequence[Callback] = (),
) -> LoopState:
    """Run epochs ``state.epoch + 1 .. state.epochs``; history gets one row per epoch.

    The epoch's training loss is summed on the device and read once per epoch, so the loop
    never waits on the accelerator between batches.
    """
    grouped = getattr(step, "batches_per_call", 0)
    for callback in callbacks:
        callback.on_fit_start(state)
    try:
        while state.epoch < state.epochs:
            for callback in callbacks:
                callback.on_epoch_start(state)
            started = time.perf_counter()
            loss_sum: torch.Tensor | float = 0.0
            seen = 0
            state.batch = 0
            for batch in _calls(batches(), grouped):
                loss, size = step(batch)
                # In place, and never keeping ``loss``: a CUDA graph's static output tensor
                # is overwritten by the next replay.
                if seen:
                    loss_sum.add_(loss, alpha=size)  # type: ignore[union-attr]
                else:
                    loss_sum = loss * size
                seen += size
                state.batch += len(batch) if grouped else 1
                for callback in callbacks:
                    callback.on_batch_end(state)
            means = _epoch_means(loss_sum, seen, train_metric)
            row = {"epoch": state.epoch + 1, **means}
            if evaluate is not None:
                row.update(evaluate())
            row["seconds"] = time.perf_counter() - started
            state.history.append(row)
            state.epoch += 1
            for callback in callbacks:
                callback.on_epoch_end(state)
    finally:
        for callback in callbacks:
            callback.on_fit_end(state)
    return state


def _epoch_means(
    loss_sum: torch.Tensor | float, seen: int, names: str | Sequence[str]
) -> dict[str, float]:
    """The epoch's mean of each tracked number, read from the device once."""
    if isinstance(names, str):
        return {names: float(loss_sum) / max(seen, 1)}
    values = loss_sum.tolist() if not isinstance(loss_sum, float) else [loss_sum] * len(names)
    return {name: value / max(seen, 1) for name, value in zip(names, values, strict=True)}


def _calls(batches: Iterable[Any], batches_per_call: int) -> Iterator[Any]:
    """The batches one at a time, or in lists of ``batches_per_call`` (the last one shorter)."""
    if not batches_per_call:
        yield from batches
        return
    group: list[Any] = []
    for batch in batches:
        group.append(batch)
        if len(group) == batches_per_call:
            yield group
            group = []
    if group:
        yield group
