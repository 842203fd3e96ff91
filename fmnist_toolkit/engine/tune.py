"""Hyper-parameter search for the autoencoder with Optuna: one study, any number of workers.

Every trial trains on the same seeded 90 % of the training set and is scored by its MSE on the
held-out rest (never the test set). Studies live in any storage Optuna opens: by default one
SQLite file in the model store; a PostgreSQL/MySQL URL or a journal file lets workers on
several machines share one study.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import (
    SEARCH_DIMENSIONS,
    AutoencoderTrainConfig,
    EngineConfig,
    TuneConfig,
    config_to_dict,
)
from fmnist_toolkit.data import DeviceSplit, dataset_sha256, split_indices
from fmnist_toolkit.engine.ae import (
    AutoencoderTraining,
    AutoencoderTrainResult,
    check_train_config,
    train_autoencoder,
)
from fmnist_toolkit.engine.device import (
    check_precision,
    resolve_device,
)
from fmnist_toolkit.engine.loop import Callback, LoopState
from fmnist_toolkit.engine.outputs import ensure_writable_folder
from fmnist_toolkit.errors import (
    StudyNotFoundError,
    StudyStorageError,
    TuningInterrupted,
    UsageError,
)
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    import optuna
    from optuna.samplers import BaseSampler
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

JOURNAL_PREFIX = "journal:"
DEFAULT_HEARTBEAT = 60  # seconds between a running trial's heartbeats (RDB storages)
BATCH_SIZES = (64, 128, 256, 512)
SCHEMA_RACE_SIGNS = ("already exists", "UNIQUE constraint failed", "duplicate key")


@dataclass
class TrialRow:
    """One trial as ``fmt ae tune`` shows it."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    epochs: int  # epochs it reported before finishing or being pruned
    seconds: float | None


@dataclass
class StudyReport:
    """What a run of ``fmt ae tune`` reports: the study, its best trial and every trial."""

    study: str
    storage: str  # password hidden
    setup: dict[str, Any]
    trials_run: int  # by this run
    best: TrialRow | None
    trials: list[TrialRow]
    plots: list[Path] = field(default_factory=list)
    trained: AutoencoderTrainResult | None = None

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.trials:
            counts[row.state] = counts.get(row.state, 0) + 1
        return counts


# --------------------------------------------------------------------------- storage


def default_storage_url(store: ModelStore) -> str:
    """One SQLite file in the model store: tuning works with no set-up."""
    store.root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store.root / 'studies.sqlite3'}"


