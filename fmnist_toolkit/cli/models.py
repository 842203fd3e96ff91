"""``fmt models``: what is in the model store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist_toolkit.cli._options import JsonOption
from fmnist_toolkit.cli._render import (
    console,
    format_duration,
    print_json,
    print_note,
    print_result,
    terminal_width,
)
from fmnist_toolkit.config import DENOISE_ONLY, GAN_ARCHITECTURE_ONLY, MODEL_KINDS, UNET_ONLY

app = typer.Typer(
    rich_markup_mode="markdown",
    help="List, inspect, locate, export, import and remove saved models (the store is "
    "FMT_HOME, else the per-user cache folder).",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="Model name, as `fmt models list` shows it.")]


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    """A dict-valued entry of a config, or {} when a damaged config holds something else."""
    value = config.get(key, {})
    return value if isinstance(value, dict) else {}


def _summary(config: dict[str, Any], *, headline_only: bool = False) -> str:
    """The model's metrics; ``headline_only``: its first test metric alone (or first metric)."""
    metrics = {
        key: value
        for key, value in _section(config, "metrics").items()
        if isinstance(value, int | float)
    }
    if headline_only and metrics:
        key = next((key for key in metrics if key.startswith("test_")), next(iter(metrics)))
        metrics = {key: metrics[key]}
    return "  ".join(f"{key} {value:.5f}" for key, value in metrics.items())


# Below this terminal width `fmt models list` keeps the columns people scan (name, kind,
# source, the headline metric, size): seven columns in 80 cut every cell to "autoe…".
WIDE_LISTING = 140


# Recipe settings that only one architecture uses (config.py: "mlp only", "dcgan only"); a
# model of another architecture carries the field's default, which means nothing for it.
def _applies(field: str, recipe: dict[str, Any], kind: str | None) -> bool:
    """Whether the recipe's architecture reads ``field`` (``width`` is a GAN's or a U-Net's)."""
    architecture = recipe.get("architecture")
    if kind == "generator":
        only = GAN_ARCHITECTURE_ONLY.get(field)
        return only is None or architecture in (None, only)
    if field in DENOISE_ONLY:
        return recipe.get("objective") == "denoise" or architecture in (None, "unet")
    return field not in UNET_ONLY or architecture in (None, "unet")


def _shown(value: Any) -> str:
    """A config value for people: floats to six significant digits, a model's spec (a gated
    denoiser's wrapped one) as its architecture and parameters."""
    if isinstance(value, dict) and "architecture" in value:
        return _described(value)
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _described(spec: dict[str, Any]) -> str:
    """``wide (latent_dim=64, sharpen=1)``: a model spec on one line."""
    params = ", ".join(f"{key}={_shown(value)}" for key, value in _section(spec, "params").items())
    architecture = str(spec.get("architecture", "?"))
    return f"{architecture} ({params})" if params else architecture


def _epochs_done(run) -> str:
    epochs = f"/{run.epochs}" if run.epochs is not None else ""
    return f"interrupted, epoch {run.epoch if run.epoch is not None else '?'}{epochs}"


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def _source_label(model, models) -> str:
    """user / bundled, and which of two models of one name wins."""
    if model.shadowed:
        return "bundled (hidden by yours)"
    if model.source == "user" and any(m.shadowed and m.name == model.name for m in models):
        return "user (wins over bundled)"
    return model.source


