"""`fmt ae latent-plot`: every view on synthetic data, its numbers, and its bad inputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.engine.latent import class_index, knn_accuracy
from fmnist_toolkit.errors import UsageError
from fmnist_toolkit.storage import ModelStore
from tests.test_cli import assert_one_line_error


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Path:
    """A store with a 2-D and a 4-D autoencoder trained briefly on the synthetic data."""
    root = tmp_path_factory.mktemp("latent-store")
    for latent_dim in (2, 4):
        config = AutoencoderTrainConfig(latent_dim=latent_dim, epochs=8, batch_size=32, lr=3e-3)
        train_autoencoder(
            f"ae-{latent_dim}",
            config,
            EngineConfig(device="cpu"),
            data_dir=synthetic_data,
            store=ModelStore(root),
        )
    return root


@pytest.fixture
def plot(cli, trained_store: Path, synthetic_data: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FMT_HOME", str(trained_store))

    def invoke(*args: object):
        return cli(
            "ae",
            "latent-plot",
            "--data-dir",
            synthetic_data,
            "--device",
            "cpu",
            "--perplexity",
            "10",
            *args,
        )

    return invoke


def test_all_views_of_a_2d_model(plot, tmp_path: Path) -> None:
    result = plot("--model", "ae-2", "--view", "all", "--out", tmp_path / "figs", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    views = {row["view"]: row for row in report["views"]}
    assert list(views) == ["scatter", "untrained", "walk", "pca", "tsne"]
    for view, row in views.items():
        path = Path(row["path"])
        assert path == tmp_path / "figs" / f"ae-2-{view}.png"
        assert path.read_bytes()[:4] == b"\x89PNG"
    # PCA of a 2-D code is a rotation: it keeps every distance, hence every neighbour.
    assert views["pca"]["knn_accuracy"] == views["scatter"]["knn_accuracy"]
    untrained = views["untrained"]["knn_accuracy"]
    assert untrained["trained"] > untrained["untrained"], "training separates the classes"
    assert (
        views["untrained"]["knn_accuracy"]["trained"] == views["scatter"]["knn_accuracy"]["trained"]
    )
    assert len(views["pca"]["explained_variance"]) == 2
    assert views["walk"]["from"] == "Ankle boot" and views["walk"]["to"] == "Sneaker"


def test_a_wider_latent_skips_scatter_in_all(plot, tmp_path: Path) -> None:
    result = plot("--model", "ae-4", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    views = [row["view"] for row in json.loads(result.stdout)["views"]]
    assert views == ["untrained", "walk", "pca", "tsne"]
    untrained = json.loads(result.stdout)["views"][0]
    assert untrained["projection"] == "pca"


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_names_each_view_as_it_is_drawn(
    plot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet: bool
) -> None:
    """t-SNE takes minutes on 10,000 codes: the spinner says which view is at work, and -q
    silences it."""
    import contextlib

    import fmnist_toolkit.cli._render as render

    shown: list[str] = []

    @contextlib.contextmanager
    def recording_status(text: str, **_: object):
        shown.append(text)

        class Status:
            def update(self, text: str) -> None:
                shown.append(text)

        yield Status()

    monkeypatch.setattr(render.console, "status", recording_status)
    args = ["--model", "ae-4", "--out", tmp_path / "figs"]
    result = plot(*args, *(["-q"] if quiet else []))
    assert result.exit_code == 0, result.stderr
    if quiet:
        assert shown == []
        return
    assert shown[0] == "Encoding the test set…"
    assert [re.sub(r" \(t-SNE.*\)", "", text) for text in shown[1:]] == [
        f"Drawing the {view} view, {index} of 4…"
        for index, view in enumerate(["untrained", "walk", "pca", "tsne"], start=1)
    ]
    assert "a minute or two" in shown[-1]


@pytest.mark.parametrize(
    ("view", "name", "magic"),
    [
        ("scatter", "s.svg", b"<?xml"),
        ("untrained", "u.pdf", b"%PDF"),
        ("pca", "p.png", b"\x89PNG"),
        ("tsne", "t.png", b"\x89PNG"),
    ],
)
def test_one_view_in_the_format_of_its_extension(plot, tmp_path, view, name, magic) -> None:
    result = plot("--model", "ae-2", "--view", view, "--out", tmp_path / name, "--dpi", "60")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / name).read_bytes().startswith(magic)
    assert re.search(r"trained \d+\.\d%", result.stdout), result.stdout  # a result: stdout


def test_walks_between_classes_and_between_images(plot, tmp_path: Path) -> None:
    by_class = plot(
        "--model",
        "ae-4",
        "--view",
        "walk",
        "--from",
        "0",
        "--to",
        "Trouser",
        "--steps",
        "5",
        "--out",
        tmp_path / "w.png",
        "--json",
    )
    assert by_class.exit_code == 0, by_class.stderr
    row = json.loads(by_class.stdout)["views"][0]
    assert (row["from"], row["to"], row["steps"]) == ("T-shirt/top", "Trouser", 5)
    by_index = plot(
        "--model",
        "ae-4",
        "--view",
        "walk",
        "--from-index",
        "3",
        "--to-index",
        "7",
        "--out",
        tmp_path / "i.png",
        "--json",
    )
    assert by_index.exit_code == 0, by_index.stderr
    assert json.loads(by_index.stdout)["views"][0]["from"] == "test #3"


def test_default_output_names(plot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert plot("--model", "ae-2", "--view", "pca").exit_code == 0
    assert (tmp_path / "ae-2-pca.png").is_file()


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--model", "nobody", "--view", "pca"], 1, "no model named 'nobody'"),
        (["--model", "ae-2", "--view", "walk", "--from", "hat"], 2, "unknown class 'hat'"),
        (["--model", "ae-4", "--view", "scatter"], 2, "use --view pca or --view tsne"),
        (["--model", "ae-2", "--view", "pca", "--out", "fig.bmp"], 2, "unknown figure format"),
        (["--model", "ae-2", "--view", "walk", "--from-index", "3"], 2, "go together"),
        (
            ["--model", "ae-2", "--view", "walk", "--from-index", "0", "--to-index", "99999"],
            2,
            "outside",
        ),
        (["--model", "ae-2", "--view", "tsne", "--perplexity", "0.5"], 2, "perplexity"),
        (["--model", "ae-2", "--view", "pixels"], 2, "--view"),
        (["--model", "ae-2", "--view", "all", "--out", "x.png"], 2, "must be a folder"),
        (["--model", "ae-2", "--view", "pca", "--out", "."], 2, ". is a folder: name a figure"),
        (
            [
                "--model",
                "ae-2",
                "--view",
                "walk",
                "--to",
                "bag",
                "--from-index",
                "0",
                "--to-index",
                "1",
            ],
            2,
            "give one pair (drop --to or the indices)",
        ),
        (["--model", "ae-2", "--view", "pca", "--format", "svg"], 2, "--format is for --view all"),
    ],
)
def test_bad_input(plot, tmp_path: Path, monkeypatch, args, code, fragment) -> None:
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(plot(*args), code, fragment)


def test_unwritable_output(plot, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = plot("--model", "ae-2", "--view", "pca", "--out", blocker / "fig.png")
    assert_one_line_error(result, 1, f"{blocker} is a file, not a folder")
    # A typo in a folder's name is an error, as for `fmt gan sample`, not a new folder.
    missing = tmp_path / "no-such-folder" / "fig.png"
    result = plot("--model", "ae-2", "--view", "pca", "--out", missing)
    assert_one_line_error(result, 1, f"folder {missing.parent} does not exist")
    assert not missing.parent.exists()


def test_a_model_that_is_not_an_autoencoder(plot, trained_store: Path, tmp_path: Path) -> None:
    store = ModelStore(trained_store)
    tensors, config = store.load("ae-2")
    store.save(
        "not-ae",
        tensors,
        {**config, "kind": "classifier", "model": {**config["model"], "kind": "classifier"}},
    )
    result = plot("--model", "not-ae", "--view", "pca", "--out", tmp_path / "x.png")
    assert_one_line_error(result, 2, "not an autoencoder")


def test_knn_accuracy_measures_separation() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 50)
    centres = np.stack([np.arange(10) * 100.0, np.zeros(10)], axis=1)
    separated = centres[labels] + rng.normal(size=(500, 2))
    assert knn_accuracy(separated, labels) == 1.0
    mixed = rng.normal(size=(500, 2))
    assert knn_accuracy(mixed, labels) < 0.3


@pytest.mark.parametrize(
    ("text", "index"),
    [
        ("9", 9),
        ("ankle-boot", 9),
        ("Ankle boot", 9),
        ("t-shirt", 0),
        ("T-shirt/top", 0),
        ("sneaker", 7),
        ("BAG", 8),
    ],
)
def test_class_names_and_indices(text: str, index: int) -> None:
    assert class_index(text) == index


def test_unknown_class() -> None:
    with pytest.raises(UsageError, match="ankle-boot"):
        class_index("10")


def test_all_views_in_another_format(plot, tmp_path: Path) -> None:
    result = plot("--model", "ae-4", "--out", tmp_path, "--format", "svg", "--json")
    assert result.exit_code == 0, result.stderr
    paths = [Path(row["path"]) for row in json.loads(result.stdout)["views"]]
    assert [path.suffix for path in paths] == [".svg"] * 4
    assert all(path.read_bytes().startswith(b"<?xml") for path in paths)


def test_walk_images_are_real_and_empty_classes_are_refused(
    trained_store: Path, tmp_path: Path
) -> None:
    import torch

    from fmnist_toolkit.engine.latent import WalkSpec, _walk_images, open_latent_space
    from tests.conftest import write_dataset

    space = open_latent_space(
        "ae-2", data_dir=_data(tmp_path, 128), device="cpu", store=ModelStore(trained_store)
    )
    images, captions, _ = _walk_images(space, WalkSpec(steps=6))
    assert images.shape == (6, 1, 28, 28) and bool(torch.isfinite(images).all())
    assert float(images.std()) > 0, "a decoded walk is not blank"
    assert captions[0] == "Ankle boot" and captions[-1] == "Sneaker"
    # A test set of five images holds classes 0-4 only: no ankle boots to walk from.
    few = write_dataset(tmp_path / "few", train=20, test=5)
    small = open_latent_space("ae-2", data_dir=few, device="cpu", store=ModelStore(trained_store))
    with pytest.raises(UsageError, match="no test image of class 'Ankle boot'"):
        _walk_images(small, WalkSpec())


def _data(tmp_path: Path, test: int) -> Path:
    from tests.conftest import write_dataset

    return write_dataset(tmp_path / f"data-{test}", train=20, test=test)