def shown_url(url: str) -> str:
    """The URL with any password replaced by ***, fit for logs and configs."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL has no password we could find either
        return url


def open_storage(url: str, *, heartbeat: int = DEFAULT_HEARTBEAT) -> BaseStorage:
    """Open an Optuna storage: ``journal:PATH`` for a journal file, else an SQLAlchemy URL.

    RDB storages get Optuna's heartbeat: a trial whose worker died (SIGKILL, a lost machine)
    is marked failed by the next worker after ``2 * heartbeat`` seconds and retried once.
    """
    import optuna

    try:
        if url.startswith(JOURNAL_PREFIX):
            from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

            path = Path(url.removeprefix(JOURNAL_PREFIX).removeprefix("//")).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            # The open(2)-based lock also works on NFS, where symlink locks may not.
            backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
            return optuna.storages.JournalStorage(backend)
        engine_kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            # Several local workers write one file: wait for the lock instead of failing.
            engine_kwargs["connect_args"] = {"timeout": 60}
        else:
            engine_kwargs["pool_pre_ping"] = True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _open_rdb_storage(url, engine_kwargs, _heartbeat_options(heartbeat))
    except ImportError as error:
        # Optuna wraps the driver's ModuleNotFoundError in an ImportError of its own.
        missing = error.name or getattr(error.__cause__, "name", None) or "a database driver"
        extra = {"psycopg": "postgres", "psycopg2": "postgres", "pymysql": "mysql"}.get(missing)
        hint = f"; install it with: pip install 'fmnist-toolkit[{extra}]'" if extra else ""
        raise StudyStorageError(
            f"cannot open storage {shown_url(url)}: {missing!r} is not installed{hint}"
        ) from None
    except Exception as error:  # SQLAlchemy, the driver or the file system: all one line
        reason = " ".join(str(error).split("\n")[0].split()) or type(error).__name__
        raise StudyStorageError(f"cannot open storage {shown_url(url)}: {reason}") from None


def _open_rdb_storage(
    url: str, engine_kwargs: dict[str, Any], options: dict[str, Any]
) -> BaseStorage:
    """RDBStorage, retried when workers started together race to create its tables."""
    import optuna

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **options)
        except Exception as error:
            # Another worker created the schema (tables, alembic's version row) between our
            # check and our write: the second attempt finds it complete.
            if not any(sign in str(error) for sign in SCHEMA_RACE_SIGNS) or attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _heartbeat_options(heartbeat: int) -> dict[str, Any]:
    """RDBStorage arguments: heartbeat, grace period, and one retry of a dead worker's trial."""
    import optuna

    if heartbeat <= 0:
        return {}
    options: dict[str, Any] = {"heartbeat_interval": heartbeat, "grace_period": 2 * heartbeat}
    # Optuna 4.9 renamed the callback and its argument; older releases know only the old names.
    if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
        options["heartbeat_stale_trial_callback"] = retry
    else:  # pragma: no cover - Optuna < 4.9
        options["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=1)
    return options


# --------------------------------------------------------------------------- sampling


def make_sampler(seed: int) -> BaseSampler:
    """TPE, seeded per trial from ``seed`` and the trial's number.

    The number is unique in the study, so concurrent workers with the same ``--seed`` never
    sample the same parameters, while one worker's study stays reproducible.
    """
    import optuna

    class TrialSeededTPESampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._current = self._tpe(seed)

        @staticmethod
        def _tpe(trial_seed: int) -> optuna.samplers.TPESampler:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # The constant liar keeps parallel workers from crowding one region.
                return optuna.samplers.TPESampler(seed=trial_seed, constant_liar=True)

        def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
            self._current = self._tpe(seed * 100_003 + trial.number)
            self._current.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
            return self._current.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
            return self._current.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
            return self._current.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
            self._current.after_trial(study, trial, state, values)

    return TrialSeededTPESampler()


def suggest_recipe(trial: optuna.Trial, tune: TuneConfig) -> AutoencoderTrainConfig:
    """The report's space (optimizer, lr 1e-4..1e-3, weight decay 1e-5..1e-3, both log),
    widened by ``tune.search``."""
    params: dict[str, Any] = {
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd"]),
        "lr": trial.suggest_float("lr", 1e-4, 1e-3, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True),
    }
    if "architecture" in tune.search:
        params["architecture"] = trial.suggest_categorical("architecture", ["seed", "wide"])
    if "batch-size" in tune.search:
        params["batch_size"] = trial.suggest_categorical("batch_size", list(BATCH_SIZES))
    if "schedule" in tune.search:
        params["schedule"] = trial.suggest_categorical("schedule", ["constant", "cosine"])
    return recipe_from_params(params, tune, epochs=tune.epochs)


def recipe_from_params(
    params: dict[str, Any], tune: TuneConfig, *, epochs: int
) -> AutoencoderTrainConfig:
    """A trial's parameters as an ``fmt ae train`` recipe (unsearched fields: the defaults)."""
    names = {f.name for f in dataclasses.fields(AutoencoderTrainConfig)}
    chosen = {key: value for key, value in params.items() if key in names}
    return AutoencoderTrainConfig(
        **{**chosen, "latent_dim": tune.latent_dim, "epochs": epochs, "seed": tune.seed}
    )


class PruneOrReport(Callback):
    """Reports the validation MSE to the trial each epoch and stops it when Optuna prunes."""

    def __init__(self, trial: optuna.Trial, *, prune: bool) -> None:
        self.trial = trial
        self.prune = prune

    def on_epoch_end(self, state: LoopState) -> None:
        import optuna

        value = state.last["val_mse"]
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"the validation MSE is {value} at epoch {state.epoch}")
        self.trial.report(value, step=state.epoch)
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {state.epoch}")


# --------------------------------------------------------------------------- the study


def check_tune_config(tune: TuneConfig) -> None:
    """Values that can never search: a usage error before any data is read."""
    if tune.trials < 0 or tune.epochs < 1 or tune.latent_dim < 1:
        raise UsageError("--trials must be >= 0, --epochs and --latent-dim >= 1")
    if tune.timeout is not None and not tune.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds")
    if not 0 < tune.val_fraction < 1:
        raise UsageError(f"--val-fraction must be between 0 and 1, not {tune.val_fraction}")
    unknown = sorted(set(tune.search) - set(SEARCH_DIMENSIONS))
    if unknown:
        raise UsageError(f"cannot search {', '.join(unknown)}; use {', '.join(SEARCH_DIMENSIONS)}")
    if not tune.study.strip():
        raise UsageError("--study needs a name")


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every trial (a failed one with a traceback); the CLI shows its own lines."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def load_or_create_study(
    tune: TuneConfig, storage: BaseStorage, *, create: bool, data_sha256: str | None
) -> optuna.Study:
    """The study named ``tune.study``; a new one records its set-up, an old one must match it."""
    import optuna

    sampler = make_sampler(tune.seed)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
        if tune.prune
        else optuna.pruners.NopPruner()
    )
    if not create:
        try:
            return optuna.load_study(
                study_name=tune.study, storage=storage, sampler=sampler, pruner=pruner
            )
        except KeyError:
            names = [summary.study_name for summary in storage.get_all_studies()]
            known = f"; studies here: {', '.join(sorted(names))}" if names else "; it has none"
            raise StudyNotFoundError(
                f"no study named {tune.study!r} in this storage{known}"
            ) from None
    study = optuna.create_study(
        study_name=tune.study,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction="minimize",
        load_if_exists=True,
    )
    setup = {**tune.setup(), "data_sha256": data_sha256}
    recorded = study.user_attrs.get("setup")
    if recorded is None:
        study.set_user_attr("setup", setup)
        study.set_user_attr("objective", "validation MSE per pixel")
    elif recorded != setup:
        differences = ", ".join(
            f"{key} {recorded.get(key)!r} (now {value!r})"
            for key, value in setup.items()
            if recorded.get(key) != value
        )
        raise UsageError(
            f"study {tune.study!r} was searched with other settings: {differences}; "
            "use the same ones to add trials, or a new --study"
        )
    return study


