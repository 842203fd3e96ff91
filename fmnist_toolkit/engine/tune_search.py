"""The search space: the seeded sampler, a trial's recipe, and pruning by validation MSE."""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import SCHEDULES, AutoencoderTrainConfig, TuneConfig
from fmnist_toolkit.engine.loop import Callback, LoopState

if TYPE_CHECKING:
    import optuna
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

BATCH_SIZES = (64, 128, 256, 512)
LEARNING_RATES = (1e-4, 1e-3)  # the report's range (log scale)
# With the schedule searched: one-cycle and warm-up schedules train at peaks up to 10x higher.
SCHEDULED_LEARNING_RATES = (1e-4, 1e-2)


def make_sampler(seed: int) -> BaseSampler:
    """TPE, seeded per trial from ``seed`` and the trial's number.

    The number is unique in the study, so concurrent workers with the same ``--seed`` never
    sample the same parameters, while one worker's study stays reproducible.
    """
    import optuna

    class TrialSeededTPESampler(optuna.samplers.BaseSampler):
        def __init__(self) -> None:
            self._current = self._tpe(seed)

        @staticmethod
        def _tpe(trial_seed: int) -> optuna.samplers.TPESampler:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # The constant liar keeps parallel workers from crowding one region.
                return optuna.samplers.TPESampler(seed=trial_seed, constant_liar=True)

        def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
            self._current = self._tpe(seed * 100_003 + trial.number)
            self._current.before_trial(study, trial)

        def infer_relative_search_space(self, study, trial):  # type: ignore[no-untyped-def]
            return self._current.infer_relative_search_space(study, trial)

        def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
            return self._current.sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):  # type: ignore[no-untyped-def]
            return self._current.sample_independent(study, trial, param_name, param_distribution)

        def after_trial(self, study, trial, state, values):  # type: ignore[no-untyped-def]
            self._current.after_trial(study, trial, state, values)

    return TrialSeededTPESampler()


def suggest_recipe(trial: optuna.Trial, tune: TuneConfig) -> AutoencoderTrainConfig:
    """The report's space (optimizer, lr 1e-4..1e-3, weight decay 1e-5..1e-3, both log),
    widened by ``tune.search``; searching the schedule (all of config.SCHEDULES) widens the
    learning rate to 1e-4..1e-2, the peak of one-cycle and warm-up schedules."""
    low, high = SCHEDULED_LEARNING_RATES if "schedule" in tune.search else LEARNING_RATES
    params: dict[str, Any] = {
        "optimizer": trial.suggest_categorical("optimizer", ["adam", "sgd"]),
        "lr": trial.suggest_float("lr", low, high, log=True),
        "weight_decay": trial.suggest_float("weight_decay", 1e-5, 1e-3, log=True),
    }
    if "architecture" in tune.search:
        params["architecture"] = trial.suggest_categorical("architecture", ["seed", "wide"])
    if "batch-size" in tune.search:
        params["batch_size"] = trial.suggest_categorical("batch_size", list(BATCH_SIZES))
    if "schedule" in tune.search:
        params["schedule"] = trial.suggest_categorical("schedule", list(SCHEDULES))
    return recipe_from_params(params, tune, epochs=tune.epochs)


def recipe_from_params(
    params: dict[str, Any], tune: TuneConfig, *, epochs: int
) -> AutoencoderTrainConfig:
    """A trial's parameters as an ``fmt ae train`` recipe (unsearched fields: the defaults)."""
    names = {f.name for f in dataclasses.fields(AutoencoderTrainConfig)}
    chosen = {key: value for key, value in params.items() if key in names}
    return AutoencoderTrainConfig(
        **{**chosen, "latent_dim": tune.latent_dim, "epochs": epochs, "seed": tune.seed}
    )


class PruneOrReport(Callback):
    """Reports the validation MSE to the trial each epoch and stops it when Optuna prunes."""

    def __init__(self, trial: optuna.Trial, *, prune: bool) -> None:
        self.trial = trial
        self.prune = prune

    def on_epoch_end(self, state: LoopState) -> None:
        import optuna

        value = state.last["val_mse"]
        if not math.isfinite(value):
            raise optuna.TrialPruned(f"the validation MSE is {value} at epoch {state.epoch}")
        self.trial.report(value, step=state.epoch)
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {state.epoch}")
