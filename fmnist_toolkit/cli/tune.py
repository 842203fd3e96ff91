"""``fmt ae tune``: the Optuna search over the autoencoder's recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fmnist_toolkit.cli._options import (
    CompileOption,
    CudaGraphsOption,
    DataDirOption,
    DeviceOption,
    JsonOption,
    Precision,
    PrecisionOption,
    QuietOption,
    SeedOption,
    check_resume_or_restart,
    choices,
    engine_config,
)
from fmnist_toolkit.cli._render import (
    console,
    note_if_hiding_bundled,
    print_json,
    print_result,
    resume_hint,
)
from fmnist_toolkit.config import SEARCH_DIMENSIONS

if TYPE_CHECKING:
    from fmnist_toolkit.engine.tune import StudyReport, TrialRow

SEARCH = "Search"
STORAGE = "Storage and workers"
BEST = "Best recipe (--train-best)"


SearchDimension = choices("SearchDimension", SEARCH_DIMENSIONS)


def _format_params(params: dict[str, Any]) -> str:
    return "  ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in params.items()
    )


def _trial_line(row: TrialRow, best: TrialRow | None) -> str:
    value = f"val_mse {row.value:.5f}" if row.value is not None else "no value"
    took = f"{row.epochs} epochs, {row.seconds:.0f}s" if row.seconds is not None else ""
    best_text = f"  best {best.value:.5f} (#{best.number})" if best and best.value else ""
    params = _format_params(row.params)
    return f"trial {row.number:>3} {row.state:<8} {value}  {params}  ({took}){best_text}"


def _row_json(row: TrialRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "number": row.number,
        "state": row.state,
        "val_mse": row.value,
        "params": row.params,
        "epochs": row.epochs,
        "seconds": row.seconds,
    }


def _render(report: StudyReport) -> None:
    from rich.table import Table

    table = Table(title=f"Study {report.study} ({report.storage})")
    for column in ("trial", "state", "val MSE", "epochs", "parameters"):
        table.add_column(column, justify="right" if column in ("trial", "epochs") else "left")
    for row in report.trials:
        style = "bold green" if report.best and row.number == report.best.number else None
        value = f"{row.value:.5f}" if row.value is not None else "—"
        table.add_row(
            str(row.number),
            row.state,
            value,
            str(row.epochs),
            _format_params(row.params),
            style=style,
        )
    print_result(table)
    counts = ", ".join(f"{count} {state}" for state, count in sorted(report.counts().items()))
    print_result(f"{len(report.trials)} trials ({counts}); {report.trials_run} run now")
    if report.best is not None:
        print_result(
            f"[bold]best[/bold]: trial {report.best.number}, validation MSE "
            f"{report.best.value:.6f}: {_format_params(report.best.params)}",
        )
    for path in report.plots:
        print_result(f"plot: {path}")
    if report.trained is not None:
        trained = report.trained
        print_result(
            f"[bold]trained[/bold] {trained.name}: test MSE {trained.test_mse:.6f} after "
            f"{trained.epochs} epochs ({trained.seconds:.0f}s) → {trained.path}",
        )


def tune(
    ctx: typer.Context,
    study: Annotated[
        str,
        typer.Option(
            help="Study name; running again with the same name adds trials to it.",
            show_default=False,
        ),
    ],
    trials: Annotated[
        int,
        typer.Option(
            min=0,
            help="Trials this run adds (each worker counts its own). 0: only show the study.",
            rich_help_panel=SEARCH,
        ),
    ] = 20,
    timeout: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="Seconds after which no new trial starts (the running one finishes).",
            show_default=False,
            rich_help_panel=SEARCH,
        ),
    ] = None,
    epochs: Annotated[
        int, typer.Option(min=1, help="Epochs per trial.", rich_help_panel=SEARCH)
    ] = 10,
    latent_dim: Annotated[
        int, typer.Option(min=1, max=4096, help="Fixed latent size.", rich_help_panel=SEARCH)
    ] = 16,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the training set held out to score trials (the same images for "
            "every trial of the study; the test set is never used).",
            rich_help_panel=SEARCH,
        ),
    ] = 0.1,
    search: Annotated[
        list[SearchDimension] | None,
        typer.Option(
            help="Widen the report's space (optimizer adam/sgd, lr 1e-4..1e-3, weight decay "
            "1e-5..1e-3): architecture adds seed/wide, batch-size adds 64/128/256/512, "
            "schedule adds constant/cosine/onecycle/warmup-cosine and widens lr to 1e-4..1e-2. "
            "Repeat to add several.",
            show_default=False,
            rich_help_panel=SEARCH,
        ),
    ] = None,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune/--no-prune",
            help="Stop hopeless trials early (Optuna's median pruner, after 5 trials and 2 "
            "epochs).",
            rich_help_panel=SEARCH,
        ),
    ] = True,
    storage: Annotated[
        str | None,
        typer.Option(
            envvar="FMT_TUNE_STORAGE",
            help="Where the study lives: any Optuna storage URL (sqlite:///file.db, "
            "postgresql://user:pw@host/db, mysql+pymysql://…), or journal:PATH for a journal "
            "file on a shared file system. Default: a SQLite file in the model store.",
            show_default=False,
            rich_help_panel=STORAGE,
        ),
    ] = None,
    heartbeat: Annotated[
        int,
        typer.Option(
            min=0,
            help="Seconds between a running trial's heartbeats (database storages): a worker "
            "silent for twice as long is taken for dead, its trial failed and retried once. "
            "0 turns it off.",
            rich_help_panel=STORAGE,
        ),
    ] = 60,
    plots: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            help="Write Optuna's optimisation history, parallel coordinates and parameter "
            "importances as PNGs into this folder.",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    train_best: Annotated[
        bool,
        typer.Option(
            "--train-best",
            help="Then train the best trial's recipe on the whole training set and save it.",
            rich_help_panel=BEST,
        ),
    ] = False,
    best_epochs: Annotated[
        int,
        typer.Option(min=1, help="Epochs of the --train-best run.", rich_help_panel=BEST),
    ] = 60,
    name: Annotated[
        str | None,
        typer.Option(
            help="Store name of the --train-best model. Default: ae-STUDY.",
            show_default=False,
            rich_help_panel=BEST,
        ),
    ] = None,
    resume_best: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="--train-best only: continue its interrupted run (as fmt ae train --name "
            "NAME --resume does).",
            rich_help_panel=BEST,
        ),
    ] = False,
    restart_best: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="--train-best only: discard its interrupted run and start it over.",
            rich_help_panel=BEST,
        ),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Trials at once, each in its own process, sharing the study's storage. "
            "Default: 4 on a GPU (one trial is far from filling it), 1 on a CPU.",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    precision: PrecisionOption = Precision.auto,
    compile_model: CompileOption = False,
    cuda_graphs: CudaGraphsOption = True,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Search the autoencoder's recipe with Optuna, scored on a held-out validation split.

    Each trial trains for --epochs and reports its validation MSE every epoch, so hopeless
    ones are pruned. The sampler (TPE) is seeded by --seed and the trial's number. Several
    workers, on one machine or many, can run the same command against one --storage at once:
    they share the study's trials. Ctrl-C fails the running trial; the study stays usable.

    Examples:

    * `fmt ae tune --study report --trials 30 --plots plots/ --train-best`
    * `fmt ae tune --study report --trials 0` shows the study, `--json` for scripts
    * `fmt ae tune --study big --storage postgresql+psycopg://fmt@db/fmt` on every machine
    """
    from fmnist_toolkit.config import TuneConfig
    from fmnist_toolkit.engine.callbacks import ProgressCallback
    from fmnist_toolkit.engine.checkpoint import check_resumable
    from fmnist_toolkit.engine.tune import run_study
    from fmnist_toolkit.engine.tune import train_best as train_best_recipe
    from fmnist_toolkit.errors import UsageError
    from fmnist_toolkit.storage import ModelStore

    tune_config = TuneConfig(
        study=study,
        trials=trials,
        timeout=timeout,
        epochs=epochs,
        latent_dim=latent_dim,
        val_fraction=val_fraction,
        prune=prune,
        seed=seed,
        search=tuple(sorted({SearchDimension(item).value for item in search or ()})),
    )
    engine = engine_config(device, precision, cuda_graphs, compile_model=compile_model)
    check_resume_or_restart(resume_best, restart_best)
    model_name = name or f"ae-{study}"
    if train_best:  # before the search: a bad name must not cost hours of trials
        store = ModelStore()
        store.check_new_name(model_name, kind="autoencoder")
        check_resumable(store, model_name, resume=resume_best, restart=restart_best)
    elif resume_best or restart_best or name:
        flag = "--resume" if resume_best else "--restart" if restart_best else "--name"
        raise UsageError(f"{flag} is for the --train-best run: add --train-best")

    def epoch_callbacks(number: int) -> list[ProgressCallback]:
        # A bar per trial on a terminal; in logs the one line per finished trial is enough.
        hidden = quiet or not console.is_terminal
        return [ProgressCallback(console, label=f"trial {number}", quiet=hidden)]

    def on_trial_end(row: TrialRow, best: TrialRow | None) -> None:
        if not quiet:
            console.print(_trial_line(row, best), highlight=False, soft_wrap=True)

    report = run_study(
        tune_config,
        engine,
        storage_url=storage,
        heartbeat=heartbeat,
        data_dir=data_dir,
        plots_dir=plots,
        epoch_callbacks=epoch_callbacks,
        on_trial_end=on_trial_end,
        jobs=jobs,
    )
    if train_best:
        # The run checkpoints like fmt ae train's, which resumes it with the study recorded.
        resumer = ctx.command_path.rsplit(" ", 1)[0] + " train"
        with resume_hint(ctx, model_name, command_path=resumer):
            report.trained = train_best_recipe(
                report,
                tune_config,
                engine,
                name=model_name,
                epochs=best_epochs,
                data_dir=data_dir,
                plots_dir=plots,
                callbacks=[ProgressCallback(console, label=model_name, quiet=quiet)],
                resume=resume_best,
                restart=restart_best,
            )
        note_if_hiding_bundled(model_name)
    if json_output:
        trained = report.trained
        print_json(
            {
                "study": report.study,
                "storage": report.storage,
                "setup": report.setup,
                "trials_run": report.trials_run,
                "counts": report.counts(),
                "best": _row_json(report.best),
                "trials": [_row_json(row) for row in report.trials],
                "plots": [str(path) for path in report.plots],
                "trained": None
                if trained is None
                else {
                    "name": trained.name,
                    "path": str(trained.path),
                    "epochs": trained.epochs,
                    "test_mse": trained.test_mse,
                    "seconds": round(trained.seconds, 3),
                },
            }
        )
        return
    _render(report)
