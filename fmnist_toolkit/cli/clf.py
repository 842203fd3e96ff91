"""``fmt clf``: classifiers on the autoencoder's encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist_toolkit.cli._options import (
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
    engine_config,
    schedule_option,
)
from fmnist_toolkit.cli._render import (
    console,
    model_label,
    note_if_hiding_bundled,
    print_error,
    print_json,
    print_result,
    resume_hint,
    spinner,
)

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Classifiers on a trained encoder, frozen or fine-tuned: train, measure, predict.",
    no_args_is_help=True,
)

RECIPE = "Recipe (defaults: the course report's)"
TRICKS = "The field's tools (defaults: off, as in the report)"
ScheduleOption = schedule_option(TRICKS)
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Classifier name in the store, or the path of its folder. Default: the classifier "
        "with the highest test accuracy in the store (bundled: clf-ae-wide-16-ft).",
        show_default=False,
    ),
]


def _chosen_classifier(model: str | None, purpose: str) -> str:
    from fmnist_toolkit.engine.defaults import best_classifier
    from fmnist_toolkit.storage import ModelStore

    return model or best_classifier(ModelStore(), purpose=purpose, option="--model")


def _metrics_rows(per_class: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title="Per class (test set)")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in per_class:
        table.add_row(
            row["class"],
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1']:.3f}",
            str(row["support"]),
        )
    return table


@app.command()
def finetune(
    ctx: typer.Context,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="Autoencoder whose encoder is used (store name or folder). Default: the "
            "latent-16 autoencoder with the lowest test MSE in the store "
            "(bundled: ae-wide-16-onecycle).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="Name in the store. Default: clf-ENCODER, or clf-ENCODER-ft with --unfreeze.",
            show_default=False,
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, rich_help_panel=RECIPE)] = 100,
    batch_size: Annotated[int, typer.Option(min=1, rich_help_panel=RECIPE)] = 256,
    lr: Annotated[
        float, typer.Option(help="Learning rate of the head.", rich_help_panel=RECIPE)
    ] = 2e-4,
    weight_decay: Annotated[float, typer.Option(min=0.0, rich_help_panel=RECIPE)] = 1e-5,
    unfreeze: Annotated[
        bool,
        typer.Option(
            "--unfreeze", help="Train the encoder too (at --encoder-lr).", rich_help_panel=RECIPE
        ),
    ] = False,
    encoder_lr: Annotated[
        float,
        typer.Option(help="Learning rate of the encoder with --unfreeze.", rich_help_panel=RECIPE),
    ] = 2e-4,
    augment: Annotated[
        bool,
        typer.Option(
            help="With --unfreeze: mirror each training image left-right at random and shift it "
            "by up to 2 pixels (a fine-tuned encoder overfits without it). No effect on a frozen "
            "encoder, whose codes are computed once.",
            rich_help_panel=RECIPE,
        ),
    ] = True,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the training set held out to pick the best epoch.",
            rich_help_panel=RECIPE,
        ),
    ] = 0.1,
    schedule: ScheduleOption = Schedule.constant,
    label_smoothing: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="Train towards 1 - s on the true class and s/10 on every class.",
            rich_help_panel=TRICKS,
        ),
    ] = 0.0,
    mixup: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Mixup: blend each batch with a shuffled copy of itself (images, or codes with "
            "a frozen encoder, and their targets) by a weight from Beta(a, a); a is this value, "
            "0 turns it off (0.2 is common).",
            rich_help_panel=TRICKS,
        ),
    ] = 0.0,
    cutout: Annotated[
        int,
        typer.Option(
            min=0,
            max=28,
            help="With --unfreeze: erase a square of this many pixels a side at a random place "
            "of each training image (0: none).",
            rich_help_panel=TRICKS,
        ),
    ] = 0,
    ema: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.9999,
            help="Keep an exponential moving average of the weights with this decay per step "
            "and validate and save it instead of the last step's weights (0: none; 0.999 is "
            "common).",
            rich_help_panel=TRICKS,
        ),
    ] = 0.0,
    augment_codes: Annotated[
        bool,
        typer.Option(
            "--augment-codes",
            help="With a frozen encoder: train the head on codes of mirrored and shifted images, "
            "encoded afresh every epoch (slower), instead of the fixed codes of the plain ones.",
            rich_help_panel=TRICKS,
        ),
    ] = False,
    tta_flip: Annotated[
        bool,
        typer.Option(
            "--tta-flip",
            help="Test-time augmentation: predict from each image and its mirror image (the "
            "mean of both probabilities), on the validation and test sets and whenever the "
            "saved model predicts (it records the choice). Measured: it helps an encoder "
            "fine-tuned on mirrored images, and costs a frozen head that never saw mirrored "
            "codes 7 points (docs/classifier.md).",
            rich_help_panel=TRICKS,
        ),
    ] = False,
    resume: ResumeOption = False,
    restart: RestartOption = False,
    plots: Annotated[
        Path | None,
        typer.Option(
            help="Write the loss/accuracy curves and the confusion matrix as PNGs here.",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    precision: PrecisionOption = Precision.auto,
    cuda_graphs: CudaGraphsOption = True,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train the report's classifier head on an autoencoder's encoder and save the best epoch.

    The head is latent → 256 → 256 → 128 → 10 (ReLU, log-softmax, cross-entropy, Adam). With the
    encoder frozen (the default, as in the report) its codes are computed once; --unfreeze
    fine-tunes it too. A validation split of the training set picks the epoch; the test set is
    only measured. A checkpoint is written after every epoch: Ctrl-C keeps it and prints the
    command that resumes.

    Example: fmt clf finetune --unfreeze --plots plots/
    """
    from fmnist_toolkit.config import ClassifierTrainConfig
    from fmnist_toolkit.engine.callbacks import ProgressCallback
    from fmnist_toolkit.engine.clf import train_classifier
    from fmnist_toolkit.engine.defaults import best_autoencoder
    from fmnist_toolkit.storage import ModelStore

    check_resume_or_restart(resume, restart)
    if resume and name is not None and encoder is None:
        encoder = ""  # the checkpoint of --name knows its encoder
    if encoder is None:
        encoder = best_autoencoder(
            ModelStore(), purpose="to take an encoder from", option="--encoder"
        )
    encoder_label = model_label(encoder)
    model_name = name or (f"clf-{encoder_label}-ft" if unfreeze else f"clf-{encoder_label}")
    config = ClassifierTrainConfig(
        encoder=encoder,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        unfreeze=unfreeze,
        encoder_lr=encoder_lr,
        augment=augment,
        val_fraction=val_fraction,
        seed=seed,
        schedule=Schedule(schedule).value,
        label_smoothing=label_smoothing,
        mixup=mixup,
        cutout=cutout,
        ema=ema,
        tta_flip=tta_flip,
        augment_codes=augment_codes,
    )
    engine = engine_config(device, precision, cuda_graphs)
    with resume_hint(ctx, model_name):
        result = train_classifier(
            model_name,
            config,
            engine,
            data_dir=data_dir,
            resume=resume,
            restart=restart,
            plots_dir=plots,
            callbacks=[ProgressCallback(console, label=model_name, quiet=quiet)],
        )
    summary = {
        "name": result.name,
        "path": str(result.path),
        "encoder": result.encoder,
        "unfreeze": result.unfreeze,
        "epochs": result.epochs,
        "best_epoch": result.best_epoch,
        "val_accuracy": result.val_accuracy,
        "test_accuracy": result.test.accuracy,
        "per_class": result.test.per_class,
        "confusion": result.test.confusion,
        "seconds": round(result.seconds, 3),
        "device": result.device,
        "resumed_from_epoch": result.resumed_from_epoch,
        "plots": [str(path) for path in result.plots],
    }
    note_if_hiding_bundled(result.name)
    if json_output:
        print_json(summary)
        return
    print_result(_metrics_rows(result.test.per_class))
    print_result(
        f"[bold]{result.name}[/]: test accuracy [bold]{result.test.accuracy:.2%}[/] "
        f"(validation {result.val_accuracy:.2%}, best epoch {result.best_epoch}/{result.epochs}) "
        f"saved in {result.path}"
    )