def trial_row(trial: FrozenTrial) -> TrialRow:
    """A frozen trial as a table row."""
    seconds = trial.duration.total_seconds() if trial.duration is not None else None
    return TrialRow(
        number=trial.number,
        state=trial.state.name.lower(),
        value=trial.value if trial.value is not None else None,
        params=dict(trial.params),
        epochs=len(trial.intermediate_values),
        seconds=seconds,
    )


def best_row(study: optuna.Study) -> TrialRow | None:
    """The best complete trial, or None before the first one finishes."""
    try:
        return trial_row(study.best_trial)
    except ValueError:
        return None


def run_study(
    tune: TuneConfig,
    engine: EngineConfig,
    *,
    storage_url: str | None = None,
    heartbeat: int = DEFAULT_HEARTBEAT,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    plots_dir: Path | None = None,
    epoch_callbacks: Callable[[int], Sequence[Callback]] = lambda number: (),
    on_trial_end: Callable[[TrialRow, TrialRow | None], None] | None = None,
    jobs: int | None = 1,
) -> StudyReport:
    """Add ``tune.trials`` trials to the study (creating it if new) and report on it.

    With ``tune.trials == 0`` the study must exist and is only read. Ctrl-C ends the running
    trial (Optuna records it as failed) and raises :class:`TuningInterrupted`; the study stays
    usable and the next run goes on adding trials. ``jobs`` > 1 runs the trials in that many
    processes at once (None: :func:`default_jobs`), sharing the study's storage.
    """
    check_tune_config(tune)
    check_precision(engine.precision)
    store = store or ModelStore()
    url = storage_url or default_storage_url(store)
    if plots_dir is not None:
        ensure_writable_folder(plots_dir, "--plots")

    with quiet_optuna():
        storage = open_storage(url, heartbeat=heartbeat)
        trials_run = 0
        jobs = default_jobs(engine, tune.trials) if jobs is None else jobs
        if jobs < 1:
            raise UsageError("--jobs must be at least 1")
        if tune.trials == 0:
            study = load_or_create_study(tune, storage, create=False, data_sha256=None)
        elif jobs > 1 and tune.trials > 1:
            study, trials_run = optimize_in_processes(
                tune,
                engine,
                storage,
                (url, heartbeat),
                data_dir,
                min(jobs, tune.trials),
                on_trial_end,
            )
        else:
            study, trials_run = _optimize(
                tune, engine, storage, data_dir, epoch_callbacks, on_trial_end
            )
        rows = [trial_row(trial) for trial in study.get_trials(deepcopy=False)]
        plots = write_study_plots(study, plots_dir) if plots_dir is not None else []
        return StudyReport(
            study=tune.study,
            storage=shown_url(url),
            setup=study.user_attrs.get("setup", {}),
            trials_run=trials_run,
            best=best_row(study),
            trials=rows,
            plots=plots,
        )


