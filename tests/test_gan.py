"""GANs: training, exact resume, divergence, sampling in every format, evaluation, bad input."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fmnist_toolkit.config import (
    AutoencoderTrainConfig,
    ClassifierTrainConfig,
    EngineConfig,
    GanTrainConfig,
)
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.engine.clf import train_classifier
from fmnist_toolkit.engine.gan import recalibrate_batch_norm, train_gan
from fmnist_toolkit.engine.gan_eval import frechet_distance
from fmnist_toolkit.errors import TrainingInterrupted
from fmnist_toolkit.models.gan import DCGANGenerator, MLPGenerator
from fmnist_toolkit.storage import ModelStore
from tests.test_ae import InterruptAfter
from tests.test_cli import assert_one_line_error

CPU = EngineConfig(device="cpu")


def tiny_gan(architecture: str = "mlp", **overrides) -> GanTrainConfig:
    values = {
        "architecture": architecture,
        "latent_size": 8,
        "hidden_size": 32,
        "width": 4,
        "epochs": 2,
        "batch_size": 64,
        "lr": 2e-4,
        **overrides,
    }
    return GanTrainConfig(**values)


@pytest.fixture(scope="module")
def gan_store(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Path:
    """A store with both generators, two latent-16 autoencoders and a classifier."""
    root = tmp_path_factory.mktemp("gan-store")
    store = ModelStore(root)
    for architecture in ("mlp", "dcgan"):
        train_gan(
            f"gan-{architecture}", tiny_gan(architecture), CPU, data_dir=synthetic_data, store=store
        )
    worse = AutoencoderTrainConfig(epochs=1, batch_size=64, lr=1e-4)
    better = AutoencoderTrainConfig(epochs=3, batch_size=64, lr=3e-3)
    train_autoencoder("ae-worse", worse, CPU, data_dir=synthetic_data, store=store)
    train_autoencoder("ae-better", better, CPU, data_dir=synthetic_data, store=store)
    classifier = ClassifierTrainConfig(encoder="ae-better", epochs=2)
    train_classifier("clf", classifier, CPU, data_dir=synthetic_data, store=store)
    return root


@pytest.fixture
def with_gan_store(gan_store: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FMT_HOME", str(gan_store))
    return gan_store


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("architecture", ["mlp", "dcgan"])
def test_train_saves_a_generator_and_plots(
    cli, synthetic_data: Path, tmp_path: Path, architecture: str
) -> None:
    plots = tmp_path / "plots"
    result = cli(
        "gan", "train", "--arch", architecture, "--epochs", 2, "--latent-size", 8,
        "--hidden-size", 32, "--width", 4, "--data-dir", synthetic_data, "--device", "cpu",
        "--plots", plots, "--sample-every", 1, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # both architectures' options were given: the one this architecture ignores is named
    ignored = "--width" if architecture == "mlp" else "--hidden-size"
    assert f"note: --arch {architecture} ignores {ignored}" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["name"] == f"gan-{architecture}" and summary["epochs"] == 2
    assert 0 < summary["d_real"] < 1 and 0 < summary["d_fake"] < 1
    names = sorted(Path(path).name for path in summary["plots"])
    assert names == sorted(
        [f"gan-{architecture}-{suffix}.png" for suffix in ("epoch-0001", "epoch-0002", "losses")]
        + [f"gan-{architecture}-d-outputs.png"]
    )
    grid = Image.open(plots / f"gan-{architecture}-epoch-0002.png")
    assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 64 images of 28 px with 2 px padding

    from fmnist_toolkit import load_model

    generator = load_model(f"gan-{architecture}")
    images = generator(torch.randn(5, 8))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1
    config = ModelStore().read_config(f"gan-{architecture}")
    assert config["kind"] == "generator" and config["discriminator"]["kind"] == "discriminator"
    assert len(config["history"]) == 2


@pytest.mark.parametrize(("architecture", "ema"), [("mlp", 0.0), ("dcgan", 0.0), ("dcgan", 0.9)])
def test_interrupted_training_resumes_exactly(
    synthetic_data: Path, tmp_path: Path, architecture: str, ema: float
) -> None:
    recipe = tiny_gan(architecture, epochs=3, ema=ema)
    reference_store = ModelStore(tmp_path / "reference")
    reference = train_gan("g", recipe, CPU, data_dir=synthetic_data, store=reference_store)

    store = ModelStore(tmp_path / "interrupted")
    with pytest.raises(TrainingInterrupted) as caught:
        train_gan(
            "g", recipe, CPU, data_dir=synthetic_data, store=store, callbacks=[InterruptAfter(2)]
        )
    assert caught.value.completed_epochs == 2 and store.has_checkpoint("g")
    checkpoint, _ = store.load_checkpoint("g")
    assert any(key.startswith("generator_average.") for key in checkpoint) == bool(ema)
    resumed = train_gan(
        "g", tiny_gan(architecture, epochs=99), CPU, data_dir=synthetic_data, store=store,
        resume=True,
    )  # fmt: skip
    assert resumed.resumed_from_epoch == 2 and resumed.epochs == 3
    assert resumed.history[-1]["g_loss"] == reference.history[-1]["g_loss"]
    weights, _ = store.load("g")
    reference_weights, _ = reference_store.load("g")
    assert all(torch.equal(weights[key], reference_weights[key]) for key in reference_weights)


def test_ema_saves_the_average_of_the_generator_not_its_last_step(
    synthetic_data: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "store")
    recipe = tiny_gan("dcgan", epochs=2, ema=0.5)
    with pytest.raises(TrainingInterrupted):  # after the last epoch's checkpoint
        train_gan(
            "g", recipe, CPU, data_dir=synthetic_data, store=store, callbacks=[InterruptAfter(2)]
        )
    checkpoint, _ = store.load_checkpoint("g")
    train_gan("g", recipe, CPU, data_dir=synthetic_data, store=store, resume=True)
    saved, config = store.load("g")
    assert config["recipe"]["ema"] == 0.5
    weights = [key for key in saved if not is_batch_norm_statistic(key)]
    assert all(
        torch.equal(saved[key], checkpoint[f"generator_average.module.{key}"]) for key in weights
    )
    assert any(not torch.equal(saved[key], checkpoint[f"generator.{key}"]) for key in weights)


def is_batch_norm_statistic(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in {"running_mean", "running_var", "num_batches_tracked"}


def test_batch_norm_statistics_are_recomputed_for_the_final_weights() -> None:
    generator = DCGANGenerator(latent_size=8, width=4)
    first_norm = generator.project[1]
    first_norm.running_mean.fill_(5.0)  # stale statistics, as training leaves them
    first_norm.running_var.fill_(9.0)
    weights = {name: value.clone() for name, value in generator.named_parameters()}
    generator.eval()

    recalibrate_batch_norm(generator, seed=0)

    assert not generator.training  # the mode it was in
    assert all(torch.equal(value, weights[name]) for name, value in generator.named_parameters())
    with torch.no_grad():
        pre_norm = generator.project[0](torch.randn(20_000, 8))
    torch.testing.assert_close(first_norm.running_mean, pre_norm.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(first_norm.running_var, pre_norm.var(0), atol=0.05, rtol=0.05)
    again = DCGANGenerator(latent_size=8, width=4)
    again.load_state_dict(generator.state_dict())
    recalibrate_batch_norm(again, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.buffers(), generator.buffers(), strict=True))


def test_a_generator_without_batch_norm_is_left_as_it_is() -> None:
    generator = MLPGenerator(latent_size=8, hidden_size=16)
    before = {key: value.clone() for key, value in generator.state_dict().items()}
    recalibrate_batch_norm(generator, seed=0)
    assert all(torch.equal(value, before[key]) for key, value in generator.state_dict().items())


def test_dcgan_has_its_own_defaults(cli, synthetic_data: Path) -> None:
    dcgan = GanTrainConfig.for_architecture("dcgan")
    assert (dcgan.epochs, dcgan.lr, dcgan.ema) == (60, 2e-4, 0.999)
    assert GanTrainConfig.for_architecture("mlp") == GanTrainConfig()  # the report's recipe
    assert GanTrainConfig.for_architecture("dcgan", lr=None, epochs=3).epochs == 3
    assert GanTrainConfig.for_architecture("dcgan", ema=0.0).ema == 0.0  # --ema 0: none
    result = cli(
        "gan", "train", "--arch", "dcgan", "--epochs", 1, "--width", 4, "--latent-size", 8,
        "--data-dir", synthetic_data, "--device", "cpu", "-q", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    recipe = ModelStore().read_config("gan-dcgan")["recipe"]
    assert recipe["lr"] == 2e-4 and recipe["epochs"] == 1 and recipe["width"] == 4
    assert recipe["ema"] == 0.999
    result = cli(
        "gan", "train", "--epochs", 1, "--hidden-size", 16, "--latent-size", 8,
        "--data-dir", synthetic_data, "--device", "cpu", "-q", "--json",
    )  # fmt: skip
    recipe = ModelStore().read_config("gan-mlp")["recipe"]
    assert recipe["lr"] == 1e-4 and recipe["ema"] == 0.0


def test_a_run_ended_by_its_time_budget_says_so(
    cli, synthetic_data: Path, isolated_home: Path
) -> None:
    """The first epoch always runs; a budget it overruns ends the run there, and the summary
    and a note say so instead of looking like a finished recipe."""
    common = ["--latent-size", 8, "--hidden-size", 16, "--data-dir", synthetic_data, "-q"]
    common += ["--device", "cpu"]
    args = ["gan", "train", "--epochs", 3, "--time-budget", "0.001", *common]
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 1
    assert summary["stopped_by_time_budget"] == {"seconds": 0.001, "epochs": 1}
    result = cli(*args, "--name", "g2")
    assert result.exit_code == 0, result.output
    assert "note: --time-budget 0.001 s ended the run after 1 of 3 epochs" in result.stderr
    finished = cli("gan", "train", "--epochs", 1, *common, "--json", "--name", "g3")
    assert "stopped_by_time_budget" not in json.loads(finished.stdout)


def test_divergence_stops_with_one_line_and_keeps_the_last_good_checkpoint(
    cli, synthetic_data: Path, isolated_home: Path
) -> None:
    result = cli(
        "gan", "train", "--epochs", 3, "--latent-size", 8, "--hidden-size", 32, "--lr", "1e30",
        "--data-dir", synthetic_data, "--device", "cpu", "-q",
    )  # fmt: skip
    assert_one_line_error(result, 1, "diverged at epoch 1")
    store = ModelStore()
    assert store.has_checkpoint("gan-mlp") and not store.exists("gan-mlp")
    assert store.read_checkpoint_state("gan-mlp")["epoch"] == 0


def test_bad_recipes_are_usage_errors(cli, synthetic_data: Path) -> None:
    for args in (
        ["--lr", "0"],
        ["--beta1", "1.5"],
        ["--arch", "vae"],
        ["--ema", "1"],
        ["--ema", "-0.1"],
    ):
        result = cli("gan", "train", "--data-dir", synthetic_data, *args)
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output


# --------------------------------------------------------------------------- sampling


def sample(cli, *args: object):
    return cli("gan", "sample", *map(str, args))


def test_sample_grid_with_denoise_names_its_models(cli, with_gan_store: Path, tmp_path: Path):
    out = tmp_path / "out.png"
    result = sample(cli, out, "--n", 64, "--denoise", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["generator"] == "gan-dcgan"  # preferred: the better measured of the two
    assert summary["denoiser"] == "ae-better"  # the latent-16 autoencoder with the lowest MSE
    assert Image.open(out).size == (8 * 30 + 2, 8 * 30 + 2)

    umask = os.umask(0o022)
    try:
        raw = tmp_path / "raw.png"
        assert sample(cli, raw, "--n", 64).exit_code == 0
        folder = tmp_path / "pngs"
        assert sample(cli, folder, "--n", 2).exit_code == 0
    finally:
        os.umask(umask)
    # Written atomically through private temporary files, yet with the usual permissions.
    assert raw.stat().st_mode & 0o777 == 0o644 and folder.stat().st_mode & 0o777 == 0o755
    assert raw.read_bytes() != out.read_bytes()  # denoising changed the images


def test_sampling_reports_each_batch(with_gan_store: Path, tmp_path: Path) -> None:
    """What the progress bar of a long `fmt gan sample` is moved on by."""
    from fmnist_toolkit.engine.sample import SampleRequest, write_samples

    done: list[int] = []
    request = SampleRequest(count=2500)
    write_samples(request, str(tmp_path / "s.npy"), generator_name="gan-mlp", on_batch=done.append)
    assert done == [1000, 1000, 500]


def test_every_output_format(cli, with_gan_store: Path, tmp_path: Path) -> None:
    jpg = tmp_path / "grid.jpg"
    assert sample(cli, jpg, "--n", 10, "--nrow", 5, "--model", "gan-mlp").exit_code == 0
    assert Image.open(jpg).format == "JPEG" and Image.open(jpg).size == (5 * 30 + 2, 2 * 30 + 2)

    npz = tmp_path / "s.npz"
    assert sample(cli, npz, "--n", 2500, "--denoise").exit_code == 0  # three batches
    with np.load(npz) as arrays:
        assert set(arrays.files) == {"images", "raw"}
        assert arrays["images"].shape == (2500, 28, 28) and arrays["images"].dtype == np.uint8
        assert not np.array_equal(arrays["images"], arrays["raw"])

    npy = tmp_path / "s.npy"
    assert sample(cli, npy, "--n", 7).exit_code == 0
    assert np.load(npy).shape == (7, 28, 28) and np.load(npy).dtype == np.uint8

    folder = tmp_path / "pngs"
    result = sample(cli, folder, "--n", 12, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["files"] == 12
    assert sorted(path.name for path in folder.iterdir())[:2] == ["00000.png", "00001.png"]
    assert Image.open(folder / "00011.png").size == (28, 28)

    piped = sample(cli, "-", "--n", 4, "--nrow", 2)
    assert piped.exit_code == 0
    assert Image.open(io.BytesIO(piped.stdout_bytes)).size == (2 * 30 + 2, 2 * 30 + 2)

    side = tmp_path / "side.png"
    assert sample(cli, side, "--n", 16, "--denoise", "--side-by-side").exit_code == 0
    width, height = Image.open(side).size
    assert width > 1.8 * height  # two grids next to each other
    assert torch.is_grad_enabled()  # sampling in-process leaves autograd as it found it


def test_same_seed_same_bytes(cli, with_gan_store: Path, tmp_path: Path) -> None:
    outputs = {}
    for label, seed in (("a", 3), ("b", 3), ("c", 4)):
        for suffix in (".png", ".npz"):
            path = tmp_path / f"{label}{suffix}"
            assert sample(cli, path, "--n", 20, "--seed", seed, "--denoise").exit_code == 0
            outputs[label + suffix] = path.read_bytes()
    assert outputs["a.png"] == outputs["b.png"] and outputs["a.npz"] == outputs["b.npz"]
    assert outputs["a.png"] != outputs["c.png"]


def refuse_a_new_file(*args: object, **kwargs: object) -> tuple[int, str]:
    raise PermissionError(13, "Permission denied")


def test_bad_sample_inputs_are_one_line_and_leave_nothing(
    cli, with_gan_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.png"
    cases = [
        (["--n", 0], 2, "--n must be between 1 and 100,000"),
        (["--n", 100_001], 2, "--n must be between 1 and 100,000"),
        (["--nrow", -3], 2, "--nrow must be between 1 and 1000"),
        (["--nrow", 0], 2, "--nrow must be between 1 and 1000"),
        (["--nrow", 10**6], 2, "--nrow must be between 1 and 1000"),
        (["--n", 20_000], 2, "unreadable"),
        (["--model", "nope"], 1, "nope"),
        (["--model", "ae-better"], 2, "is an autoencoder, not a generator"),
        (["--denoise", "--denoiser", "clf"], 2, "is a classifier, not a denoiser"),
        (["--side-by-side"], 2, "--side-by-side"),
        (["--device", "tpu"], 2, "unknown device"),
    ]
    for args, code, message in cases:
        assert_one_line_error(sample(cli, out, *args), code, message)
        assert not out.exists()
    assert_one_line_error(sample(cli, tmp_path / "x.gif"), 2, "cannot tell what to write")
    # images and JSON cannot share stdout: say so instead of dropping the JSON
    assert_one_line_error(sample(cli, "-", "--n", 4, "--json"), 2, "--json", "drop --json")
    assert_one_line_error(sample(cli, tmp_path / "missing" / "x.png"), 1, "does not exist")
    assert not (tmp_path / "missing").exists()
    with monkeypatch.context() as patched:  # a folder that takes no new files, even from root
        patched.setattr(tempfile, "mkstemp", refuse_a_new_file)
        failed = sample(cli, out)
    assert_one_line_error(failed, 1, f"cannot write {out} (Permission denied)")
    assert f".{out.name}." not in failed.stderr  # the temporary file's name is ours, not theirs
    assert not out.exists()
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert_one_line_error(sample(cli, full), 1, "not empty")
    assert sorted(path.name for path in full.iterdir()) == ["keep.txt"]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        assert_one_line_error(sample(cli, locked / "x.png"), 1, "not writable")
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_a_generator_of_another_name_is_the_default_when_it_is_the_only_one(
    cli, synthetic_data: Path, tmp_path: Path
) -> None:
    train_gan("my-gan", tiny_gan(epochs=1), CPU, data_dir=synthetic_data, store=ModelStore())
    result = sample(cli, tmp_path / "x.png", "--n", 4, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["generator"] == "my-gan"


def test_no_generator_in_the_store_says_what_to_do(cli, tmp_path: Path) -> None:
    assert_one_line_error(sample(cli, tmp_path / "x.png"), 1, "fmt gan train")


# --------------------------------------------------------------------------- evaluation


def test_frechet_distance_closed_form() -> None:
    generator = np.random.default_rng(0)
    a = generator.normal(size=(4000, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + np.array([3.0, 0.0, 0.0])
    assert frechet_distance(a, shifted) == pytest.approx(9.0, rel=1e-6)
    scaled = a * 2  # same mean, covariance 4I against I: 3 * (1 + 4 - 2 * 2) = 3
    assert frechet_distance(a, scaled) == pytest.approx(3.0, rel=0.05)


def test_eval_reports_floor_samples_and_modes(
    cli, with_gan_store: Path, synthetic_data: Path
) -> None:
    result = cli(
        "gan", "eval", "--model", "gan-mlp", "--features", "clf", "--n", 300, "--denoise",
        "--data-dir", synthetic_data, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["generator"] == "gan-mlp" and report["denoiser"] == "ae-better"
    rows = {row["images"]: row for row in report["rows"]}
    assert set(rows) == {"train images (floor)", "raw samples", "denoised samples"}
    # the floor at the samples' N, capped by the 256 synthetic training images
    assert rows["raw samples"]["n"] == 300 and rows["train images (floor)"]["n"] == 256
    for row in rows.values():
        assert sum(row["class_histogram"].values()) == row["n"]
        assert 0 <= row["class_entropy"] <= np.log(10) + 1e-9
        assert row["frechet_distance"] >= 0
    # A one-epoch generator is far from real images; real training images are not.
    assert (
        rows["train images (floor)"]["frechet_distance"] < rows["raw samples"]["frechet_distance"]
    )
    human = cli("gan", "eval", "--model", "gan-mlp", "--features", "clf", "--n", 50,
                "--data-dir", synthetic_data)  # fmt: skip
    assert human.exit_code == 0 and "raw samples" in human.stdout, human.output
    assert "raw samples" not in human.stderr


def test_eval_bad_inputs(cli, with_gan_store: Path, synthetic_data: Path) -> None:
    data = ["--data-dir", str(synthetic_data)]
    assert_one_line_error(
        cli("gan", "eval", "--features", "ae-better", *data), 2, "not a classifier"
    )
    assert_one_line_error(cli("gan", "eval", "--n", "1", *data), 2, "--n must be between 2")
    assert_one_line_error(cli("gan", "eval", "--device", "tpu", *data), 2, "unknown device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without CUDA")
def test_sample_and_eval_pass_the_device_through(
    cli, with_gan_store: Path, synthetic_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "x.png"
    assert_one_line_error(sample(cli, out, "--device", "cuda"), 1, "CUDA is not available")
    assert not out.exists()
    eval_on_cuda = cli("gan", "eval", "--device", "cuda", "--data-dir", synthetic_data)
    assert_one_line_error(eval_on_cuda, 1, "CUDA is not available")
    assert sample(cli, out, "--n", 4, "--device", "cpu").exit_code == 0


@pytest.mark.parametrize("command", ["sample", "eval"])
def test_seed_help_says_it_seeds_the_noise(cli, command: str) -> None:
    text = " ".join(cli("gan", command, "--help").stdout.split())
    assert "Seeds the noise" in text and "batch order" not in text
    assert "--device" in text


def test_frechet_distance_checks_the_imaginary_part(monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy import linalg

    from fmnist_toolkit.engine import gan_eval
    from fmnist_toolkit.errors import MeasurementError

    a = np.random.default_rng(0).normal(size=(500, 3))
    exact = frechet_distance(a, a * 2)
    real_sqrtm = linalg.sqrtm

    monkeypatch.setattr(linalg, "sqrtm", lambda m: real_sqrtm(m) + 1e-6j * np.eye(len(m)))
    assert frechet_distance(a, a * 2) == pytest.approx(exact)  # noise: the real part
    monkeypatch.setattr(linalg, "sqrtm", lambda m: real_sqrtm(m) + 0.5j * np.eye(len(m)))
    with pytest.raises(MeasurementError, match=r"imaginary component of 0\.5"):
        frechet_distance(a, a * 2)
    assert isinstance(MeasurementError("x"), ValueError)

    calls = []

    def singular_first(m):
        calls.append(m)
        return np.full_like(m, np.nan) if len(calls) == 1 else real_sqrtm(m)

    monkeypatch.setattr(linalg, "sqrtm", singular_first)
    assert frechet_distance(a, a * 2) == pytest.approx(exact, rel=1e-4)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(a * 2, rowvar=False)
    offset = np.eye(3) * gan_eval.SINGULAR_OFFSET
    assert np.allclose(calls[1], (cov_a + offset) @ (cov_b + offset))


@pytest.mark.parametrize(("count", "nrow"), [(64, 8), (10, 4), (3, 8), (2, 1)])
def test_image_grid_matches_torchvisions_layout(count: int, nrow: int) -> None:
    from torchvision.utils import make_grid

    from fmnist_toolkit.engine.sample import image_grid

    images = torch.rand(count, 1, 28, 28, generator=torch.Generator().manual_seed(count))
    expected = make_grid(images, nrow=nrow, padding=2, pad_value=1.0)[0]
    assert torch.equal(image_grid(images, nrow=nrow), expected)
    # One image: make_grid returns it bare; ours keeps the frame, like every other grid.
    assert image_grid(images[:1], nrow=nrow).shape == (32, 32)
