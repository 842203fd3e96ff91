"""Parallel trials: one study optimised by several worker processes on one machine, each
with its share of the CPU threads, reporting every trial's end back to the parent."""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import EngineConfig, TuneConfig
from fmnist_toolkit.data import dataset_sha256
from fmnist_toolkit.engine.device import resolve_device
from fmnist_toolkit.engine.loop import Callback, LoopState
from fmnist_toolkit.engine.tune_storage import open_storage, quiet_optuna
from fmnist_toolkit.errors import StudyStorageError, ToolkitError, TuningInterrupted

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

    from fmnist_toolkit.engine.tune import TrialRow


# --------------------------------------------------------------------------- parallel trials

WORKER_STOP_SECONDS = 3  # after a Ctrl-C, before the workers that did not stop are sent one
GPU_JOBS = 4  # trials at once on one GPU: each is launch-bound, far from filling it


def default_jobs(engine: EngineConfig, trials: int) -> int:
    """Trials at once by default: enough to fill a GPU; one on a CPU (a trial uses every core)."""
    if resolve_device(engine.device).type == "cuda":
        return max(1, min(GPU_JOBS, trials))
    return 1


def optimize_in_processes(
    tune: TuneConfig,
    engine: EngineConfig,
    storage: BaseStorage,
    storage_url: tuple[str, int],
    data_dir: str | os.PathLike[str] | None,
    jobs: int,
    on_trial_end: Callable[[TrialRow, TrialRow | None], None] | None,
) -> tuple[optuna.Study, int]:
    """Run ``tune.trials`` trials in ``jobs`` worker processes that share the study's storage
    (as workers on many machines do; ``storage_url`` is its URL and heartbeat, for them to
    open it); each trial's end is reported here as it comes."""
    import multiprocessing
    import queue as queues

    from fmnist_toolkit.data import load_fashion_mnist
    from fmnist_toolkit.engine.tune import load_or_create_study  # the study's own module

    images, labels = load_fashion_mnist("train", data_dir)
    # Created here, once, so that the workers only load it.
    study = load_or_create_study(
        tune, storage, create=True, data_sha256=dataset_sha256(images, labels)
    )
    before = {trial.number for trial in study.get_trials(deepcopy=False)}
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    messages = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // jobs)
    shares = [tune.trials // jobs + (index < tune.trials % jobs) for index in range(jobs)]
    workers = [
        context.Process(
            target=tuning_worker,
            args=(dataclasses.replace(tune, trials=share), engine, *storage_url, data_dir),
            kwargs={"messages": messages, "threads": threads},
            daemon=True,
        )
        for share in shares
    ]
    for worker in workers:
        worker.start()
    errors: list[str] = []
    running = len(workers)
    try:
        while running:
            try:
                message = messages.get(timeout=1.0)
            except queues.Empty:
                if not any(worker.is_alive() for worker in workers) and messages.empty():
                    break  # a worker died without a word (killed): the study says what it did
                continue
            if message is None:
                running -= 1
            elif isinstance(message, str):
                errors.append(message)
            elif on_trial_end is not None:
                on_trial_end(*message)
    except KeyboardInterrupt:
        # A Ctrl-C reaches the workers too (one process group): each records its running trial
        # as failed and stops. A SIGINT sent to this process alone (a supervisor's kill -INT)
        # does not: pass it on to those still running a moment later.
        deadline = time.monotonic() + WORKER_STOP_SECONDS
        for worker in workers:
            worker.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in workers:  # one already stopping only hears it again (_ask_to_stop)
            if worker.is_alive() and worker.pid is not None:
                os.kill(worker.pid, signal.SIGINT)
        for worker in workers:
            worker.join(timeout=60)
        raise TuningInterrupted(
            "interrupted; the running trials were recorded as failed and "
            f"{kept_trials(study, tune.study)}; run the same command to add more"
        ) from None
    for worker in workers:
        worker.join()
    if errors:
        raise StudyStorageError(errors[0])
    after = study.get_trials(deepcopy=False)
    return study, len([trial for trial in after if trial.number not in before])


def tuning_worker(
    tune: TuneConfig,
    engine: EngineConfig,
    url: str,
    heartbeat: int,
    data_dir: str | os.PathLike[str] | None,
    *,
    messages: Any,
    threads: int,
) -> None:
    """One worker process of :func:`optimize_in_processes`: its share of the trials, each
    trial's end sent back as (row, best); an error as its one-line message; None when done.

    SIGINT and SIGTERM (a Ctrl-C, or a stop sent to the whole process group) stop it at the
    end of the running batch, which fails the running trial: never in the middle of a write to
    the study's storage, which would leave the trial RUNNING and print a traceback."""
    signal.signal(signal.SIGINT, _ask_to_stop)
    signal.signal(signal.SIGTERM, _ask_to_stop)
    try:
        import torch

        from fmnist_toolkit.engine.tune import _optimize  # the study's loop, as run_study's

        torch.set_num_threads(threads)
        with quiet_optuna():
            storage = open_storage(url, heartbeat=heartbeat)
            _optimize(
                tune,
                engine,
                storage,
                data_dir,
                lambda number: (_StopWhenAsked(),),
                lambda row, best: messages.put((row, best)),
            )
    except (KeyboardInterrupt, TuningInterrupted):
        pass  # the parent reports the interruption
    except ToolkitError as error:
        messages.put(str(error))
    finally:
        messages.put(None)


_stop_asked = False  # set by a worker's SIGINT or SIGTERM, acted on at a batch's end


def _ask_to_stop(signum: int, frame: object) -> None:
    global _stop_asked
    _stop_asked = True


class _StopWhenAsked(Callback):
    """Raises the worker's interruption where it is safe: between two training batches."""

    def on_batch_end(self, state: LoopState) -> None:
        if _stop_asked:
            raise KeyboardInterrupt


def kept_trials(study: optuna.Study, name: str) -> str:
    """What an interrupted study keeps, e.g. "study 's' keeps 3 complete trials (1 pruned)"."""
    import optuna

    states = optuna.trial.TrialState
    complete = len(study.get_trials(deepcopy=False, states=(states.COMPLETE,)))
    pruned = len(study.get_trials(deepcopy=False, states=(states.PRUNED,)))
    plural = "" if complete == 1 else "s"
    return f"study {name!r} keeps {complete} complete trial{plural}" + (
        f" ({pruned} pruned)" if pruned else ""
    )
