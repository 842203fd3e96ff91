"""The model store: atomic, validated, checked on load, no pickle."""

from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
import torch

from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.errors import InvalidNameError, ModelCorruptError, ModelNotFoundError
from fmnist_toolkit.models import build_model
from fmnist_toolkit.storage import CONFIG_FILE, WEIGHTS_FILE, ModelStore, validate_name


def autoencoder_config(latent_dim: int = 4, **extra) -> dict:
    return {
        "kind": "autoencoder",
        "model": {
            "kind": "autoencoder",
            "architecture": "seed",
            "params": {"latent_dim": latent_dim},
        },
        **extra,
    }


def save_autoencoder(store: ModelStore, name: str, latent_dim: int = 4, seed: int = 0, **extra):
    torch.manual_seed(seed)
    model = build_model("autoencoder", "seed", latent_dim=latent_dim)
    store.save(name, model.state_dict(), autoencoder_config(latent_dim, **extra))
    return model


@pytest.mark.parametrize("name", ["ae-16", "A.b_c-1", "x" * 100])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        "a/b",
        "../x",
        ".hidden",
        "a..b",
        "sp ace",
        "x" * 101,
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_name(name)


def test_round_trip_and_listing(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    model = save_autoencoder(store, "ae-4", metrics={"test_mse": 0.5})
    folder = store.model_dir("ae-4")
    assert sorted(p.name for p in folder.iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert len(config["weights_sha256"]) == 64
    tensors, loaded_config = store.load("ae-4")
    assert loaded_config["metrics"] == {"test_mse": 0.5}
    for key, value in model.state_dict().items():
        assert torch.equal(tensors[key], value)
    assert [(m.name, m.kind) for m in store.list()] == [("ae-4", "autoencoder")]


def test_replacing_a_model_keeps_only_the_new_one(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    save_autoencoder(store, "m", seed=1, version=1)
    second = save_autoencoder(store, "m", seed=2, version=2)
    tensors, config = store.load("m")
    assert config["version"] == 2
    assert torch.equal(tensors["encoder.0.weight"], second.state_dict()["encoder.0.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", "m"], "no .tmp/.trash left"


def _save_many(root: str, worker: int) -> None:
    store = ModelStore(root)
    for round_ in range(8):
        save_autoencoder(store, "shared", seed=worker * 100 + round_, worker=worker, round=round_)


def test_concurrent_writers_never_leave_a_mixed_model(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(str(tmp_path), w)) for w in range(3)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(120)
        assert process.exitcode == 0
    store = ModelStore(tmp_path)
    tensors, config = store.load("shared")  # the SHA-256 check would catch a mixed pair
    torch.manual_seed(config["worker"] * 100 + config["round"])
    expected = build_model("autoencoder", "seed", latent_dim=4).state_dict()
    assert torch.equal(tensors["decoder.0.weight"], expected["decoder.0.weight"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", "shared"]


def test_corrupt_weights_are_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    save_autoencoder(store, "m")
    weights = store.model_dir("m") / WEIGHTS_FILE
    content = bytearray(weights.read_bytes())
    content[-5] ^= 0x01
    weights.write_bytes(bytes(content))
    with pytest.raises(ModelCorruptError, match="corrupt or truncated"):
        store.load("m")


def test_truncated_weights_are_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    save_autoencoder(store, "m")
    weights = store.model_dir("m") / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelCorruptError):
        load_model("m", store=store)


def test_not_safetensors_is_refused(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    save_autoencoder(store, "m")
    folder = store.model_dir("m")
    config = json.loads((folder / CONFIG_FILE).read_text())
    config.pop("weights_sha256")
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    (folder / WEIGHTS_FILE).write_bytes(b"\x80\x04 not a safetensors file")
    with pytest.raises(ModelCorruptError, match="not valid safetensors"):
        store.load("m")


def test_weights_that_do_not_match_the_config(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    model = build_model("autoencoder", "seed", latent_dim=4)
    store.save("wrong-shape", model.state_dict(), autoencoder_config(latent_dim=8))
    with pytest.raises(ModelCorruptError, match=r"weight .* is"):
        load_model("wrong-shape", store=store)
    half = {k: v.half() for k, v in model.state_dict().items()}
    store.save("wrong-dtype", half, autoencoder_config(latent_dim=4))
    with pytest.raises(ModelCorruptError, match="float16"):
        load_model("wrong-dtype", store=store)
    partial = dict(list(model.state_dict().items())[:-1])
    store.save("missing-key", partial, autoencoder_config(latent_dim=4))
    with pytest.raises(ModelCorruptError, match="missing"):
        load_model("missing-key", store=store)
    store.save("no-arch", model.state_dict(), {"kind": "autoencoder"})
    with pytest.raises(ModelCorruptError, match="architecture"):
        load_model("no-arch", store=store)


def test_load_by_name_or_path(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    saved = save_autoencoder(store, "m")
    images = torch.rand(3, 1, 28, 28)
    expected = saved.eval()(images)
    for reference in ("m", store.model_dir("m"), store.model_dir("m") / WEIGHTS_FILE):
        model = load_model(reference, store=store)
        assert not model.training
        assert torch.allclose(model(images), expected)
    with pytest.raises(ModelNotFoundError, match=r"no model named 'other'.*models here: m"):
        load_model("other", store=store)
    with pytest.raises(ModelNotFoundError):
        load_model(tmp_path / "nowhere" / "model.safetensors", store=store)


def test_public_load_model_uses_fmt_home(isolated_home: Path) -> None:
    import fmnist_toolkit

    save_autoencoder(ModelStore(), "from-home")
    model = fmnist_toolkit.load_model("from-home")
    assert next(model.parameters()).device.type == "cpu"


def test_list_skips_checkpoints_and_marks_corrupt_configs(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    save_autoencoder(store, "good")
    store.save_checkpoint("running", {"x": torch.zeros(1)}, {"epoch": 1})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / CONFIG_FILE).write_text("{not json")
    assert [(m.name, m.kind) for m in store.list()] == [
        ("broken", "corrupt"),
        ("good", "autoencoder"),
    ]
    assert store.has_checkpoint("running")
    store.remove_checkpoint("running")
    assert not store.has_checkpoint("running")


def test_no_pickle_anywhere() -> None:
    source = Path(__file__).resolve().parent.parent / "fmnist_toolkit"
    for path in source.rglob("*.py"):
        text = path.read_text()
        assert "torch.load(" not in text and "import pickle" not in text, path


def test_remove_leaves_nothing_behind(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    save_autoencoder(store, "gone")
    store.remove("gone")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks"]
    with pytest.raises(ModelNotFoundError):
        store.remove("gone")


def test_a_model_name_cannot_collide_with_a_run_lock(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    with store.exclusive_run("x"):
        save_autoencoder(store, "x.run")  # would wait for ever if the locks shared a file
    assert store.exists("x.run")


def test_store_folders_and_files_honour_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    previous = os.umask(0o022)
    try:
        store = ModelStore(tmp_path / "shared")
        save_autoencoder(store, "shared-model")
        store.save_checkpoint("run", {"x": torch.zeros(1)}, {"epoch": 1})
    finally:
        os.umask(previous)
    for folder in (store.root, store.model_dir("shared-model"), store.checkpoint_dir("run")):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755, folder  # not 0700: others may read
    for file in (WEIGHTS_FILE, CONFIG_FILE):
        assert stat.S_IMODE((store.model_dir("shared-model") / file).stat().st_mode) == 0o644
    assert not [p for p in store.root.iterdir() if p.name.startswith(".tmp")]


def test_unknown_name_suggests_the_closest(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    save_autoencoder(store, "ae-16")
    with pytest.raises(ModelNotFoundError, match=r"did you mean 'ae-16'\?"):
        store.require("ae16")
    with pytest.raises(ModelNotFoundError, match="models here: ae-16"):
        store.require("zzz")


def test_interrupted_runs_are_listed_and_removed_with_their_name(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    state = {"kind": "autoencoder", "epoch": 2, "recipe": {"epochs": 5}}
    store.save_checkpoint("half", {"x": torch.zeros(1)}, state)
    (run,) = store.interrupted()
    assert (run.name, run.kind, run.epoch, run.epochs) == ("half", "autoencoder", 2, 5)
    with pytest.raises(ModelNotFoundError, match="interrupted"):
        store.require("half")
    assert store.remove("half") == [store.checkpoint_dir("half")]
    assert not store.has_checkpoint("half") and store.interrupted() == []
    # a finished model and a later interrupted run of its name go together
    save_autoencoder(store, "both")
    store.save_checkpoint("both", {"x": torch.zeros(1)}, state)
    assert len(store.remove("both")) == 2 and not store.has_checkpoint("both")


def test_a_failed_write_names_the_target_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    from fmnist_toolkit.errors import OutputError
    from fmnist_toolkit.storage import write_file_atomically

    target = tmp_path / "out.png"

    def disk_full(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match=r"^cannot write .*out\.png \(No space left on device\)$"):
        write_file_atomically(target, disk_full)
    assert list(tmp_path.iterdir()) == []
    write_file_atomically(target, lambda path: path.write_bytes(b"whole"))
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]


def test_a_new_name_may_not_differ_from_an_existing_one_in_case_alone(tmp_path: Path) -> None:
    store = ModelStore(tmp_path, bundled=None)
    save_autoencoder(store, "ae-2-copy")
    store.save_checkpoint("half-done", {"x": torch.zeros(1)}, {"kind": "autoencoder", "epoch": 1})
    assert store.check_new_name("ae-2-copy") == "ae-2-copy"  # itself: replacing is allowed
    assert store.check_new_name("ae-3") == "ae-3"
    for twin, existing in (("AE-2-COPY", "ae-2-copy"), ("Half-Done", "half-done")):
        with pytest.raises(InvalidNameError, match=f"existing '{existing}' only in case"):
            store.check_new_name(twin)
    for windows in ("CON", "nul.txt", "com1", "x."):
        with pytest.raises(InvalidNameError, match="Windows cannot make a folder"):
            store.check_new_name(windows)
    # A model saved before these rules (or on Linux, beside its twin) stays usable: an
    # existing name, replaced or resumed, is never refused.
    save_autoencoder(store, "aux")
    save_autoencoder(store, "Ae-2-copy")
    assert store.check_new_name("aux") == "aux" and validate_name("aux") == "aux"
    assert store.check_new_name("Ae-2-copy") == "Ae-2-copy"


def test_a_model_caught_mid_save_is_not_in_the_way(tmp_path: Path, monkeypatch) -> None:
    """CI caught it: a save in another process swapped m3's folder away between the two looks
    at it, and a training run of m3 was refused as 'in the way'. The second look waits for
    the write lock, under which the swap has finished; a load looks again the same way."""
    store = ModelStore(tmp_path, bundled=None)
    store.save("m3", {"w": torch.zeros(2)}, {"kind": "autoencoder"})
    config = (tmp_path / "m3" / CONFIG_FILE).read_bytes()
    (tmp_path / "m3" / CONFIG_FILE).unlink()  # as seen mid-swap: the folder without its config
    real_lock = store._lock

    class SwapFinishesFirst:
        """The write lock, got once the other process's swap has put the config back."""

        def __init__(self, name: str, timeout: float) -> None:
            self.lock, self.name = real_lock("write", name, timeout=timeout), name

        def acquire(self) -> None:
            self.lock.acquire()
            (tmp_path / self.name / CONFIG_FILE).write_bytes(config)

        def release(self) -> None:
            self.lock.release()

    monkeypatch.setattr(
        store, "_lock", lambda purpose, name, timeout=-1: SwapFinishesFirst(name, timeout)
    )
    assert store.check_new_name("m3", kind="autoencoder") == "m3"
    # A load in that moment: the whole folder a moment later, not "no model named 'm3'".
    shutil.rmtree(tmp_path / "m3")
    (tmp_path / "m3").mkdir()
    assert store.require("m3") == tmp_path / "m3"
    # A name never saved here has no lock file to wait on, and gets none made for it.
    with pytest.raises(ModelNotFoundError):
        store.require("m4")
    assert not (tmp_path / ".locks" / "write" / "m4.lock").exists()


def test_a_new_name_may_not_take_a_store_file_or_another_kind_of_model(tmp_path: Path) -> None:
    """`fmt ae train --name studies.sqlite3` moved the tuning studies to the trash, and a
    classifier trained under an autoencoder's name silently replaced it."""
    store = ModelStore(tmp_path, bundled=None)
    store.studies_path.write_bytes(b"SQLite format 3\x00")
    (tmp_path / "half-copied").mkdir()  # a folder without a config: not a model
    for taken in ("studies.sqlite3", "studies.sqlite3-wal", "Studies.SQLite3"):
        with pytest.raises(InvalidNameError, match="the store's tuning studies file"):
            store.check_new_name(taken, kind="autoencoder")
    with pytest.raises(InvalidNameError, match="half-copied is in the way and is not a model"):
        store.check_new_name("half-copied", kind="autoencoder")
    # fmt models rm / show on it: the folder is named and left alone, not "no model named".
    for look in (store.require, store.check_removable):
        with pytest.raises(
            ModelNotFoundError, match=r"half-copied is a folder without config\.json"
        ):
            look("half-copied")
    assert (tmp_path / "half-copied").is_dir()
    save_autoencoder(store, "mix")
    assert store.check_new_name("mix", kind="autoencoder") == "mix"  # retraining replaces it
    with pytest.raises(InvalidNameError, match=r"'mix' is already your autoencoder: a classifier"):
        store.check_new_name("mix", kind="classifier")
    assert store.studies_path.read_bytes().startswith(b"SQLite")
