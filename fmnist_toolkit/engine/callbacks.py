"""Callbacks for :func:`fmnist_toolkit.engine.loop.fit`: progress, checkpoints, schedules."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.engine.loop import Callback, LoopState
from fmnist_toolkit.errors import TrainingDiverged

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
            # A call may train several batches (a CUDA graph replays a group of them).
            done = state.epoch * state.batches_per_epoch + state.batch
            self._progress.update(self._task, completed=done)

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


Checkpoint = tuple[dict[str, "torch.Tensor"], dict[str, Any]]
"""A checkpoint's tensors and its JSON state."""

CHECKPOINT_EVERY_SECONDS = 10.0


class StopOnDivergence(Callback):
    """Ends training at the first epoch with a metric that is not finite, before that epoch is
    checkpointed or saved: a NaN model would pass for a trained one (and NaN is not JSON)."""

    def __init__(self, checkpoints: CheckpointCallback) -> None:
        self.checkpoints = checkpoints

    def on_epoch_end(self, state: LoopState) -> None:
        bad = [key for key, value in state.last.items() if not math.isfinite(value)]
        if bad:
            raise TrainingDiverged(
                f"training diverged at epoch {state.epoch} ({bad[0]} is "
                f"{state.last[bad[0]]}); the checkpoint of epoch {self.checkpoints.kept_epoch} is "
                "kept: resume it with --resume, or start again with a lower --lr and --restart"
            )


class CheckpointCallback(Callback):
    """Keeps a resumable checkpoint of the last finished epoch.

    On a GPU an epoch can take a fraction of a second while a GAN's checkpoint is tens of
    megabytes, so a finished epoch is written to disk only when ``every_seconds`` have passed
    since the last write (and always the first and the last epoch); in between it is held as a
    copy in memory, written when the fit ends however it ends (finished, Ctrl-C, an error). A
    killed process loses at most ``every_seconds`` of training.
    """

    def __init__(
        self,
        collect: Callable[[LoopState], Checkpoint],
        write: Callable[[Checkpoint], None],
        *,
        every_seconds: float = CHECKPOINT_EVERY_SECONDS,
    ) -> None:
        self.collect = collect
        self.write = write
        self.every_seconds = every_seconds
        self.saved_epoch = 0  # the epoch the checkpoint on disk holds
        self._pending: tuple[int, Checkpoint] | None = None
        self._written_at = -math.inf

    @property
    def kept_epoch(self) -> int:
        """The epoch the checkpoint on disk will hold when the run ends, however it ends: a
        finished epoch held in memory is written at the end (``on_fit_end``), errors too."""
        return self._pending[0] if self._pending is not None else self.saved_epoch

    def _write(self, epoch: int, checkpoint: Checkpoint) -> None:
        self.write(checkpoint)
        self.saved_epoch = epoch
        self._pending = None
        self._written_at = time.monotonic()

    def on_fit_start(self, state: LoopState) -> None:
        self.saved_epoch = state.epoch
        self._write(state.epoch, self.collect(state))

    def on_epoch_end(self, state: LoopState) -> None:
        due = time.monotonic() - self._written_at >= self.every_seconds
        if due or state.epoch == state.epochs:
            self._write(state.epoch, self.collect(state))
            return
        tensors, meta = self.collect(state)
        # The networks train on: keep a copy (on their device, so no wait for the host).
        copied = {key: value.detach().clone() for key, value in tensors.items()}
        self._pending = (state.epoch, (copied, {**meta, "history": list(state.history)}))

    def on_fit_end(self, state: LoopState) -> None:
        if self._pending is not None:
            self._write(*self._pending)


# One-cycle (Smith & Topor, 2017), as torch's OneCycleLR with its defaults: the rate climbs
# from peak / ONECYCLE_START_DIVISOR to the peak at ONECYCLE_RISE of the steps, then anneals
# to peak / ONECYCLE_FINAL_DIVISOR at the last step, both along half a cosine.
ONECYCLE_RISE = 0.3
ONECYCLE_START_DIVISOR = 25.0
ONECYCLE_FINAL_DIVISOR = 25.0 * 1e4
# Warm-up + cosine: a linear climb over the first WARMUP_SHARE of the steps, then cosine to 0.
WARMUP_SHARE = 0.05
# The schedules that change the rate after every batch; the others, once per epoch.
PER_STEP_SCHEDULES = ("onecycle", "warmup-cosine")


