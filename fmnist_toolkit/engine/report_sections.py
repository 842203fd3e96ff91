"""The sections of ``fmt report``, one function each, in the course report's order.

Each draws its figures with the engine's own figure functions into the report's folder and
records its numbers beside the report's; what it cannot draw here is listed as skipped with
the command that makes it possible (see :class:`fmnist_toolkit.engine.report.ReportContext`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import AutoencoderTrainConfig, ClassifierTrainConfig, config_from_dict
from fmnist_toolkit.data import CLASS_NAMES, to_unit_float
from fmnist_toolkit.engine.defaults import denoiser_for
from fmnist_toolkit.engine.model_io import load_model, read_model_of_kind, recorded_denoiser
from fmnist_toolkit.engine.report import (
    REPORT_BEST_TRIAL,
    REPORT_NUMBERS,
    REPORT_RECIPE,
    Measure,
    ReportContext,
    Section,
    Skipped,
)
from fmnist_toolkit.errors import MeasurementError, ToolkitError

if TYPE_CHECKING:
    import torch

EXAMPLES_PER_CLASS = 10
KNN_LABELS = {
    "scatter": "the 2-D codes",
    "untrained": "the codes of an untrained encoder",
    "pca": "PCA of the codes",
    "tsne": "t-SNE of the codes",
}
SAMPLE_GRID = 64  # generated images in each sample figure
PCA_COMPONENTS = (16, 64)


def _config(ctx: ReportContext, name: str, kind: str) -> dict[str, Any]:
    return read_model_of_kind(name, kind, ctx.store)[1]


# --------------------------------------------------------------------------- the data


def examples(ctx: ReportContext, section: Section) -> None:
    """Ten test images of every class, one class a row."""
    from fmnist_toolkit import plots

    section.intro = (
        "Fashion-MNIST: 60,000 training and 10,000 test images of 28x28 grey pixels in ten "
        "classes of clothing."
    )
    if not ctx.has_data(section, "example images"):
        return
    test = ctx.split("test")
    present = [label for label in range(len(CLASS_NAMES)) if bool((test.labels == label).any())]
    per_class = min([EXAMPLES_PER_CLASS, *[int((test.labels == label).sum()) for label in present]])
    rows = [
        to_unit_float(test.images[(test.labels == label).nonzero()[:per_class, 0]]).cpu()
        for label in present
    ]
    figure = plots.image_rows(
        rows,
        row_labels=[CLASS_NAMES[label] for label in present],
        column_labels=[""] * per_class,
        title=f"The first {per_class} test images of each class",
    )
    ctx.save(section, "examples", figure, "Example images, one class a row.")
    section.measures.append(Measure("test images", "count", report=10_000, here=len(test)))
    section.measures.append(
        Measure("training images", "count", report=60_000, here=len(ctx.split("train")))
    )


# --------------------------------------------------------------------------- the autoencoder


def autoencoder(ctx: ReportContext, section: Section) -> None:
    """Loss curves and reconstructions of the report's autoencoder; test MSE beside PCA's."""
    from fmnist_toolkit.engine.ae import loss_figure, reconstruction_figure, reconstruction_mse
    from fmnist_toolkit.engine.latent import pca_test_mse

    section.intro = (
        f"The report's convolutional autoencoder, latent 16, with its recipe ({REPORT_RECIPE}). "
        "PCA with as many components is the linear baseline."
    )
    name = ctx.model(section, "ae-16", "the autoencoder's figures", "fmt ae train")
    mse = Measure("test MSE, latent 16", "mse", report=REPORT_NUMBERS["ae_test_mse"])
    section.measures.append(mse)
    if name is not None:
        saved = _config(ctx, name, "autoencoder")
        config = config_from_dict(AutoencoderTrainConfig, saved.get("recipe", {}))
        history = saved.get("history", [])
        mse.model, mse.toolkit = name, saved.get("metrics", {}).get("test_mse")
        if history:
            figure = loss_figure(history, name, config)
            ctx.save(section, "loss", figure, f"{name}: MSE per epoch, as recorded in training.")
        if ctx.has_data(section, "reconstructions and the test MSE measured here"):
            model = load_model(name, store=ctx.store, device=ctx.device)
            test = ctx.split("test")
            mse.here = reconstruction_mse(model, test)
            figure = reconstruction_figure(model, test, name, config, len(history))
            ctx.save(section, "reconstructions", figure, "Test images over their reconstructions.")
    best = ctx.models.get("best-ae")
    if best is not None and best != name:
        best_mse = _config(ctx, best, "autoencoder").get("metrics", {}).get("test_mse")
        section.measures.append(
            Measure(
                "test MSE, the toolkit's best latent-16 model", "mse", None, best_mse, None, best
            )
        )
    if ctx.data_dir is not None:
        baseline = pca_test_mse(ctx.split("train").images, ctx.split("test").images, PCA_COMPONENTS)
        for count, key in zip(PCA_COMPONENTS, ("pca16_test_mse", "pca64_test_mse"), strict=True):
            section.measures.append(
                Measure(
                    f"test MSE, PCA with {count} components (linear baseline)",
                    "mse",
                    report=REPORT_NUMBERS[key],
                    here=baseline[count],
                )
            )


# --------------------------------------------------------------------------- tuning


def tuning(ctx: ReportContext, section: Section) -> None:
    """Optuna's optimisation history and parallel coordinates of the tuning study."""
    import optuna

    from fmnist_toolkit.engine.tune import (
        default_storage_url,
        open_storage,
        quiet_optuna,
        write_study_plots,
    )

    section.intro = (
        "The report searched its recipe with Optuna: optimizer (Adam or SGD), learning rate "
        "1e-4 … 1e-3 and weight decay 1e-5 … 1e-3, and kept the best trial's recipe "
        f"({REPORT_RECIPE})."
    )
    command = f"fmt ae tune --study {ctx.study} --trials 20, or fmt report --retrain"
    what = f"the search's figures (study {ctx.study!r})"
    default_file = ctx.store.studies_path
    if ctx.storage is None and not default_file.is_file():
        section.skipped.append(Skipped(what, "no tuning study in the store", command))
        return
    url = ctx.storage or default_storage_url(ctx.store)
    with quiet_optuna():
        try:
            study = optuna.load_study(study_name=ctx.study, storage=open_storage(url))
        except KeyError:
            section.skipped.append(Skipped(what, f"no study named {ctx.study!r}", command))
            return
        complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        section.measures.append(Measure("finished trials", "count", here=len(complete)))
        if not complete:
            section.skipped.append(Skipped(what, "the study has no finished trial", command))
            return
        best = study.best_trial
        section.measures.append(
            Measure(
                "best recipe",
                "text",
                report=_recipe_text(REPORT_BEST_TRIAL),
                here=_recipe_text(best.params),
            )
        )
        section.measures.append(Measure("best validation MSE", "mse", here=best.value))
        captions = {
            "history": "Optimisation history: each trial's validation MSE and the best so far.",
            "parallel-coordinate": "Parallel coordinates: each trial's recipe and its score.",
            "param-importances": "Parameter importances (fANOVA).",
        }
        for path in write_study_plots(study, ctx.figures):
            suffix = path.stem.removeprefix(f"{study.study_name}-")
            ctx.attach(section, path.name, captions.get(suffix, suffix))