@app.command("eval")
def evaluate(
    model: ModelOption = None,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Re-measure a saved classifier on the 10,000 test images.

    Example: fmt clf eval --model clf-ae-wide-16-ft --json
    """
    from fmnist_toolkit.engine.clf import evaluate_classifier

    model = _chosen_classifier(model, "to measure")
    metrics = evaluate_classifier(model, data_dir=data_dir, device=device)
    if json_output:
        print_json(
            {
                "model": model,
                "test_accuracy": metrics.accuracy,
                "per_class": metrics.per_class,
                "confusion": metrics.confusion,
            }
        )
        return
    print_result(_metrics_rows(metrics.per_class))
    print_result(f"[bold]{model}[/]: test accuracy [bold]{metrics.accuracy:.2%}[/]")


@app.command()
def probe(
    encoder: Annotated[
        list[str] | None,
        typer.Option(
            help="Autoencoder (store name or folder) whose frozen codes are probed; repeat for "
            "several. Default: every latent-16 autoencoder in the store.",
            show_default=False,
        ),
    ] = None,
    pca: Annotated[
        int,
        typer.Option(
            min=0,
            max=784,
            help="Also probe this many principal components of the pixels (0: no PCA probe).",
        ),
    ] = 16,
    val_fraction: Annotated[
        float,
        typer.Option(help="Share of the training set that picks each probe's L2 penalty."),
    ] = 0.1,
    data_dir: DataDirOption = None,
    device: DeviceOption = "auto",
    seed: SeedOption = 0,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Linear probe: a logistic regression on an encoder's frozen codes, beside one on PCA.

    How much class information an encoder's numbers hold, read off by the simplest classifier:
    multinomial logistic regression (full-batch L-BFGS) on the standardised codes of the
    training split; the validation share picks its L2 penalty, the test set is only measured.
    PCA's first components of the pixels are the baseline with no learning.

    Example: fmt clf probe --encoder ae-16 --encoder ae-wide-16-onecycle
    """
    from fmnist_toolkit.engine.defaults import latent_autoencoders
    from fmnist_toolkit.engine.probe import linear_probes
    from fmnist_toolkit.storage import ModelStore

    encoders = encoder or latent_autoencoders(ModelStore())
    with spinner("Encoding and fitting the probes…", quiet=quiet):
        results = linear_probes(
            encoders,
            pca_components=pca or None,
            data_dir=data_dir,
            device=device,
            val_fraction=val_fraction,
            seed=seed,
        )
    rows = [
        {
            "features": result.features,
            "dimensions": result.dimensions,
            "test_mse": result.test_mse,
            "penalty": result.penalty,
            "train_accuracy": result.train_accuracy,
            "val_accuracy": result.val_accuracy,
            "test_accuracy": result.test_accuracy,
        }
        for result in results
    ]
    if json_output:
        print_json({"probes": rows})
        return
    from rich.table import Table

    table = Table(title="Linear probes (logistic regression on frozen features)")
    for column in ("features", "numbers", "AE test MSE", "L2", "validation", "test"):
        table.add_column(column, justify="left" if column == "features" else "right")
    for row in rows:
        table.add_row(
            row["features"],
            str(row["dimensions"]),
            f"{row['test_mse']:.5f}" if row["test_mse"] is not None else "—",
            f"{row['penalty']:g}",
            f"{row['val_accuracy']:.2%}",
            f"{row['test_accuracy']:.2%}",
        )
    print_result(table)


@app.command()
def predict(
    images: Annotated[
        list[str],
        typer.Argument(
            help="Image files (PNG, JPEG, TIFF, WebP, ...), any size; - reads one from "
            "standard input.",
            show_default=False,
        ),
    ],
    model: ModelOption = None,
    top: Annotated[int, typer.Option(min=1, max=10, help="How many classes to show.")] = 3,
    json_output: JsonOption = False,
) -> None:
    """Classify your own pictures of clothes.

    Each picture is converted as Fashion-MNIST's were: grayscale, inverted when its background
    is light, trimmed, longest side resized to 28 pixels, centred on a 28x28 canvas. A picture
    that cannot be read gets an error line on stderr (with --json, an "error" entry) and the
    others their answers; the exit status is then 1.

    Example: fmt clf predict shoe.jpg shirt.png --top 1
    """
    import sys

    from fmnist_toolkit.engine.clf import predict_images
    from fmnist_toolkit.errors import UsageError

    stdin = None
    if "-" in images:
        if images.count("-") > 1:
            raise UsageError("- (standard input) can be given once")
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("- reads a picture from standard input: pipe or redirect one")
        stdin = sys.stdin.buffer
    model = _chosen_classifier(model, "to classify with")
    predictions = predict_images(model, images, top=top, stdin=stdin)
    if json_output:
        print_json({"model": model, "predictions": predictions})
    for prediction in predictions:
        if "error" in prediction:
            print_error(prediction["error"])
        elif not json_output:
            ranked = ", ".join(
                f"{row['class']} {row['probability']:.1%}" for row in prediction["top"]
            )
            typer.echo(f"{prediction['image']}: {ranked}")
    if any("error" in prediction for prediction in predictions):
        raise typer.Exit(1)
