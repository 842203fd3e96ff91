"""Output: results on stdout (tables for people, JSON for scripts), progress and messages on
stderr, errors to one line and an exit code."""

from __future__ import annotations

import contextlib
import difflib
import io
import json
import math
import os
import re
import shlex
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperGroup

from fmnist_toolkit.cli._lazy import LazyCommands
from fmnist_toolkit.errors import ToolkitError, TrainingInterrupted

# Progress and messages go to stderr; results (tables, JSON) to stdout, so that
# `fmt models list | grep dcgan` finds what a person reads (clig.dev).
console = Console(stderr=True, highlight=False)
results = Console(highlight=False)

DEBUG_ENV = "FMT_DEBUG"
PIPED_WIDTH = 10_000  # wider than any table the toolkit prints

# Typer may bundle its own copy of click, so take click's UsageError from Typer itself.
_ClickUsageError = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "UsageError")


class ClosedStream(io.TextIOBase):
    """Stands in for a standard stream the process was started without (``fmt ... >&-``), where
    Python leaves ``None``: using it is a one-line error, not an AttributeError on None."""

    def __init__(self, name: str) -> None:
        self.stream_name = name

    @property
    def buffer(self) -> ClosedStream:  # binary writes (PNG bytes to '-') fail the same way
        return self

    def isatty(self) -> bool:
        return False

    def write(self, text: Any) -> int:
        raise ToolkitError(f"cannot write to {self.stream_name}: it is closed")

    def read(self, size: int | None = -1) -> Any:
        raise ToolkitError(f"cannot read {self.stream_name}: it is closed")

    readline = read


def stand_in_for_closed_streams() -> None:
    """Give a closed standard input or output its :class:`ClosedStream` (called at start-up)."""
    # The closed descriptor is taken by /dev/null, so that no file the command opens lands
    # on 0 or 1, where a worker process would inherit it as its standard stream.
    if sys.stdin is None:
        os.open(os.devnull, os.O_RDONLY)
        sys.stdin = ClosedStream("standard input")
    if sys.stdout is None:
        os.open(os.devnull, os.O_WRONLY)
        sys.stdout = ClosedStream("standard output")


def _finite_or_none(value: Any) -> Any:
    """NaN and infinities as None: JSON has no such numbers, and strict parsers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(item) for item in value]
    return value


def print_json(payload: Any) -> None:
    """Exactly one JSON document on stdout (a non-finite number as null)."""
    text = json.dumps(_finite_or_none(payload), indent=2, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def model_label(name_or_path: str) -> str:
    """A store name as is; for a path, the model folder's name (also for its files, and for
    ``.`` or ``..``)."""
    if not name_or_path:
        return name_or_path
    path = Path(name_or_path)
    if path.name in ("model.safetensors", "config.json"):
        path = path.parent
    if path.name in ("", ".", ".."):
        path = path.resolve()
    return path.name or name_or_path


def typed_options(ctx: typer.Context, names: Iterable[str]) -> list[str]:
    """Which of the parameters ``names`` the user typed on the command line (not defaults)."""
    # Compared by name: Typer may bundle its own click, with its own ParameterSource enum.
    sources = {name: ctx.get_parameter_source(name) for name in names}
    return [name for name, source in sources.items() if source and source.name == "COMMANDLINE"]


def resume_command(ctx: typer.Context, name: str, command_path: str | None = None) -> str:
    """The command that resumes this run: the recipe comes from the checkpoint, so only where
    the data, device and plots are (as given on this command line) need repeating.
    ``command_path`` names another command that resumes it (default: this one)."""
    words = [*(command_path or ctx.command_path).split(), "--name", name, "--resume"]
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
def resume_hint(ctx: typer.Context, name: str, command_path: str | None = None) -> Iterator[None]:
    """Ctrl-C during training: add the command that resumes it to the one-line message."""
    try:
        yield
    except TrainingInterrupted as interrupted:
        raise TrainingInterrupted(
            f"{interrupted}; resume with: {resume_command(ctx, name, command_path)}",
            model_name=interrupted.model_name,
            completed_epochs=interrupted.completed_epochs,
        ) from None


def print_result(renderable: Any) -> None:
    """A result for people (a table, a line) on stdout; ``--json`` prints JSON instead.

    Piped or redirected (``fmt models list | grep dcgan``, a bug report's ``fmt doctor >
    doctor.txt``), rich would fit tables to 80 columns and cut their cells; a pipe has no width
    to fit, so they keep their natural width unless ``COLUMNS`` says otherwise.
    """
    out = results
    if not results.is_terminal:  # read COLUMNS now: it may have changed since start-up
        out = Console(highlight=False, width=terminal_width() or PIPED_WIDTH)
    out.print(renderable, soft_wrap=isinstance(renderable, str))


def terminal_width() -> int | None:
    """The width results are printed at: the terminal's, or a piped output's ``COLUMNS``;
    None for a pipe without it (a table keeps its natural width, as in :func:`print_result`)."""
    if results.is_terminal:
        return results.width
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() else None


@contextlib.contextmanager
def spinner(text: str, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr with ``text`` while short-to-medium work runs; the callable it
    yields changes the text (say which stage is at work). Nothing with ``quiet``."""
    if quiet:
        yield lambda text: None
        return
    with console.status(text, spinner="dots") as status:
        yield lambda text: status.update(text)