def _recipe_text(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
        for key, value in params.items()
    )


# --------------------------------------------------------------------------- the latent space


def latent(ctx: ReportContext, section: Section) -> None:
    """The 2-D scatter, trained vs untrained and the walk of ae-2; PCA and t-SNE of ae-16."""
    from fmnist_toolkit.engine.latent import draw_view, open_latent_space

    section.intro = (
        "Where the encoders put the 10,000 test images. Each scatter carries its leave-one-out "
        "5-nearest-neighbour class accuracy (chance: 10 %): how well the classes separate."
    )
    views: list[tuple[str, str, list[str]]] = [
        ("ae-2", "fmt ae train --latent-dim 2 --name ae-2", ["scatter", "untrained", "walk"]),
        ("ae-16", "fmt ae train", ["pca", "tsne"]),
    ]
    captions = {
        "scatter": "The 2-D latent codes of the test images, by class.",
        "untrained": "The trained encoder beside a freshly initialised one, on the same axes.",
        "walk": "Images decoded along the line from the ankle-boot to the sneaker centroid.",
        "pca": "The first two principal components of the 16-D codes.",
        "tsne": "t-SNE of the 16-D codes.",
    }
    for role, command, wanted in views:
        name = ctx.model(section, role, f"{', '.join(wanted)} ({role})", command)
        if name is None or not ctx.has_data(section, f"{', '.join(wanted)} ({role})"):
            continue
        space = open_latent_space(
            name, data_dir=ctx.data_dir, device=str(ctx.device), store=ctx.store
        )
        for view in wanted:
            drawn = space
            caption = captions[view]
            if view == "tsne" and len(space.codes) > ctx.tsne_points:
                drawn = dataclasses.replace(
                    space,
                    codes=space.codes[: ctx.tsne_points],
                    labels=space.labels[: ctx.tsne_points],
                )
                caption = caption.replace(".", f" (the first {ctx.tsne_points:,} test images).")
            file = f"latent-{name}-{view}.png"
            result = draw_view(drawn, view, ctx.figures / file, dpi=110)
            ctx.attach(section, file, caption)
            for which, accuracy in result.knn_accuracy.items():
                if view == "untrained" and which == "trained":
                    continue  # the scatter's or the PCA's number again
                label = KNN_LABELS[view if which == "trained" else "untrained"]
                section.measures.append(
                    Measure(f"5-NN class accuracy, {label}", "accuracy", here=accuracy, model=name)
                )


