"""``fmt report --retrain``: train every model the course report trained, with its recipes.

Stages run in order: the 2-D autoencoder (the scatter), the latent-16 autoencoder, the
Optuna search, the frozen and the fine-tuned classifier on that autoencoder's encoder, the
MLP GAN. A stage is reused when the user's store already holds a model trained with the same
recipe on the same data (bundled models do not count: --retrain means trained here); an
interrupted stage resumes from its checkpoint; so Ctrl-C and the same command again go on
where they stopped. A study keeps its finished trials, and only the missing ones are run.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fmnist_toolkit.config import (
    AutoencoderTrainConfig,
    ClassifierTrainConfig,
    EngineConfig,
    GanTrainConfig,
    TuneConfig,
    config_from_dict,
)
from fmnist_toolkit.engine.loop import Callback
from fmnist_toolkit.errors import ToolkitError, TrainingInterrupted, TuningInterrupted
from fmnist_toolkit.storage import ModelStore

TUNING_TRIALS = 20  # the study's size: Optuna's default run of fmt ae tune
CLASSIFIER_STAGES = ("clf-frozen", "clf-finetuned")
RECIPE_TYPES: dict[str, type] = {
    "autoencoder": AutoencoderTrainConfig,
    "classifier": ClassifierTrainConfig,
    "generator": GanTrainConfig,
}


@dataclass(frozen=True)
class Stage:
    """One model the report trained: the role it fills on the page, its name and recipe."""

    role: str  # ae-2, ae-16, tuning, clf-frozen, clf-finetuned, gan-mlp
    name: str  # the model (or study) it trains
    recipe: Any  # AutoencoderTrainConfig, TuneConfig, ClassifierTrainConfig or GanTrainConfig
    title: str


@dataclass
class StageResult:
    stage: str
    model: str  # what fills the role: the reused or the trained model
    status: str  # reused, trained, resumed, failed, skipped
    seconds: float = 0.0
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class StageObserver(Protocol):
    def stage_started(self, index: int, total: int, stage: Stage, action: str) -> None: ...

    def stage_finished(self, result: StageResult) -> None: ...


def report_stages(*, epochs_scale: float = 1.0, study: str = "report") -> list[Stage]:
    """The report's models and recipes; ``epochs_scale`` shortens every run (for tests)."""

    def epochs(count: int) -> int:
        return max(1, round(count * epochs_scale))

    classifier = ClassifierTrainConfig(epochs=epochs(100))
    trials = max(2, round(TUNING_TRIALS * min(1.0, epochs_scale)))
    return [
        Stage(
            "ae-2",
            "report-ae-2",
            AutoencoderTrainConfig(latent_dim=2, epochs=epochs(60)),
            "autoencoder, latent 2",
        ),
        Stage(
            "ae-16",
            "report-ae-16",
            AutoencoderTrainConfig(epochs=epochs(60)),
            "autoencoder, latent 16",
        ),
        Stage(
            "tuning",
            study,
            TuneConfig(study=study, trials=trials, epochs=epochs(10)),
            "Optuna search of the recipe",
        ),
        Stage("clf-frozen", "report-clf-ae-16", classifier, "classifier, frozen encoder"),
        Stage(
            "clf-finetuned",
            "report-clf-ae-16-ft",
            dataclasses.replace(classifier, unfreeze=True),
            "classifier, fine-tuned encoder",
        ),
        Stage("gan-mlp", "report-gan-mlp", GanTrainConfig(epochs=epochs(300)), "MLP GAN"),
    ]


def _same_recipe(saved: dict[str, Any], recipe: Any) -> bool:
    """A saved recipe equals ``recipe`` (fields an older toolkit did not write take their
    defaults; a classifier's encoder is compared by its weights, not its name)."""
    found = config_from_dict(type(recipe), saved.get("recipe", {}))
    if isinstance(recipe, ClassifierTrainConfig):
        found = dataclasses.replace(found, encoder=recipe.encoder)
    return found == recipe


def reusable_model(
    store: ModelStore, stage: Stage, recipe: Any, data_sha256: str, encoder_sha256: str | None
) -> str | None:
    """A model of the user's store trained with ``recipe`` on the same data (the stage's own
    name first), or None."""
    models = sorted(store.list(), key=lambda model: model.name != stage.name)
    for model in models:
        config = model.config
        if model.source != "user" or config.get("data_sha256") != data_sha256:
            continue
        if RECIPE_TYPES.get(model.kind) is not type(recipe):
            continue
        if not _same_recipe(config, recipe):
            continue
        if encoder_sha256 and config.get("encoder", {}).get("weights_sha256") != encoder_sha256:
            continue
        return model.name
    return None


def _resumable(
    store: ModelStore, name: str, recipe: Any, data_sha256: str, encoder_sha256: str | None
) -> bool:
    """Whether ``name`` has an interrupted run of this recipe on this data (and for a
    classifier, this encoder) to go on with."""
    if not store.has_checkpoint(name):
        return False
    state = store.read_checkpoint_state(name)
    encoder = state.get("encoder", {}).get("weights_sha256")
    return (
        state.get("data_sha256") == data_sha256
        and _same_recipe(state, recipe)
        and encoder == encoder_sha256
    )


