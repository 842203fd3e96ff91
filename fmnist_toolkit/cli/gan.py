"""``fmt gan``: train GANs, sample new clothes (cleaned by an autoencoder), measure quality."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fmnist_toolkit.cli._options import (
    CudaGraphsOption,
    DataDirOption,
    DeviceOption,
    JsonOption,
    NoiseSeedOption,
    Precision,
    PrecisionOption,
    QuietOption,
    RestartOption,
    ResumeOption,
    SeedOption,
    check_resume_or_restart,
    choices,
    engine_config,
)
from fmnist_toolkit.cli._render import (
    console,
    count_progress,
    model_label,
    note_if_hiding_bundled,
    note_ignored_on_resume,
    print_json,
    print_note,
    print_result,
    print_summary,
    resume_hint,
    spinner,
    typed_options,
)
from fmnist_toolkit.config import (
    GAN_ARCHITECTURE_ONLY,
    GAN_ARCHITECTURES,
    GAN_LOSSES,
    MIN_GATE_SAMPLES,
)

TruncationOption = Annotated[
    float | None,
    typer.Option(
        "--truncation",
        metavar="PSI",
        help="Scale the generator's noise by PSI, 0 < PSI <= 2 (the truncation trick): below 1 "
        "the images keep nearer the likeliest ones, clearer and truer to their class but less "
        "varied; 1 draws at full variety. Default: the generator's own (gan-dcgan-cond 0.7, "
        "measured in docs/gan.md; 1 for the rest).",
        show_default=False,
    ),
]

app = typer.Typer(
    rich_markup_mode="markdown",
    help="GANs (the report's MLP and a convolutional DCGAN): train, sample, measure.",
    no_args_is_help=True,
)

RECIPE = "Recipe (mlp defaults: the course report's)"
GATE_RECIPE = "Recipe"
DENOISE = "Denoising"


GanArchitecture = choices("GanArchitecture", GAN_ARCHITECTURES)
GanLoss = choices("GanLoss", GAN_LOSSES)


@app.command()
def train(
    ctx: typer.Context,
    arch: Annotated[
        GanArchitecture,
        typer.Option(
            help="mlp: the report's fully connected pair; dcgan: a small convolutional pair "
            "(better samples per minute).",
            rich_help_panel=RECIPE,
        ),
    ] = GanArchitecture.mlp,
    name: Annotated[
        str | None,
        typer.Option(help="Name in the model store. Default: gan-ARCH.", show_default=False),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Default: 300 for mlp (the report's), 60 for dcgan.",
            show_default=False,
            rich_help_panel=RECIPE,
        ),
    ] = None,
    latent_size: Annotated[
        int, typer.Option(min=1, help="Size of the noise vector z.", rich_help_panel=RECIPE)
    ] = 100,
    hidden_size: Annotated[
        int, typer.Option(min=1, help="Hidden layer width (mlp).", rich_help_panel=RECIPE)
    ] = 784,
    width: Annotated[
        int,
        typer.Option(
            min=1,
            help="Channels next to the image (dcgan; the middle layer has twice as many). "
            "32 trains 2.5x faster than 64 on a CPU.",
            rich_help_panel=RECIPE,
        ),
    ] = 64,
    batch_size: Annotated[int, typer.Option(min=1, rich_help_panel=RECIPE)] = 64,
    lr: Annotated[
        float | None,
        typer.Option(
            help="Adam's learning rate, both networks. Default: 1e-4 for mlp (the report's), "
            "2e-4 for dcgan.",
            show_default=False,
            rich_help_panel=RECIPE,
        ),
    ] = None,
    beta1: Annotated[
        float | None,
        typer.Option(
            help="Adam's beta1. Default: 0.5 (as in the DCGAN paper).",
            show_default=False,
            rich_help_panel=RECIPE,
        ),
    ] = None,
    beta2: Annotated[
        float | None,
        typer.Option(
            help="Adam's beta2. Default: 0.999.", show_default=False, rich_help_panel=RECIPE
        ),
    ] = None,
    d_lr: Annotated[
        float | None,
        typer.Option(
            help="The discriminator's learning rate, when it should differ from the "
            "generator's --lr (two time-scale updates). Default: --lr.",
            show_default=False,
            rich_help_panel=RECIPE,
        ),
    ] = None,
    loss: Annotated[
        GanLoss | None,
        typer.Option(
            help="bce: binary cross-entropy, non-saturating generator loss (the report's); "
            "hinge: the hinge loss of SNGAN and BigGAN. Default: bce.",
            show_default=False,
            rich_help_panel=RECIPE,
        ),
    ] = None,
    spectral_norm: Annotated[
        bool | None,
        typer.Option(
            "--spectral-norm/--no-spectral-norm",
            help="dcgan: spectral normalisation of every discriminator layer (its batch norm "
            "goes). Default: off.",
            show_default=False,
            rich_help_panel=RECIPE,
        ),
    ] = None,
    conditional: Annotated[
        bool,
        typer.Option(
            "--conditional",
            help="dcgan: a class-conditional pair (a class embedding beside the noise; a "
            "projection discriminator). Sample it with fmt gan sample --class.",
            rich_help_panel=RECIPE,
        ),
    ] = False,
    time_budget: Annotated[
        float | None,
        typer.Option(
            help="Seconds: stop after the last epoch that fits, and save the model as if "
            "that epoch had been the last planned.",
            show_default=False,
        ),
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            help="Keep an exponential moving average of the generator's weights with this "
            "decay and save and draw the average; 0 keeps none. Default: 0.999 for dcgan, "
            "none for mlp (the report's).",
            rich_help_panel=RECIPE,
            show_default=False,
        ),
    ] = None,
    snapshot_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Also save the generator every this many epochs as NAME-eNNNN (to measure "
            "with fmt gan eval how quality grows).",
            show_default=False,
        ),
    ] = None,
    sample_every: Annotated[
        int,
        typer.Option(min=1, help="Epochs between sample grids of a fixed noise batch (--plots)."),
    ] = 10,
    plots: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            help="Write sample grids during training and the loss / D(x), D(G(z)) curves here.",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    resume: ResumeOption = False,
    restart: RestartOption = False,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    precision: PrecisionOption = Precision.auto,
    cuda_graphs: CudaGraphsOption = True,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a GAN on the 60,000 training images (scaled to [-1, 1]) and save its generator.

    Binary cross-entropy with the non-saturating generator loss; one discriminator step then
    one generator step per batch. Both networks and optimisers are checkpointed every epoch:
    Ctrl-C keeps the checkpoint and prints the command that resumes. A loss that turns NaN
    stops the run with the last good checkpoint kept.

    Example: fmt gan train --arch dcgan --epochs 30 --plots plots/
    """
    from fmnist_toolkit.config import GanTrainConfig
    from fmnist_toolkit.engine.callbacks import ProgressCallback
    from fmnist_toolkit.engine.gan import train_gan

    check_resume_or_restart(resume, restart)
    architecture = GanArchitecture(arch).value
    # A note, not an error: a script may pass both options to a loop over architectures.
    for option in [] if resume else typed_options(ctx, GAN_ARCHITECTURE_ONLY):
        if GAN_ARCHITECTURE_ONLY[option] != architecture:
            flag = "--" + option.replace("_", "-")
            only = GAN_ARCHITECTURE_ONLY[option]
            print_note(f"--arch {architecture} ignores {flag} (it is for --arch {only})")
    model_name = name or f"gan-{architecture}"
    config = GanTrainConfig.for_architecture(
        architecture,
        latent_size=latent_size,
        hidden_size=hidden_size,
        width=width,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        ema=ema,
        seed=seed,
        loss=GanLoss(loss).value if loss is not None else None,
        spectral_norm=spectral_norm,
        d_lr=d_lr,
        conditional=conditional,
    )
    engine = engine_config(device, precision, cuda_graphs)
    with resume_hint(ctx, model_name):
        result = train_gan(
            model_name,
            config,
            engine,
            data_dir=data_dir,
            resume=resume,
            restart=restart,
            plots_dir=plots,
            sample_every=sample_every,
            time_budget=time_budget,
            snapshot_every=snapshot_every,
            callbacks=[ProgressCallback(console, label=model_name, quiet=quiet)],
        )
    summary = {
        "name": result.name,
        "path": str(result.path),
        "architecture": architecture,
        "epochs": result.epochs,
        **{key: round(value, 6) for key, value in result.final.items()},
        "seconds": round(result.seconds, 3),
        "device": result.device,
        "resumed_from_epoch": result.resumed_from_epoch,
        "plots": [str(path) for path in result.plots],
    }
    if result.stopped_by_time_budget is not None:
        summary["stopped_by_time_budget"] = result.stopped_by_time_budget
    note_if_hiding_bundled(result.name)
    if result.stopped_by_time_budget is not None and not json_output:
        print_note(
            f"--time-budget {time_budget:g} s ended the run after {result.epochs} of "
            f"{result.planned_epochs} epochs; the model is saved as it stood"
        )
    if json_output:
        print_json(summary)
        return
    print_summary(f"GAN generator {result.name}", summary)