@contextlib.contextmanager
def count_progress(
    label: str, total: int, *, quiet: bool = False
) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for ``total`` items of long work, moved on by the callable it
    yields; nothing off a terminal (logs) or with ``quiet``."""
    if quiet or not console.is_terminal:
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = (f"[bold]{label}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        yield lambda done: progress.advance(task, done)


def print_summary(title: str, summary: dict[str, Any]) -> None:
    """A training run's summary as a two-column table on stdout (``--json`` prints the dict).

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
    print_result(table)


def print_note(message: str) -> None:
    """A one-line remark on stderr, never wrapped (logs and scripts read it whole)."""
    console.print(f"note: {message}", soft_wrap=True)


def note_ignored_on_resume(ctx: typer.Context, recipe_options: Iterable[str]) -> None:
    """--resume takes the recipe from the checkpoint; say so when the user typed recipe
    options (``recipe_options``: parameter names)."""
    given = typed_options(ctx, recipe_options)
    if given:
        flag = {param.name: param.opts[0] for param in ctx.command.params if param.opts}
        flags = ", ".join(flag.get(name, name) for name in given)
        print_note(f"--resume continues with the checkpoint's recipe; ignoring {flags}")


def note_if_hiding_bundled(name: str) -> None:
    """After saving ``name``: say when it now hides a bundled model of the same name."""
    from fmnist_toolkit.storage import ModelStore

    if name in ModelStore().bundled_manifest():
        print_note(
            f"your {name!r} now hides the bundled model of that name; `fmt models list` shows "
            f"both, and `fmt models rm {name}` brings the bundled one back"
        )


def print_error(message: str) -> None:
    """One line on stderr, never wrapped or marked up, so scripts can grep it."""
    first_line = " ".join(str(message).split())
    typer.echo(f"error: {first_line}", err=True)