# --------------------------------------------------------------------------- the classifier


def classifier(ctx: ReportContext, section: Section) -> None:
    """Curves and confusion matrices of the classifiers on the report's encoder."""
    from fmnist_toolkit.engine.clf import write_classifier_plots
    from fmnist_toolkit.engine.clf_eval import ClassifierMetrics, classify, test_metrics

    section.intro = (
        "The report's head (latent → 256 → 256 → 128 → 10) on the encoder of its autoencoder: "
        "frozen, as in the report, and fine-tuned with it (--unfreeze)."
    )
    roles = [
        ("clf-frozen", "frozen encoder", "fmt clf finetune --encoder ae-16", "clf_frozen_accuracy"),
        (
            "clf-finetuned",
            "fine-tuned encoder",
            "fmt clf finetune --encoder ae-16 --unfreeze",
            None,
        ),
    ]
    for role, label, command, key in roles:
        name = ctx.model(section, role, f"the classifier's figures ({label})", command)
        measure = Measure(
            f"test accuracy, {label}", "accuracy", report=REPORT_NUMBERS.get(key or "")
        )
        section.measures.append(measure)
        if name is None:
            continue
        saved = _config(ctx, name, "classifier")
        metrics_saved = saved.get("metrics", {})
        measure.model, measure.toolkit = name, metrics_saved.get("test_accuracy")
        metrics = None
        if ctx.has_data(section, f"the test accuracy of {name} measured here"):
            model = load_model(name, store=ctx.store, device=ctx.device)
            test = ctx.split("test")
            metrics = test_metrics(classify(model, test), test.labels)
            measure.here = metrics.accuracy
        elif "confusion" in metrics_saved:
            metrics = ClassifierMetrics(
                metrics_saved.get("test_accuracy", 0.0),
                metrics_saved.get("per_class", []),
                metrics_saved["confusion"],
            )
        config = config_from_dict(ClassifierTrainConfig, saved.get("recipe", {}))
        history, best_epoch = saved.get("history", []), int(saved.get("best_epoch", 0))
        if metrics is None or not history:
            section.skipped.append(Skipped(f"{name}'s figures", "no history or test metrics"))
            continue
        where = "measured here" if measure.here is not None else "as saved when it was trained"
        curves, confusion = write_classifier_plots(
            name, config, history, best_epoch, metrics, ctx.figures
        )
        for path, caption in (
            (curves, f"{name}: loss and accuracy per epoch; the dashed line is the kept epoch."),
            (confusion, f"{name}: confusion matrix on the test set ({where})."),
        ):
            ctx.attach(section, path.name, caption)
    best = ctx.models.get("best-clf")
    if best is not None:
        accuracy = _config(ctx, best, "classifier").get("metrics", {}).get("test_accuracy")
        section.measures.append(
            Measure(
                "test accuracy, the toolkit's best classifier",
                "accuracy",
                None,
                accuracy,
                None,
                best,
            )
        )


# --------------------------------------------------------------------------- the GAN


def _sample_figure(ctx: ReportContext, generator: str, denoisers: list[str]) -> Any:
    """Raw samples of ``generator`` beside the same samples through each denoiser."""
    from fmnist_toolkit import plots
    from fmnist_toolkit.engine.sample import (
        image_grid,
        load_denoiser,
        load_generator,
        sample_batches,
        sample_labels,
        truncation_label,
    )

    network = load_generator(generator, ctx.store, ctx.device)
    labels = sample_labels(network, SAMPLE_GRID)  # a conditional one: every class in turn
    raw, _ = next(sample_batches(network, None, SAMPLE_GRID, ctx.seed, labels))
    panels: list[torch.Tensor] = [image_grid(raw, nrow=8)]
    titles = [f"{generator}{truncation_label(network.truncation)}: raw samples"]
    for name in denoisers:
        denoiser = load_denoiser(name, ctx.store, ctx.device)
        import torch

        with torch.no_grad():
            cleaned = denoiser(raw.to(ctx.device)).float().cpu().clamp(0, 1)
        panels.append(image_grid(cleaned, nrow=8))
        titles.append(f"denoised by {name}")
    return plots.image_panels(panels, titles=titles)


