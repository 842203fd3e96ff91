"""``fmt gan gate``: a denoiser behind a detector of one generator's samples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig, GanTrainConfig
from fmnist_toolkit.config import GateTrainConfig as Gate
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.engine.gan import train_gan
from fmnist_toolkit.engine.gate import train_gate
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.errors import ModelCorruptError, TrainingInterrupted, UsageError
from fmnist_toolkit.models import build_model
from fmnist_toolkit.storage import ModelStore
from tests.test_ae import InterruptAfter
from tests.test_cli import assert_one_line_error

CPU = EngineConfig(device="cpu")
SEED_AE = {"kind": "autoencoder", "architecture": "seed", "params": {"latent_dim": 4}}


def tiny_gate(**overrides) -> Gate:
    values = {"generator": "gan-tiny", "denoiser": "ae-dn", "epochs": 2, "batch_size": 64}
    return Gate(**{**values, "width": 4, "samples": 256, **overrides})


@pytest.fixture(scope="module")
def gate_store(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Path:
    """A tiny MLP generator and a tiny autoencoder trained to denoise."""
    root = tmp_path_factory.mktemp("gate-store")
    store = ModelStore(root)
    generator = GanTrainConfig(latent_size=8, hidden_size=32, epochs=1, batch_size=64)
    train_gan("gan-tiny", generator, CPU, data_dir=synthetic_data, store=store)
    denoiser = AutoencoderTrainConfig(epochs=1, batch_size=64, objective="denoise", sharpen=0.5)
    train_autoencoder("ae-dn", denoiser, CPU, data_dir=synthetic_data, store=store)
    return root


def copy_of(store_root: Path, tmp_path: Path) -> ModelStore:
    import shutil

    shutil.copytree(store_root, tmp_path / "store")
    return ModelStore(tmp_path / "store")


# --------------------------------------------------------------------------- the model


def test_the_gate_moves_an_image_towards_its_cleaning_by_the_detectors_probability() -> None:
    model = build_model("denoiser", "gated", denoiser=SEED_AE, width=4).eval()
    images = torch.rand(6, 1, 28, 28)
    cleaned = model.denoiser(images).clamp(0, 1)
    last = model.detector[-1]
    with torch.no_grad():
        last.weight.zero_()
        for bias, expected in ((-30.0, images), (30.0, cleaned)):
            last.bias.fill_(bias)  # certain: real, then certain: generated
            assert torch.allclose(model(images), expected, atol=1e-6)
        last.bias.fill_(0.0)  # undecided: half-way
        assert torch.allclose(model(images), (images + cleaned) / 2, atol=1e-6)


def test_only_the_detector_learns_and_the_denoiser_stays_in_eval_mode() -> None:
    spec = {"kind": "autoencoder", "architecture": "wide", "params": {"latent_dim": 4}}
    model = build_model("denoiser", "gated", denoiser=spec).train()
    assert model.training and model.detector.training
    assert not model.denoiser.training  # its batch norm keeps the statistics it learnt
    assert not any(weight.requires_grad for weight in model.denoiser.parameters())
    assert all(weight.requires_grad for weight in model.detector.parameters())


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "generator", "architecture": "mlp", "params": {}},
        "ae-16",
        {"kind": "autoencoder", "architecture": "nope", "params": {}},
        {"kind": "autoencoder", "architecture": "seed", "params": {"latent_dim": -1}},
    ],
)
def test_a_damaged_gate_spec_is_a_corrupt_model(spec) -> None:
    with pytest.raises(ModelCorruptError):
        build_model("denoiser", "gated", denoiser=spec)


# --------------------------------------------------------------------------- the recipe


def test_a_gate_learns_to_tell_samples_from_images_and_saves_one_whole_model(
    gate_store: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    store = copy_of(gate_store, tmp_path)
    config = tiny_gate(epochs=8, lr=1e-2)
    result = train_gate("gated", config, CPU, data_dir=synthetic_data, store=store)
    assert result.epochs == 8 and len(result.history) == 8
    assert result.val_accuracy >= 0.9 and result.generated_flagged >= 0.9
    # It learnt to leave the test images alone: an untrained gate (p = 1/2 everywhere) would
    # change them by a quarter of what the denoiser alone does.
    assert result.clean_flagged <= 0.1
    assert result.clean_mse < 0.1 * result.denoiser_clean_mse
    config = store.read_config("gated")
    assert config["kind"] == "denoiser" and config["model"]["architecture"] == "gated"
    assert config["sources"]["generator"]["name"] == "gan-tiny"
    assert config["metrics"]["clean_mse"] == result.clean_mse
    assert "test_mse" not in config["metrics"]  # never competes to be the default denoiser
    # One folder holds everything: the denoiser's weights are copied in, unchanged.
    weights, _ = store.load("gated")
    denoiser_weights, _ = store.load("ae-dn")
    assert all(torch.equal(weights[f"denoiser.{key}"], w) for key, w in denoiser_weights.items())
    store.remove("ae-dn")
    model = load_model("gated", store=store)
    images = torch.rand(4, 1, 28, 28)
    assert model(images).shape == images.shape
    assert model.denoiser.sharpen == 0.5  # the denoiser's own eval-time mask comes along


def test_an_interrupted_gate_resumes_exactly(
    gate_store: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    reference_store = copy_of(gate_store, tmp_path / "a")
    reference = train_gate("g", tiny_gate(), CPU, data_dir=synthetic_data, store=reference_store)
    store = copy_of(gate_store, tmp_path / "b")
    with pytest.raises(TrainingInterrupted):
        train_gate(
            "g", tiny_gate(), CPU, data_dir=synthetic_data, store=store,
            callbacks=[InterruptAfter(1)],
        )  # fmt: skip
    resumed = train_gate("g", tiny_gate(), CPU, data_dir=synthetic_data, store=store, resume=True)
    assert resumed.resumed_from_epoch == 1
    assert [row["train_loss"] for row in resumed.history] == [
        row["train_loss"] for row in reference.history
    ]
    weights, _ = store.load("g")
    reference_weights, _ = reference_store.load("g")
    assert all(torch.equal(weights[key], reference_weights[key]) for key in reference_weights)


def test_a_resumed_gate_refuses_changed_models_and_another_commands_run(
    gate_store: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    store = copy_of(gate_store, tmp_path)
    with pytest.raises(TrainingInterrupted):
        train_gate(
            "g", tiny_gate(), CPU, data_dir=synthetic_data, store=store,
            callbacks=[InterruptAfter(1)],
        )  # fmt: skip
    denoiser = AutoencoderTrainConfig(epochs=1, batch_size=64, objective="denoise", seed=1)
    train_autoencoder("ae-dn", denoiser, CPU, data_dir=synthetic_data, store=store)  # replaced
    with pytest.raises(UsageError, match="changed since the run of 'g' was interrupted"):
        train_gate("g", tiny_gate(), CPU, data_dir=synthetic_data, store=store, resume=True)
    # Both make denoisers, but only the command that started a run may resume it.
    unet = AutoencoderTrainConfig(architecture="unet", objective="denoise", width=4, epochs=1)
    with pytest.raises(UsageError, match="started by fmt gan gate; resume it with fmt gan gate"):
        train_autoencoder("g", unet, CPU, data_dir=synthetic_data, store=store, resume=True)
    assert store.has_checkpoint("g")  # nothing refused was lost


def test_a_gate_refuses_the_wrong_kinds_and_values(
    gate_store: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    store = copy_of(gate_store, tmp_path)
    for config, fragment in (
        (tiny_gate(denoiser="gan-tiny"), "--denoiser needs one"),
        (tiny_gate(generator="ae-dn"), "--model needs one"),
        (tiny_gate(lr=float("nan")), "learning rate"),
        (tiny_gate(samples=99), "--samples must be at least 100"),
        (tiny_gate(val_fraction=0.9), "validation fraction"),
    ):
        with pytest.raises(UsageError, match=fragment):
            train_gate("g", config, CPU, data_dir=synthetic_data, store=store)
    assert not store.exists("g")


# --------------------------------------------------------------------------- the CLI


def test_cli_gates_a_denoiser_and_sample_uses_it(
    cli, gate_store: Path, synthetic_data: Path, tmp_path: Path, monkeypatch
) -> None:
    store = copy_of(gate_store, tmp_path)
    monkeypatch.setenv("FMT_HOME", str(store.root))
    base = ("gan", "gate", "--model", "gan-tiny", "--denoiser", "ae-dn", "--data-dir")
    result = cli(*base, synthetic_data, "--epochs", "1", "--samples", "128", "--width", "4",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["name"] == "denoiser-gan-tiny" and summary["epochs"] == 1
    assert 0 <= summary["clean_flagged"] <= 1 and summary["clean_mse"] >= 0
    out = tmp_path / "grid.png"
    sampled = cli("gan", "sample", "--model", "gan-tiny", "--n", "8", "--denoise",
                  "--denoiser", "denoiser-gan-tiny", "--json", out)  # fmt: skip
    assert sampled.exit_code == 0, sampled.stderr
    assert json.loads(sampled.stdout)["denoiser"] == "denoiser-gan-tiny" and out.is_file()
    shown = cli("models", "show", "denoiser-gan-tiny")
    assert shown.exit_code == 0 and "clean_flagged" in shown.stdout
    # The wrapped model on a row of its own, as fmt models list names architectures.
    assert "model.params.denoiser" in shown.stdout
    assert "seed (latent_dim=16, sharpen=0.5)" in shown.stdout
    wrong = cli(*base[:3], "ae-dn", "--denoiser", "ae-dn", "--data-dir", synthetic_data)
    assert_one_line_error(wrong, 2, "not a generator")
    missing = cli("gan", "gate", "--denoiser", "ae-dn")
    assert missing.exit_code == 2 and "--model" in missing.stderr


def test_image_panels_wrap_into_rows_of_the_given_columns() -> None:
    from fmnist_toolkit import plots

    pictures = [torch.rand(10, 20) for _ in range(5)]
    figure = plots.image_panels(pictures, titles=[str(i) for i in range(5)], columns=3)
    shown = [axes for axes in figure.axes if axes.images]
    assert len(figure.axes) == 6 and len(shown) == 5  # two rows of three, one left blank
    assert [axes.get_title() for axes in shown] == ["0", "1", "2", "3", "4"]
    one_row = plots.image_panels(pictures[:2], titles=["a", "b"])
    assert len(one_row.axes) == 2
    assert figure.get_size_inches()[1] > one_row.get_size_inches()[1]  # two rows: taller


def test_a_models_label_is_its_folders_name_however_the_path_is_written(
    tmp_path: Path, monkeypatch
) -> None:
    from fmnist_toolkit.cli._render import model_label

    folder = tmp_path / "gan-tiny"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for written in ("gan-tiny", str(folder), f"{folder}/config.json", ".", "../gan-tiny/"):
        assert model_label(written) == "gan-tiny", written


def test_cli_resume_needs_only_the_name_and_says_what_it_ignores(
    cli, gate_store: Path, synthetic_data: Path, tmp_path: Path, monkeypatch
) -> None:
    store = copy_of(gate_store, tmp_path)
    monkeypatch.setenv("FMT_HOME", str(store.root))
    with pytest.raises(TrainingInterrupted):
        train_gate(
            "g", tiny_gate(), CPU, data_dir=synthetic_data, store=store,
            callbacks=[InterruptAfter(1)],
        )  # fmt: skip
    assert_one_line_error(cli("gan", "gate", "--resume", "--name", ""), 2, "--name")
    resumed = cli("gan", "gate", "--name", "g", "--resume", "--epochs", "9", "--data-dir",
                  synthetic_data, "--json")  # fmt: skip
    assert resumed.exit_code == 0, resumed.stderr
    assert "ignoring --epochs" in resumed.stderr
    assert json.loads(resumed.stdout)["epochs"] == 2  # the checkpoint's recipe, not 9