def format_duration(seconds: float) -> str:
    """A duration as people read it: "12.3 s", "4 min 05 s", "1 h 41 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


_NOT_ONE_OF = re.compile(r"(?:Value error, )?'(?P<value>[^']*)' is not one of (?P<choices>.*?)\.?$")


def usage_message(error: Exception) -> str:
    """Click's usage error as one line; a mistyped choice gets a "did you mean"."""
    message = " ".join(error.format_message().split())  # type: ignore[attr-defined]
    match = _NOT_ONE_OF.search(message)
    if match:
        choices = re.findall(r"'([^']*)'", match["choices"])
        message = message[: match.start()] + f"{match['value']!r} is not one of {match['choices']}"
        close = difflib.get_close_matches(match["value"], choices, n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    return message


class _PlainArgument(TyperArgument):
    """An argument shown as people write it (``OUT``, ``IMAGES...``), without Typer's
    ``{out}`` usage braces and type labels such as ``<list[Path]>``; its help says what it is."""

    def _label(self) -> str:
        return (self.metavar or self.name or "").upper()

    def _usage_display_name(self) -> str:
        name = self._label() if self.required else f"[{self._label()}]"
        return name + ("..." if self.nargs != 1 else "")

    def _rich_display_name(self) -> str:
        return self._label() + ("..." if self.nargs != 1 else "")

    @property
    def display_name_raw(self) -> str:
        return self._label()

    def display_type(self, ctx: Any) -> str | None:  # type: ignore[override]
        return None

    def display_type_rich(self, ctx: Any) -> str | None:  # type: ignore[override]
        return None


def _plain_help(command: Any, help_names: list[str]) -> None:
    """Help that reads right: flags take no value, so show none (Typer labels them ``<bool>``);
    arguments as ``OUT`` rather than ``{out}``. Applied once to the whole command tree."""
    # click makes the --help option on first use and caches it: make it now to reach it too.
    help_option = command.get_help_option(typer.Context(command, help_option_names=help_names))
    for param in [*command.params, help_option]:
        if getattr(param, "is_flag", False) and param.param_type_name == "option":
            param.metavar = ""
        elif type(param) is TyperArgument:
            param.__class__ = _PlainArgument
    subcommands = getattr(command, "commands", {})
    if not isinstance(subcommands, LazyCommands):  # those are made plain as each is built
        for sub in subcommands.values():
            _plain_help(sub, help_names)


def _debug(ctx: typer.Context | None) -> bool:
    root = ctx.find_root() if ctx is not None else None
    return bool(root and root.params.get("debug")) or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _fail(ctx: typer.Context | None, message: str, exit_code: int) -> typer.Exit:
    """Print the one line (after the traceback with --debug) and return the exit to raise."""
    if _debug(ctx) and sys.exc_info()[0] is not None:
        sys.stderr.write(traceback.format_exc())
    print_error(message)
    return typer.Exit(exit_code)


class ToolkitGroup(TyperGroup):
    """The root group: turns user errors raised anywhere below it into one line and an exit code.

    Usage errors (a value out of range, an unknown option, also of the root itself) are shown
    as one line too, instead of click's multi-line usage box; a group called alone prints its
    help and exits 0. ``--debug`` or ``FMT_DEBUG=1`` adds the traceback above the line.
    """

    # {name: "module:attribute"} of subcommands to build only when first used (cli/_lazy.py)
    lazy_commands: ClassVar[dict[str, str]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._help_names = self.context_settings.get("help_option_names", ["--help"])
        if self.lazy_commands:
            lazy = LazyCommands(
                self.lazy_commands, prepare=lambda built: _plain_help(built, self._help_names)
            )
            lazy.update(self.commands)  # any registered on the app itself
            self.commands = lazy
        _plain_help(self, self._help_names)

    def get_params(self, ctx: typer.Context) -> list[Any]:
        # Typer appends --install-completion and --show-completion after __init__.
        _plain_help(self, self._help_names)
        return super().get_params(ctx)

    def _usage_exit(self, error: Exception) -> typer.Exit:
        ctx = getattr(error, "ctx", None)
        if type(error).__name__ == "NoArgsIsHelpError":
            # The help is the answer to a bare group (Typer's rich help is already printed).
            if error.format_message():  # type: ignore[attr-defined]
                typer.echo(error.format_message())  # type: ignore[attr-defined]
            return typer.Exit(0)
        hint = f" (see '{ctx.command_path} --help')" if ctx else ""
        return _fail(ctx, usage_message(error) + hint, error.exit_code)  # type: ignore[attr-defined]

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _ClickUsageError as error:
            raise self._usage_exit(error) from None

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ToolkitError as error:
            raise _fail(ctx, str(error), error.exit_code) from None
        except _ClickUsageError as error:
            raise self._usage_exit(error) from None
        except typer.Abort:
            raise _fail(ctx, "aborted", 1) from None
        except OSError as error:
            # The environment, not a bug: a full disk, a read-only folder, a permission.
            where = f": {error.filename}" if error.filename else ""
            raise _fail(ctx, f"{error.strerror or error}{where}", 1) from None
        except KeyboardInterrupt:
            raise _fail(ctx, "interrupted", 130) from None
