"""``fmt ae``: the convolutional autoencoder."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

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
    RestartOption,
    ResumeOption,
    Schedule,
    SeedOption,
    check_resume_or_restart,
    choices,
    engine_config,
    schedule_option,
)
from fmnist_toolkit.cli._render import (
    console,
    model_label,
    note_if_hiding_bundled,
    note_ignored_on_resume,
    print_json,
    print_result,
    print_summary,
    resume_hint,
    spinner,
    typed_options,
)
from fmnist_toolkit.cli.tune import tune
from fmnist_toolkit.config import (
    AUTOENCODER_ARCHITECTURES,
    DENOISER_ARCHITECTURES,
    MAX_SHARPEN,
    OBJECTIVES,
    OPTIMIZERS,
    UNET_ONLY,
)

app = typer.Typer(
    rich_markup_mode="markdown",
    help="The convolutional autoencoder: train it, tune its recipe and draw its latent space.",
    no_args_is_help=True,
)

RECIPE = "Recipe (defaults: the course report's best trial)"
ScheduleOption = schedule_option(RECIPE)


Optimizer = choices("Optimizer", OPTIMIZERS)
# `fmt ae train --arch`: the autoencoders and the denoisers (trained with --objective denoise).
AutoencoderArchitecture = choices(
    "AutoencoderArchitecture", AUTOENCODER_ARCHITECTURES + DENOISER_ARCHITECTURES
)
Objective = choices("Objective", OBJECTIVES)


_RECIPE_OPTIONS = (
    "latent_dim",
    "arch",
    "objective",
    "width",
    "min_correction",
    "sharpen",
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
    "schedule",
    "seed",
    "precision",
    "compile_model",
)


@app.command()
def train(
    ctx: typer.Context,
    name: Annotated[
        str | None,
        typer.Option(
            help="Name in the model store. Default: ae-LATENT_DIM, or ae-ARCH-LATENT_DIM "
            "for another --arch, with -denoise after it for --objective denoise; "
            "denoiser-unet for --arch unet.",
            show_default=False,
        ),
    ] = None,
    latent_dim: Annotated[
        int, typer.Option(min=1, max=4096, help="Size of the latent code.", rich_help_panel=RECIPE)
    ] = 16,
    arch: Annotated[
        AutoencoderArchitecture,
        typer.Option(
            help="Architecture from the registry: seed (the report's), wide (32/64/128 "
            "channels with batch norm; for GPUs) or residual (wide's encoder, a decoder with "
            "residual blocks; for GPUs) autoencoders, or unet (a U-Net denoiser with skip "
            "connections; needs --objective denoise).",
            rich_help_panel=RECIPE,
        ),
    ] = AutoencoderArchitecture.seed,
    objective: Annotated[
        Objective,
        typer.Option(
            help="reconstruct: image in, the same image out; denoise: a corrupted image in "
            "(salt-and-pepper, speckle, grain, stray dots, Gaussian noise, blur, or none), "
            "the clean one out.",
            rich_help_panel=RECIPE,
        ),
    ] = Objective.reconstruct,
    width: Annotated[
        int,
        typer.Option(
            min=1,
            max=256,
            help="--arch unet only: channels of its finest level.",
            rich_help_panel=RECIPE,
        ),
    ] = 16,
    min_correction: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="--arch unet only: when cleaning, a pixel whose correction is at most this "
            "much (of the 0-1 brightness) keeps its value, so that a good sample's fine "
            "texture survives; training is the same whatever its value.",
            rich_help_panel=RECIPE,
        ),
    ] = 0.0,
    sharpen: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=MAX_SHARPEN,
            help="--objective denoise only: when cleaning, add this much of an unsharp mask to "
            "the cleaned image, restoring the edges and texture that generators draw and "
            "autoencoders redraw too soft (the bundled denoiser-unet: 0.05; the redraw inside "
            "denoiser-gan-mlp: 1); training is the same whatever its value.",
            rich_help_panel=RECIPE,
        ),
    ] = 0.0,
    clean_samples: Annotated[
        list[str] | None,
        typer.Option(
            help="--objective denoise only: a generator whose samples join the training "
            "images as clean ones (corrupted like them, their own target), so that the "
            "denoiser learns to leave such samples alone; repeat for several.",
            show_default=False,
            rich_help_panel=RECIPE,
        ),
    ] = None,
    clean_sample_count: Annotated[
        int,
        typer.Option(
            min=1, help="Samples of each --clean-samples generator.", rich_help_panel=RECIPE
        ),
    ] = 6000,
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
    schedule: ScheduleOption = Schedule.constant,
    resume: ResumeOption = False,
    restart: RestartOption = False,
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
    precision: PrecisionOption = Precision.auto,
    compile_model: CompileOption = False,
    cuda_graphs: CudaGraphsOption = True,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train the report's convolutional autoencoder on Fashion-MNIST and save it.

    Train and test MSE are measured every epoch (the test set is only reported). A checkpoint
    is written after every epoch: Ctrl-C keeps it and prints the command that resumes. An
    earlier model of the same name is replaced only when the run finishes.

    With --objective denoise it learns to clean seeded corruptions of each batch instead;
    test_mse is then measured on the corrupted test images and clean_mse is how much it
    changes clean ones. --arch unet --objective denoise trains the U-Net denoiser that
    fmt gan sample --denoise uses.

    Example: fmt ae train --latent-dim 2 --epochs 30 --plots plots/
    """
    from fmnist_toolkit.config import AutoencoderTrainConfig
    from fmnist_toolkit.engine.ae import train_autoencoder
    from fmnist_toolkit.engine.callbacks import ProgressCallback
    from fmnist_toolkit.storage import ModelStore

    objective = Objective(objective)
    architecture = AutoencoderArchitecture(arch).value
    if architecture != "unet" and (unet_only := typed_options(ctx, UNET_ONLY)):
        from fmnist_toolkit.errors import UsageError

        named = ["--" + option.replace("_", "-") for option in unet_only]
        flags = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
        verb = "applies" if len(unet_only) == 1 else "apply"
        raise UsageError(f"{flags} only {verb} to --arch unet, not --arch {architecture}")
    model_name = name or default_model_name(architecture, latent_dim, objective)
    config = AutoencoderTrainConfig(
        latent_dim=latent_dim,
        architecture=architecture,
        objective=objective.value,
        width=width,
        min_correction=min_correction,
        sharpen=sharpen,
        clean_samples=tuple(clean_samples or ()),
        clean_sample_count=clean_sample_count,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=Optimizer(optimizer).value,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        schedule=Schedule(schedule).value,
    )
    engine = engine_config(device, precision, cuda_graphs, compile_model=compile_model)
    check_resume_or_restart(resume, restart)
    if resume and ModelStore().has_checkpoint(model_name):
        note_ignored_on_resume(ctx, _RECIPE_OPTIONS)
    progress = ProgressCallback(console, label=model_name, quiet=quiet)
    with resume_hint(ctx, model_name):
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

    summary = {
        "name": result.name,
        "path": str(result.path),
        "epochs": result.epochs,
        "train_mse": result.train_mse,
        "test_mse": result.test_mse,
        **({"clean_mse": result.clean_mse} if result.clean_mse is not None else {}),
        "seconds": round(result.seconds, 3),
        "device": result.device,
        "resumed_from_epoch": result.resumed_from_epoch,
        "plots": [str(path) for path in result.plots],
    }
    note_if_hiding_bundled(result.name)
    if json_output:
        print_json(summary)
        return
    print_summary(f"{'Denoiser' if arch == 'unet' else 'Autoencoder'} {result.name}", summary)


