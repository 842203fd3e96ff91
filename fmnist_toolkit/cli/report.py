"""``fmt report``: the course report's figures and numbers, re-made on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fmnist_toolkit.cli._options import (
    DataDirOption,
    DeviceOption,
    JsonOption,
    QuietOption,
    SeedOption,
)
from fmnist_toolkit.cli._render import console, format_duration, print_json, print_result

if TYPE_CHECKING:
    from fmnist_toolkit.engine.report import Section
    from fmnist_toolkit.engine.report_retrain import Stage, StageResult

MARKS = {"done": "✓", "partial": "~", "skipped": "-", "failed": "✗"}


class _Progress:
    """One spinner for the section or stage at work, one line on stderr when each ends."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._status: Any = None

    def _start(self, text: str) -> None:
        if self.quiet:
            return
        console.print(text, soft_wrap=True)
        self._status = console.status(text, spinner="dots")
        self._status.start()

    def _stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def section_started(self, index: int, total: int, title: str) -> None:
        self._start(f"[{index + 1}/{total}] {title}…")

    def section_finished(self, section: Section) -> None:
        self._stop()
        if self.quiet:
            return
        line = f"  {MARKS[section.status]} {section.status} in {format_duration(section.seconds)}"
        if section.error:
            line += f": {section.error}"
        console.print(line, soft_wrap=True, highlight=False, markup=False)
        for item in section.skipped:
            fix = f" ({item.command})" if item.command else ""
            console.print(
                f"    skipped {item.what}: {item.reason}{fix}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )

    def stage_started(self, index: int, total: int, stage: Stage, action: str) -> None:
        if not self.quiet:
            console.print(
                f"stage {index + 1}/{total}: {stage.title} ({stage.name}): {action}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )

    def stage_finished(self, result: StageResult) -> None:
        if not self.quiet:
            detail = f": {result.detail}" if result.status in ("failed", "skipped") else ""
            console.print(
                f"  {result.status} {result.model} in {format_duration(result.seconds)}{detail}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )


def report(
    out: Annotated[
        Path,
        typer.Argument(
            help="Folder for index.html, report.md, report.json and figures/: new, empty, or "
            "an earlier report (replaced when the new one is complete).",
            file_okay=False,
            show_default=False,
        ),
    ],
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="First train every model the report trained, with its recipes, stage by "
            "stage (hours on a CPU). Ctrl-C and the same command again goes on where it "
            "stopped; a stage whose recipe and data match a model in the store is reused.",
        ),
    ] = False,
    study: Annotated[
        str, typer.Option(help="The Optuna study drawn in the tuning section.")
    ] = "report",
    storage: Annotated[
        str | None,
        typer.Option(
            envvar="FMT_TUNE_STORAGE",
            help="The study's storage URL. Default: the SQLite file in the model store.",
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(
            min=2, max=100_000, help="Generated images per Fréchet distance (it depends on N)."
        ),
    ] = 2_000,
    tsne_points: Annotated[
        int,
        typer.Option(min=100, max=10_000, help="Test images in the t-SNE (its cost grows with N)."),
    ] = 5_000,
    epochs_scale: Annotated[
        float,
        typer.Option(hidden=True, min=0.0001, max=1.0, help="Shorten every --retrain run."),
    ] = 1.0,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Every figure and number of the course report, re-made here, beside the report's.

    Writes OUT/index.html (one page; figures as files beside it, nothing from the network)
    and OUT/report.md. By default it uses the best models in the store (or the bundled ones)
    and trains nothing: a few minutes on a laptop CPU. Without the data, the figures that need
    it are listed as skipped with the command that gets it.

    Example: fmt report report/ && open report/index.html
    """
    from fmnist_toolkit.config import EngineConfig
    from fmnist_toolkit.engine.callbacks import ProgressCallback
    from fmnist_toolkit.engine.report import check_report_folder, write_report
    from fmnist_toolkit.errors import TrainingInterrupted, TuningInterrupted

    check_report_folder(out)
    progress = _Progress(quiet)
    models: dict[str, str | None] = {}
    stages: list[dict[str, Any]] = []
    if retrain:
        from fmnist_toolkit.engine.report_retrain import report_stages, retrain_models

        try:
            results = retrain_models(
                report_stages(epochs_scale=epochs_scale, study=study),
                EngineConfig(device=device),
                data_dir=data_dir,
                storage=storage,
                callbacks=lambda label: [ProgressCallback(console, label=label, quiet=quiet)],
                observer=progress,
            )
        except (TrainingInterrupted, TuningInterrupted) as interrupted:
            raise type(interrupted)(
                f"{interrupted}; run the same command again to go on where it stopped",
                **_interrupted_fields(interrupted),
            ) from None
        models = {r.stage: r.model for r in results if r.status not in ("failed", "skipped")}
        stages = [result.to_json() for result in results]
    result = write_report(
        out,
        data_dir=data_dir,
        device=device,
        models=models,
        seed=seed,
        study=study,
        storage=storage,
        samples=samples,
        tsne_points=tsne_points,
        stages=stages,
        observer=progress,
    )
    if json_output:
        print_json(result.to_json())
    else:
        from rich.table import Table

        table = Table(title=f"fmt report: {out / 'index.html'}")
        for column in ("section", "status", "figures", "time"):
            table.add_column(column)
        for section in result.sections:
            table.add_row(
                section.title,
                section.status,
                str(len(section.figures)),
                format_duration(section.seconds),
            )
        print_result(table)
        print_result(f"{result.device}, {format_duration(result.seconds)} in all")
    failed = [section.title for section in result.sections if section.status == "failed"]
    if failed:
        from fmnist_toolkit.errors import ToolkitError

        raise ToolkitError(
            f"{len(failed)} section(s) failed ({', '.join(failed)}); the page shows why: "
            f"{out / 'index.html'}"
        )


def _interrupted_fields(error: Exception) -> dict[str, Any]:
    if hasattr(error, "model_name"):
        return {"model_name": error.model_name, "completed_epochs": error.completed_epochs}
    return {}
