"""The autoencoder recipe: determinism, exact resume, safe replacement, faithful reload."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig
from fmnist_toolkit.data import DeviceSplit
from fmnist_toolkit.engine.ae import reconstruction_mse, train_autoencoder
from fmnist_toolkit.engine.loop import Callback, LoopState
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.errors import CheckpointMissingError, TrainingInterrupted, UsageError
from fmnist_toolkit.storage import ModelStore

CPU = EngineConfig(device="cpu")


def tiny(**overrides) -> AutoencoderTrainConfig:
    values = {"latent_dim": 4, "epochs": 3, "batch_size": 64, "lr": 3e-3, **overrides}
    return AutoencoderTrainConfig(**values)


class InterruptAfter(Callback):
    """Plays the user pressing Ctrl-C once ``epochs`` epochs are done."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, state: LoopState) -> None:
        if state.epoch == self.epochs:
            raise KeyboardInterrupt


def test_trains_saves_and_learns(synthetic_data: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    result = train_autoencoder("ae", tiny(epochs=4), CPU, data_dir=synthetic_data, store=store)
    assert result.epochs == 4 and len(result.history) == 4
    assert result.history[-1]["test_mse"] < result.history[0]["test_mse"]
    config = store.read_config("ae")
    assert config["recipe"]["epochs"] == 4 and config["model"]["params"] == {"latent_dim": 4}
    assert len(config["data_sha256"]) == 64 and config["toolkit_version"]
    assert config["metrics"]["test_mse"] == result.test_mse
    assert not store.has_checkpoint("ae"), "a finished run leaves no checkpoint"


def test_same_seed_same_metrics(synthetic_data: Path, tmp_path: Path) -> None:
    runs = [
        train_autoencoder(
            "a", tiny(seed=seed), CPU, data_dir=synthetic_data, store=ModelStore(tmp_path / str(i))
        )
        for i, seed in enumerate((7, 7, 8))
    ]
    assert runs[0].history[-1]["test_mse"] == runs[1].history[-1]["test_mse"]
    assert [r["train_mse"] for r in runs[0].history] == [r["train_mse"] for r in runs[1].history]
    assert runs[0].test_mse != runs[2].test_mse


@pytest.mark.parametrize("schedule", ["constant", "cosine", "onecycle", "warmup-cosine"])
def test_interrupt_keeps_old_model_and_resume_is_exact(
    synthetic_data: Path, tmp_path: Path, schedule: str
) -> None:
    recipe = functools.partial(tiny, schedule=schedule)
    reference = train_autoencoder(
        "ae", recipe(), CPU, data_dir=synthetic_data, store=ModelStore(tmp_path / "reference")
    )

    store = ModelStore(tmp_path / "interrupted")
    earlier = train_autoencoder(
        "ae", recipe(epochs=1, seed=5), CPU, data_dir=synthetic_data, store=store
    )
    with pytest.raises(TrainingInterrupted) as caught:
        train_autoencoder(
            "ae", recipe(), CPU, data_dir=synthetic_data, store=store, callbacks=[InterruptAfter(2)]
        )
    assert caught.value.exit_code == 130
    assert store.read_config("ae")["metrics"]["test_mse"] == earlier.test_mse
    assert store.has_checkpoint("ae")

    # The recipe comes from the checkpoint, whatever the caller passes.
    resumed = train_autoencoder(
        "ae", recipe(epochs=99), CPU, data_dir=synthetic_data, store=store, resume=True
    )
    assert resumed.resumed_from_epoch == 2
    assert resumed.epochs == 3
    assert [row["test_mse"] for row in resumed.history] == [
        row["test_mse"] for row in reference.history
    ]
    assert resumed.test_mse == reference.test_mse
    assert not store.has_checkpoint("ae")
    weights, _ = store.load("ae")
    reference_weights, _ = ModelStore(tmp_path / "reference").load("ae")
    assert all(torch.equal(weights[key], reference_weights[key]) for key in reference_weights)


def test_a_new_run_never_discards_an_interrupted_one(synthetic_data: Path, tmp_path: Path):
    from fmnist_toolkit.errors import UnfinishedRunError

    store = ModelStore(tmp_path)
    engine = EngineConfig(device="cpu", precision="bf16")
    with pytest.raises(TrainingInterrupted):
        train_autoencoder(
            "ae",
            tiny(seed=3),
            engine,
            data_dir=synthetic_data,
            store=store,
            callbacks=[InterruptAfter(1)],
        )
    with pytest.raises(UnfinishedRunError, match=r"--resume.*--restart"):
        train_autoencoder("ae", tiny(), CPU, data_dir=synthetic_data, store=store)
    assert store.read_checkpoint_state("ae")["epoch"] == 1
    # Resuming takes the recipe and the numeric settings of the interrupted run.
    resumed = train_autoencoder(
        "ae", tiny(epochs=1), CPU, data_dir=synthetic_data, store=store, resume=True
    )
    config = store.read_config("ae")
    assert resumed.epochs == 3 and config["recipe"]["seed"] == 3
    assert config["engine"]["precision"] == "bf16"
    restarted = train_autoencoder(
        "ae", tiny(epochs=1), CPU, data_dir=synthetic_data, store=store, restart=True
    )
    assert restarted.epochs == 1


def test_a_damaged_checkpoint_is_one_clear_error(synthetic_data: Path, tmp_path: Path) -> None:
    import json

    from fmnist_toolkit.errors import ModelCorruptError

    store = ModelStore(tmp_path)
    with pytest.raises(TrainingInterrupted):
        train_autoencoder(
            "ae", tiny(), CPU, data_dir=synthetic_data, store=store, callbacks=[InterruptAfter(1)]
        )
    state_file = store.checkpoint_dir("ae") / "config.json"
    state = json.loads(state_file.read_text())
    del state["optimizer"]
    state_file.write_text(json.dumps(state))
    with pytest.raises(ModelCorruptError, match=r"damaged.*--restart"):
        train_autoencoder("ae", tiny(), CPU, data_dir=synthetic_data, store=store, resume=True)


def test_resume_without_checkpoint(synthetic_data: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointMissingError, match="without --resume"):
        train_autoencoder(
            "nothing", tiny(), CPU, data_dir=synthetic_data, store=ModelStore(tmp_path), resume=True
        )


@pytest.mark.parametrize(
    "overrides",
    [
        {"epochs": 0},
        {"lr": 0.0},
        {"lr": float("nan")},
        {"batch_size": 0},
        {"optimizer": "lbfgs"},
        {"schedule": "step"},
    ],
)
def test_impossible_recipes_are_usage_errors(synthetic_data: Path, overrides: dict) -> None:
    with pytest.raises(UsageError):
        train_autoencoder("x", tiny(**overrides), CPU, data_dir=synthetic_data)


def test_sgd_trains_too(synthetic_data: Path, tmp_path: Path) -> None:
    result = train_autoencoder(
        "sgd",
        tiny(optimizer="sgd", lr=0.5, epochs=2),
        CPU,
        data_dir=synthetic_data,
        store=ModelStore(tmp_path),
    )
    assert result.test_mse < 1.0


def test_reloaded_model_reconstructs_with_the_same_mse(
    synthetic_data: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path)
    result = train_autoencoder("ae", tiny(), CPU, data_dir=synthetic_data, store=store)
    model = load_model("ae", store=store)
    test = DeviceSplit.load("test", synthetic_data, torch.device("cpu"))
    assert reconstruction_mse(model, test) == pytest.approx(result.test_mse, rel=1e-6)
    codes = model.encode(torch.rand(2, 1, 28, 28))
    assert codes.shape == (2, 4)
    assert model.decode(codes).shape == (2, 1, 28, 28)


def test_plots_are_written(synthetic_data: Path, tmp_path: Path) -> None:
    result = train_autoencoder(
        "ae",
        tiny(epochs=1),
        CPU,
        data_dir=synthetic_data,
        store=ModelStore(tmp_path),
        plots_dir=tmp_path / "plots",
    )
    assert sorted(path.name for path in result.plots) == ["ae-loss.png", "ae-reconstructions.png"]
    for path in result.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_two_runs_of_one_name_do_not_interleave(synthetic_data: Path, tmp_path: Path) -> None:
    from fmnist_toolkit.errors import RunInProgressError

    store = ModelStore(tmp_path)
    with store.exclusive_run("busy"), pytest.raises(RunInProgressError, match="another run"):
        train_autoencoder("busy", tiny(epochs=1), CPU, data_dir=synthetic_data, store=store)
    result = train_autoencoder("busy", tiny(epochs=1), CPU, data_dir=synthetic_data, store=store)
    assert result.epochs == 1


@pytest.mark.parametrize("architecture", ["wide", "residual"])
def test_the_gpu_architectures_train_save_and_reload(
    synthetic_data: Path, tmp_path, architecture: str
) -> None:
    store = ModelStore(tmp_path)
    config = tiny(architecture=architecture, epochs=2)
    result = train_autoencoder("wide", config, CPU, data_dir=synthetic_data, store=store)
    assert result.history[-1]["test_mse"] < result.history[0]["test_mse"]
    assert store.read_config("wide")["model"]["architecture"] == architecture
    model = load_model("wide", store=store)
    test = DeviceSplit.load("test", synthetic_data, torch.device("cpu"))
    assert reconstruction_mse(model, test) == pytest.approx(result.test_mse, rel=1e-5)


def test_unknown_architecture_is_a_usage_error(synthetic_data: Path) -> None:
    with pytest.raises(UsageError, match="residual or seed or wide"):
        train_autoencoder("x", tiny(architecture="resnet"), CPU, data_dir=synthetic_data)