def _cosine_between(start: float, end: float, progress: float) -> float:
    """From ``start`` (progress 0) to ``end`` (progress 1) along half a cosine."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def schedule_factor(schedule: str, step: int, steps: int) -> float:
    """Multiplier of the base (peak) rate for step ``step`` (from 0) of ``steps``.

    ``constant`` and ``cosine`` count epochs (``step`` and ``steps`` are epochs: the rate is
    set once per epoch, as before the per-batch schedules existed); ``onecycle`` and
    ``warmup-cosine`` count batches.
    """
    steps = max(steps, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / steps))
    if schedule == "onecycle":
        peak, last = ONECYCLE_RISE * steps - 1, steps - 1  # torch's phase ends
        if step <= peak:
            return _cosine_between(1.0 / ONECYCLE_START_DIVISOR, 1.0, step / max(peak, 1e-9))
        return _cosine_between(
            1.0, 1.0 / ONECYCLE_FINAL_DIVISOR, (step - peak) / max(last - peak, 1e-9)
        )
    if schedule == "warmup-cosine":
        warmup = max(round(WARMUP_SHARE * steps), 1)
        if step < warmup:
            return (step + 1) / warmup
        return _cosine_between(1.0, 0.0, (step - warmup) / max(steps - warmup, 1))
    return 1.0


class LearningRateSchedule(Callback):
    """Sets each parameter group's learning rate: once per epoch (``constant``, ``cosine``) or
    before every batch (``onecycle``, ``warmup-cosine``).

    The rate is a function of the position in the run alone (no scheduler state), so a
    resumed run follows exactly the schedule an uninterrupted one would. A rate held in a
    device tensor (:func:`fmnist_toolkit.engine.graphs.graph_ready`) is filled in place, with
    no wait for the device: a captured CUDA graph reads it.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: str) -> None:
        self.optimizer = optimizer
        self.schedule = schedule
        self.base_lrs = [float(group["lr"]) for group in optimizer.param_groups]
        self.per_step = schedule in PER_STEP_SCHEDULES

    def factor(self, epoch: int, epochs: int) -> float:
        """Multiplier of the base rate for the epoch after ``epoch`` completed ones (a
        per-epoch schedule)."""
        return schedule_factor(self.schedule, epoch, epochs)

    def _set(self, factor: float) -> None:
        import torch

        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            if isinstance(group["lr"], torch.Tensor):  # read by a captured CUDA graph
                group["lr"].fill_(float(base_lr) * factor)
            else:
                group["lr"] = base_lr * factor

    def _set_for_batch(self, state: LoopState, batch: int) -> None:
        step = state.epoch * state.batches_per_epoch + batch
        self._set(schedule_factor(self.schedule, step, state.epochs * state.batches_per_epoch))

    def on_epoch_start(self, state: LoopState) -> None:
        if self.per_step:
            self._set_for_batch(state, 0)
        else:
            self._set(self.factor(state.epoch, state.epochs))

    def on_batch_end(self, state: LoopState) -> None:
        # The next batch's rate (after an epoch's last batch on_epoch_start sets it again).
        if self.per_step and state.batch < state.batches_per_epoch:
            self._set_for_batch(state, state.batch)


class TimeBudget(Callback):
    """Ends training after the epoch past which another epoch would overrun ``seconds``
    (timed from the start of this fit): the run then finishes and saves as if its last epoch
    had been planned; ``stopped`` says whether it cut the run short."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = 0.0
        self.stopped = False

    def on_fit_start(self, state: LoopState) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, state: LoopState) -> None:
        elapsed = time.perf_counter() - self.started
        epoch_seconds = state.last.get("seconds", 0.0)
        if state.epoch < state.epochs and elapsed + epoch_seconds > self.seconds:
            state.epochs = state.epoch
            self.stopped = True
