"""Hyper-parameter search for the autoencoder with Optuna: one study, any number of workers.

Every trial trains on the same seeded 90 % of the training set and is scored by its MSE on the
held-out rest (never the test set). Studies live in any storage Optuna opens: by default one
SQLite file in the model store; a PostgreSQL/MySQL URL or a journal file lets workers on
several machines share one study.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import (
    SEARCH_DIMENSIONS,
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
from fmnist_toolkit.engine.device import check_precision, resolve_device
from fmnist_toolkit.engine.loop import Callback, LoopState
from fmnist_toolkit.engine.outputs import ensure_writable_folder
from fmnist_toolkit.engine.tune_search import (
    BATCH_SIZES,
    PruneOrReport,
    make_sampler,
    recipe_from_params,
    suggest_recipe,
)
from fmnist_toolkit.engine.tune_storage import (
    DEFAULT_HEARTBEAT,
    JOURNAL_PREFIX,
    default_storage_url,
    open_storage,
    quiet_optuna,
    shown_url,
)
from fmnist_toolkit.engine.tune_workers import (
    default_jobs,
    kept_trials,
    optimize_in_processes,
    tuning_worker,
)
from fmnist_toolkit.errors import StudyNotFoundError, TuningInterrupted, UsageError
from fmnist_toolkit.storage import ModelStore

# Re-exported: the search space, the storages and the workers have their own modules.
__all__ = [
    "BATCH_SIZES",
    "DEFAULT_HEARTBEAT",
    "JOURNAL_PREFIX",
    "PruneOrReport",
    "StudyReport",
    "TrialRow",
    "default_jobs",
    "default_storage_url",
    "make_sampler",
    "open_storage",
    "optimize_in_processes",
    "quiet_optuna",
    "recipe_from_params",
    "run_study",
    "shown_url",
    "suggest_recipe",
    "train_best",
    "tuning_worker",
]

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial


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
        raise TuningInterrupted(
            "interrupted; the running trial was recorded as failed and "
            f"{kept_trials(study, tune.study)}; run the same command to add more"
        ) from None
    after = study.get_trials(deepcopy=False)
    return study, len([trial for trial in after if trial.number not in before])


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
    resume: bool = False,
    restart: bool = False,
) -> AutoencoderTrainResult:
    """Train the best trial's recipe on the whole training set for ``epochs`` and save it
    like ``fmt ae train``, recording the study and trial in the model's config; ``resume``
    and ``restart`` as for :func:`train_autoencoder`."""
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
        resume=resume,
        restart=restart,
    )
