"""One run lifecycle for every training recipe: lock, resume-or-refuse, checkpoints, save.

A recipe reads top to bottom::

    with TrainingRun.exclusive(store, name, resume=..., restart=..., engine=engine) as run:
        config, engine = run.settings(RecipeConfig, config, engine)
        ...load the data; build what is trained (a :class:`Resumable`) and a LoopState...
        run.begin(training, state, description=run_description(spec, config, engine),
                  data_sha256=..., device=...)
        run.fit(lambda callbacks: training.fit(..., callbacks), callbacks)
        path = run.save(weights, {"metrics": ...})

The run checks the name, precision and plots folder before any data is read; holds the
store's run lock for ``name``; refuses to start over an interrupted run
unless told to resume or restart; restores the recipe's state from its checkpoint; writes a
checkpoint after every epoch; turns Ctrl-C into :class:`TrainingInterrupted` naming the saved
epoch; and at the end saves the model with the metadata every recipe records, then removes the
checkpoint.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from fmnist_toolkit._version import __version__
from fmnist_toolkit.config import EngineConfig, ModelSpec, config_to_dict
from fmnist_toolkit.engine import checkpoint as checkpointing
from fmnist_toolkit.engine.callbacks import Checkpoint, CheckpointCallback, StopOnDivergence
from fmnist_toolkit.engine.device import check_precision, describe_device
from fmnist_toolkit.engine.loop import Callback, LoopState
from fmnist_toolkit.engine.outputs import ensure_writable_folder
from fmnist_toolkit.errors import ToolkitError, TrainingInterrupted, UsageError
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    import torch


class Recipe(Protocol):
    """A recipe's config (config.py): its fields, and the command that trains it."""

    COMMAND: ClassVar[str]


RecipeT = TypeVar("RecipeT", bound=Recipe)


class Resumable(Protocol):
    """What a recipe trains, as checkpoint tensors + JSON and back."""

    def checkpoint(self) -> Checkpoint:
        """The tensors and JSON that put the run back exactly (weights, optimisers, RNGs)."""
        ...

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], label: str) -> None:
        """Inverse of :meth:`checkpoint`; ``label`` names the checkpoint in messages."""
        ...


def run_description(
    spec: ModelSpec, recipe: Recipe, engine: EngineConfig, **extra: Any
) -> dict[str, Any]:
    """What a run trains, for :meth:`TrainingRun.begin`: the model spec, the recipe, the engine
    settings and any recipe-specific records (``extra``)."""
    return {
        "kind": spec.kind,
        "command": type(recipe).COMMAND,
        "model": config_to_dict(spec),
        "recipe": config_to_dict(recipe),
        "engine": config_to_dict(engine),
        **extra,
    }