def _size(size: int) -> str:
    """Bytes for people: 1.2 MB, 830 kB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


@app.command("list")
def list_models(
    kind: Annotated[
        str | None,
        typer.Option("--kind", help=f"Only models of this kind: {', '.join(MODEL_KINDS)}."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Every saved model with its kind, architecture, metrics, size on disk and folder.

    Example: fmt models list --kind classifier
    """
    from rich.table import Table
    from rich.text import Text

    from fmnist_toolkit.errors import UsageError
    from fmnist_toolkit.storage import ModelStore
    from fmnist_toolkit.transfer import folder_size

    if kind is not None and kind not in MODEL_KINDS:
        raise UsageError(f"unknown --kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}")
    store = ModelStore()
    models = [model for model in store.list() if kind is None or model.kind == kind]
    interrupted = [run for run in store.interrupted() if kind is None or run.kind == kind]
    sizes = {entry.path: folder_size(entry.path) for entry in [*models, *interrupted]}
    if json_output:
        print_json(
            [
                {
                    "name": model.name,
                    "kind": model.kind,
                    "source": model.source,
                    "shadowed": model.shadowed,
                    "path": str(model.path),
                    "size": sizes[model.path],
                    "architecture": _section(model.config, "model").get("architecture"),
                    "params": _section(model.config, "model").get("params", {}),
                    "metrics": _section(model.config, "metrics"),
                    "created": model.config.get("created"),
                }
                for model in models
            ]
            + [
                {
                    "name": run.name,
                    "kind": run.kind,
                    "source": "interrupted",
                    "shadowed": False,
                    "path": str(run.path),
                    "size": sizes[run.path],
                    "architecture": _section(run.state, "model").get("architecture"),
                    "params": _section(run.state, "model").get("params", {}),
                    "epoch": run.epoch,
                    "epochs": run.epochs,
                }
                for run in interrupted
            ]
        )
        return
    if not models and not interrupted:
        if kind is not None:
            console.print(f"No {kind} models in {store.root}.")
            return
        console.print(f"No models in {store.root} yet; train one with `fmt ae train`.")
        return
    width = terminal_width()
    narrow = width is not None and width < WIDE_LISTING
    rows = []  # name, kind, source, architecture, metrics, size, created
    for model in models:
        rows.append(
            (
                model.name,
                model.kind,
                _source_label(model, models),
                _described(_section(model.config, "model")),
                _summary(model.config, headline_only=narrow),
                _size(sizes[model.path]),
                str(model.config.get("created", ""))[:16].replace("T", " "),
            )
        )
    for run in interrupted:
        architecture = str(_section(run.state, "model").get("architecture", "?"))
        rows.append(
            (
                run.name,
                run.kind,
                _epochs_done(run),
                architecture,
                "train again with --resume",
                _size(sizes[run.path]),
                "",
            )
        )
    headers = ("name", "kind", "source", "architecture", "metrics", "size", "created")
    if narrow:
        # Seven boxed columns in 80 cut every cell ("autoe…"); plain aligned columns of the
        # five that people scan fit, like ls -l.
        kept = [0, 1, 2, 4, 5]
        everything = [headers, *rows]

        def widths_of(columns: list[int]) -> list[int]:
            return [max(len(row[index]) for row in everything) for index in columns]

        for spare in (2, 5, 1):  # narrower still: source, then size, then kind go
            columns = widths_of(kept)
            if width is None or sum(columns) + 2 * (len(columns) - 1) <= width:
                break
            kept.remove(spare)
        table_rows = [[row[index] for index in kept] for row in everything]
        widths = widths_of(kept)
        lines = [
            "  ".join(
                cell.rjust(widths[column]) if kept[column] == 5 else cell.ljust(widths[column])
                for column, cell in enumerate(row)
            ).rstrip()
            for row in table_rows
        ]
        print_result(Text("\n".join(lines[:1]), style="bold"))
        print_result(Text("\n".join(lines[1:])))
        print_note(
            f"in {store.root}; architectures, every metric, dates: a wider terminal or --json"
        )
        return
    table = Table(title=f"Models in {store.root}")
    # A name is what people copy into the next command: never cut it ("clf-ae-wid…").
    longest = max(len(row[0]) for row in rows)
    table.add_column("name", no_wrap=True, overflow="fold", min_width=longest)
    table.add_column("kind")
    table.add_column("source", no_wrap=True)  # "interrupted, epoch 2/5" reads as one phrase
    for column in headers[3:]:
        table.add_column(column, justify="right" if column == "size" else "left")
    for row in rows:
        table.add_row(*row)
    print_result(table)