def gan(ctx: ReportContext, section: Section) -> None:
    """Losses of the report's MLP GAN, samples raw and denoised, and Fréchet distances."""
    from fmnist_toolkit.engine.gan import write_gan_plots

    section.intro = (
        f"The report's MLP GAN ({REPORT_NUMBERS['gan_epochs']:.0f} epochs) and the toolkit's "
        "default generator; samples raw, denoised by the report's autoencoder, by the "
        "toolkit's default denoiser and by the one a generator records for its samples (what "
        "--denoise uses). The report judged samples by eye; the toolkit measures "
        "the Fréchet distance to the test set in its best classifier's feature space."
    )
    mlp = ctx.model(section, "gan-mlp", "the MLP GAN's figures", "fmt gan train")
    generators = [name for name in (mlp, ctx.models.get("generator")) if name is not None]
    generators = list(dict.fromkeys(generators))
    if mlp is not None:
        history = _config(ctx, mlp, "generator").get("history", [])
        section.measures.append(
            Measure(
                "training epochs, MLP GAN",
                "count",
                REPORT_NUMBERS["gan_epochs"],
                len(history),
                model=mlp,
            )
        )
        if history:
            for path in write_gan_plots(history, mlp, ctx.figures):
                kind = "losses" if path.stem.endswith("losses") else "discriminator's outputs"
                ctx.attach(section, path.name, f"{mlp}: {kind} per epoch.")
    own_denoisers = {generator: _own_denoiser(ctx, generator) for generator in generators}
    for generator in generators:
        names = [ctx.models.get("ae-16"), ctx.models.get("denoiser"), own_denoisers[generator]]
        denoisers = [ctx.uses(section, name) for name in dict.fromkeys(names) if name]
        figure = _sample_figure(ctx, ctx.uses(section, generator), denoisers)
        ctx.save(
            section,
            f"samples-{generator}",
            figure,
            f"{generator}: {SAMPLE_GRID} samples (seed {ctx.seed}), raw and denoised.",
        )
    features = ctx.models.get("best-clf")
    if not generators or features is None or not ctx.has_data(section, "Fréchet distances"):
        return
    section.notes.append(
        f"The Fréchet distances compare {ctx.samples:,} samples (seed {ctx.seed}) and as many "
        f"training images as there are test images with the test set, in the feature space of "
        f"{features}, as fmt gan eval does; they depend on N."
    )
    try:
        section.measures.extend(_distances(ctx, own_denoisers, ctx.uses(section, features)))
    except MeasurementError as error:  # too few test images for the feature covariance
        section.skipped.append(Skipped("Fréchet distances", str(error)))


def _own_denoiser(ctx: ReportContext, generator: str) -> str | None:
    """What ``--denoise`` cleans ``generator``'s samples with: the denoiser it records if the
    store has it, else the store's default; None when the store has neither."""
    recorded = recorded_denoiser(ctx.store.read_config(generator), generator)
    try:
        return denoiser_for(ctx.store, recorded)
    except ToolkitError:  # no denoiser and no latent-16 autoencoder in the store
        return None


def _distances(
    ctx: ReportContext, own_denoisers: dict[str, str | None], features: str
) -> list[Measure]:
    """The floor (training images) and each generator's samples, raw and denoised by its own
    denoiser (``own_denoisers``: what ``--denoise`` cleans them with), against the test
    images in the feature space of ``features``."""
    from fmnist_toolkit.engine.gan_eval import reference_features, sample_rows
    from fmnist_toolkit.engine.sample import load_denoiser, load_generator, truncation_label

    classifier_model = load_model(features, store=ctx.store, device=ctx.device)
    reference, floor = reference_features(classifier_model, ctx.data_dir, ctx.seed, ctx.samples)
    measures = [_distance("training images (the floor)", floor, "")]
    for generator, denoiser_name in own_denoisers.items():
        network = load_generator(generator, ctx.store, ctx.device)
        denoiser = load_denoiser(denoiser_name, ctx.store, ctx.device) if denoiser_name else None
        for row in sample_rows(
            classifier_model, network, denoiser, ctx.samples, ctx.seed, reference
        ):
            what = "raw" if row.images == "raw samples" else f"denoised by {denoiser_name}"
            label = f"{generator}{truncation_label(network.truncation)}, {what}"
            measures.append(_distance(label, row, generator))
    return measures


def _distance(what: str, row: Any, model: str) -> Measure:
    return Measure(
        f"Fréchet distance, {what}, N = {row.count:,}",
        "distance",
        here=row.frechet_distance,
        model=model,
    )


SECTIONS: list[tuple[str, str, Callable[[ReportContext, Section], None]]] = [
    ("data", "Fashion-MNIST", examples),
    ("autoencoder", "The autoencoder", autoencoder),
    ("tuning", "Tuning the recipe", tuning),
    ("latent", "The latent space", latent),
    ("classifier", "A classifier on the encoder", classifier),
    ("gan", "The GAN", gan),
]
