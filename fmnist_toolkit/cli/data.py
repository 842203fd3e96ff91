"""``fmt data``: get, check and locate Fashion-MNIST."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from fmnist_toolkit.cli._options import DataDirOption, JsonOption, QuietOption
from fmnist_toolkit.cli._render import console, print_json, print_result

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Get, verify and locate the Fashion-MNIST files.",
    no_args_is_help=True,
)


@contextmanager
def transfer_progress(quiet: bool):
    """A rich download bar per file on stderr; yields the hook the data layer calls."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    if quiet:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
    )
    tasks: dict[str, int] = {}

    def hook(name: str, done: int, total: int | None) -> None:
        if not tasks:  # start lazily: an early error must not leave an empty bar behind
            progress.start()
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total)
        progress.update(tasks[name], completed=done, total=total)

    try:
        yield hook
    finally:
        if tasks:
            progress.stop()


@app.command()
def fetch(
    data_dir: DataDirOption = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--from",
            help="Copy and verify a local copy from this folder instead of downloading "
            "(for offline machines).",
            file_okay=False,
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds before a silent mirror is given up.", min=1)
    ] = 30.0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download Fashion-MNIST from the official mirrors (or copy it with --from) and verify it.

    Files already present and correct are kept, so running it again touches no network.
    Every file is checked by the MD5 of its decompressed content before it takes its name.

    Examples: fmt data fetch; fmt data fetch --from ~/Downloads/fashion-mnist
    """
    from fmnist_toolkit.data import copy_dataset, fetch_dataset, resolve_data_dir

    folder = resolve_data_dir(data_dir)
    with transfer_progress(quiet or json_output) as hook:
        if source is not None:
            paths = copy_dataset(source, folder, progress=hook)
        else:
            paths = fetch_dataset(folder, timeout=timeout, progress=hook)
    if json_output:
        print_json({"data_dir": str(folder), "files": [str(path) for path in paths]})
    elif not quiet:
        console.print(f"[green]Fashion-MNIST is ready[/] in {folder}")


@app.command()
def verify(data_dir: DataDirOption = None, json_output: JsonOption = False) -> None:
    """Check the four files by the MD5 of their decompressed content (exit 1 on any problem).

    Example: fmt data verify --data-dir ~/datasets/fashion-mnist
    """
    from rich.table import Table

    from fmnist_toolkit.data import fetch_command, resolve_data_dir, verify_dataset
    from fmnist_toolkit.errors import DataCorruptError, DataMissingError

    folder = resolve_data_dir(data_dir)
    checks = verify_dataset(folder)
    if json_output:
        print_json(
            {
                "data_dir": str(folder),
                "ok": all(check.ok for check in checks),
                "files": [
                    {
                        "name": check.name,
                        "path": str(check.path) if check.path else None,
                        "ok": check.ok,
                        "problem": check.problem,
                    }
                    for check in checks
                ],
            }
        )
    else:
        table = Table(title=f"Fashion-MNIST in {folder}")
        table.add_column("file")
        table.add_column("status")
        for check in checks:
            status = "[green]ok[/]" if check.ok else f"[red]{check.problem}[/]"
            table.add_row(check.path.name if check.path else check.name, status)
        print_result(table)
    bad = [check for check in checks if not check.ok]
    if all(check.path is None for check in checks):
        raise DataMissingError(
            f"Fashion-MNIST not found in {folder}; run `{fetch_command(folder)}`, or pass "
            "--data-dir with the folder that has the files"
        )
    if bad:
        first = bad[0]
        where = first.path or f"{first.name} in {folder}"
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        hint = f"; run `{fetch_command(folder)}` to download what is missing or bad"
        raise DataCorruptError(f"{where}: {first.problem}{more}{hint}")


@app.command()
def path(data_dir: DataDirOption = None) -> None:
    """Print the data folder in use (--data-dir, else FMT_DATA_DIR, else the per-user folder).

    Example: ls "$(fmt data path)"
    """
    from fmnist_toolkit.data import resolve_data_dir

    typer.echo(str(resolve_data_dir(data_dir)))