@app.command()
def show(name: NameArgument, json_output: JsonOption = False) -> None:
    """A model's config: architecture, recipe, metrics and per-epoch history.

    Example: fmt models show ae-16 --json
    """
    from rich.table import Table

    from fmnist_toolkit.storage import ModelStore

    store = ModelStore()
    config = store.read_config(name)
    if json_output:
        folder = store.require(name)
        # The store's name wins over the one in config.json (a renamed or copied folder).
        print_json({**config, "name": name, "source": store.source(name), "path": str(folder)})
        return
    table = Table(title=f"{name} ({config.get('kind', '?')})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("path", str(store.require(name)))
    table.add_row("source", store.source(name))
    recipe = _section(config, "recipe")
    for key in ("model", "recipe", "engine", "metrics", "sampling"):
        for field, value in _section(config, key).items():
            if key == "recipe" and not _applies(field, recipe, config.get("kind")):
                continue
            if key == "model" and field == "params" and isinstance(value, dict):
                # One row per parameter: a gated denoiser's wrapped model reads on its own row.
                for param, setting in value.items():
                    table.add_row(f"model.params.{param}", _shown(setting))
                continue
            table.add_row(f"{key}.{field}", _shown(value))
    for key in ("device", "seconds", "data_sha256", "toolkit_version", "created"):
        if key not in config:
            continue
        value = config[key]
        if key == "seconds" and isinstance(value, int | float):
            table.add_row("duration", format_duration(value))
        else:
            table.add_row(key, str(value))
    history = config.get("history", [])
    table.add_row("epochs", str(len(history)))
    print_result(table)


@app.command()
def path(name: NameArgument) -> None:
    """Print a model's folder (holding model.safetensors and config.json).

    Example: ls "$(fmt models path ae-16)"
    """
    from fmnist_toolkit.storage import ModelStore

    typer.echo(str(ModelStore().require(name)))


@app.command()
def rm(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a saved model, and the checkpoint of an interrupted run of that name (asks first
    unless --yes).

    Example: fmt models rm my-ae --yes
    """
    from fmnist_toolkit.errors import UsageError
    from fmnist_toolkit.storage import ModelStore

    store = ModelStore()
    folders = store.check_removable(name)  # read-only and unknown names fail before asking
    where = " and ".join(str(folder) for folder in folders)
    if not yes:
        if not _stdin_is_terminal():
            raise UsageError(
                f"not deleting {name!r}: there is no terminal to confirm on; "
                f"pass --yes to delete it ({where})"
            )
        if not typer.confirm(f"Delete {name!r} ({where})?", err=True):
            console.print(f"Kept {name}.")
            raise typer.Exit(1)
    store.remove(name)
    console.print(f"Removed {name} ({where})", soft_wrap=True)


@app.command("export")
def export(
    name: NameArgument,
    archive: Annotated[Path, typer.Argument(help="The .zip to write (replaced if it exists).")],
    json_output: JsonOption = False,
) -> None:
    """Pack a model (yours or a bundled one) into one zip: model.safetensors, config.json and a
    manifest with their SHA-256; `fmt models import` reads it on another machine.

    Example: fmt models export ae-16 ae-16.zip
    """
    from fmnist_toolkit.engine.model_io import load_model
    from fmnist_toolkit.storage import ModelStore
    from fmnist_toolkit.transfer import export_model

    store = ModelStore()
    # What import will check (weights against their SHA-256, the config's architecture),
    # checked here: a damaged model is refused now, not on the machine it was carried to.
    load_model(store.require(name), device="cpu")  # the store's, never a folder named so here
    written = export_model(store, name, archive)
    if json_output:
        print_json({"name": name, "archive": str(written), "size": written.stat().st_size})
        return
    console.print(f"Exported {name} to {written}", soft_wrap=True)


@app.command("import")
def import_(
    archive: Annotated[Path, typer.Argument(help="A zip written by `fmt models export`.")],
    name: Annotated[
        str | None,
        typer.Option("--name", help="Store it under this name (default: the exported name)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Add a model from a zip, after checking it: only the expected files (never a pickle), no
    paths outside the model, sizes within reason, SHA-256s as its manifest says, and weights
    that load into the architecture its config names. On any failure nothing is stored.

    Example: fmt models import ae-16.zip --name ae-16-from-lab
    """
    from fmnist_toolkit.engine.model_io import load_model
    from fmnist_toolkit.errors import ModelCorruptError
    from fmnist_toolkit.storage import ModelStore, validate_name
    from fmnist_toolkit.transfer import archive_name, install, unpacked

    store = ModelStore()
    target = validate_name(name) if name is not None else archive_name(archive)
    if target is None:
        raise ModelCorruptError(f"{archive}: its manifest names no model; pass --name")
    store.check_new_name(target)
    with unpacked(archive) as folder:
        try:  # the weights must fit the architecture the config names, as a load checks
            load_model(folder, device="cpu")
        except ModelCorruptError as error:
            raise ModelCorruptError(str(error).replace(str(folder), str(archive))) from None
        saved = install(store, folder, target)
    if json_output:
        print_json({"name": target, "path": str(saved), "archive": str(archive)})
        return
    console.print(f"Imported {target} from {archive} into {saved}", soft_wrap=True)


@app.command()
def prune(
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            help="Only checkpoints of interrupted runs older than this many days (0: all that "
            "are not training now).",
        ),
    ] = 7.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would go; delete nothing.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Delete stale checkpoints of interrupted runs and the temporary folders a crashed save
    left in the store (asks first unless --yes; --dry-run only lists).

    Example: fmt models prune --older-than 7 --dry-run
    """
    from fmnist_toolkit.errors import UsageError
    from fmnist_toolkit.storage import ModelStore
    from fmnist_toolkit.transfer import prune as prune_store
    from fmnist_toolkit.transfer import prune_candidates

    store = ModelStore()
    candidates = prune_candidates(store, older_than_days=older_than)
    if candidates and not dry_run and not yes:
        if not _stdin_is_terminal():
            raise UsageError(
                f"not pruning {len(candidates)} folder(s): there is no terminal to confirm on; "
                "pass --yes, or --dry-run to list them"
            )
        for candidate in candidates:
            console.print(f"  {candidate.reason}: {candidate.path}", soft_wrap=True)
        if not typer.confirm(f"Delete these {len(candidates)} folder(s)?", err=True):
            console.print("Kept them.")
            raise typer.Exit(1)
    removed = candidates if dry_run else prune_store(candidates)
    if json_output:
        print_json(
            {
                "dry_run": dry_run,
                "removed" if not dry_run else "would_remove": [
                    {"path": str(c.path), "reason": c.reason, "size": c.size} for c in removed
                ],
            }
        )
        return
    verb = "Would remove" if dry_run else "Removed"
    for candidate in removed:
        print_result(f"{verb} {candidate.reason} {candidate.path}")
    total = sum(candidate.size for candidate in removed)
    print_result(f"{verb} {len(removed)} folder(s), {_size(total)}.")