# What --resume takes from the checkpoint instead of the command line.
_GATE_RECIPE_OPTIONS = ("model", "denoiser", "epochs", "batch_size", "lr", "width", "samples")


@app.command()
def gate(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            help="The generator (store name or folder) whose samples the gate learns to "
            "recognise. Required, except with --resume (the run's own).",
            show_default=False,
        ),
    ] = None,
    denoiser: Annotated[
        str | None,
        typer.Option(
            help="The denoiser (or autoencoder) that cleans what the gate lets through; its "
            "weights are copied into the new model, which stands alone. Required, except "
            "with --resume.",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Name of the gated denoiser in the store. Default: denoiser-MODEL (for a "
            "path, the name of its folder).",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, rich_help_panel=GATE_RECIPE)] = 2,
    batch_size: Annotated[int, typer.Option(min=1, rich_help_panel=GATE_RECIPE)] = 256,
    lr: Annotated[
        float, typer.Option(help="Adam's learning rate.", rich_help_panel=GATE_RECIPE)
    ] = 2e-3,
    width: Annotated[
        int,
        typer.Option(
            min=1,
            help="The detector's first channels (then twice as many).",
            rich_help_panel=GATE_RECIPE,
        ),
    ] = 16,
    samples: Annotated[
        int,
        typer.Option(
            min=MIN_GATE_SAMPLES,
            help="Generator samples to learn from, beside the 60,000 training images (a "
            "tenth of each is held out to validate).",
            rich_help_panel=GATE_RECIPE,
        ),
    ] = 60_000,
    resume: ResumeOption = False,
    restart: RestartOption = False,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    precision: PrecisionOption = Precision.auto,
    cuda_graphs: CudaGraphsOption = True,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Gate a denoiser to one generator: clean what looks generated, leave real images alone.

    A denoiser that redraws images brings a weak generator's samples much closer to real
    clothes, and changes every real photograph too. This trains a small detector of MODEL's
    samples against the training images and saves the denoiser behind it: each image moves
    towards its cleaned version by the detector's probability that MODEL drew it. Use the
    result with fmt gan sample --denoise --denoiser NAME. The test images are measured at
    the end: how many the detector takes for generated, and how much the gated denoiser
    changes them (mean squared). Checkpointed every epoch: Ctrl-C keeps the checkpoint and
    prints the command that resumes.

    Example: fmt gan gate --model gan-mlp --denoiser my-wide-denoiser --name my-gated
    """
    from fmnist_toolkit.config import GateTrainConfig
    from fmnist_toolkit.engine.callbacks import ProgressCallback
    from fmnist_toolkit.engine.gate import train_gate
    from fmnist_toolkit.errors import UsageError

    check_resume_or_restart(resume, restart)
    if not resume and (model is None or denoiser is None):
        raise UsageError("fmt gan gate needs --model (a generator) and --denoiser")
    if not name and model is None:
        raise UsageError("--resume needs the --name of the interrupted run")
    if resume:
        note_ignored_on_resume(ctx, _GATE_RECIPE_OPTIONS)
    model_name = name or f"denoiser-{model_label(str(model))}"
    # Resuming, the run's recipe (generator and denoiser included) comes from its checkpoint.
    config = GateTrainConfig(
        generator=model or "",
        denoiser=denoiser or "",
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        width=width,
        samples=samples,
        seed=seed,
    )
    engine = engine_config(device, precision, cuda_graphs)
    with resume_hint(ctx, model_name):
        result = train_gate(
            model_name,
            config,
            engine,
            data_dir=data_dir,
            resume=resume,
            restart=restart,
            callbacks=[ProgressCallback(console, label=model_name, quiet=quiet)],
        )
    summary = {
        "name": result.name,
        "path": str(result.path),
        "generator": result.generator,
        "denoiser": result.denoiser,
        "epochs": result.epochs,
        "val_accuracy": round(result.val_accuracy, 6),
        "generated_flagged": round(result.generated_flagged, 6),
        "clean_flagged": round(result.clean_flagged, 6),
        "clean_mse": round(result.clean_mse, 6),
        "denoiser_clean_mse": round(result.denoiser_clean_mse, 6),
        "seconds": round(result.seconds, 3),
        "device": result.device,
        "resumed_from_epoch": result.resumed_from_epoch,
    }
    note_if_hiding_bundled(result.name)
    if json_output:
        print_json(summary)
        return
    print_summary(f"Gated denoiser {result.name}", summary)


@app.command()
def sample(
    out: Annotated[
        str,
        typer.Argument(
            help="Where to write: .png/.jpg a grid; .npz/.npy uint8 arrays [n, 28, 28]; a folder "
            "(new or empty) one PNG per image; - PNG bytes on standard output (not with "
            "--json, which prints there too).",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            help="Generator (store name or folder). Default: gan-dcgan-cond (every class "
            "equally often), else gan-dcgan, else gan-mlp; with --class gan-dcgan-cond, else "
            "the newest class-conditional generator.",
            show_default=False,
        ),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option(
            "--n",
            help="How many images (1 to 100,000). Default: 64, or 8 per --class.",
            show_default=False,
        ),
    ] = None,
    nrow: Annotated[
        int | None,
        typer.Option(
            help="Images per row of a grid. Default: 8, or with --class one row per class.",
            show_default=False,
        ),
    ] = None,
    classes: Annotated[
        list[str] | None,
        typer.Option(
            "--class",
            help="A conditional generator's class: a name (sneaker, 'ankle boot', t-shirt; any "
            "case) or an index 0-9; repeat it for several, or all for one row per class. "
            "--n is split evenly between them.",
            show_default=False,
        ),
    ] = None,
    denoise: Annotated[
        bool,
        typer.Option(
            "--denoise",
            help="Pass the images through a denoiser, which cleans GAN artefacts.",
            rich_help_panel=DENOISE,
        ),
    ] = False,
    denoiser: Annotated[
        str | None,
        typer.Option(
            help="Denoiser or autoencoder for --denoise (giving it implies --denoise). Default: "
            "the one the generator records for its samples if the store has it (gan-mlp: "
            "denoiser-gan-mlp), else the model trained to denoise with the lowest test MSE "
            "(denoiser-unet), else the latent-16 autoencoder with the lowest test MSE.",
            show_default=False,
            rich_help_panel=DENOISE,
        ),
    ] = None,
    side_by_side: Annotated[
        bool,
        typer.Option(
            "--side-by-side",
            help="With --denoise and a .png/.jpg OUT: raw and denoised grids in one figure.",
            rich_help_panel=DENOISE,
        ),
    ] = False,
    truncation: TruncationOption = None,
    device: DeviceOption = "auto",
    seed: NoiseSeedOption = 0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Draw new images from a trained generator.

    Computed in batches of 1,000 on --device from noise seeded by --seed (drawn on the CPU, so
    a seed means the same noise everywhere): the same model, seed, options and device give
    byte-identical output, and --n 100000 needs little memory. Nothing is left at OUT unless it
    was written whole.

    Example: fmt gan sample --n 64 --denoise out.png

    Example: fmt gan sample --model gan-dcgan-cond --class all --n 40 grid.png
    """
    from fmnist_toolkit.data import CLASS_NAMES
    from fmnist_toolkit.engine.sample import (
        PER_CLASS,
        SAMPLE_BATCH,
        SampleRequest,
        parse_classes,
        truncation_label,
        write_samples,
    )
    from fmnist_toolkit.errors import UsageError

    if out == "-" and json_output:
        raise UsageError(
            "OUT - writes the PNG to standard output, where --json would print too: "
            "write the images to a file for --json, or drop --json"
        )
    if out == "-" and sys.stdout.isatty():
        raise UsageError("OUT - writes PNG bytes: pipe or redirect them (fmt gan sample - > x.png)")
    wanted = parse_classes(classes or [])
    count = n if n is not None else (PER_CLASS * len(wanted) if wanted else 64)
    per_row = nrow if nrow is not None else (max(count // len(wanted), 1) if wanted else 8)
    request = SampleRequest(
        count=count,
        seed=seed,
        nrow=per_row,
        denoise=denoise,
        side_by_side=side_by_side,
        classes=wanted,
        truncation=truncation,
    )
    # A bar only where there is more than one batch to wait for.
    with count_progress("sampling", count, quiet=quiet or count <= SAMPLE_BATCH) as advance:
        result = write_samples(
            request,
            out,
            generator_name=model,
            denoiser_name=denoiser,
            device=device,
            on_batch=advance,
        )
    if result.png_bytes is not None:
        sys.stdout.buffer.write(result.png_bytes)
        sys.stdout.flush()
    summary = {
        "out": result.out,
        "format": result.format,
        "n": result.count,
        "files": result.files,
        "seed": seed,
        "classes": [CLASS_NAMES[index] for index in wanted],
        "truncation": result.truncation,
        "generator": result.generator,
        "denoiser": result.denoiser,
        "sources": result.sources,
    }
    if json_output:
        print_json(summary)
    elif out != "-":
        sources = result.sources
        drawn = f"{result.generator}{truncation_label(result.truncation)}"
        made_by = f"{drawn}, {sources.get(result.generator, '?')}"
        if result.denoiser:
            made_by += f"; denoised by {result.denoiser}, {sources.get(result.denoiser, '?')}"
        images = "image" if result.count == 1 else "images"
        console.print(f"wrote {result.count} {images} to {result.out} ({made_by})", soft_wrap=True)


@app.command("eval")
def evaluate(
    model: Annotated[
        str | None,
        typer.Option(
            help="Generator to measure. Default: as in fmt gan sample (gan-dcgan-cond).",
            show_default=False,
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="Classifier whose penultimate layer is the feature space. Default: the stored "
            "classifier with the best test accuracy.",
            show_default=False,
        ),
    ] = None,
    n: Annotated[int, typer.Option("--n", help="Generated images to compare.")] = 10_000,
    denoise: Annotated[
        bool,
        typer.Option(
            "--denoise", help="Also measure the denoised samples.", rich_help_panel=DENOISE
        ),
    ] = False,
    denoiser: Annotated[
        str | None,
        typer.Option(
            help="Denoiser or autoencoder for --denoise, which it implies (default: as in fmt "
            "gan sample).",
            show_default=False,
            rich_help_panel=DENOISE,
        ),
    ] = None,
    truncation: TruncationOption = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    seed: NoiseSeedOption = 0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Measure sample quality: Fréchet distance to the 10,000 test images.

    Features are the 128 activations before a toolkit classifier's last layer. Beside the
    samples' distance: that of as many training images (the floor: what real images score at
    that N), and each set's predicted-class histogram and its entropy (mode coverage: ln 10 =
    2.303 when all ten classes are equally common). The distance grows as N shrinks: compare
    at equal N. A class-conditional generator draws every class equally often (--n a multiple
    of 10), and a second table gives, per class, the share of its samples the classifier
    assigns to it.

    Example: fmt gan eval --model gan-dcgan --denoise
    """
    from fmnist_toolkit.engine.gan_eval import evaluate_generator

    with spinner("Sampling and measuring…", quiet=quiet):
        report = evaluate_generator(
            generator_name=model,
            features_name=features,
            denoise=denoise,
            denoiser_name=denoiser,
            count=n,
            seed=seed,
            truncation=truncation,
            data_dir=data_dir,
            device=device,
        )
    if json_output:
        print_json(
            {
                "generator": report.generator,
                "features": report.features,
                "denoiser": report.denoiser,
                "reference": report.reference,
                "truncation": report.truncation,
                "rows": [
                    {
                        "images": row.images,
                        "n": row.count,
                        "frechet_distance": row.frechet_distance,
                        "class_entropy": row.class_entropy,
                        "class_histogram": row.class_histogram,
                        "class_shares": row.class_shares,
                        "mean_class_share": row.mean_class_share,
                    }
                    for row in report.rows
                ],
            }
        )
        return
    from rich.table import Table

    table = Table(
        title=f"{report.generator}: Fréchet distance to the {report.reference} "
        f"(features: {report.features}; truncation {report.truncation:g})"
    )
    for column in ("images", "N", "distance", "class entropy", "classes (T-shirt … ankle boot)"):
        table.add_column(column)
    for row in report.rows:
        table.add_row(
            row.images,
            f"{row.count:,}",
            f"{row.frechet_distance:.3f}",
            f"{row.class_entropy:.3f}",
            " ".join(str(count) for count in row.class_histogram.values()),
        )
    print_result(table)
    conditioned = [row for row in report.rows if row.class_shares]
    if conditioned:
        shares = Table(
            title=f"{report.generator}: share of each requested class's samples that "
            f"{report.features} assigns to it"
        )
        shares.add_column("class")
        for row in conditioned:
            shares.add_column(row.images, justify="right")
        for name in conditioned[0].class_shares or {}:
            shares.add_row(name, *[f"{(row.class_shares or {})[name]:.1%}" for row in conditioned])
        shares.add_row("mean", *[f"{row.mean_class_share:.1%}" for row in conditioned])
        print_result(shares)