def default_model_name(arch: str, latent_dim: int, objective: Objective) -> str:
    """ae-16, ae-wide-16, ae-wide-16-denoise, denoiser-unet: what --name defaults to."""
    if arch == "unet":
        return "denoiser-unet"
    name = f"ae-{latent_dim}" if arch == "seed" else f"ae-{arch}-{latent_dim}"
    return f"{name}-denoise" if objective is Objective.denoise else name


class View(str, enum.Enum):
    scatter = "scatter"
    untrained = "untrained"
    walk = "walk"
    pca = "pca"
    tsne = "tsne"
    all = "all"


WALK = "Walk (--view walk)"


class FigureFormat(str, enum.Enum):
    png = "png"
    svg = "svg"
    pdf = "pdf"


@app.command("latent-plot")
def latent_plot(
    ctx: typer.Context,
    model: Annotated[
        str,
        typer.Option("--model", help="Autoencoder name in the store, or the path of its folder."),
    ] = "ae-16",
    view: Annotated[
        View,
        typer.Option(
            help="scatter: the 2-D codes (2-D latents only); untrained: trained vs a freshly "
            "initialised encoder, same axes; walk: images decoded along a line in latent space; "
            "pca: two principal components; tsne: t-SNE of all test codes; all: every view the "
            "model supports.",
        ),
    ] = View.all,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Figure file (.png, .svg or .pdf: the extension picks the format), or with "
            "--view all a folder. Default: MODEL-VIEW.png, or the folder MODEL-latent/.",
            show_default=False,
        ),
    ] = None,
    walk_from: Annotated[
        str,
        typer.Option(
            "--from", help="Start class of the walk: name or index.", rich_help_panel=WALK
        ),
    ] = "ankle-boot",
    walk_to: Annotated[
        str,
        typer.Option("--to", help="End class of the walk: name or index.", rich_help_panel=WALK),
    ] = "sneaker",
    from_index: Annotated[
        int | None,
        typer.Option(
            help="Walk from this test image instead of a class centroid.",
            rich_help_panel=WALK,
            show_default=False,
        ),
    ] = None,
    to_index: Annotated[
        int | None,
        typer.Option(
            help="Walk to this test image instead of a class centroid.",
            rich_help_panel=WALK,
            show_default=False,
        ),
    ] = None,
    steps: Annotated[int, typer.Option(min=2, max=50, rich_help_panel=WALK)] = 10,
    perplexity: Annotated[float, typer.Option(help="t-SNE perplexity.")] = 30.0,
    figure_format: Annotated[
        FigureFormat,
        typer.Option("--format", help="Format of the figures written by --view all."),
    ] = FigureFormat.png,
    dpi: Annotated[int, typer.Option(min=30, max=1200, help="Resolution of raster figures.")] = 150,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Figures of an autoencoder's latent space on the 10,000 test images.

    Each scatter-type view reports the leave-one-out 5-nearest-neighbour class accuracy of the
    test codes in its 2-D coordinates: how well the classes separate there.

    Example: fmt ae latent-plot --model ae-2 --view all --out figures/
    """
    from fmnist_toolkit.engine.latent import WalkSpec, class_index, plot_latent_views
    from fmnist_toolkit.errors import UsageError

    # Options that the chosen ones would silently override: say so rather than ignore them.
    classes = typed_options(ctx, ("walk_from", "walk_to"))
    if classes and (from_index is not None or to_index is not None):
        flags = " and ".join("--" + name.removeprefix("walk_") for name in classes)
        raise UsageError(
            f"--from/--to walk between classes, --from-index/--to-index between test images: "
            f"give one pair (drop {flags} or the indices)"
        )
    if view is not View.all and typed_options(ctx, ("figure_format",)):
        raise UsageError("--format is for --view all; for one view the extension of --out picks it")
    walk = WalkSpec(
        from_class=class_index(walk_from),
        to_class=class_index(walk_to),
        from_index=from_index,
        to_index=to_index,
        steps=steps,
    )
    label = model_label(model)
    if out is None:
        out = Path(f"{label}-latent") if view is View.all else Path(f"{label}-{view.value}.png")
    with spinner("Encoding the test set…", quiet=quiet) as show:

        def on_view(name: str, index: int, count: int) -> None:
            slow = " (t-SNE: a minute or two on a laptop CPU)" if name == "tsne" else ""
            show(f"Drawing the {name} view, {index + 1} of {count}{slow}…")

        results = plot_latent_views(
            model,
            [view.value],
            out,
            data_dir=data_dir,
            device=device,
            perplexity=perplexity,
            walk=walk,
            dpi=dpi,
            figure_format=FigureFormat(figure_format).value,
            on_view=on_view,
        )
    rows = [
        {
            "view": result.view,
            "path": str(result.path),
            "knn_accuracy": result.knn_accuracy,
            **result.details,
        }
        for result in results
    ]
    if json_output:
        print_json({"model": model, "k": 5, "views": rows})
        return
    from rich.table import Table

    table = Table(title=f"Latent space of {model}")
    for column in ("view", "5-NN accuracy", "file"):
        table.add_column(column)
    for row in rows:
        accuracy = ", ".join(f"{key} {value:.1%}" for key, value in row["knn_accuracy"].items())
        table.add_row(row["view"], accuracy or "—", row["path"])
    print_result(table)


app.command("tune")(tune)  # fmt ae tune: the Optuna search, in cli/tune.py