class TrainingRun:
    """One training run of ``name`` in the store, from its lock to its saved model."""

    def __init__(self, store: ModelStore, name: str, saved: Checkpoint | None) -> None:
        self.store = store
        self.name = name
        self.saved = saved  # the interrupted run's checkpoint when resuming
        self.resumed_from = 0  # epochs the interrupted run had done
        self.seconds = 0.0  # training time, including the time before a resume; set by save
        self.device_name = ""
        self.checkpoints = CheckpointCallback(self._collect, self._write)
        self._training: Resumable | None = None
        self._state: LoopState | None = None
        self._description: dict[str, Any] = {}
        self._notes: dict[str, Any] = {}
        self._data_sha256 = ""
        self._elapsed_before = 0.0
        self._started = 0.0

    @classmethod
    @contextlib.contextmanager
    def exclusive(
        cls,
        store: ModelStore | None,
        name: str,
        *,
        resume: bool,
        restart: bool,
        engine: EngineConfig,
        plots_dir: Path | None = None,
        kind: str | None = None,
    ) -> Iterator[TrainingRun]:
        """Check the name (for a model of ``kind``), the precision and the plots folder before
        any data is read; hold the run lock of ``name``; resume its interrupted run, or refuse
        to discard one without ``restart``."""
        store = store or ModelStore()
        # A resumed run takes its recipe (hence its kind) from the checkpoint, whatever the
        # command line's defaults say (the printed resume command carries no --arch).
        store.check_new_name(name, kind=None if resume else kind)
        check_precision(engine.precision)
        if plots_dir is not None:
            ensure_writable_folder(plots_dir, "--plots")
        with store.exclusive_run(name):
            saved = checkpointing.checkpoint_to_resume(store, name, resume=resume, restart=restart)
            yield cls(store, name, saved)

    def settings(
        self, recipe_type: type[RecipeT], config: RecipeT, engine: EngineConfig
    ) -> tuple[RecipeT, EngineConfig]:
        """The recipe and engine to train with: the interrupted run's when resuming."""
        if self.saved is None:
            return config, engine
        # Two recipes may make models of one kind (fmt ae train --arch unet and fmt gan gate
        # both make denoisers): only the command that started a run can read its checkpoint.
        started_by = self.saved[1].get("command", recipe_type.COMMAND)
        if started_by != recipe_type.COMMAND:
            raise UsageError(
                f"the interrupted run of {self.name!r} was started by {started_by}; resume it "
                f"with {started_by} --name {self.name} --resume, or start again with --restart"
            )
        return checkpointing.settings_from_checkpoint(recipe_type, self.saved[1], engine, self.name)

    def saved_value(self, key: str, default: Any) -> Any:
        """A value the interrupted run recorded (``default`` for a fresh run)."""
        return default if self.saved is None else self.saved[1].get(key, default)

    def begin(
        self,
        training: Resumable,
        state: LoopState,
        *,
        description: dict[str, Any],
        data_sha256: str,
        device: torch.device,
        notes: dict[str, Any] | None = None,
    ) -> None:
        """Start the clock; restore ``training`` and ``state`` when resuming.

        ``description`` (kind, model spec, recipe, engine, ...) and ``notes`` (e.g. provenance)
        go into every checkpoint and the saved config, around the common fields.
        """
        self._training, self._state = training, state
        self._description, self._notes = description, notes or {}
        self._data_sha256 = data_sha256
        self.device_name = describe_device(device)
        if self.saved is not None:
            self._elapsed_before = checkpointing.restore_run(
                self.saved, state, name=self.name, data_sha256=data_sha256, restore=training.restore
            )
        self.resumed_from = state.epoch
        self._started = time.perf_counter()

    def metadata(self) -> dict[str, Any]:
        """What every checkpoint and saved config of the run records."""
        assert self._state is not None, "begin() first"
        return {
            "name": self.name,
            **self._description,
            "data_sha256": self._data_sha256,
            "history": self._state.history,
            "seconds": self._elapsed_before + time.perf_counter() - self._started,
            "device": self.device_name,
            "toolkit_version": __version__,
            **self._notes,
        }

    def _collect(self, state: LoopState) -> Checkpoint:
        assert self._training is not None, "begin() first"
        tensors, meta = self._training.checkpoint()
        return tensors, {**self.metadata(), "epoch": state.epoch, **meta}

    def _write(self, checkpoint: Checkpoint) -> None:
        try:
            self.store.save_checkpoint(self.name, *checkpoint)
        except OSError as error:
            raise self._cannot_save("its checkpoint", error, self.checkpoints.saved_epoch) from None

    def _cannot_save(self, what: str, error: OSError, saved: int | None = None) -> ToolkitError:
        """A full disk or a read-only store, said with what is kept (``saved``: the epoch on
        disk, default what it will be when the run ends) and how to go on."""
        saved = self.checkpoints.kept_epoch if saved is None else saved
        kept = (
            f"the checkpoint of epoch {saved} is kept: make room or fix the folder, then run "
            "the same command with --resume"
            if saved
            else "nothing was kept"
        )
        reason = error.strerror or str(error)
        return ToolkitError(
            f"cannot save {what} of {self.name!r} in {self.store.root} ({reason}); {kept}"
        )

    def fit(
        self,
        train: Callable[[Sequence[Callback]], object],
        callbacks: Sequence[Callback] = (),
        *,
        before: Sequence[Callback] = (),
    ) -> None:
        """Call ``train`` with the callbacks to pass to the loop: the divergence check (nothing
        diverged is kept), ``before``, the checkpoints, then ``callbacks`` (once progress
        reports an epoch, its checkpoint is kept)."""
        epochs = self._state.epochs if self._state is not None else 0
        try:
            train([StopOnDivergence(self.checkpoints), *before, self.checkpoints, *callbacks])
        except KeyboardInterrupt:
            saved = self.checkpoints.saved_epoch
            raise TrainingInterrupted(
                f"interrupted; {saved}/{epochs} epochs are saved in a checkpoint",
                model_name=self.name,
                completed_epochs=saved,
            ) from None

    def _saved_config(self, results: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.metadata(),
            **results,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def save_snapshot(
        self, name: str, weights: dict[str, torch.Tensor], results: dict[str, Any]
    ) -> Path:
        """Save a model of the run as it is now under another ``name``; training goes on."""
        try:
            return self.store.save(name, weights, self._saved_config({"name": name, **results}))
        except OSError as error:
            raise self._cannot_save(f"the snapshot {name!r}", error) from None

    def save(self, weights: dict[str, torch.Tensor], results: dict[str, Any]) -> Path:
        """Save the model with the run's metadata plus ``results``; drop the checkpoint."""
        meta = self._saved_config(results)
        self.seconds = meta["seconds"]
        try:
            path = self.store.save(self.name, weights, meta)
        except OSError as error:
            raise self._cannot_save("the model", error) from None
        self.store.remove_checkpoint(self.name)
        return path
