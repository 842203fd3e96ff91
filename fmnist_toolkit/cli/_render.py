"""Output: rich on stderr for people, JSON on stdout for scripts, errors to exit codes."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from fmnist_toolkit.errors import ToolkitError, TrainingInterrupted

# Progress, tables and messages go to stderr so that stdout carries only results (JSON).
console = Console(stderr=True, highlight=False)

# Typer may bundle its own copy of click, so take click's UsageError from Typer itself.
_ClickUsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


def print_json(payload: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()


def model_label(name_or_path: str) -> str:
    """A store name as is; for a path, the model folder's name (also for its files)."""
    path = Path(name_or_path)
    if path.name in ("model.safetensors", "config.json"):
        path = path.parent
    return path.name or name_or_path


def resume_command(ctx: typer.Context, name: str) -> str:
    """The command that resumes this run: the recipe comes from the checkpoint, so only where
    the data, device and plots are (as given on this command line) need repeating."""
    words = [*ctx.command_path.split(), "--name", name, "--resume"]
    for option, parameter in (
        ("--data-dir", "data_dir"),
        ("--device", "device"),
        ("--plots", "plots"),
    ):
        value = ctx.params.get(parameter)
        if value is not None and value != "auto":
            words += [option, str(value)]
    return shlex.join(words)


@contextlib.contextmanager
def resume_hint(ctx: typer.Context, name: str) -> Iterator[None]:
    """Ctrl-C during training: add the command that resumes it to the one-line message."""
    try:
        yield
    except TrainingInterrupted as interrupted:
        raise TrainingInterrupted(
            f"{interrupted}; resume with: {resume_command(ctx, name)}",
            model_name=interrupted.model_name,
            completed_epochs=interrupted.completed_epochs,
        ) from None


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """A training run's summary as a two-column table on stderr (``--json`` prints the dict).

    Losses and errors keep six decimals; a list of plots is shown as its count and folder.
    """
    from rich.table import Table

    table = Table(title=title, show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if key == "plots":
            if not value:
                continue
            value = f"{len(value)} files in {Path(value[0]).parent}"
        elif isinstance(value, float) and key != "seconds":
            value = f"{value:.6f}"
        table.add_row(key, str(value))
    console.print(table)


def print_note(message: str) -> None:
    """A one-line remark on stderr, never wrapped (logs and scripts read it whole)."""
    console.print(f"note: {message}", soft_wrap=True)


def print_error(message: str) -> None:
    """One line on stderr, never wrapped or marked up, so scripts can grep it."""
    first_line = " ".join(str(message).split())
    typer.echo(f"error: {first_line}", err=True)


class ToolkitGroup(TyperGroup):
    """The root group: turns user errors raised anywhere below it into one line and an exit code.

    Usage errors of subcommands (a value out of range, an unknown option) are shown as one line
    too, instead of click's multi-line usage box.
    """

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ToolkitError as error:
            print_error(str(error))
            raise typer.Exit(error.exit_code) from None
        except _ClickUsageError as error:
            hint = f" (see '{error.ctx.command_path} --help')" if error.ctx else ""
            print_error(error.format_message() + hint)
            raise typer.Exit(error.exit_code) from None
        except typer.Abort:
            print_error("aborted")
            raise typer.Exit(1) from None
        except OSError as error:
            # The environment, not a bug: a full disk, a read-only folder, a permission.
            where = f": {error.filename}" if error.filename else ""
            print_error(f"{error.strerror or error}{where}")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            print_error("interrupted")
            raise typer.Exit(130) from None