def _optimize(
    tune: TuneConfig,
    engine: EngineConfig,
    storage: BaseStorage,
    data_dir: str | os.PathLike[str] | None,
    epoch_callbacks: Callable[[int], Sequence[Callback]],
    on_trial_end: Callable[[TrialRow, TrialRow | None], None] | None,
) -> tuple[optuna.Study, int]:
    device = resolve_device(engine.device)
    train = DeviceSplit.load("train", data_dir, device)
    data_sha256 = dataset_sha256(train.images, train.labels)
    fit_index, val_index = split_indices(len(train), tune.val_fraction, seed=tune.seed)
    fit_split, val_split = train.subset(fit_index), train.subset(val_index)
    study = load_or_create_study(tune, storage, create=True, data_sha256=data_sha256)

    def objective(trial: optuna.Trial) -> float:
        config = suggest_recipe(trial, tune)
        check_train_config(config)
        trial.set_user_attr("recipe", config_to_dict(config))
        run = AutoencoderTraining.build(config, engine, device)
        state = LoopState(
            epochs=config.epochs, batches_per_epoch=fit_split.num_batches(config.batch_size)
        )
        run.fit(
            fit_split,
            state,
            evaluate=lambda: {"val_mse": run.mse(val_split)},
            callbacks=[PruneOrReport(trial, prune=tune.prune), *epoch_callbacks(trial.number)],
        )
        return state.last["val_mse"]

    def report(study: optuna.Study, trial: FrozenTrial) -> None:
        if on_trial_end is not None:
            on_trial_end(trial_row(trial), best_row(study))

    before = {trial.number for trial in study.get_trials(deepcopy=False)}
    try:
        study.optimize(
            objective,
            n_trials=tune.trials,
            timeout=tune.timeout,
            callbacks=[report],
            gc_after_trial=False,
        )
    except KeyboardInterrupt:
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        raise TuningInterrupted(
            f"interrupted; the running trial was recorded as failed and study {tune.study!r} "
            f"keeps its {len(finished)} finished trials; run the same command to add more"
        ) from None
    after = study.get_trials(deepcopy=False)
    return study, len([trial for trial in after if trial.number not in before])


# --------------------------------------------------------------------------- parallel trials

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
        # The workers got the same Ctrl-C: each records its running trial as failed.
        for worker in workers:
            worker.join(timeout=60)
        finished = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
        raise TuningInterrupted(
            f"interrupted; the running trials were recorded as failed and study {tune.study!r} "
            f"keeps its {len(finished)} finished trials; run the same command to add more"
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
    trial's end sent back as (row, best); an error as its one-line message; None when done."""
    import torch

    from fmnist_toolkit.errors import ToolkitError

    torch.set_num_threads(threads)
    try:
        with quiet_optuna():
            storage = open_storage(url, heartbeat=heartbeat)
            _optimize(
                tune,
                engine,
                storage,
                data_dir,
                lambda number: (),
                lambda row, best: messages.put((row, best)),
            )
    except (KeyboardInterrupt, TuningInterrupted):
        pass  # the parent reports the interruption
    except ToolkitError as error:
        messages.put(str(error))
    finally:
        messages.put(None)


# --------------------------------------------------------------------------- outputs


def write_study_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's own matplotlib plots as PNGs: history, parallel coordinates, importances.

    A plot that needs more finished trials than the study has is skipped.
    """
    import optuna
    from optuna.visualization import matplotlib as optuna_plots

    from fmnist_toolkit import plots

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    wanted: list[tuple[str, Callable[[optuna.Study], Any], int]] = [
        ("history", optuna_plots.plot_optimization_history, 1),
        ("parallel-coordinate", optuna_plots.plot_parallel_coordinate, 2),
        ("param-importances", optuna_plots.plot_param_importances, 3),
    ]
    written = []
    for suffix, draw, needed in wanted:
        if len(complete) < needed:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            axes = draw(study)
        figure = axes.figure if hasattr(axes, "figure") else axes.flat[0].figure
        if suffix == "history":
            # MSEs of good and hopeless recipes differ ten-fold: a log axis shows both.
            axes.set_yscale("log")
            axes.set_ylabel("validation MSE (log scale)")
        figure.set_size_inches(9, 5.5)
        written.append(plots.save_figure(figure, folder / f"{study.study_name}-{suffix}.png"))
        figure.clf()
    return written


def train_best(
    report: StudyReport,
    tune: TuneConfig,
    engine: EngineConfig,
    *,
    name: str,
    epochs: int,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    plots_dir: Path | None = None,
    callbacks: Sequence[Callback] = (),
) -> AutoencoderTrainResult:
    """Train the best trial's recipe on the whole training set for ``epochs`` and save it
    like ``fmt ae train``, recording the study and trial in the model's config."""
    best = report.best
    if best is None:
        raise StudyNotFoundError(
            f"study {tune.study!r} has no finished trial yet; run some trials before --train-best"
        )
    # The study's own set-up wins over this command line's (e.g. its latent size).
    tune = dataclasses.replace(tune, latent_dim=report.setup.get("latent_dim", tune.latent_dim))
    config = recipe_from_params(best.params, tune, epochs=epochs)
    provenance = {
        "study": tune.study,
        "storage": report.storage,
        "trial": best.number,
        "val_mse": best.value,
        "trial_epochs": report.setup.get("epochs"),
        "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return train_autoencoder(
        name,
        config,
        engine,
        data_dir=data_dir,
        store=store,
        plots_dir=plots_dir,
        callbacks=callbacks,
        provenance={"tuning": provenance},
    )
