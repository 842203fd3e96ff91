"""``fmt models``: what is in the model store."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from fmnist_toolkit.cli._options import JsonOption
from fmnist_toolkit.cli._render import console, format_duration, print_json, print_result

app = typer.Typer(
    rich_markup_mode="markdown",
    help="List, inspect, locate and remove saved models (the store is FMT_HOME, else the "
    "per-user cache folder).",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="Model name, as `fmt models list` shows it.")]


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    """A dict-valued entry of a config, or {} when a damaged config holds something else."""
    value = config.get(key, {})
    return value if isinstance(value, dict) else {}


def _summary(config: dict[str, Any]) -> str:
    metrics = _section(config, "metrics")
    return "  ".join(
        f"{key} {value:.5f}" for key, value in metrics.items() if isinstance(value, int | float)
    )


# Recipe settings that only one architecture uses (config.py: "mlp only", "dcgan only"); a
# model of another architecture carries the field's default, which means nothing for it.
_ARCHITECTURE_ONLY = {"hidden_size": "mlp", "width": "dcgan"}


def _applies(field: str, recipe: dict[str, Any]) -> bool:
    only = _ARCHITECTURE_ONLY.get(field)
    return only is None or recipe.get("architecture") in (None, only)


def _shown(value: Any) -> str:
    """A config value for people: floats to six significant digits."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


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


@app.command("list")
def list_models(json_output: JsonOption = False) -> None:
    """Every saved model with its kind, architecture, metrics and folder."""
    from rich.table import Table

    from fmnist_toolkit.storage import ModelStore

    store = ModelStore()
    models = store.list()
    interrupted = store.interrupted()
    if json_output:
        print_json(
            [
                {
                    "name": model.name,
                    "kind": model.kind,
                    "source": model.source,
                    "shadowed": model.shadowed,
                    "path": str(model.path),
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
        console.print(f"No models in {store.root} yet; train one with `fmt ae train`.")
        return
    table = Table(title=f"Models in {store.root}")
    # A name is what people copy into the next command: never cut it ("clf-ae-wid…").
    longest = max(len(entry.name) for entry in [*models, *interrupted])
    table.add_column("name", no_wrap=True, overflow="fold", min_width=longest)
    table.add_column("kind")
    table.add_column("source", no_wrap=True)  # "interrupted, epoch 2/5" reads as one phrase
    for column in ("architecture", "metrics", "created"):
        table.add_column(column)
    for model in models:
        spec = _section(model.config, "model")
        params = ", ".join(f"{key}={value}" for key, value in _section(spec, "params").items())
        table.add_row(
            model.name,
            model.kind,
            _source_label(model, models),
            f"{spec.get('architecture', '?')} ({params})" if params else spec.get("architecture"),
            _summary(model.config),
            str(model.config.get("created", ""))[:16].replace("T", " "),
        )
    for run in interrupted:
        table.add_row(
            run.name,
            run.kind,
            _epochs_done(run),
            _section(run.state, "model").get("architecture", "?"),
            "train again with --resume",
            "",
        )
    print_result(table)


@app.command()
def show(name: NameArgument, json_output: JsonOption = False) -> None:
    """A model's config: architecture, recipe, metrics and per-epoch history."""
    from rich.table import Table

    from fmnist_toolkit.storage import ModelStore

    store = ModelStore()
    config = store.read_config(name)
    if json_output:
        folder = store.require(name)
        print_json({"name": name, "source": store.source(name), "path": str(folder), **config})
        return
    table = Table(title=f"{name} ({config.get('kind', '?')})", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("path", str(store.require(name)))
    table.add_row("source", store.source(name))
    recipe = _section(config, "recipe")
    for key in ("model", "recipe", "engine", "metrics"):
        for field, value in _section(config, key).items():
            if key == "recipe" and not _applies(field, recipe):
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
    """Print a model's folder (holding model.safetensors and config.json)."""
    from fmnist_toolkit.storage import ModelStore

    typer.echo(str(ModelStore().require(name)))


@app.command()
def rm(
    name: NameArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a saved model, and the checkpoint of an interrupted run of that name (asks first
    unless --yes)."""
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
