"""Bundled models: found when the user has none, verified by SHA-256, read-only, never hiding
a user's model silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.errors import ModelCorruptError, ModelNotFoundError
from fmnist_toolkit.storage import (
    BUNDLED_ROOT,
    CONFIG_FILE,
    MANIFEST_FILE,
    WEIGHTS_FILE,
    ModelStore,
    bundle_models,
)
from fmnist_toolkit.storage.bundling import BUNDLE_SIZE_LIMIT, bundle_size
from tests.test_cli import assert_one_line_error

TINY = AutoencoderTrainConfig(latent_dim=16, epochs=1, batch_size=64)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, synthetic_data: Path) -> Path:
    """A bundle folder made the way the package's is, holding one autoencoder ae-16."""
    source = tmp_path_factory.mktemp("source-store")
    train_autoencoder("ae-16", TINY, EngineConfig(device="cpu"), data_dir=synthetic_data,
                      store=ModelStore(source, bundled=None))  # fmt: skip
    folder = tmp_path_factory.mktemp("bundle")
    manifest = bundle_models(source, ["ae-16"], folder)
    assert manifest["models"]["ae-16"]["kind"] == "autoencoder"
    return folder


def test_a_retired_model_leaves_the_bundle_and_its_manifest(bundle: Path, tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(bundle, folder)
    manifest = bundle_models(tmp_path, [], folder, retire=("ae-16",))
    assert manifest["models"] == {}
    assert not (folder / "ae-16").exists()
    assert json.loads((folder / MANIFEST_FILE).read_text()) == manifest
    with pytest.raises(ValueError, match="not bundled"):
        bundle_models(tmp_path, [], folder, retire=("ae-16",))


def test_a_model_bundled_in_half_loads_in_float32_and_reconstructs_alike(
    bundle: Path, tmp_path: Path
) -> None:
    """--half keeps float32 weights as float16 (half the bytes); loading widens them back."""
    import torch
    from safetensors.torch import load_file

    from fmnist_toolkit.engine.model_io import load_model

    folder = tmp_path / "bundle"
    manifest = bundle_models(bundle, ["ae-16"], folder, half=("ae-16",))
    stored = load_file(folder / "ae-16" / WEIGHTS_FILE)
    assert {tensor.dtype for tensor in stored.values()} <= {torch.float16, torch.int64}
    assert torch.float16 in {tensor.dtype for tensor in stored.values()}
    full_size = (bundle / "ae-16" / WEIGHTS_FILE).stat().st_size
    assert (folder / "ae-16" / WEIGHTS_FILE).stat().st_size < 0.6 * full_size
    assert json.loads((folder / "ae-16" / CONFIG_FILE).read_text())["weights_dtype"] == "float16"
    assert manifest["models"]["ae-16"]["kind"] == "autoencoder"

    with pytest.raises(ValueError, match="--half ae-16"):  # not bundled in that call: a typo
        bundle_models(bundle, [], tmp_path / "other", half=("ae-16",))

    half = load_model("ae-16", store=ModelStore(tmp_path / "home", bundled=folder))
    full = load_model("ae-16", store=ModelStore(tmp_path / "home", bundled=bundle))
    assert {parameter.dtype for parameter in half.parameters()} == {torch.float32}
    images = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(half(images), full(images), atol=5e-3)


def test_every_denoiser_a_bundled_generator_records_is_bundled_too() -> None:
    """Retiring a recorded denoiser would silently change what --denoise does to its samples."""
    manifest = json.loads((BUNDLED_ROOT / MANIFEST_FILE).read_text())["models"]
    recorded = {}
    for name, entry in manifest.items():
        sampling = json.loads((BUNDLED_ROOT / name / CONFIG_FILE).read_text()).get("sampling", {})
        if entry["kind"] == "generator" and "denoiser" in sampling:
            recorded[name] = sampling["denoiser"]
    assert recorded == {"gan-mlp": "denoiser-gan-mlp"}
    for denoiser in recorded.values():
        assert manifest[denoiser]["kind"] in ("autoencoder", "denoiser")


def test_asking_for_a_retired_model_names_its_replacement(bundle: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path, bundled=bundle)
    with pytest.raises(ModelNotFoundError, match="no longer bundled: ae-wide-16-onecycle"):
        store.require("ae-wide-16")
    with pytest.raises(ModelNotFoundError, match="denoiser-gan-mlp holds it"):
        store.require("ae-wide-64-denoise")


@pytest.fixture
def with_bundle(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FMT_BUNDLED_MODELS", str(bundle))
    return bundle


def test_bundled_model_is_used_when_the_user_has_none(cli, with_bundle: Path) -> None:
    listed = cli("models", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.stdout)
    assert entry["name"] == "ae-16" and entry["source"] == "bundled" and not entry["shadowed"]

    from fmnist_toolkit import load_model

    assert load_model("ae-16").encode is not None
    shown = cli("models", "show", "ae-16", "--json")
    assert json.loads(shown.stdout)["source"] == "bundled"
    assert_one_line_error(cli("models", "rm", "ae-16", "--yes"), 1, "read-only")
    assert (with_bundle / "ae-16" / WEIGHTS_FILE).is_file()


def test_a_piped_listing_keeps_every_cell_whole(
    cli, with_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fmt models list | grep ...` or `> file`: no terminal width to fit, so nothing is cut."""
    monkeypatch.delenv("COLUMNS", raising=False)
    (entry,) = json.loads(cli("models", "list", "--json").stdout)
    listed = cli("models", "list")
    assert listed.exit_code == 0, listed.output
    assert "…" not in listed.stdout
    (row,) = [line for line in listed.stdout.splitlines() if f" {entry['name']} " in line]
    assert entry["kind"] in row and entry["created"][:10] in row

    monkeypatch.setenv("COLUMNS", "")  # set but empty (or not a number): no width asked for
    assert "…" not in cli("models", "list").stdout
    monkeypatch.setenv("COLUMNS", "60")  # a width asked for is honoured by fewer columns
    narrow = cli("models", "list").stdout
    assert max(len(line) for line in narrow.splitlines()) <= 60 and "…" not in narrow
    assert any(line.startswith(f"{entry['name']} ") for line in narrow.splitlines())


def test_a_user_model_of_the_same_name_wins_and_listings_say_so(
    cli, with_bundle: Path, synthetic_data: Path
) -> None:
    trained = cli("ae", "train", "--epochs", "1", "--data-dir", synthetic_data, "--device", "cpu",
                  "--seed", "7", "--json")  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert "note: your 'ae-16' now hides the bundled model" in trained.stderr
    listed = {
        (m["name"], m["source"]): m for m in json.loads(cli("models", "list", "--json").stdout)
    }
    assert listed[("ae-16", "user")]["shadowed"] is False
    assert listed[("ae-16", "bundled")]["shadowed"] is True
    table = cli("models", "list")
    text = table.stderr + table.stdout  # words only: the table may wrap a cell
    assert "wins" in text and "hidden" in text

    store = ModelStore()
    assert store.source("ae-16") == "user"
    assert store.load("ae-16")[1]["recipe"]["seed"] == 7
    assert cli("models", "rm", "ae-16", "--yes").exit_code == 0  # removes the user's copy
    assert store.source("ae-16") == "bundled"


def test_a_model_of_another_kind_may_not_take_a_bundled_name(
    cli, with_bundle: Path, synthetic_data: Path
) -> None:
    """A generator named ae-16 would hide the autoencoder that latent-plot defaults to."""
    clash = cli("gan", "train", "--arch", "mlp", "--hidden-size", "8", "--latent-size", "4",
                "--epochs", "1", "--name", "ae-16", "--data-dir", synthetic_data)  # fmt: skip
    assert_one_line_error(clash, 2, "'ae-16' is the name of a bundled autoencoder")
    assert ModelStore().source("ae-16") == "bundled"


def test_a_tampered_bundled_model_is_refused(bundle: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    config = json.loads((copy / "ae-16" / CONFIG_FILE).read_text())
    config["metrics"]["test_mse"] = 0.0001  # a better number than it earned
    (copy / "ae-16" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ModelCorruptError, match="does not match the package's manifest"):
        ModelStore(tmp_path / "empty", bundled=copy).load("ae-16")
    assert "does not match" in ModelStore(tmp_path, bundled=copy).check_bundled()["ae-16"]
    assert ModelStore(tmp_path, bundled=bundle).check_bundled() == {"ae-16": ""}


def test_doctor_reports_a_tampered_bundled_model(
    cli, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.setenv("FMT_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.setenv("FMT_BUNDLED_MODELS", str(bundle))
    healthy = cli("doctor", "--json")
    assert healthy.exit_code == 0, healthy.output
    assert json.loads(healthy.stdout)["bundled"] == {"ae-16": "verified"}
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "ae-16" / WEIGHTS_FILE).write_bytes(b"not weights")
    monkeypatch.setenv("FMT_BUNDLED_MODELS", str(copy))
    tampered = cli("doctor", "--json")
    assert (
        tampered.exit_code == 1
        and "does not match" in json.loads(tampered.stdout)["bundled"]["ae-16"]
    )
    assert cli("doctor").exit_code == 1


def test_hidden_when_asked(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMT_BUNDLED_MODELS", "0")
    assert ModelStore().list() == []


PACKAGE_MANIFEST = BUNDLED_ROOT / MANIFEST_FILE
PACKAGED = (
    sorted(json.loads(PACKAGE_MANIFEST.read_text())["models"]) if PACKAGE_MANIFEST.is_file() else []
)


@pytest.mark.skipif(not PACKAGED, reason="this checkout bundles no models")
@pytest.mark.parametrize("name", PACKAGED)
def test_every_packaged_model_verifies_and_loads(name: str, tmp_path: Path) -> None:
    from fmnist_toolkit.engine.model_io import load_model

    store = ModelStore(tmp_path, bundled=BUNDLED_ROOT)
    assert store.source(name) == "bundled"
    model = load_model(name, store=store)
    assert sum(parameter.numel() for parameter in model.parameters()) > 0


@pytest.mark.skipif(not PACKAGED, reason="this checkout bundles no models")
def test_the_bundle_stays_under_20_mb() -> None:
    assert BUNDLE_SIZE_LIMIT == 20_000_000  # decimal megabytes: the stricter reading of "20 MB"
    assert bundle_size(BUNDLED_ROOT) < BUNDLE_SIZE_LIMIT


@pytest.mark.skipif(not PACKAGED, reason="this checkout bundles no models")
def test_sampling_runs_the_bundled_models_in_the_cpus_layout_with_the_same_images(
    tmp_path: Path,
) -> None:
    """`fmt gan sample` loads its generator and denoiser channels_last on the CPU (faster);
    the images are those of the models as loaded."""
    import torch

    from fmnist_toolkit.engine.model_io import load_model
    from fmnist_toolkit.engine.sample import load_denoiser, load_generator

    store = ModelStore(tmp_path, bundled=BUNDLED_ROOT)
    generator = load_generator("gan-dcgan-cond", store)
    denoiser = load_denoiser("denoiser-unet", store)
    convolutions = [m for m in denoiser.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(
        m.weight.is_contiguous(memory_format=torch.channels_last) for m in convolutions
    )
    noise = torch.randn(16, generator.latent_size)
    labels = torch.arange(16) % 10
    with torch.no_grad():
        images = (load_model("gan-dcgan-cond", store=store)(noise, labels) + 1) / 2
        assert torch.allclose(generator(noise, labels), images * 2 - 1, atol=1e-5)
        plain = load_model("denoiser-unet", store=store)
        assert torch.allclose(denoiser(images), plain(images), atol=1e-5)
