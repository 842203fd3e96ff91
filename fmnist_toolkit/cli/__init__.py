"""The ``fmt`` app: a thin Typer skin over the library. Commands import torch only when run."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import Annotated

import typer

from fmnist_toolkit._version import __version__
from fmnist_toolkit.cli._render import ToolkitGroup, print_error, stand_in_for_closed_streams
from fmnist_toolkit.errors import ToolkitError

# Where each top-level command lives, in the order `fmt --help` lists them: a group (a Typer
# app) or a single command (a function). Only the one a command line names is imported and
# built, so `fmt gan sample` does not pay for the other groups' nineteen commands.
SUBCOMMANDS = {
    "data": "fmnist_toolkit.cli.data:app",
    "models": "fmnist_toolkit.cli.models:app",
    "ae": "fmnist_toolkit.cli.ae:app",
    "clf": "fmnist_toolkit.cli.clf:app",
    "gan": "fmnist_toolkit.cli.gan:app",
    "doctor": "fmnist_toolkit.cli.doctor:doctor",
    "report": "fmnist_toolkit.cli.report:report",
}


class RootGroup(ToolkitGroup):
    """The ``fmt`` group: :class:`ToolkitGroup` with its subcommands built on first use."""

    lazy_commands = SUBCOMMANDS


app = typer.Typer(
    rich_markup_mode="markdown",
    cls=RootGroup,
    name="fmt",
    help="Unsupervised deep learning on Fashion-MNIST: autoencoders, their latent space, "
    "classifiers and GANs, from one command.\n\n"
    "Start with `fmt data fetch`, then `fmt ae train`. Models live in the store "
    "(`fmt models list`; FMT_HOME moves it).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fmnist-toolkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            help="On an error, print the full traceback above the one-line message "
            "(also FMT_DEBUG=1).",
        ),
    ] = False,
) -> None:
    """Unsupervised deep learning on Fashion-MNIST."""


def main() -> None:
    """The app, raising ``SystemExit`` when done like any click program (safe to call from
    Python)."""
    app()


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's or a supervisor's stop) taken as a Ctrl-C: a training run keeps
    its checkpoint and prints the command that resumes it."""


def _on_sigterm(signum: int, frame: object) -> None:
    global _terminated
    if _terminated:  # a second one must not cut short the handling of the first
        return
    _terminated = True
    raise _Terminated


_terminated = False
STARTUP_GC_THRESHOLD = 500_000
INTERRUPTED_EXIT = 130  # 128 + SIGINT, what every interruption exits with below the app
TERMINATED_EXIT = 143  # 128 + SIGTERM


def run() -> None:
    """Console-script entry point of ``fmt`` and ``fmnist-toolkit`` (and ``python -m``): the
    app in a process of its own, which :func:`_exit` may end directly. SIGTERM stops it the
    way Ctrl-C does (checkpoint kept, resume command printed), exiting 143."""
    import gc
    import signal

    # Start-up makes some 200,000 objects that all live on (torch, Typer, the models), and
    # Python's default young generation (700) has them inspected some 400 times on the way:
    # 0.3 s of `fmt gan sample`'s 3 s on a 2-core CPU (0.15 s for one of 100,000 or 300,000,
    # none for 500,000). Long runs still collect: what a step makes is mostly freed at once,
    # so the count grows only with what lives on or leaks. Only the `fmt` process: importing
    # the library changes nothing.
    gc.set_threshold(STARTUP_GC_THRESHOLD, *gc.get_threshold()[1:])
    signal.signal(signal.SIGTERM, _on_sigterm)
    stand_in_for_closed_streams()
    code: int | str | None = 0
    try:
        main()
    except SystemExit as request:
        code = request.code
    except ToolkitError as error:  # outside any command: `fmt --version >&-` writing its line
        print_error(str(error))
        code = error.exit_code
    finally:
        # The command is over: a SIGTERM now ends the process as usual, not inside the exit.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _terminated and code == INTERRUPTED_EXIT:
        code = TERMINATED_EXIT
    _exit(code)


def _exit(code: int | str | None) -> None:
    """Exit with ``code``, skipping the interpreter's teardown once torch is loaded.

    Unloading torch's shared libraries at exit takes about 0.6 s on a 2-core CPU, a sixth of
    `fmt gan sample`'s wall time. By now every file the command wrote is closed, so the
    atexit hooks run, the standard streams are flushed and the process ends. Without torch,
    or with another thread still running, the ordinary exit is kept.
    """
    if "torch" not in sys.modules or threading.active_count() > 1:
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): Python prints it and exits 1
        print(code, file=sys.stderr)
        status = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed (`fmt ... >&-`)
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`fmt ... | head`) or stream
            status = status or 1
    os._exit(status)
