"""Callbacks for :func:`fmnist_toolkit.engine.loop.fit`: progress, checkpoints, schedules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from fmnist_toolkit.engine.loop import Callback, LoopState

if TYPE_CHECKING:
    import torch
    from rich.console import Console
    from rich.progress import Progress, TaskID


def format_metrics(row: dict[str, float]) -> str:
    """``train_mse 0.0213  test_mse 0.0208`` for the metric columns of a history row."""
    return "  ".join(
        f"{key} {value:.5f}" for key, value in row.items() if key not in ("epoch", "seconds")
    )


class ProgressCallback(Callback):
    """A rich progress bar on stderr (epoch, loss, ETA); one plain line per epoch off a terminal."""

    def __init__(self, console: Console, *, label: str = "training", quiet: bool = False) -> None:
        self.console = console
        self.label = label
        self.quiet = quiet
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def on_fit_start(self, state: LoopState) -> None:
        if self.quiet or not self.console.is_terminal:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        total = state.epochs * state.batches_per_epoch
        done = state.epoch * state.batches_per_epoch
        self._task = self._progress.add_task(
            self._description(state), total=total, completed=done, metrics=self._metrics(state)
        )
        self._progress.start()

    def _description(self, state: LoopState) -> str:
        return f"{self.label} epoch {min(state.epoch + 1, state.epochs)}/{state.epochs}"

    @staticmethod
    def _metrics(state: LoopState) -> str:
        return format_metrics(state.last) if state.history else ""

    def on_batch_end(self, state: LoopState) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task)

    def on_epoch_end(self, state: LoopState) -> None:
        if self.quiet:
            return
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, description=self._description(state), metrics=self._metrics(state)
            )
            return
        row = state.last
        self.console.print(
            f"{self.label} epoch {state.epoch}/{state.epochs}  {format_metrics(row)}  "
            f"{row.get('seconds', 0.0):.1f}s",
            highlight=False,
            soft_wrap=True,
        )

    def on_fit_end(self, state: LoopState) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class CheckpointCallback(Callback):
    """Saves a resumable checkpoint when the fit starts and after every epoch."""

    def __init__(self, save: Callable[[LoopState], None]) -> None:
        self.save = save

    def on_fit_start(self, state: LoopState) -> None:
        self.save(state)

    def on_epoch_end(self, state: LoopState) -> None:
        self.save(state)


class LearningRateSchedule(Callback):
    """Sets each parameter group's learning rate at the start of every epoch.

    The rate is a function of the epoch alone (no scheduler state), so a resumed run follows
    exactly the schedule an uninterrupted one would.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: str) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]

    def factor(self, epoch: int, epochs: int) -> float:
        """Multiplier of the base rate for the epoch after ``epoch`` completed ones."""
        if self.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
        return 1.0

    def on_epoch_start(self, state: LoopState) -> None:
        factor = self.factor(state.epoch, state.epochs)
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base_lr * factor
