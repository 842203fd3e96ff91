"""``fmt ae``: the convolutional autoencoder."""

from __future__ import annotations

import enum
import shlex
from pathlib import Path
from typing import Annotated

import typer

from fmnist_toolkit.cli._options import (
    CompileOption,
    DataDirOption,
    DeviceOption,
    JsonOption,
    Precision,
    PrecisionOption,
    QuietOption,
    SeedOption,
)
from fmnist_toolkit.cli._render import console, print_json, print_note

app = typer.Typer(
    rich_markup_mode="markdown",
    help="The convolutional autoencoder: train it (tuning and latent-space plots are planned).",
    no_args_is_help=True,
)

RECIPE = "Recipe (defaults: the course report's best trial)"


class Optimizer(str, enum.Enum):
    adam = "adam"
    sgd = "sgd"


_RECIPE_OPTIONS = (
    "latent_dim",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "seed",
    "precision",
    "compile_model",
)


def _warn_ignored_on_resume(ctx: typer.Context) -> None:
    """--resume takes the recipe from the checkpoint; say so when the user typed recipe options."""
    sources = {name: ctx.get_parameter_source(name) for name in _RECIPE_OPTIONS}
    # Compared by name: Typer may bundle its own click, with its own ParameterSource enum.
    given = [name for name, source in sources.items() if source and source.name == "COMMANDLINE"]
    if given:
        flags = ", ".join("--" + name.replace("_model", "").replace("_", "-") for name in given)
        print_note(f"--resume continues with the checkpoint's recipe; ignoring {flags}")


def _resume_command(ctx: typer.Context, name: str) -> str:
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


@app.command()
def train(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option(help="Name in the model store. Default: ae-<latent-dim>.", show_default=False),
    ] = None,
    latent_dim: Annotated[
        int, typer.Option(min=1, max=4096, help="Size of the latent code.", rich_help_panel=RECIPE)
    ] = 16,
    epochs: Annotated[
        int,
        typer.Option(min=1, help="Passes over the 60,000 training images.", rich_help_panel=RECIPE),
    ] = 60,
    batch_size: Annotated[int, typer.Option(min=1, rich_help_panel=RECIPE)] = 256,
    optimizer: Annotated[Optimizer, typer.Option(rich_help_panel=RECIPE)] = Optimizer.adam,
    lr: Annotated[
        float, typer.Option(help="Learning rate (> 0).", rich_help_panel=RECIPE)
    ] = 0.00099,
    weight_decay: Annotated[float, typer.Option(min=0.0, rich_help_panel=RECIPE)] = 3.5237e-5,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the interrupted run of --name from its last checkpoint, "
            "with its saved recipe.",
        ),
    ] = False,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Discard the checkpoint of an interrupted run of --name and start over.",
        ),
    ] = False,
    plots: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            help="Write the loss curves and test reconstructions as PNGs into this folder.",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    precision: PrecisionOption = Precision.fp32,
    compile_model: CompileOption = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train the report's convolutional autoencoder on Fashion-MNIST and save it.

    Train and test MSE are measured every epoch (the test set is only reported). A checkpoint
    is written after every epoch: Ctrl-C keeps it and prints the command that resumes. An
    earlier model of the same name is replaced only when the run finishes.

    Example: fmt ae train --latent-dim 2 --epochs 30 --plots plots/
    """
    from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig
    from fmnist_toolkit.engine.ae import train_autoencoder
    from fmnist_toolkit.engine.callbacks import ProgressCallback
    from fmnist_toolkit.errors import TrainingInterrupted, UsageError
    from fmnist_toolkit.storage import ModelStore

    model_name = name or f"ae-{latent_dim}"
    config = AutoencoderTrainConfig(
        latent_dim=latent_dim,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=Optimizer(optimizer).value,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
    )
    engine = EngineConfig(
        device=device, precision=Precision(precision).value, compile=compile_model
    )
    if resume and restart:
        raise UsageError("--resume and --restart contradict each other; pick one")
    if resume and ModelStore().has_checkpoint(model_name):
        _warn_ignored_on_resume(ctx)
    progress = ProgressCallback(console, label=model_name, quiet=quiet)
    try:
        result = train_autoencoder(
            model_name,
            config,
            engine,
            data_dir=data_dir,
            resume=resume,
            restart=restart,
            plots_dir=plots,
            callbacks=[progress],
        )
    except TrainingInterrupted as interrupted:
        command = _resume_command(ctx, model_name)
        raise TrainingInterrupted(
            f"{interrupted}; resume with: {command}",
            model_name=interrupted.model_name,
            completed_epochs=interrupted.completed_epochs,
        ) from None

    summary = {
        "name": result.name,
        "path": str(result.path),
        "epochs": result.epochs,
        "train_mse": result.train_mse,
        "test_mse": result.test_mse,
        "seconds": round(result.seconds, 3),
        "device": result.device,
        "resumed_from_epoch": result.resumed_from_epoch,
        "plots": [str(path) for path in result.plots],
    }
    if json_output:
        print_json(summary)
        return
    from rich.table import Table

    table = Table(title=f"Autoencoder {result.name}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if key == "plots" and not value:
            continue
        shown = f"{value:.6f}" if isinstance(value, float) and key.endswith("mse") else value
        table.add_row(key, str(shown))
    console.print(table)