def _train(
    stage: Stage,
    recipe: Any,
    engine: EngineConfig,
    *,
    resume: bool,
    data_dir: str | os.PathLike[str] | None,
    store: ModelStore,
    callbacks: Sequence[Callback],
) -> None:
    from fmnist_toolkit.engine.ae import train_autoencoder
    from fmnist_toolkit.engine.clf import train_classifier
    from fmnist_toolkit.engine.gan import train_gan

    train = {
        AutoencoderTrainConfig: train_autoencoder,
        ClassifierTrainConfig: train_classifier,
        GanTrainConfig: train_gan,
    }[type(recipe)]
    train(
        stage.name,
        recipe,
        engine,
        data_dir=data_dir,
        store=store,
        resume=resume,
        restart=not resume and store.has_checkpoint(stage.name),
        callbacks=callbacks,
    )


def _tune(
    stage: Stage,
    engine: EngineConfig,
    *,
    storage: str | None,
    data_dir: str | os.PathLike[str] | None,
    store: ModelStore,
    callbacks: Callable[[str], Sequence[Callback]],
) -> StageResult:
    """Add the trials the study still lacks (none when it has them all)."""
    import optuna

    from fmnist_toolkit.engine.tune import (
        default_storage_url,
        open_storage,
        quiet_optuna,
        run_study,
    )

    tune: TuneConfig = stage.recipe
    url = storage or default_storage_url(store)
    with quiet_optuna():
        try:
            existing = optuna.load_study(study_name=tune.study, storage=open_storage(url))
            done = len(existing.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
        except KeyError:
            done = 0
    missing = max(0, tune.trials - done)
    if missing:
        run_study(
            dataclasses.replace(tune, trials=missing),
            engine,
            storage_url=url,
            data_dir=data_dir,
            store=store,
            epoch_callbacks=lambda number: callbacks(f"{tune.study} trial {number}"),
        )
    status = "trained" if missing == tune.trials else ("resumed" if missing else "reused")
    return StageResult(stage.role, tune.study, status, detail=f"{tune.trials} trials")


def retrain_models(
    stages: list[Stage],
    engine: EngineConfig,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    storage: str | None = None,
    callbacks: Callable[[str], Sequence[Callback]] = lambda label: (),
    observer: StageObserver | None = None,
) -> list[StageResult]:
    """Run (or reuse) every stage; return what fills each role. A stage that fails is
    recorded and the stages that need it are skipped; Ctrl-C ends the run (the interrupted
    stage keeps its checkpoint, the finished ones their models)."""
    import torch

    from fmnist_toolkit.data import DeviceSplit, dataset_sha256

    store = store or ModelStore()
    train = DeviceSplit.load("train", data_dir, torch.device("cpu"))
    data_sha256 = dataset_sha256(train.images, train.labels)
    del train
    results: list[StageResult] = []
    trained: dict[str, str] = {}

    def finish(result: StageResult) -> None:
        results.append(result)
        if observer is not None:
            observer.stage_finished(result)

    for index, stage in enumerate(stages):
        started = time.perf_counter()
        recipe, encoder_sha256 = stage.recipe, None
        if stage.role in CLASSIFIER_STAGES:
            if "ae-16" not in trained:
                finish(StageResult(stage.role, "", "skipped", detail="no latent-16 autoencoder"))
                continue
            recipe = dataclasses.replace(recipe, encoder=trained["ae-16"])
            encoder_sha256 = store.read_config(trained["ae-16"]).get("weights_sha256")
        try:
            if stage.role == "tuning":
                if observer is not None:
                    observer.stage_started(index, len(stages), stage, "searching")
                result = _tune(
                    stage,
                    engine,
                    storage=storage,
                    data_dir=data_dir,
                    store=store,
                    callbacks=callbacks,
                )
            else:
                found = reusable_model(store, stage, recipe, data_sha256, encoder_sha256)
                resume = found is None and _resumable(
                    store, stage.name, recipe, data_sha256, encoder_sha256
                )
                action = "reusing " + found if found else ("resuming" if resume else "training")
                if observer is not None:
                    observer.stage_started(index, len(stages), stage, action)
                if found is None:
                    _train(
                        stage,
                        recipe,
                        engine,
                        resume=resume,
                        data_dir=data_dir,
                        store=store,
                        callbacks=callbacks(stage.name),
                    )
                status = "reused" if found else ("resumed" if resume else "trained")
                result = StageResult(stage.role, found or stage.name, status)
                trained[stage.role] = result.model
        except (TrainingInterrupted, TuningInterrupted, KeyboardInterrupt):
            raise
        except ToolkitError as error:
            result = StageResult(stage.role, stage.name, "failed", detail=str(error))
        result.seconds = time.perf_counter() - started
        finish(result)
    return results
