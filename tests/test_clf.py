"""`fmt clf finetune | eval | predict` on synthetic data, and their bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import fmnist_toolkit
from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig
from fmnist_toolkit.data import image_like_fashion_mnist, load_fashion_mnist
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.storage import ModelStore
from tests.test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def encoder_store(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Path:
    root = tmp_path_factory.mktemp("clf-store")
    config = AutoencoderTrainConfig(latent_dim=4, epochs=8, batch_size=32, lr=3e-3)
    train_autoencoder(
        "ae-4", config, EngineConfig(device="cpu"), data_dir=synthetic_data, store=ModelStore(root)
    )
    return root


@pytest.fixture
def home(encoder_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store holding a copy of the trained encoder."""
    import shutil

    root = tmp_path / "store"
    shutil.copytree(encoder_store, root)
    monkeypatch.setenv("FMT_HOME", str(root))
    return root


def finetune(cli, data: Path, *args: object):
    return cli(
        "clf",
        "finetune",
        "--encoder",
        "ae-4",
        "--data-dir",
        data,
        "--device",
        "cpu",
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--lr",
        "3e-3",
        *args,
    )


def test_frozen_finetune_saves_best_epoch(cli, home: Path, synthetic_data: Path, tmp_path):
    result = finetune(cli, synthetic_data, "--json", "--plots", tmp_path / "plots")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["name"] == "clf-ae-4" and summary["unfreeze"] is False
    config = json.loads((home / "clf-ae-4" / "config.json").read_text())
    accuracies = [row["val_accuracy"] for row in config["history"]]
    assert summary["best_epoch"] == accuracies.index(max(accuracies)) + 1, "picked on validation"
    assert {"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(config["history"][0])
    assert summary["test_accuracy"] > 0.3, "the synthetic classes are easy"
    assert len(summary["per_class"]) == 10 and np.asarray(summary["confusion"]).sum() == 128
    assert sorted(Path(p).name for p in summary["plots"]) == [
        "clf-ae-4-confusion.png",
        "clf-ae-4-curves.png",
    ]
    assert config["kind"] == "classifier" and config["encoder"]["name"] == "ae-4"
    assert config["encoder"]["weights_sha256"]
    # Frozen means frozen: the classifier's encoder is the autoencoder's, weight for weight.
    weights, _ = ModelStore(home).load("clf-ae-4")
    encoder, _ = ModelStore(home).load("ae-4")
    assert torch.equal(weights["encoder.0.weight"], encoder["encoder.0.weight"])


def test_unfreeze_trains_the_encoder(cli, home: Path, synthetic_data: Path) -> None:
    result = finetune(cli, synthetic_data, "--unfreeze", "--encoder-lr", "1e-3", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "clf-ae-4-ft"
    weights, _ = ModelStore(home).load("clf-ae-4-ft")
    encoder, _ = ModelStore(home).load("ae-4")
    assert not torch.equal(weights["encoder.0.weight"], encoder["encoder.0.weight"])


def test_augmentation_is_on_with_unfreeze_and_can_be_turned_off(
    cli, home: Path, synthetic_data: Path
) -> None:
    runs = {}
    for flag in ("--augment", "--no-augment"):
        result = finetune(cli, synthetic_data, "--unfreeze", "--json", "--name", flag[2:], flag)
        assert result.exit_code == 0, result.stderr
        runs[flag] = ModelStore(home).read_config(flag[2:])
    assert runs["--augment"]["recipe"]["augment"] is True
    assert runs["--no-augment"]["recipe"]["augment"] is False
    default = json.loads(finetune(cli, synthetic_data, "--unfreeze", "--json").stdout)
    assert ModelStore(home).read_config(default["name"])["recipe"]["augment"] is True
    # Augmented batches are other images: training takes another path.
    assert runs["--augment"]["history"] != runs["--no-augment"]["history"]


def test_default_encoder_is_the_best_latent_16_autoencoder(
    cli, synthetic_data: Path, isolated_home: Path
) -> None:
    engine = EngineConfig(device="cpu")
    for name, lr in (("ae-worse", 1e-5), ("ae-better", 3e-3)):
        config = AutoencoderTrainConfig(epochs=2, batch_size=32, lr=lr)
        train_autoencoder(name, config, engine, data_dir=synthetic_data)
    mse = {
        name: ModelStore().read_config(name)["metrics"]["test_mse"]
        for name in ("ae-worse", "ae-better")
    }
    assert mse["ae-better"] < mse["ae-worse"]
    result = cli(
        "clf", "finetune", "--epochs", 1, "--data-dir", synthetic_data, "--device", "cpu", "--json"
    )
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["encoder"] == "ae-better" and summary["name"] == "clf-ae-better"
    # A model whose metric is NaN (saved before divergence stopped runs) is nobody's best.
    from fmnist_toolkit.engine.defaults import latent_autoencoders

    config_path = ModelStore().model_dir("ae-better") / "config.json"
    config = json.loads(config_path.read_text())
    config["metrics"]["test_mse"] = float("nan")
    config_path.write_text(json.dumps(config))
    assert latent_autoencoders(ModelStore()) == ["ae-worse"]
    from fmnist_toolkit.engine.defaults import best_classifier

    classifier = ModelStore().model_dir("clf-ae-better") / "config.json"
    config = json.loads(classifier.read_text())
    config["metrics"]["test_accuracy"] = float("nan")
    classifier.write_text(json.dumps(config))
    from fmnist_toolkit.errors import ModelNotFoundError

    without_bundled = ModelStore(bundled=None)  # clf-ae-better is its only classifier
    with pytest.raises(ModelNotFoundError, match="no classifier in the store"):
        best_classifier(without_bundled, purpose="to test", option="--model")


def test_no_encoder_in_the_store_is_one_line(cli, synthetic_data: Path) -> None:
    result = cli("clf", "finetune", "--data-dir", synthetic_data, "--device", "cpu")
    assert_one_line_error(
        result, 1, "no latent-16 autoencoder in the store to take an encoder from"
    )


def test_same_seed_same_result(cli, home: Path, synthetic_data: Path) -> None:
    runs = [
        json.loads(finetune(cli, synthetic_data, "--json", "--name", f"c{i}").stdout)
        for i in range(2)
    ]
    assert runs[0]["test_accuracy"] == runs[1]["test_accuracy"]
    assert runs[0]["confusion"] == runs[1]["confusion"]


def test_load_model_maps_images_to_log_probabilities(cli, home, synthetic_data) -> None:
    assert finetune(cli, synthetic_data, "--quiet").exit_code == 0
    model = fmnist_toolkit.load_model("clf-ae-4")
    images, _ = load_fashion_mnist("test", synthetic_data)
    log_probs = model(images[:5].unsqueeze(1).float() / 255)
    assert log_probs.shape == (5, 10)
    assert torch.allclose(log_probs.exp().sum(1), torch.ones(5), atol=1e-5)


def test_eval_reproduces_the_saved_accuracy(cli, home, synthetic_data) -> None:
    trained = json.loads(finetune(cli, synthetic_data, "--json").stdout)
    result = cli(
        "clf",
        "eval",
        "--model",
        "clf-ae-4",
        "--data-dir",
        synthetic_data,
        "--device",
        "cpu",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["test_accuracy"] == trained["test_accuracy"]
    human = cli("clf", "eval", "--model", "clf-ae-4", "--data-dir", synthetic_data)
    assert human.exit_code == 0 and "test accuracy" in human.stdout
    assert "Trouser" in human.stdout and "test accuracy" not in human.stderr


def _save_test_image(path: Path, pixels: torch.Tensor, *, light_background: bool, scale: int):
    array = pixels.numpy()
    if light_background:
        array = 255 - array
    Image.fromarray(array).resize((28 * scale, 28 * scale), Image.Resampling.NEAREST).save(path)


def test_predict_pictures(cli, home, synthetic_data, tmp_path: Path) -> None:
    assert finetune(cli, synthetic_data, "--quiet").exit_code == 0
    images, _ = load_fashion_mnist("test", synthetic_data)
    paths = []
    for index, (light, scale, suffix) in enumerate([(False, 1, ".png"), (True, 5, ".jpg")]):
        path = tmp_path / f"picture{index}{suffix}"
        _save_test_image(path, images[index], light_background=light, scale=scale)
        paths.append(path)
    result = cli("clf", "predict", "--model", "clf-ae-4", *paths, "--json", "--top", "2")
    assert result.exit_code == 0, result.stderr
    predictions = json.loads(result.stdout)["predictions"]
    assert [p["image"] for p in predictions] == [str(p) for p in paths]
    for prediction in predictions:
        assert len(prediction["top"]) == 2
        assert prediction["top"][0]["probability"] >= prediction["top"][1]["probability"]
    human = cli("clf", "predict", "--model", "clf-ae-4", paths[0])
    assert human.exit_code == 0 and human.stdout.startswith(f"{paths[0]}: ")


def test_predict_and_eval_default_to_the_most_accurate_classifier(
    cli, home, synthetic_data, tmp_path: Path
) -> None:
    image = tmp_path / "picture.png"
    _save_test_image(
        image, load_fashion_mnist("test", synthetic_data)[0][0], light_background=False, scale=1
    )
    assert_one_line_error(
        cli("clf", "predict", image), 1, "no classifier in the store to classify with"
    )
    assert finetune(cli, synthetic_data, "--quiet", "--name", "good").exit_code == 0
    assert (
        finetune(
            cli, synthetic_data, "--quiet", "--name", "poor", "--epochs", "1", "--lr", "1e-6"
        ).exit_code
        == 0
    )
    store = ModelStore(home)
    accuracy = {
        name: store.read_config(name)["metrics"]["test_accuracy"] for name in ("good", "poor")
    }
    assert accuracy["good"] > accuracy["poor"]
    assert json.loads(cli("clf", "predict", image, "--json").stdout)["model"] == "good"
    measured = json.loads(cli("clf", "eval", "--data-dir", synthetic_data, "--json").stdout)
    assert measured["model"] == "good" and measured["test_accuracy"] == accuracy["good"]


def test_pictures_are_converted_like_fashion_mnist(tmp_path: Path) -> None:
    # A dark, tall rectangle on a large white photo: inverted, trimmed, resized, centred.
    picture = np.full((300, 200), 255, dtype=np.uint8)
    picture[50:250, 70:130] = 0
    Image.fromarray(picture).save(tmp_path / "photo.png")
    converted = image_like_fashion_mnist(tmp_path / "photo.png")
    assert converted.shape == (28, 28) and converted.dtype == torch.uint8
    assert int(converted[14, 14]) > 200, "the garment is light on dark, like Fashion-MNIST"
    assert int(converted[14, 0]) == 0 and int(converted[14, 27]) == 0, "width is padded"
    bright = (converted > 100).nonzero()
    assert bright[:, 0].min() <= 1 and bright[:, 0].max() >= 26, "longest side spans 28 pixels"
    columns = bright[:, 1]
    assert abs(int(columns.min()) + int(columns.max()) - 27) <= 1, "centred"


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--encoder", "nobody"], 1, "no model named 'nobody'"),
        (["--encoder", "clf-ae-4"], 2, "not an autoencoder (--encoder takes an autoencoder;"),
        (["--val-fraction", "1.5"], 2, "--val-fraction"),
        (["--lr", "-1"], 2, "learning rate"),
        (["--epochs", "0"], 2, "--epochs"),
        (["--cutout", "8"], 2, "--unfreeze"),
        (["--augment-codes", "--unfreeze"], 2, "--augment-codes"),
        (["--mixup", "-1"], 2, "--mixup"),
        (["--label-smoothing", "1"], 2, "--label-smoothing"),
        (["--ema", "1"], 2, "--ema"),
        (["--schedule", "step"], 2, "--schedule"),
    ],
)
def test_finetune_bad_input(cli, home, synthetic_data, args, code, fragment) -> None:
    if "clf-ae-4" in args:
        assert finetune(cli, synthetic_data, "--quiet").exit_code == 0
    assert_one_line_error(finetune(cli, synthetic_data, *args), code, fragment)


def test_predict_bad_input(cli, home, synthetic_data, tmp_path: Path) -> None:
    assert finetune(cli, synthetic_data, "--quiet").exit_code == 0
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert_one_line_error(cli("clf", "predict", "--model", "clf-ae-4", text), 1, "not an image")
    assert_one_line_error(
        cli("clf", "predict", "--model", "clf-ae-4", tmp_path / "gone.png"), 1, "no such file"
    )
    assert_one_line_error(cli("clf", "predict", "--model", "ae-4", text), 2, "not a classifier")
    assert_one_line_error(
        cli("clf", "eval", "--model", "ae-4", "--data-dir", synthetic_data), 2, "not a classifier"
    )
    assert_one_line_error(cli("clf", "eval", "--model", "ghost"), 1, "no model named 'ghost'")


def test_one_unreadable_picture_costs_the_others_nothing(
    cli, home, synthetic_data, tmp_path: Path
) -> None:
    assert finetune(cli, synthetic_data, "--quiet").exit_code == 0
    images, _ = load_fashion_mnist("test", synthetic_data)
    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for index, path in enumerate(good):
        _save_test_image(path, images[index], light_background=False, scale=2)
    gone = tmp_path / "gone.png"
    result = cli("clf", "predict", "--model", "clf-ae-4", good[0], gone, good[1])
    assert result.exit_code == 1
    assert [line.split(": ")[0] for line in result.stdout.splitlines()] == [str(p) for p in good]
    assert result.stderr.strip() == f"error: {gone}: no such file"
    as_json = cli("clf", "predict", "--model", "clf-ae-4", good[0], gone, good[1], "--json")
    assert as_json.exit_code == 1
    entries = json.loads(as_json.stdout)["predictions"]
    keys = [sorted(entry) for entry in entries]
    assert keys == [["image", "top"], ["error", "image"], ["image", "top"]]
    assert entries[1]["error"] == f"{gone}: no such file"


def test_predict_reads_a_picture_from_standard_input(cli, home, synthetic_data, tmp_path) -> None:
    assert finetune(cli, synthetic_data, "--quiet").exit_code == 0
    images, _ = load_fashion_mnist("test", synthetic_data)
    path = tmp_path / "a.png"
    _save_test_image(path, images[0], light_background=True, scale=3)
    from_file = cli("clf", "predict", "--model", "clf-ae-4", path, "--json")
    from fmnist_toolkit.cli import app

    from_stdin = CliRunner().invoke(
        app, ["clf", "predict", "--model", "clf-ae-4", "-", "--json"], input=path.read_bytes()
    )
    assert from_stdin.exit_code == 0, from_stdin.output
    [answer] = json.loads(from_stdin.stdout)["predictions"]
    assert answer["image"] == "-"
    assert answer["top"] == json.loads(from_file.stdout)["predictions"][0]["top"]
    twice = cli("clf", "predict", "--model", "clf-ae-4", "-", "-", input="x")
    assert_one_line_error(twice, 2, "- (standard input) can be given once")


def test_pictures_too_large_folders_and_float_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist_toolkit.errors import DataCorruptError

    picture = np.zeros((64, 64), dtype=np.float32)
    picture[16:48, 24:40] = 0.8  # a light garment, brightness in [0, 1]
    Image.fromarray(picture, mode="F").save(tmp_path / "float.tif")
    converted = image_like_fashion_mnist(tmp_path / "float.tif")
    assert int(converted.max()) > 150  # not taken for 0-255 and read as blank
    Image.fromarray((picture * 255).astype(np.uint8)).save(tmp_path / "big.png")
    for limit in (3000, 1500):  # 4,096 pixels: Pillow's warning, then its refusal
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
        with pytest.raises(DataCorruptError, match="too large a picture"):
            image_like_fashion_mnist(tmp_path / "big.png")
    with pytest.raises(DataCorruptError, match="is a folder, not a picture"):
        image_like_fashion_mnist(tmp_path)


def test_light_and_dark_backgrounds_convert_alike(synthetic_data: Path, tmp_path: Path) -> None:
    images, _ = load_fashion_mnist("test", synthetic_data)
    _save_test_image(tmp_path / "dark.png", images[3], light_background=False, scale=3)
    _save_test_image(tmp_path / "light.png", images[3], light_background=True, scale=3)
    dark = image_like_fashion_mnist(tmp_path / "dark.png").float()
    light = image_like_fashion_mnist(tmp_path / "light.png").float()
    assert float((dark - light).abs().mean()) < 3.0


def test_predict_blank_picture_and_corrupt_encoder(cli, home, synthetic_data, tmp_path) -> None:
    assert finetune(cli, synthetic_data, "--quiet").exit_code == 0
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    assert_one_line_error(
        cli("clf", "predict", "--model", "clf-ae-4", tmp_path / "blank.png"), 1, "blank"
    )
    store = ModelStore(home)
    tensors, config = store.load("ae-4")
    store.save(
        "bad-ae", tensors, {**config, "model": {**config["model"], "params": {"latent_dim": 8}}}
    )
    assert_one_line_error(finetune(cli, synthetic_data, "--encoder", "bad-ae"), 1, "bad-ae")


TRICKS = {
    "schedule": "onecycle",
    "label_smoothing": 0.1,
    "mixup": 0.2,
    "ema": 0.9,
    "tta_flip": True,
}


@pytest.mark.parametrize(
    ("unfreeze", "tricks"),
    [
        (False, {}),
        (True, {}),
        (False, {**TRICKS, "augment_codes": True}),
        (True, {**TRICKS, "cutout": 8}),
    ],
    ids=["frozen", "unfreeze", "frozen-tricks", "unfreeze-tricks"],
)
def test_interrupted_run_resumed_gives_the_straight_result(
    home: Path, synthetic_data: Path, unfreeze: bool, tricks: dict
) -> None:
    from fmnist_toolkit.config import ClassifierTrainConfig
    from fmnist_toolkit.engine.clf import train_classifier
    from fmnist_toolkit.errors import TrainingInterrupted
    from tests.test_ae import InterruptAfter

    store = ModelStore(home)
    engine = EngineConfig(device="cpu")
    config = ClassifierTrainConfig(
        encoder="ae-4", epochs=4, batch_size=32, lr=3e-3, unfreeze=unfreeze, seed=5, **tricks
    )
    reference = train_classifier("straight", config, engine, data_dir=synthetic_data, store=store)
    with pytest.raises(TrainingInterrupted) as caught:
        train_classifier(
            "clf", config, engine, data_dir=synthetic_data, store=store,
            callbacks=[InterruptAfter(2)],
        )  # fmt: skip
    assert caught.value.completed_epochs == 2 and store.has_checkpoint("clf")
    # The recipe comes from the checkpoint, whatever the caller passes.
    other = ClassifierTrainConfig(encoder="ae-4", epochs=1)
    resumed = train_classifier(
        "clf", other, engine, data_dir=synthetic_data, store=store, resume=True
    )
    assert resumed.resumed_from_epoch == 2 and not store.has_checkpoint("clf")
    drop = ("seconds",)
    assert [{k: v for k, v in row.items() if k not in drop} for row in resumed.history] == [
        {k: v for k, v in row.items() if k not in drop} for row in reference.history
    ]
    assert (resumed.best_epoch, resumed.val_accuracy) == (
        reference.best_epoch,
        reference.val_accuracy,
    )
    assert resumed.test == reference.test
    saved, straight = store.load("clf")[0], store.load("straight")[0]
    assert all(torch.equal(saved[key], straight[key]) for key in straight)


def test_finetune_resume_and_restart(cli, home: Path, synthetic_data: Path) -> None:
    never = finetune(cli, synthetic_data, "--name", "never-ran", "--resume")
    assert_one_line_error(never, 1, "no interrupted run")
    both = finetune(cli, synthetic_data, "--resume", "--restart")
    assert_one_line_error(both, 2, "contradict")
    ModelStore().save_checkpoint("clf-ae-4", {"x": torch.zeros(1)}, {"epoch": 2})
    assert_one_line_error(finetune(cli, synthetic_data), 1, "--resume", "--restart")
    stub = cli("clf", "finetune", "--name", "clf-ae-4", "--resume", "--data-dir", synthetic_data)
    assert_one_line_error(stub, 1, "damaged")  # this checkpoint is a stub
    restarted = finetune(cli, synthetic_data, "--restart", "--quiet", "--epochs", "1")
    assert restarted.exit_code == 0, restarted.stderr
    assert not ModelStore().has_checkpoint("clf-ae-4")


@pytest.mark.parametrize("unfreeze", [False, True])
def test_the_fields_tools_are_recorded_and_eval_reproduces_them(
    cli, home: Path, synthetic_data: Path, unfreeze: bool
) -> None:
    """Label smoothing, mixup, cutout, one-cycle, weight averaging and test-time flips: the
    recipe records them, the saved model predicts with the flip, and ``fmt clf eval`` and
    ``load_model`` measure what training measured."""
    extra = ["--unfreeze", "--cutout", "8"] if unfreeze else []
    result = finetune(
        cli, synthetic_data, "--json", "--name", "tricks", "--schedule", "onecycle",
        "--label-smoothing", "0.1", "--mixup", "0.2", "--ema", "0.9", "--tta-flip", *extra,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    trained = json.loads(result.stdout)
    config = ModelStore(home).read_config("tricks")
    recipe = config["recipe"]
    assert (recipe["schedule"], recipe["label_smoothing"], recipe["mixup"]) == (
        "onecycle",
        0.1,
        0.2,
    )
    assert (recipe["ema"], recipe["tta_flip"], recipe["cutout"]) == (
        0.9,
        True,
        8 if unfreeze else 0,
    )
    assert config["model"]["params"]["tta_flip"] is True
    evaluated = cli(
        "clf", "eval", "--model", "tricks", "--data-dir", synthetic_data, "--device", "cpu",
        "--json",
    )  # fmt: skip
    assert json.loads(evaluated.stdout)["test_accuracy"] == trained["test_accuracy"]
    model = fmnist_toolkit.load_model("tricks")
    images = load_fashion_mnist("test", synthetic_data)[0][:8].unsqueeze(1).float() / 255
    with torch.no_grad():
        both = model(images)
        model.tta_flip = False
        single, mirrored = model(images), model(images.flip(-1))
    expected = ((single.exp() + mirrored.exp()) / 2).log()
    assert torch.allclose(both, expected, atol=1e-5)
    # Without the tools, the same run is another one.
    plain = json.loads(finetune(cli, synthetic_data, "--json", "--name", "plain", *extra).stdout)
    assert ModelStore(home).read_config("plain")["history"] != config["history"]
    assert "tta_flip" not in ModelStore(home).read_config("plain")["model"]["params"]
    assert plain["name"] == "plain"


def test_weight_average_is_what_is_validated_and_saved(home: Path, synthetic_data: Path) -> None:
    from fmnist_toolkit.config import ClassifierTrainConfig
    from fmnist_toolkit.engine.clf import train_classifier

    store = ModelStore(home)
    engine = EngineConfig(device="cpu")
    runs = {
        ema: train_classifier(
            f"ema-{ema}",
            ClassifierTrainConfig(encoder="ae-4", epochs=3, batch_size=32, lr=3e-3, ema=ema),
            engine,
            data_dir=synthetic_data,
            store=store,
        )
        for ema in (0.0, 0.5)
    }
    # The same steps (the average changes nothing the optimiser sees), another validated model.
    plain, averaged = (run.history for run in runs.values())
    assert [row["train_loss"] for row in plain] == [row["train_loss"] for row in averaged]
    assert [row["val_loss"] for row in plain] != [row["val_loss"] for row in averaged]


def test_augmented_codes_train_the_head_on_other_codes(cli, home: Path, synthetic_data: Path):
    runs = {}
    for flag in ((), ("--augment-codes",)):
        name = "codes" + "".join(flag)
        assert finetune(cli, synthetic_data, "--quiet", "--name", name, *flag).exit_code == 0
        runs[flag] = ModelStore(home).read_config(name)
    assert runs[("--augment-codes",)]["recipe"]["augment_codes"] is True
    assert (
        runs[()]["history"][0]["train_loss"]
        != runs[("--augment-codes",)]["history"][0]["train_loss"]
    )
    # Frozen means frozen: the encoder is the autoencoder's, weight for weight.
    weights, _ = ModelStore(home).load("codes--augment-codes")
    encoder, _ = ModelStore(home).load("ae-4")
    encoder_keys = [key for key in encoder if key.startswith("encoder.")]
    assert encoder_keys and all(torch.equal(weights[key], encoder[key]) for key in encoder_keys)


def test_cutout_and_mixup() -> None:
    from fmnist_toolkit.data import cutout_batch, mixup

    images = torch.ones(64, 1, 28, 28)
    cut = cutout_batch(images, torch.Generator().manual_seed(0), 6)
    erased = (cut == 0).flatten(1).sum(1)
    assert int(erased.max()) == 36 and int(erased.min()) >= 3 * 3, "6x6, cut by the border"
    assert torch.equal(cut, cutout_batch(images, torch.Generator().manual_seed(0), 6))
    inputs = torch.arange(8.0).view(8, 1)
    targets = torch.nn.functional.one_hot(torch.arange(8) % 10, 10).float()
    mixed, mixed_targets = mixup(inputs, targets, torch.Generator().manual_seed(1), 0.4)
    assert torch.allclose(mixed_targets.sum(1), torch.ones(8))
    weight = float(mixed_targets.max(1).values.min())
    assert 0.5 <= weight <= 1.0
    assert float(mixed.sum()) == pytest.approx(float(inputs.sum())), "a permutation, blended"


def test_probe_reports_each_encoder_beside_pca(cli, home: Path, synthetic_data: Path) -> None:
    result = cli(
        "clf", "probe", "--encoder", "ae-4", "--data-dir", synthetic_data, "--device", "cpu",
        "--pca", "4", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = {row["features"]: row for row in json.loads(result.stdout)["probes"]}
    assert set(rows) == {"ae-4", "pca-4"}
    assert rows["ae-4"]["dimensions"] == 4 and rows["pca-4"]["dimensions"] == 4
    assert rows["ae-4"]["test_mse"] > 0 and rows["pca-4"]["test_mse"] is None
    for row in rows.values():
        assert 0.3 < row["test_accuracy"] <= 1, "the synthetic classes are easy"
        assert 0 <= row["val_accuracy"] <= 1
    human = cli("clf", "probe", "--encoder", "ae-4", "--data-dir", synthetic_data, "--pca", "0")
    assert human.exit_code == 0 and "ae-4" in human.stdout and "pca" not in human.stdout
    # By default every latent-16 autoencoder of the store: ae-4 is not one.
    none = cli("clf", "probe", "--data-dir", synthetic_data, "--pca", "4", "--json")
    assert [row["features"] for row in json.loads(none.stdout)["probes"]] == ["pca-4"]
    assert_one_line_error(
        cli("clf", "probe", "--encoder", "ghost", "--data-dir", synthetic_data), 1, "ghost"
    )
