"""Issue #16: the hinge loss, spectral norm, two learning rates, a time budget, and the
class-conditional GAN (training, --class sampling, per-class shares in eval, load_model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fmnist_toolkit
from fmnist_toolkit.config import (
    AutoencoderTrainConfig,
    ClassifierTrainConfig,
    GanTrainConfig,
    config_from_dict,
)
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.engine.clf import train_classifier
from fmnist_toolkit.engine.gan import recalibrate_batch_norm, train_gan
from fmnist_toolkit.engine.gan_eval import class_shares
from fmnist_toolkit.engine.sample import (
    check_truncation,
    class_labels,
    generate,
    parse_classes,
    to_uint8,
)
from fmnist_toolkit.errors import TrainingInterrupted, UsageError
from fmnist_toolkit.models.gan import DCGANDiscriminator, DCGANGenerator
from fmnist_toolkit.storage import ModelStore
from tests.test_ae import InterruptAfter
from tests.test_cli import assert_one_line_error
from tests.test_gan import CPU, tiny_gan

IMPROVED = {"loss": "hinge", "spectral_norm": True, "d_lr": 4e-4, "beta1": 0.0, "beta2": 0.9}


@pytest.fixture(scope="module")
def conditional_store(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Path:
    """A conditional generator, an unconditional one, an autoencoder and a classifier."""
    root = tmp_path_factory.mktemp("conditional-store")
    store = ModelStore(root)
    conditional = tiny_gan("dcgan", conditional=True, ema=0.9, **IMPROVED)
    train_gan("gan-cond", conditional, CPU, data_dir=synthetic_data, store=store)
    train_gan("gan-dcgan", tiny_gan("dcgan"), CPU, data_dir=synthetic_data, store=store)
    autoencoder = AutoencoderTrainConfig(epochs=1, batch_size=64, lr=3e-3)
    train_autoencoder("ae", autoencoder, CPU, data_dir=synthetic_data, store=store)
    classifier = ClassifierTrainConfig(encoder="ae", epochs=2)
    train_classifier("clf", classifier, CPU, data_dir=synthetic_data, store=store)
    return root


@pytest.fixture
def with_store(conditional_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FMT_HOME", str(conditional_store))
    return conditional_store


# --------------------------------------------------------------------------- models


def test_conditional_pair_shapes_and_labels_matter() -> None:
    torch.manual_seed(0)
    generator = DCGANGenerator(latent_size=8, width=4, num_classes=10).eval()
    discriminator = DCGANDiscriminator(width=4, num_classes=10, spectral_norm=True)
    z = torch.randn(6, 8)
    labels = torch.tensor([0, 1, 2, 7, 8, 9])
    images = generator(z, labels)
    assert images.shape == (6, 1, 28, 28)
    assert discriminator(images, labels).shape == (6,)
    assert not torch.equal(generator(z, labels), generator(z, labels.flip(0)))
    with pytest.raises(ValueError, match="labels"):
        generator(z)
    with pytest.raises(ValueError, match="labels"):
        discriminator(images)


def test_spectral_norm_drops_batch_norm_and_keeps_old_layout_otherwise() -> None:
    normalised = DCGANDiscriminator(width=4, spectral_norm=True)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in normalised.modules())
    # Weights scaled by their largest singular value: the layer's norm is about 1.
    for _ in range(30):
        normalised(torch.randn(8, 1, 28, 28))
    head = normalised.net[-1]
    largest = float(torch.linalg.matrix_norm(head.weight.detach(), ord=2))
    assert largest == pytest.approx(1.0, rel=0.05)
    # The unconditional discriminator without spectral norm has the keys it always had, and
    # the same initial weights from the same seed (so the old recipe is reproduced).
    plain = DCGANDiscriminator(width=4)
    assert sorted(plain.state_dict()) == sorted(
        ["net.0.weight", "net.0.bias", "net.2.weight", "net.3.weight", "net.3.bias",
         "net.3.running_mean", "net.3.running_var", "net.3.num_batches_tracked",
         "net.6.weight", "net.6.bias"]
    )  # fmt: skip
    torch.manual_seed(3)
    a = DCGANGenerator(latent_size=8, width=4).state_dict()
    torch.manual_seed(3)
    b = DCGANGenerator(latent_size=8, width=4, num_classes=0).state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_an_old_config_means_the_old_recipe() -> None:
    old = {
        "architecture": "dcgan", "latent_size": 100, "hidden_size": 784, "width": 64,
        "epochs": 60, "batch_size": 64, "lr": 2e-4, "beta1": 0.5, "beta2": 0.999,
        "ema": 0.999, "seed": 0,
    }  # fmt: skip
    config = config_from_dict(GanTrainConfig, old)
    assert (config.loss, config.spectral_norm, config.conditional) == ("bce", False, False)
    assert config.discriminator_lr == 2e-4
    assert config.generator_spec().params == {"latent_size": 100, "width": 64}
    assert config.discriminator_spec().params == {"width": 64}
    new = GanTrainConfig(architecture="dcgan", conditional=True, spectral_norm=True, d_lr=1e-3)
    assert new.generator_spec().params["num_classes"] == 10
    assert new.discriminator_spec().params == {
        "width": 64,
        "num_classes": 10,
        "spectral_norm": True,
    }
    assert new.discriminator_lr == 1e-3


# --------------------------------------------------------------------------- training


def test_conditional_training_resumes_exactly(synthetic_data: Path, tmp_path: Path) -> None:
    """Spectral norm's vectors and the projection's embedding go into the checkpoint and back."""
    recipe = tiny_gan("dcgan", epochs=3, conditional=True, ema=0.9, **IMPROVED)
    reference_store = ModelStore(tmp_path / "reference")
    reference = train_gan("g", recipe, CPU, data_dir=synthetic_data, store=reference_store)
    store = ModelStore(tmp_path / "interrupted")
    with pytest.raises(TrainingInterrupted):
        train_gan(
            "g", recipe, CPU, data_dir=synthetic_data, store=store, callbacks=[InterruptAfter(2)]
        )
    checkpoint, _ = store.load_checkpoint("g")
    assert any("parametrizations" in key for key in checkpoint)
    resumed = train_gan("g", recipe, CPU, data_dir=synthetic_data, store=store, resume=True)
    assert resumed.history[-1]["g_loss"] == reference.history[-1]["g_loss"]
    weights, config = store.load("g")
    reference_weights, _ = reference_store.load("g")
    assert all(torch.equal(weights[key], reference_weights[key]) for key in reference_weights)
    assert config["recipe"]["loss"] == "hinge" and config["model"]["params"]["num_classes"] == 10


def test_train_cli_takes_the_new_options(cli, synthetic_data: Path) -> None:
    result = cli(
        "gan", "train", "--arch", "dcgan", "--width", 4, "--latent-size", 8, "--epochs", 1,
        "--conditional", "--loss", "hinge", "--spectral-norm", "--d-lr", "4e-4",
        "--data-dir", synthetic_data, "--name", "c", "--quiet", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = ModelStore().read_config("c")
    recipe = config["recipe"]
    assert (recipe["loss"], recipe["spectral_norm"], recipe["d_lr"]) == ("hinge", True, 4e-4)
    assert recipe["conditional"] and config["discriminator"]["params"]["spectral_norm"]


def test_bad_new_options_are_usage_errors(cli, synthetic_data: Path) -> None:
    for args in (
        ["--conditional"],  # the default architecture is mlp
        ["--arch", "mlp", "--spectral-norm"],
        ["--arch", "dcgan", "--d-lr", "0"],
        ["--arch", "dcgan", "--loss", "wasserstein"],
        ["--arch", "dcgan", "--time-budget", "0"],
    ):
        result = cli("gan", "train", "--data-dir", synthetic_data, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output


class SlowEpochs(InterruptAfter):
    """Pretends each epoch took an hour (the time budget reads the history's seconds)."""

    def __init__(self) -> None:
        super().__init__(10**6)

    def on_epoch_end(self, state) -> None:
        state.history[-1]["seconds"] = 3600.0


def test_a_time_budget_ends_training_early_and_saves_it(
    synthetic_data: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path)
    result = train_gan(
        "g", tiny_gan("dcgan", epochs=5), CPU, data_dir=synthetic_data, store=store,
        time_budget=60, callbacks=[SlowEpochs()],
    )  # fmt: skip
    assert result.epochs == 1 and len(result.history) == 1 and result.planned_epochs == 5
    _, config = store.load("g")
    assert config["stopped_by_time_budget"] == {"seconds": 60, "epochs": 1}
    assert not store.has_checkpoint("g")


def test_standing_statistics_of_a_conditional_generator() -> None:
    torch.manual_seed(0)
    generator = DCGANGenerator(latent_size=8, width=4, num_classes=10)
    recalibrate_batch_norm(generator, seed=0)
    norm = generator.net[1]
    assert int(norm.num_batches_tracked) == 20 and generator.training
    assert not torch.equal(norm.running_var, torch.ones_like(norm.running_var))


# --------------------------------------------------------------------------- sampling


def test_class_names_indices_and_all() -> None:
    assert parse_classes(["sneaker", "SNEAKER", "7", "Ankle boot", "ankle-boot"]) == (
        7,
        7,
        7,
        9,
        9,
    )
    assert parse_classes(["t-shirt", "T-shirt/top", "0"]) == (0, 0, 0)
    assert parse_classes(["all"]) == tuple(range(10))
    for bad in ("10", "-1", "shoe", ""):
        with pytest.raises(UsageError, match="unknown class"):
            parse_classes([bad])
    assert class_labels((7, 2), 6).tolist() == [7, 7, 7, 2, 2, 2]


def test_sample_class_all_draws_one_row_per_class(cli, with_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = cli("gan", "sample", "--model", "gan-cond", "--class", "all", "--n", 40, out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n"] == 40 and len(summary["classes"]) == 10
    # 10 rows of 4 images of 28 pixels with 2-pixel frames
    assert Image.open(out).size == (4 * 30 + 2, 10 * 30 + 2)
    arrays = tmp_path / "x.npz"
    both = cli("gan", "sample", "--model", "gan-cond", "--class", "sneaker", "--class", 0, arrays)
    assert both.exit_code == 0, both.output
    assert np.load(arrays)["images"].shape == (16, 28, 28)  # 8 per class by default


def test_conditional_samples_denoise(cli, with_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.png"
    result = cli(
        "gan", "sample", "--model", "gan-cond", "--class", "bag", "--denoise", "--denoiser", "ae",
        "--side-by-side", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_class_on_an_unconditional_generator_is_a_usage_error(
    cli, with_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.png"
    result = cli("gan", "sample", "--model", "gan-dcgan", "--class", "sneaker", out)
    assert_one_line_error(result, 2, "--class needs a class-conditional generator")
    assert not out.exists()
    bad = cli("gan", "sample", "--model", "gan-cond", "--class", "shoe", out)
    assert_one_line_error(bad, 2, "unknown class 'shoe'")
    uneven = cli("gan", "sample", "--model", "gan-cond", "--class", "all", "--n", 64, out)
    assert_one_line_error(uneven, 2, "does not split evenly", "--n 80")
    assert not out.exists()
    assert [path.name for path in tmp_path.iterdir()] == []


# --------------------------------------------------------------------------- eval, API


def test_class_shares() -> None:
    requested = torch.tensor([0, 0, 1, 1, 1, 1])
    predicted = torch.tensor([0, 3, 1, 1, 1, 2])
    assert class_shares(requested, predicted) == {"T-shirt/top": 0.5, "Trouser": 0.75}


def test_eval_of_a_conditional_generator_reports_per_class_shares(
    cli, with_store: Path, synthetic_data: Path
) -> None:
    args = ["--features", "clf", "--n", 200, "--data-dir", synthetic_data]
    result = cli("gan", "eval", "--model", "gan-cond", *args, "--json")
    assert result.exit_code == 0, result.output
    rows = {row["images"]: row for row in json.loads(result.stdout)["rows"]}
    raw = rows["raw samples"]
    assert list(raw["class_shares"]) == list(raw["class_histogram"])  # all ten, in order
    assert all(0 <= share <= 1 for share in raw["class_shares"].values())
    assert raw["mean_class_share"] == pytest.approx(sum(raw["class_shares"].values()) / 10)
    assert rows["train images (floor)"]["class_shares"] is None
    assert rows["train images (floor)"]["n"] == raw["n"] == 200  # the floor at the same N
    uneven = cli("gan", "eval", "--model", "gan-cond", "--features", "clf", "--n", 7)
    assert_one_line_error(uneven, 2, "--n 7 does not split evenly over the 10 classes")
    human = cli("gan", "eval", "--model", "gan-cond", *args)
    assert human.exit_code == 0 and "mean" in human.stdout and "Sneaker" in human.stdout
    plain = cli("gan", "eval", "--model", "gan-dcgan", *args, "--json")
    assert all(row["class_shares"] is None for row in json.loads(plain.stdout)["rows"])


def test_npz_of_a_conditional_generator_holds_the_labels(
    cli, with_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "classes.npz"
    assert (
        cli("gan", "sample", "--model", "gan-cond", "--class", "all", "--n", 20, out).exit_code == 0
    )
    with np.load(out) as arrays:
        assert arrays["images"].shape == (20, 28, 28)
        assert np.bincount(arrays["labels"], minlength=10).tolist() == [2] * 10


def test_load_model_of_a_conditional_generator(with_store: Path) -> None:
    generator = fmnist_toolkit.load_model("gan-cond")
    assert generator.num_classes == 10 and not generator.training
    images = generator(torch.randn(3, generator.latent_size), torch.tensor([7, 7, 9]))
    assert images.shape == (3, 1, 28, 28)


def test_class_without_model_draws_from_the_conditional_generator(
    cli, with_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "grid.png"
    result = cli("gan", "sample", "--class", "all", "--n", 40, out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["generator"] == "gan-cond"  # the only conditional one


def test_class_without_a_conditional_generator_says_what_to_do(
    cli, synthetic_data: Path, tmp_path: Path
) -> None:
    train_gan("gan-dcgan", tiny_gan("dcgan", epochs=1), CPU, data_dir=synthetic_data)
    out = tmp_path / "grid.png"
    result = cli("gan", "sample", "--class", "bag", out)
    assert_one_line_error(result, 1, "no class-conditional generator", "--conditional")
    assert not out.exists()


# --------------------------------------------------------------------------- truncation


def sampled(cli, out: Path, *args: object) -> tuple[dict, np.ndarray]:
    result = cli("gan", "sample", "--n", 20, out, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), np.load(out)["images"]


def test_truncation_scales_the_noise(cli, with_store: Path, tmp_path: Path) -> None:
    default, plain = sampled(cli, tmp_path / "default.npz", "--model", "gan-cond")
    full, at_one = sampled(cli, tmp_path / "one.npz", "--model", "gan-cond", "--truncation", 1)
    half, truncated = sampled(
        cli, tmp_path / "half.npz", "--model", "gan-cond", "--truncation", 0.5
    )
    assert (default["truncation"], full["truncation"], half["truncation"]) == (1, 1, 0.5)
    assert np.array_equal(plain, at_one)
    assert not np.array_equal(truncated, at_one)
    # The generator's own forward pass on the same noise, halved.
    generator = fmnist_toolkit.load_model("gan-cond")
    noise = generator.noise(20, torch.Generator().manual_seed(0)) * 0.5
    expected = to_uint8(generate(generator, noise, torch.arange(20) % 10))
    assert np.array_equal(truncated, expected.numpy())


def copy_with_sampling(store_root: Path, source: str, name: str, sampling: object) -> None:
    store = ModelStore(store_root)
    shutil.copytree(store.model_dir(source), store.model_dir(name))
    config_path = store.model_dir(name) / "config.json"
    config = json.loads(config_path.read_text())
    config.update(name=name, sampling=sampling)
    config_path.write_text(json.dumps(config))


def test_a_recorded_truncation_is_the_default(
    cli,
    conditional_store: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    synthetic_data: Path,
) -> None:
    home = tmp_path / "home"
    shutil.copytree(conditional_store, home)
    copy_with_sampling(home, "gan-cond", "gan-recorded", {"truncation": 0.5})
    monkeypatch.setenv("FMT_HOME", str(home))
    assert fmnist_toolkit.load_model("gan-recorded").truncation == 0.5
    assert fmnist_toolkit.load_model("gan-cond").truncation == 1
    recorded, images = sampled(cli, tmp_path / "r.npz", "--model", "gan-recorded")
    _, halved = sampled(cli, tmp_path / "h.npz", "--model", "gan-cond", "--truncation", 0.5)
    overridden, full = sampled(
        cli, tmp_path / "f.npz", "--model", "gan-recorded", "--truncation", 1
    )
    _, plain = sampled(cli, tmp_path / "p.npz", "--model", "gan-cond")
    assert recorded["truncation"] == 0.5 and np.array_equal(images, halved)
    assert overridden["truncation"] == 1 and np.array_equal(full, plain)
    args = ["--features", "clf", "--n", 50, "--data-dir", synthetic_data, "--json"]
    report = cli("gan", "eval", "--model", "gan-recorded", *args)
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["truncation"] == 0.5
    table = cli("gan", "eval", "--model", "gan-recorded", *args[:-1])
    assert "truncation 0.5" in " ".join(table.stdout.split())  # the title, however wrapped
    said = cli("gan", "sample", "--model", "gan-recorded", "--n", 1, tmp_path / "one.png")
    assert said.exit_code == 0, said.output
    assert "wrote 1 image to" in said.output and "gan-recorded at truncation 0.5" in said.output


@pytest.mark.parametrize(
    "sampling", [{"truncation": "0.5"}, {"truncation": 0}, [0.5], {"truncation": 9}]
)
def test_a_damaged_recorded_truncation_is_one_line(
    cli, conditional_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sampling: object
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copytree(ModelStore(conditional_store).model_dir("gan-cond"), home / "gan-cond")
    copy_with_sampling(home, "gan-cond", "gan-damaged", sampling)
    monkeypatch.setenv("FMT_HOME", str(home))
    out = tmp_path / "x.png"
    result = cli("gan", "sample", "--model", "gan-damaged", out)
    assert_one_line_error(result, 1, "gan-damaged", "sampling")
    assert not out.exists()


def test_a_recorded_denoiser_is_the_default_when_the_store_has_it(
    cli, conditional_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # gan-mlp records the denoiser its samples measured closest with (docs/gan.md); without
    # --denoiser, --denoise uses it when the store has it, else the store's default ("ae").
    home = tmp_path / "home"
    shutil.copytree(conditional_store, home)
    copy_with_sampling(home, "ae", "ae-copy", {})
    copy_with_sampling(home, "gan-dcgan", "gan-recorded", {"denoiser": "ae-copy"})
    copy_with_sampling(home, "gan-dcgan", "gan-recorded-gone", {"denoiser": "ae-gone"})
    monkeypatch.setenv("FMT_HOME", str(home))
    assert fmnist_toolkit.load_model("gan-recorded").denoiser == "ae-copy"
    assert fmnist_toolkit.load_model("gan-dcgan").denoiser is None

    def denoiser_used(generator: str, *args: str) -> str:
        report, _ = sampled(cli, tmp_path / f"{generator}.npz", "--model", generator, *args)
        return report["denoiser"]

    assert denoiser_used("gan-recorded", "--denoise") == "ae-copy"
    assert denoiser_used("gan-recorded", "--denoiser", "ae") == "ae"  # named: that one
    assert denoiser_used("gan-recorded-gone", "--denoise") == "ae"  # not in the store
    assert denoiser_used("gan-dcgan", "--denoise") == "ae"  # records none


@pytest.mark.parametrize("sampling", [{"denoiser": 3}, {"denoiser": "../ae"}, {"denoiser": ""}])
def test_a_damaged_recorded_denoiser_is_one_line(
    cli, conditional_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sampling: object
) -> None:
    home = tmp_path / "home"
    shutil.copytree(conditional_store, home)
    copy_with_sampling(home, "gan-dcgan", "gan-damaged", sampling)
    monkeypatch.setenv("FMT_HOME", str(home))
    out = tmp_path / "x.png"
    result = cli("gan", "sample", "--model", "gan-damaged", "--denoise", out)
    assert_one_line_error(result, 1, "gan-damaged", "sampling denoiser")
    assert not out.exists()


@pytest.mark.parametrize("value", ["0", "-1", "2.5", "many"])
def test_a_bad_truncation_is_a_usage_error(
    cli, with_store: Path, tmp_path: Path, value: str
) -> None:
    out = tmp_path / "x.png"
    result = cli("gan", "sample", "--model", "gan-cond", "--truncation", value, out)
    assert_one_line_error(result, 2, "--truncation")
    assert not out.exists()
    measured = cli("gan", "eval", "--model", "gan-cond", "--truncation", value, "--n", 10)
    assert_one_line_error(measured, 2, "--truncation")
    with pytest.raises(UsageError, match="--truncation"):
        check_truncation(0.0)


def test_snapshots_are_saved_models_of_the_run(synthetic_data: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    recipe = tiny_gan("dcgan", epochs=3, conditional=True, ema=0.9)
    train_gan("g", recipe, CPU, data_dir=synthetic_data, store=store, snapshot_every=2)
    names = sorted(model.name for model in store.available() if model.name.startswith("g"))
    assert names == ["g", "g-e0002"]  # the last epoch is the model itself
    _, config = store.load("g-e0002")
    assert config["snapshot_of"] == "g" and config["epoch"] == 2 and len(config["history"]) == 2
    generator = fmnist_toolkit.load_model(str(tmp_path / "g-e0002"))
    assert generator(torch.randn(2, 8), torch.tensor([1, 2])).shape == (2, 1, 28, 28)


def test_a_snapshot_that_cannot_be_saved_stops_with_what_is_kept(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from fmnist_toolkit.errors import ToolkitError

    store = ModelStore(tmp_path)
    real_save = ModelStore.save

    def full_for_snapshots(self, name, tensors, config):
        if name.startswith("g-e"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, name, tensors, config)

    monkeypatch.setattr(ModelStore, "save", full_for_snapshots)
    recipe = tiny_gan("dcgan", epochs=3)
    message = r"^cannot save the snapshot 'g-e0001' of 'g' in .*\(No space left on device\); "
    with pytest.raises(ToolkitError, match=message + "the checkpoint of epoch 1 is kept"):
        train_gan("g", recipe, CPU, data_dir=synthetic_data, store=store, snapshot_every=1)
    assert store.read_checkpoint_state("g")["epoch"] == 1 and not store.exists("g")
