"""The U-Net denoiser: corruptions, shapes, ``fmt ae train --objective denoise``, the default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig, GanTrainConfig
from fmnist_toolkit.engine import denoise
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.engine.defaults import default_denoiser
from fmnist_toolkit.engine.denoise import CLEAN_SHARE, corrupt
from fmnist_toolkit.engine.gan import train_gan
from fmnist_toolkit.engine.model_io import best_autoencoder, load_model
from fmnist_toolkit.engine.sample import choose_denoiser
from fmnist_toolkit.models import build_model
from fmnist_toolkit.storage import ModelStore
from tests.test_ae import InterruptAfter
from tests.test_cli import assert_one_line_error

CPU = EngineConfig(device="cpu")
TINY_UNET = ("--arch", "unet", "--objective", "denoise", "--width", "4", "--epochs", "2")


def tiny_denoiser(**overrides) -> AutoencoderTrainConfig:
    values = {
        "architecture": "unet",
        "objective": "denoise",
        "width": 4,
        "epochs": 3,
        "batch_size": 64,
        "lr": 3e-3,
        **overrides,
    }
    return AutoencoderTrainConfig(**values)


# --------------------------------------------------------------------------- corruptions


def test_corruptions_are_seeded_in_range_and_leave_a_share_clean() -> None:
    images = torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    first = corrupt(images, torch.Generator().manual_seed(0))
    again = corrupt(images, torch.Generator().manual_seed(0))
    other = corrupt(images, torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.shape == images.shape and first.dtype == images.dtype
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    unchanged = (first == images).flatten(1).all(dim=1).float().mean()
    # CLEAN_SHARE, plus the corrupted images that drew none of the kinds (1/32 of them).
    assert CLEAN_SHARE <= float(unchanged) <= CLEAN_SHARE + 0.15
    changed = (first - images).pow(2).flatten(1).mean(dim=1)
    assert float(changed.max()) > 0.01  # strong corruptions too


def test_corruptions_include_salt_and_pepper_and_blur() -> None:
    black = torch.zeros(500, 1, 28, 28)
    salted = corrupt(black, torch.Generator().manual_seed(0))
    assert bool((salted == 1).any())  # salt on black
    square = torch.zeros(500, 1, 28, 28)
    square[:, :, 10:18, 10:18] = 1
    corrupted = corrupt(square, torch.Generator().manual_seed(0))
    assert bool(((corrupted > 0) & (corrupted < 1)).any())  # blurred or noisy edges


KINDS = (
    "MAX_GAUSSIAN_SIGMA",
    "MAX_SPECKLE_SIGMA",
    "MAX_SALT_PEPPER",
    "MAX_GRAIN",
    "MAX_STRAY_DOTS",
)


def only(monkeypatch: pytest.MonkeyPatch, kind: str, maximum: float) -> None:
    """Every image corrupted by ``kind`` alone (a MAX_* constant of engine/denoise.py)."""
    monkeypatch.setattr(denoise, "BLUR_CHANCE", 0.0)
    monkeypatch.setattr(denoise, "CLEAN_SHARE", 0.0)
    monkeypatch.setattr(denoise, "CORRUPTION_CHANCE", 1.0)
    for name in KINDS:
        monkeypatch.setattr(denoise, name, maximum if name == kind else 0.0)


def garment_on_black(count: int) -> torch.Tensor:
    images = torch.zeros(count, 1, 28, 28)
    images[:, :, 6:22, 8:20] = 0.8
    return images


def test_grain_darkens_dense_holes_inside_the_garment_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    only(monkeypatch, "MAX_GRAIN", 0.5)
    images = garment_on_black(400)
    grained = corrupt(images, torch.Generator().manual_seed(0))
    garment = images > 0
    assert bool((grained[~garment] == 0).all())  # the background stays black
    assert bool((grained <= images).all())  # grain only darkens
    holes = ((grained < images) & garment).flatten(1).sum(dim=1) / garment[0].sum()
    assert float(holes.max()) > 0.4 and float(holes.max()) <= denoise.MAX_GRAIN + 0.05
    assert float(holes.min()) < 0.05  # the density is drawn per image, from (nearly) none


def test_the_weakest_share_sets_a_floor_on_the_strength(monkeypatch: pytest.MonkeyPatch) -> None:
    only(monkeypatch, "MAX_SALT_PEPPER", 0.2)
    monkeypatch.setattr(denoise, "WEAKEST_SHARE", 0.5)
    images = torch.full((400, 1, 28, 28), 0.5)
    dotted = (corrupt(images, torch.Generator().manual_seed(0)) != 0.5).flatten(1).float()
    share = dotted.mean(dim=1)
    assert float(share.min()) > 0.07 and float(share.max()) < 0.25  # [0.1, 0.2) of the pixels


def test_stray_dots_light_the_background_only(monkeypatch: pytest.MonkeyPatch) -> None:
    only(monkeypatch, "MAX_STRAY_DOTS", 0.05)
    images = garment_on_black(400)
    dotted = corrupt(images, torch.Generator().manual_seed(0))
    garment = images > 0
    assert torch.equal(dotted[garment], images[garment])  # the garment is untouched
    lit = dotted[~garment][dotted[~garment] > 0]
    assert len(lit) > 0 and float(lit.min()) >= 0.25 and float(lit.max()) <= 1
    share = (dotted > 0).logical_and(~garment).flatten(1).sum(dim=1) / (~garment[0]).sum()
    assert float(share.max()) <= denoise.MAX_STRAY_DOTS + 0.02


# --------------------------------------------------------------------------- the model


def test_unet_keeps_the_shape_and_range_and_is_small() -> None:
    model = build_model("denoiser", "unet", width=4)
    images = torch.rand(5, 1, 28, 28)
    assert model(images).shape == (5, 1, 28, 28)
    model.eval()
    with torch.no_grad():
        output = model(images * 3 - 1)
    assert float(output.min()) >= 0 and float(output.max()) <= 1
    default = build_model("denoiser", "unet")
    assert sum(p.numel() for p in default.parameters()) * 4 < 1.5e6  # bytes of float32 weights


def test_small_corrections_are_dropped_only_when_cleaning() -> None:
    torch.manual_seed(0)
    model = build_model("denoiser", "unet", width=4)
    images = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        model.noise.bias.fill_(0.03)  # every pixel darkened by about 0.03, some by more
        full = model.eval()(images)
        model.min_correction = 0.05
        thresholded = model(images)
        training = model.train()(images)
    correction = (images - full).abs()
    small = correction <= 0.05
    assert small.any() and (~small).any()
    assert torch.equal(thresholded[small], images[small])  # small corrections: the input's pixel
    assert torch.equal(thresholded[~small], full[~small])  # large ones: as without a threshold
    assert not torch.equal(training, thresholded)  # training sees every correction


def test_sharpening_is_an_unsharp_mask_applied_only_when_cleaning() -> None:
    from fmnist_toolkit.models.denoiser import _binomial_blur

    torch.manual_seed(0)
    model = build_model("denoiser", "unet", width=4, min_correction=0.02)
    images = torch.rand(6, 1, 28, 28) * 0.6 + 0.2
    flat = torch.full((1, 1, 28, 28), 0.4)
    with torch.no_grad():
        plain_training = model.train()(images)
        cleaned = model.eval()(images)
        model.sharpen = 0.1
        sharpened = model(images)
        training = model.train()(images)
    # The mask by hand: the cleaned image plus 0.1 of its difference from its 3x3 binomial blur.
    padded = torch.nn.functional.pad(cleaned, (1, 1, 1, 1), mode="replicate")
    row = torch.tensor([1.0, 2.0, 1.0])
    blurred = torch.nn.functional.conv2d(padded, (row[:, None] * row / 16).view(1, 1, 3, 3))
    expected = (cleaned + 0.1 * (cleaned - blurred)).clamp(0, 1)
    assert torch.allclose(sharpened, expected, atol=1e-6)
    assert not torch.allclose(sharpened, cleaned, atol=1e-4)  # it did something
    assert float(sharpened.min()) >= 0 and float(sharpened.max()) <= 1
    # An image with no edges has nothing to sharpen, borders included.
    assert torch.allclose(_binomial_blur(flat), flat)
    assert torch.equal(training, plain_training)  # training sees the U-Net's output alone
    from fmnist_toolkit.errors import ModelCorruptError

    with pytest.raises(ModelCorruptError, match="sharpen must be in"):
        build_model("denoiser", "unet", width=4, sharpen=2.5)


def test_an_autoencoder_trained_to_denoise_sharpens_its_redraws_only_when_cleaning() -> None:
    from fmnist_toolkit.models.denoiser import unsharp_mask

    torch.manual_seed(0)
    model = build_model("autoencoder", "wide", latent_dim=8, sharpen=1.0)
    images = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        redrawn = model.eval().decode(model.encode(images))
        cleaned = model(images)
        model.train()
        training, training_redraw = model(images), model.decode(model.encode(images))
    assert torch.allclose(cleaned, unsharp_mask(redrawn, 1.0))
    assert not torch.allclose(cleaned, redrawn, atol=1e-4)  # it did something
    assert torch.equal(training, training_redraw)  # training: the redraw alone
    assert build_model("autoencoder", "seed", latent_dim=4).sharpen == 0  # the default: none
    from fmnist_toolkit.errors import ModelCorruptError

    with pytest.raises(ModelCorruptError, match="sharpen must be in"):
        build_model("autoencoder", "seed", latent_dim=4, sharpen=-1)


def test_the_threshold_and_the_sharpening_are_part_of_the_saved_model(
    synthetic_data: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "store")
    train_autoencoder(
        "dn", tiny_denoiser(epochs=1, min_correction=0.02, sharpen=0.1), CPU,
        data_dir=synthetic_data, store=store,
    )  # fmt: skip
    params = store.read_config("dn")["model"]["params"]
    assert params["min_correction"] == 0.02 and params["sharpen"] == 0.1
    loaded = load_model("dn", store=store)
    assert loaded.min_correction == 0.02 and loaded.sharpen == 0.1


def test_unet_rejects_a_bad_width() -> None:
    from fmnist_toolkit.errors import ModelCorruptError

    with pytest.raises(ModelCorruptError, match="width"):
        build_model("denoiser", "unet", width=0)


# --------------------------------------------------------------------------- the recipe


def test_denoising_run_records_clean_mse_and_resumes_exactly(
    synthetic_data: Path, tmp_path: Path
) -> None:
    from fmnist_toolkit.errors import TrainingInterrupted

    reference_store = ModelStore(tmp_path / "reference")
    reference = train_autoencoder(
        "dn", tiny_denoiser(), CPU, data_dir=synthetic_data, store=reference_store
    )
    assert (
        reference.clean_mse is not None and reference.clean_mse < reference.history[0]["clean_mse"]
    )
    config = reference_store.read_config("dn")
    assert config["kind"] == "denoiser" and config["model"]["params"] == {
        "width": 4,
        "min_correction": 0.0,
    }
    assert config["metrics"]["clean_mse"] == reference.clean_mse
    assert config["recipe"]["objective"] == "denoise"

    store = ModelStore(tmp_path / "interrupted")
    with pytest.raises(TrainingInterrupted):
        train_autoencoder(
            "dn", tiny_denoiser(), CPU, data_dir=synthetic_data, store=store,
            callbacks=[InterruptAfter(2)],
        )  # fmt: skip
    resumed = train_autoencoder(
        "dn", tiny_denoiser(), CPU, data_dir=synthetic_data, store=store, resume=True
    )
    metrics = ("train_mse", "test_mse", "clean_mse")
    assert [[row[key] for key in metrics] for row in resumed.history] == [
        [row[key] for key in metrics] for row in reference.history
    ]
    weights, _ = store.load("dn")
    reference_weights, _ = reference_store.load("dn")
    assert all(torch.equal(weights[key], reference_weights[key]) for key in reference_weights)


def test_clean_samples_join_the_training_images(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path / "store")
    generator = GanTrainConfig(latent_size=8, hidden_size=32, epochs=1, batch_size=64)
    train_gan("gan-tiny", generator, CPU, data_dir=synthetic_data, store=store)
    cpu = torch.device("cpu")
    samples = denoise.generator_samples(("gan-tiny", "gan-tiny"), 30, store, cpu)
    assert samples.shape == (60, 28, 28) and samples.dtype == torch.uint8
    assert torch.equal(samples[:30], samples[30:])  # one seed: the same samples every time
    drawn: list[int] = []
    draw = denoise.generator_samples

    def spy(*args, **kwargs) -> torch.Tensor:
        images = draw(*args, **kwargs)
        drawn.append(len(images))
        return images

    monkeypatch.setattr(denoise, "generator_samples", spy)
    config = tiny_denoiser(epochs=1, clean_samples=("gan-tiny",), clean_sample_count=40)
    train_autoencoder("dn", config, CPU, data_dir=synthetic_data, store=store)
    assert drawn == [40]
    assert store.read_config("dn")["recipe"]["clean_samples"] == ["gan-tiny"]


def test_cli_trains_a_denoiser(cli, synthetic_data: Path, tmp_path: Path) -> None:
    plots = tmp_path / "plots"
    result = cli(
        "ae", "train", *TINY_UNET, "--data-dir", synthetic_data, "--device", "cpu",
        "--min-correction", "0.02", "--sharpen", "0.1", "--plots", plots, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["name"] == "denoiser-unet" and summary["epochs"] == 2
    assert 0 <= summary["clean_mse"] < 1 and summary["test_mse"] > 0
    assert sorted(Path(path).name for path in summary["plots"]) == [
        "denoiser-unet-loss.png",
        "denoiser-unet-reconstructions.png",
    ]
    shown = json.loads(cli("models", "show", "denoiser-unet", "--json").stdout)
    assert shown["kind"] == "denoiser" and shown["metrics"]["clean_mse"] == summary["clean_mse"]
    assert shown["model"]["params"] == {"width": 4, "min_correction": 0.02, "sharpen": 0.1}
    loaded = load_model("denoiser-unet")
    assert (loaded.min_correction, loaded.sharpen) == (0.02, 0.1)


def test_cli_names_a_denoising_autoencoder_apart_and_saves_its_sharpening(
    cli, synthetic_data: Path
) -> None:
    result = cli(
        "ae", "train", "--objective", "denoise", "--latent-dim", "4", "--epochs", "1",
        "--sharpen", "1", "--data-dir", synthetic_data, "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["name"] == "ae-4-denoise"
    shown = json.loads(cli("models", "show", "ae-4-denoise", "--json").stdout)
    assert shown["model"]["params"] == {"latent_dim": 4, "sharpen": 1.0}
    assert load_model("ae-4-denoise").sharpen == 1.0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--arch", "unet"], 2, "--objective denoise"),
        (["--arch", "unet", "--objective", "blur"], 2, "blur"),
        (["--arch", "unet", "--objective", "denoise", "--width", "0"], 2, "--width"),
        (["--arch", "resnet", "--objective", "denoise"], 2, "--arch"),
        (["--latent-dim", "4", "--clean-samples", "gan-mlp"], 2, "--objective denoise"),
        (["--latent-dim", "4", "--width", "8"], 2, "--width only applies to --arch unet"),
        (["--arch", "wide", "--min-correction", "0.1"], 2, "--min-correction only applies"),
        (["--arch", "unet", "--objective", "denoise", "--min-correction", "1"], 2, "--min-corr"),
        (["--arch", "seed", "--sharpen", "0.1"], 2, "use it with --objective denoise"),
        (["--arch", "unet", "--objective", "denoise", "--sharpen", "2.5"], 2, "--sharpen"),
    ],
)
def test_cli_refuses_bad_denoiser_recipes(
    cli, synthetic_data: Path, args: list[str], code: int, message: str
) -> None:
    result = cli("ae", "train", *args, "--epochs", "1", "--data-dir", synthetic_data)
    assert_one_line_error(result, code, message)


# --------------------------------------------------------------------------- the default


@pytest.fixture(scope="module")
def denoiser_store(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Path:
    """A generator, a latent-16 autoencoder, a U-Net denoiser and a denoising autoencoder."""
    root = tmp_path_factory.mktemp("denoiser-store")
    store = ModelStore(root)
    generator = GanTrainConfig(latent_size=8, hidden_size=32, epochs=1, batch_size=64)
    train_gan("gan-mlp", generator, CPU, data_dir=synthetic_data, store=store)
    autoencoder = AutoencoderTrainConfig(epochs=1, batch_size=64)
    train_autoencoder("ae-plain", autoencoder, CPU, data_dir=synthetic_data, store=store)
    train_autoencoder("denoiser-unet", tiny_denoiser(), CPU, data_dir=synthetic_data, store=store)
    denoising_autoencoder = AutoencoderTrainConfig(epochs=1, batch_size=64, objective="denoise")
    train_autoencoder("ae-dn", denoising_autoencoder, CPU, data_dir=synthetic_data, store=store)
    return root


def test_the_default_denoiser_is_the_best_model_trained_to_denoise(denoiser_store: Path) -> None:
    store = ModelStore(denoiser_store)
    metrics = {name: store.read_config(name)["metrics"] for name in ("denoiser-unet", "ae-dn")}
    best = min(metrics, key=lambda name: metrics[name]["test_mse"])
    assert default_denoiser(store) == best
    # A denoising autoencoder's MSE is on corrupted images: never the best plain autoencoder.
    assert best_autoencoder(store, purpose="", option="") == "ae-plain"
    assert choose_denoiser(store, False, None) == (None, None)


def test_the_plain_autoencoder_without_denoisers(synthetic_data: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    config = AutoencoderTrainConfig(epochs=1, batch_size=64)
    train_autoencoder("ae-16", config, CPU, data_dir=synthetic_data, store=store)
    assert default_denoiser(store) == "ae-16"


def test_sample_denoises_with_the_unet_by_default_and_ae_on_request(
    cli, denoiser_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FMT_HOME", str(denoiser_store))
    store = ModelStore(denoiser_store)
    expected = default_denoiser(store)
    out = tmp_path / "out.png"
    result = cli("gan", "sample", str(out), "--n", "16", "--denoise", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["denoiser"] == expected
    result = cli(
        "gan", "sample", str(out), "--n", "16", "--denoise", "--denoiser", "ae-plain", "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["denoiser"] == "ae-plain"
    result = cli("gan", "sample", str(out), "--denoise", "--denoiser", "gan-mlp")
    assert_one_line_error(result, 2, "is a generator, not a denoiser")
