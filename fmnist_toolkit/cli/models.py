"""``fmt models``: what is in the model store."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fmnist_toolkit.cli._options import JsonOption
from fmnist_toolkit.cli._render import console, print_json, print_result

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
        )
        return
    if not models:
        console.print(f"No models in {store.root} yet; train one with `fmt ae train`.")
        return
    table = Table(title=f"Models in {store.root}")
    for column in ("name", "kind", "source", "architecture", "metrics", "created"):
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
    for key in ("model", "recipe", "engine", "metrics"):
        for field, value in _section(config, key).items():
            table.add_row(f"{key}.{field}", str(value))
    for key in ("device", "seconds", "data_sha256", "toolkit_version", "created"):
        if key in config:
            table.add_row(key, str(config[key]))
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
    """Delete a saved model (asks first unless --yes)."""
    from fmnist_toolkit.storage import ModelStore

    store = ModelStore()
    folder = store.require(name)
    if not yes:
        typer.confirm(f"Delete model {name!r} ({folder})?", abort=True, err=True)
    store.remove(name)
    console.print(f"Removed {name} ({folder})")
