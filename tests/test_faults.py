"""The fault battery: bad arguments, hostile paths and files, fuzzed inputs, signals, and
several processes in one store. Every case checks the contract of docs/architecture.md: the
exit code, exactly one ``error:`` line on stderr, no traceback, JSON only on stdout with
``--json``, and nothing partial left behind.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import torch

from fmnist_toolkit.errors import ToolkitError
from fmnist_toolkit.models import build_model
from fmnist_toolkit.storage import CONFIG_FILE, WEIGHTS_FILE, ModelStore, sha256_hex
from fmnist_toolkit.transfer import ARCHIVE_FORMAT, ARCHIVE_MANIFEST, MAX_MEMBER_BYTES, export_model
from tests.test_cli import assert_one_line_error
from tests.test_storage import autoencoder_config, save_autoencoder

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_permissions = pytest.mark.skipif(IS_ROOT, reason="root ignores file permissions")


# --------------------------------------------------------------------------- helpers
def fmt(*args: object) -> list[str]:
    return [sys.executable, "-m", "fmnist_toolkit", *map(str, args)]


def run_fmt(*args: object, env: dict[str, str], timeout: float = 120, **kwargs):
    return subprocess.run(
        fmt(*args), env=env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def subprocess_env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FMT_HOME": str(home),
        "FMT_BUNDLED_MODELS": "0",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    }


def assert_process_error(process, exit_code: int, *fragments: str) -> None:
    """The subprocess twin of assert_one_line_error: notes may precede the one error line."""
    assert process.returncode == exit_code, (process.returncode, process.stderr)
    assert "Traceback" not in process.stderr, process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, process.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def assert_json_or_nothing(stdout: str) -> None:
    """With --json, stdout holds one JSON document or nothing (after an error)."""
    if stdout.strip():
        json.loads(stdout)


def leftovers(root: Path) -> list[str]:
    """Temporary folders and files of interrupted writes anywhere under a store."""
    if not root.exists():
        return []
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.name.startswith((".tmp-", ".trash-", ".pruning-")) or path.suffix == ".tmp"
    )


def stored_models(root: Path) -> list[str]:
    return sorted(model.name for model in ModelStore(root, bundled=None).list())


def model_archive(tmp_path: Path, name: str = "ae", latent_dim: int = 4) -> Path:
    store = ModelStore(tmp_path / "export-store", bundled=None)
    save_autoencoder(store, name, latent_dim=latent_dim)
    return export_model(store, name, tmp_path / f"{name}.zip")


def archive_from(path: Path, members: dict[str, bytes], *, manifest: bool = True) -> Path:
    """A zip of ``members`` plus (unless told not) a manifest with their true SHA-256."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, content in members.items():
            bundle.writestr(name, content)
        if manifest:
            hashes = {name: sha256_hex(content) for name, content in members.items()}
            manifest = {"format": ARCHIVE_FORMAT, "name": "evil", "sha256": hashes}
            bundle.writestr(ARCHIVE_MANIFEST, json.dumps(manifest))
    return path


def weights_and_config(latent_dim: int = 4, **config_changes) -> dict[str, bytes]:
    """The two files of a valid autoencoder, as bytes; ``config_changes`` edits its config."""
    from safetensors.torch import save

    model = build_model("autoencoder", "seed", latent_dim=latent_dim)
    weights = save({k: v.contiguous() for k, v in model.state_dict().items()})
    config = {**autoencoder_config(latent_dim), **config_changes}
    return {WEIGHTS_FILE: weights, CONFIG_FILE: json.dumps(config).encode()}


TINY_AE = ["--device", "cpu", "--latent-dim", "4", "--batch-size", "64", "--epochs", "1"]


# =========================================================================== arguments
# Bad values for the numeric and choice options of every command: exit 2, one line, before
# any work. "DATA" stands for the synthetic data folder.
BAD_ARGUMENTS = [
    ("ae", "train", "--epochs", "0"),
    ("ae", "train", "--batch-size", "0"),
    ("ae", "train", "--latent-dim", "0"),
    ("ae", "train", "--latent-dim", "5000"),
    ("ae", "train", "--weight-decay", "-1"),
    ("ae", "train", "--optimizer", "sgdd"),
    ("ae", "train", "--precision", "fp8"),
    ("ae", "train", "--epochs", "many"),
    ("ae", "latent-plot", "--steps", "1"),
    ("ae", "latent-plot", "--dpi", "10"),
    ("ae", "tune", "--epochs", "0"),
    ("ae", "tune", "--latent-dim", "0"),
    ("ae", "tune", "--best-epochs", "0"),
    ("clf", "finetune", "--epochs", "0"),
    ("clf", "finetune", "--batch-size", "-3"),
    ("clf", "finetune", "--weight-decay", "-0.5"),
    ("clf", "predict", "--top", "11", "x.png"),
    ("gan", "train", "--arch", "transformer"),
    ("gan", "train", "--epochs", "0"),
    ("gan", "train", "--latent-size", "0"),
    ("gan", "train", "--batch-size", "0"),
    ("gan", "train", "--sample-every", "0"),
    ("data", "fetch", "--timeout", "0"),
    ("ae", "train", "--seed", str(2**64)),
    ("ae", "train", "--seed", "-1"),
    ("clf", "finetune", "--seed", str(2**70)),
    ("gan", "train", "--seed", str(2**64)),
    ("gan", "sample", "--seed", str(2**64), "out.png"),
    ("models", "list", "--kind", "robot"),
    ("models", "prune", "--older-than", "-1"),
    ("models", "prune", "--older-than", "soon"),
]


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS, ids=" ".join)
def test_bad_argument_is_one_usage_line(cli, arguments: tuple[str, ...]) -> None:
    result = cli(*arguments, "--json")
    assert_one_line_error(result, 2)
    assert result.stdout == ""


# Values whose range the recipe checks (they need the data folder to get that far): still
# exit 2 and one line, nothing stored.
LATE_ARGUMENTS = [
    ("ae", "train", "--lr", "0"),
    ("ae", "train", "--lr", "nan"),
    ("ae", "train", "--arch", "transformer"),
    ("ae", "tune", "--val-fraction", "1.5", "--trials", "1"),
    ("ae", "tune", "--trials", "-1"),
    ("ae", "tune", "--jobs", "0", "--trials", "1"),
    ("clf", "finetune", "--val-fraction", "2", "--encoder", "x"),
    ("clf", "finetune", "--lr", "-1", "--encoder", "x"),
    ("gan", "train", "--lr", "-1"),
    ("gan", "train", "--ema", "1.5"),
    ("gan", "train", "--beta1", "1.5"),
    ("gan", "sample", "--n", "0", "--model", "x", "out.png"),
    ("gan", "sample", "--nrow", "0", "--model", "x", "out.png"),
    ("gan", "eval", "--n", "0", "--model", "x"),
    ("ae", "latent-plot", "--view", "sideways"),
    ("ae", "latent-plot", "--perplexity", "-5"),
]


@pytest.mark.parametrize("arguments", LATE_ARGUMENTS, ids=" ".join)
def test_bad_value_checked_by_the_recipe(
    cli, synthetic_data: Path, isolated_home: Path, arguments: tuple[str, ...]
) -> None:
    result = cli(*arguments, "--data-dir", synthetic_data, "--device", "cpu", "--json")
    assert_one_line_error(result, 2)
    assert result.stdout == ""
    assert stored_models(isolated_home) == [] and leftovers(isolated_home) == []


def test_seed_out_of_range_from_python() -> None:
    from fmnist_toolkit.engine.device import seed_everything

    with pytest.raises(ToolkitError):
        seed_everything(2**70)


# =========================================================================== paths
def test_missing_data_dir(cli, tmp_path: Path, isolated_home: Path) -> None:
    result = cli("ae", "train", "--data-dir", tmp_path / "nowhere", *TINY_AE, "--json")
    assert result.exit_code == 1 and result.stdout == ""
    assert_one_line_error(result, 1)
    assert stored_models(isolated_home) == [] and leftovers(isolated_home) == []


def test_data_dir_is_a_file(cli, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "data.txt"
    not_a_folder.write_text("hello")
    assert_one_line_error(cli("ae", "train", "--data-dir", not_a_folder, *TINY_AE), 2, "is a file")


def test_store_is_a_file(cli, synthetic_data: Path, tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home-file"
    home.write_text("not a folder")
    monkeypatch.setenv("FMT_HOME", str(home))
    result = cli("ae", "train", "--data-dir", synthetic_data, *TINY_AE, "--name", "x", "--json")
    assert_one_line_error(result, 1, f"the model store FMT_HOME={home} is not a writable folder")
    assert result.stdout == ""
    assert home.read_text() == "not a folder"


def test_export_into_a_missing_folder(cli, tmp_path: Path, isolated_home: Path) -> None:
    save_autoencoder(ModelStore(isolated_home), "ae")
    result = cli("models", "export", "ae", tmp_path / "no" / "such" / "ae.zip")
    assert_one_line_error(result, 1, "cannot write")
    assert not (tmp_path / "no").exists()


def test_export_onto_a_folder(cli, tmp_path: Path, isolated_home: Path) -> None:
    save_autoencoder(ModelStore(isolated_home), "ae")
    assert_one_line_error(cli("models", "export", "ae", tmp_path), 1, "is a folder")
    # an export is a zip: a name that says otherwise is a usage error, and nothing is written
    assert_one_line_error(cli("models", "export", "ae", tmp_path / "ae.tar"), 2, ".zip name")
    assert not (tmp_path / "ae.tar").exists()


def test_store_path_with_spaces_and_non_ascii(
    cli, synthetic_data: Path, tmp_path: Path, monkeypatch
) -> None:
    home = tmp_path / "mes modèles ✓" / "store dir"
    monkeypatch.setenv("FMT_HOME", str(home))
    result = cli("ae", "train", "--data-dir", synthetic_data, *TINY_AE, "--name", "é-1", "--json")
    assert_one_line_error(result, 2, "invalid model name")  # names stay ASCII; paths need not
    result = cli("ae", "train", "--data-dir", synthetic_data, *TINY_AE, "--name", "a", "--json")
    assert result.exit_code == 0, result.stderr
    listing = json.loads(cli("models", "list", "--json").stdout)
    assert [entry["name"] for entry in listing] == ["a"]
    assert listing[0]["path"].startswith(str(home)) and listing[0]["size"] > 0
    archive = home / "ex port ü.zip"
    assert cli("models", "export", "a", archive).exit_code == 0
    assert cli("models", "import", archive, "--name", "b").exit_code == 0
    assert stored_models(home) == ["a", "b"]


@needs_permissions
def test_read_only_store(cli, tmp_path: Path, isolated_home: Path, synthetic_data: Path) -> None:
    save_autoencoder(ModelStore(isolated_home), "ae")
    isolated_home.chmod(0o555)
    try:
        assert_one_line_error(cli("models", "rm", "ae", "--yes"), 1)
        archive = model_archive(tmp_path, "other")
        assert_one_line_error(cli("models", "import", archive), 1)
        result = cli("ae", "train", "--data-dir", synthetic_data, *TINY_AE, "--name", "new")
        assert_one_line_error(result, 1)
    finally:
        isolated_home.chmod(0o755)
    assert stored_models(isolated_home) == ["ae"]


@needs_permissions
def test_unwritable_export_folder(cli, tmp_path: Path, isolated_home: Path) -> None:
    save_autoencoder(ModelStore(isolated_home), "ae")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    assert_one_line_error(cli("models", "export", "ae", locked / "ae.zip"), 1, "cannot write")


FULL_DISK = textwrap.dedent(
    """
    import resource, runpy, sys
    limit = int(sys.argv.pop(1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    sys.argv[0] = "fmt"
    runpy.run_module("fmnist_toolkit", run_name="__main__")
    """
)


def run_with_full_disk(limit: int, *args: object, env: dict[str, str]):
    return subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(limit), *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_full_disk_during_import(tmp_path: Path) -> None:
    """A write that hits the file-size limit (a full disk) fails in one line, leaves no model
    and no temporary folder; the store's older model is untouched."""
    home = tmp_path / "home"
    save_autoencoder(ModelStore(home, bundled=None), "old")
    archive = model_archive(tmp_path, "big", latent_dim=8)
    result = run_with_full_disk(
        20_000, "models", "import", archive, "--json", env=subprocess_env(home)
    )
    assert_process_error(result, 1)
    assert result.stdout == ""
    assert stored_models(home) == ["old"] and leftovers(home) == []
    ModelStore(home, bundled=None).load("old")


def test_full_disk_during_export(tmp_path: Path) -> None:
    home = tmp_path / "home"
    save_autoencoder(ModelStore(home, bundled=None), "ae", latent_dim=8)
    out = tmp_path / "out"
    out.mkdir()
    result = run_with_full_disk(
        20_000, "models", "export", "ae", out / "ae.zip", env=subprocess_env(home)
    )
    assert_process_error(result, 1, "cannot write")
    assert list(out.iterdir()) == []


# =========================================================================== hostile files
def test_round_trip_between_two_stores(cli, tmp_path: Path, monkeypatch) -> None:
    store_a, store_b = tmp_path / "a", tmp_path / "b"
    original = build_model("autoencoder", "seed", latent_dim=4)
    config = autoencoder_config(4, name="ae", metrics={"test_mse": 0.25})
    ModelStore(store_a).save("ae", original.state_dict(), config)
    archive = tmp_path / "ae.zip"
    monkeypatch.setenv("FMT_HOME", str(store_a))
    exported = cli("models", "export", "ae", archive, "--json")
    assert exported.exit_code == 0, exported.stderr
    assert json.loads(exported.stdout)["archive"] == str(archive)
    monkeypatch.setenv("FMT_HOME", str(store_b))
    imported = cli("models", "import", archive, "--json")
    assert imported.exit_code == 0, imported.stderr
    assert json.loads(imported.stdout)["name"] == "ae"
    for file in (WEIGHTS_FILE, CONFIG_FILE):
        assert (store_a / "ae" / file).read_bytes() == (store_b / "ae" / file).read_bytes()
    tensors, config = ModelStore(store_b).load("ae")
    assert config["metrics"] == {"test_mse": 0.25}
    for key, value in original.state_dict().items():
        assert torch.equal(tensors[key], value)
    again = cli("models", "import", archive)
    assert_one_line_error(again, 2, "already exists", "--name")
    assert cli("models", "import", archive, "--name", "ae-copy").exit_code == 0
    assert stored_models(store_b) == ["ae", "ae-copy"]
    assert ModelStore(store_b).read_config("ae-copy")["name"] == "ae-copy"


def test_export_is_reproducible(tmp_path: Path) -> None:
    first = model_archive(tmp_path / "1").read_bytes()
    assert model_archive(tmp_path / "2").read_bytes() == first


def test_load_model_from_a_zip(tmp_path: Path) -> None:
    import fmnist_toolkit

    archive = model_archive(tmp_path)
    model = fmnist_toolkit.load_model(archive)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    with pytest.raises(ToolkitError):
        fmnist_toolkit.load_model(tmp_path / "missing.zip")


def test_export_a_bundled_model(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FMT_BUNDLED_MODELS", "1")
    archive = tmp_path / "ae-2.zip"
    assert cli("models", "export", "ae-2", archive).exit_code == 0
    monkeypatch.setenv("FMT_BUNDLED_MODELS", "0")
    assert cli("models", "import", archive, "--name", "mine").exit_code == 0


def _hostile(tmp_path: Path, case: str) -> Path:
    """One hostile archive per case; each must be refused with nothing stored."""
    good = weights_and_config()
    path = tmp_path / f"{case}.zip"
    if case == "not-a-zip":
        path.write_bytes(b"PK\x03\x04 this is not really a zip")
    elif case == "truncated-zip":
        whole = model_archive(tmp_path).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif case == "corrupt-deflate":  # an invalid deflate block type: zlib's own error
        whole = bytearray(model_archive(tmp_path).read_bytes())
        member = zipfile.ZipFile(io.BytesIO(bytes(whole))).getinfo(WEIGHTS_FILE)
        start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
        whole[start] = 0xFF
        path.write_bytes(bytes(whole))
    elif case == "traversal":
        archive_from(path, {**good, "../escape.txt": b"x"})
    elif case == "absolute":
        archive_from(path, {**good, "/tmp/escape.txt": b"x"})
    elif case == "symlink":
        archive_from(path, good)
        with zipfile.ZipFile(path, "a") as bundle:
            link = zipfile.ZipInfo("link")
            link.external_attr = (stat.S_IFLNK | 0o777) << 16
            bundle.writestr(link, "/etc/passwd")
    elif case == "pickle-member":
        archive_from(path, {**good, "model.pt": b"\x80\x04K\x01."})
    elif case == "pickle-renamed":
        buffer = io.BytesIO()
        torch.save(build_model("autoencoder", "seed", latent_dim=4).state_dict(), buffer)
        archive_from(path, {**good, WEIGHTS_FILE: buffer.getvalue()})
    elif case == "bomb":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for name, content in good.items():
                bundle.writestr(name, content)
            bundle.writestr(ARCHIVE_MANIFEST, b"{" + b" " * (MAX_MEMBER_BYTES + 1) + b"}")
    elif case == "hash-mismatch":
        archive_from(path, good)
        tampered = {**good, CONFIG_FILE: good[CONFIG_FILE].replace(b'"seed"', b'"wide"')}
        with zipfile.ZipFile(path, "w") as bundle:
            for name, content in tampered.items():
                bundle.writestr(name, content)
            hashes = {name: sha256_hex(content) for name, content in good.items()}
            bundle.writestr(ARCHIVE_MANIFEST, json.dumps({"name": "x", "sha256": hashes}))
    elif case == "wrong-shapes":
        weights = weights_and_config(latent_dim=8)[WEIGHTS_FILE]
        config = {**autoencoder_config(4), "weights_sha256": sha256_hex(weights)}
        archive_from(path, {WEIGHTS_FILE: weights, CONFIG_FILE: json.dumps(config).encode()})
    elif case == "unknown-architecture":
        spec = {"kind": "autoencoder", "architecture": "transformer", "params": {}}
        archive_from(path, weights_and_config(model=spec))
    elif case == "truncated-weights":
        weights = good[WEIGHTS_FILE][:-100]
        archive_from(path, {WEIGHTS_FILE: weights, CONFIG_FILE: good[CONFIG_FILE]})
    elif case == "missing-member":
        archive_from(path, {WEIGHTS_FILE: good[WEIGHTS_FILE]})
    elif case == "no-manifest":
        archive_from(path, good, manifest=False)
    elif case == "other-format":
        archive_from(path, good)
        with zipfile.ZipFile(path) as bundle:
            members = {name: bundle.read(name) for name in bundle.namelist()}
        manifest = {**json.loads(members[ARCHIVE_MANIFEST]), "format": "other/9"}
        archive_from(
            path, {**good, ARCHIVE_MANIFEST: json.dumps(manifest).encode()}, manifest=False
        )
    elif case == "config-not-object":
        archive_from(path, {**good, CONFIG_FILE: b"[1, 2, 3]"})
    else:  # pragma: no cover
        raise AssertionError(case)
    return path


HOSTILE = [
    "not-a-zip",
    "truncated-zip",
    "corrupt-deflate",
    "traversal",
    "absolute",
    "symlink",
    "pickle-member",
    "pickle-renamed",
    "bomb",
    "hash-mismatch",
    "wrong-shapes",
    "unknown-architecture",
    "truncated-weights",
    "missing-member",
    "no-manifest",
    "other-format",
    "config-not-object",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_archive_is_refused(cli, tmp_path: Path, isolated_home: Path, case: str) -> None:
    archive = _hostile(tmp_path, case)
    result = cli("models", "import", archive, "--name", "victim", "--json")
    assert_one_line_error(result, 1)
    assert result.stdout == ""
    assert stored_models(isolated_home) == [] and leftovers(isolated_home) == []
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/escape.txt").exists()
    with pytest.raises(ToolkitError):
        import fmnist_toolkit

        fmnist_toolkit.load_model(archive)


@pytest.mark.parametrize("damage", ["truncated", "wrong-shapes", "unknown-architecture", "pickle"])
def test_hostile_model_folder_in_the_store(
    cli, isolated_home: Path, tmp_path: Path, damage: str
) -> None:
    """A damaged model in the store: loading or exporting it is one line; listing still
    works."""
    import fmnist_toolkit

    store = ModelStore(isolated_home)
    save_autoencoder(store, "victim")
    folder = isolated_home / "victim"
    weights = folder / WEIGHTS_FILE
    config = json.loads((folder / CONFIG_FILE).read_text())
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:200])
    elif damage == "wrong-shapes":
        config["model"]["params"]["latent_dim"] = 9
    elif damage == "unknown-architecture":
        config["model"]["architecture"] = "transformer"
    else:
        buffer = io.BytesIO()
        torch.save({"x": torch.zeros(1)}, buffer)
        weights.write_bytes(buffer.getvalue())
        config["weights_sha256"] = sha256_hex(buffer.getvalue())
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ToolkitError):
        fmnist_toolkit.load_model("victim")
    listing = cli("models", "list", "--json")
    assert listing.exit_code == 0 and json.loads(listing.stdout)[0]["name"] == "victim"
    exported = cli("models", "export", "victim", tmp_path / "victim.zip")
    assert_one_line_error(exported, 1, "victim")
    assert not (tmp_path / "victim.zip").exists()


# =========================================================================== data files
def test_fuzz_idx_reader(tmp_path: Path) -> None:
    """Random bytes, and valid IDX files with random damage, raise only toolkit errors."""
    import gzip

    from fmnist_toolkit.data import parse_idx, read_idx_bytes
    from tests.conftest import idx_bytes

    rng = random.Random(18)
    valid = idx_bytes(bytes(range(256)) * 7, (7, 16, 16))
    path = tmp_path / "fuzz-idx3-ubyte"
    for round_number in range(300):
        if round_number % 3 == 0:
            content = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
        else:
            content = bytearray(valid[: rng.randrange(0, len(valid) + 1)])
            for _ in range(rng.randrange(0, 4)):
                if content:
                    content[rng.randrange(len(content))] = rng.getrandbits(8)
            content = bytes(content)
        for suffix, payload in (
            ("", content),
            (".gz", gzip.compress(content)[: rng.randrange(1, 99)]),
        ):
            target = path.with_name(path.name + suffix)
            target.write_bytes(payload)
            with contextlib.suppress(ToolkitError):
                parse_idx(read_idx_bytes(target), path=target, expect_magic=0x0803)


def test_fuzz_config_loader(tmp_path: Path) -> None:
    """Random bytes and random JSON as a model's config.json: only toolkit errors."""
    import fmnist_toolkit

    rng = random.Random(7)
    store = ModelStore(tmp_path / "store", bundled=None)
    save_autoencoder(store, "m")
    config_path = store.model_dir("m") / CONFIG_FILE
    good = json.loads(config_path.read_text())
    junk = [None, 0, -1, 1e308, "x", [], {}, [1], {"a": 1}, True]

    def mutate(value, depth=0):
        if isinstance(value, dict) and depth < 4:
            return {
                k: mutate(v, depth + 1) if rng.random() < 0.7 else rng.choice(junk)
                for k, v in value.items()
            }
        return rng.choice(junk) if rng.random() < 0.5 else value

    for round_number in range(150):
        if round_number % 2:
            config_path.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 80))))
        else:
            config_path.write_text(json.dumps(mutate(good)))
        with contextlib.suppress(ToolkitError):
            fmnist_toolkit.load_model(store.model_dir("m"))
        store.list()  # listing never fails on a damaged config


def test_fuzz_archive_reader(tmp_path: Path) -> None:
    """Random damage to a valid archive: the reader raises only toolkit errors."""
    from fmnist_toolkit.transfer import read_archive

    rng = random.Random(3)
    valid = model_archive(tmp_path).read_bytes()
    target = tmp_path / "fuzz.zip"
    for _ in range(150):
        content = bytearray(valid[: rng.randrange(0, len(valid) + 1)])
        for _ in range(rng.randrange(0, 6)):
            if content:
                content[rng.randrange(len(content))] = rng.getrandbits(8)
        target.write_bytes(bytes(content))
        with contextlib.suppress(ToolkitError):
            read_archive(target)


# =========================================================================== signals
def _wait_for_line(process: subprocess.Popen, prefix: str, seconds: float = 120) -> list[str]:
    deadline = time.monotonic() + seconds
    seen = []
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line.startswith(prefix):
            return seen
    process.kill()
    pytest.fail(f"never saw {prefix!r}: {''.join(seen[-20:])}")


def _interrupt(
    arguments: list[object], env: dict[str, str], prefix: str, sent: int = signal.SIGINT
):
    process = subprocess.Popen(
        fmt(*arguments),
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    _wait_for_line(process, prefix)
    process.send_signal(sent)
    stdout, rest = process.communicate(timeout=60)
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, rest)
    assert_process_error(result, 130 if sent == signal.SIGINT else 128 + sent)
    assert_json_or_nothing(stdout)
    return result


@pytest.mark.slow
def test_sigint_during_ae_train_leaves_the_model_and_resumes(
    synthetic_data: Path, tmp_path: Path
) -> None:
    """A real Ctrl-C: exit 130, the saved model untouched, and the printed resume command
    finishes the run."""
    env = subprocess_env(tmp_path / "home")
    common = ["ae", "train", "--data-dir", synthetic_data, "--device", "cpu"]
    common += ["--latent-dim", "4", "--batch-size", "64", "--name", "run"]
    first = run_fmt(*common, "--epochs", "1", "--quiet", env=env)
    assert first.returncode == 0, first.stderr
    config_file = tmp_path / "home" / "run" / "config.json"
    before = json.loads(config_file.read_text())

    epochs = 200
    interrupted = _interrupt([*common, "--epochs", epochs], env, "run epoch 3/")
    assert json.loads(config_file.read_text()) == before, "the old model must stay as it was"
    error_line = next(
        line for line in interrupted.stderr.splitlines() if line.startswith("error: ")
    )
    resume_command = error_line.split("resume with: ", 1)[1].split()
    assert " ae train --name run --resume " in f" {' '.join(resume_command)} "
    assert resume_command[resume_command.index("--data-dir") + 1] == str(synthetic_data)
    arguments = resume_command[resume_command.index("train") + 1 :]
    resumed = run_fmt("ae", "train", *arguments, "--json", "--quiet", env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["epochs"] == epochs and summary["resumed_from_epoch"] >= 3
    assert not (tmp_path / "home" / ".checkpoints" / "run").exists()


@pytest.mark.slow
def test_sigterm_stops_training_like_ctrl_c(synthetic_data: Path, tmp_path: Path) -> None:
    """A scheduler's stop (SIGTERM): the checkpoint is kept, the resume command printed,
    exit 143."""
    env = subprocess_env(tmp_path / "home")
    common = ["ae", "train", "--data-dir", synthetic_data, "--device", "cpu"]
    common += ["--latent-dim", "4", "--batch-size", "64", "--name", "run", "--epochs", 200]
    stopped = _interrupt(common, env, "run epoch 2/", sent=signal.SIGTERM)
    assert "resume with: " in stopped.stderr
    listing = json.loads(run_fmt("models", "list", "--json", env=env).stdout)
    assert [(e["name"], e["source"]) for e in listing] == [("run", "interrupted")]


@pytest.mark.slow
def test_sigint_during_gan_train_then_resume(synthetic_data: Path, tmp_path: Path) -> None:
    env = subprocess_env(tmp_path / "home")
    common = [
        *[
            "gan",
            "train",
            "--arch",
            "mlp",
            "--device",
            "cpu",
            "--latent-size",
            "8",
            "--hidden-size",
            "16",
        ]
    ]
    common += ["--batch-size", "64", "--name", "g", "--data-dir", synthetic_data]
    _interrupt([*common, "--epochs", "25"], env, "g epoch 2/")
    listing = json.loads(run_fmt("models", "list", "--json", env=env).stdout)
    assert [(e["name"], e["source"]) for e in listing] == [("g", "interrupted")]
    resumed = run_fmt(*common, "--epochs", "25", "--resume", "--json", "--quiet", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from_epoch"] >= 2
    assert stored_models(tmp_path / "home") == ["g"] and leftovers(tmp_path / "home") == []


@pytest.mark.slow
def test_sigint_during_clf_finetune(synthetic_data: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = subprocess_env(home)
    save_autoencoder(ModelStore(home, bundled=None), "enc")
    common = [
        *[
            "clf",
            "finetune",
            "--encoder",
            "enc",
            "--device",
            "cpu",
            "--batch-size",
            "64",
            "--name",
            "c",
        ]
    ]
    common += ["--data-dir", synthetic_data]
    _interrupt([*common, "--epochs", "500"], env, "c epoch 2/")
    assert stored_models(home) == ["enc"] and leftovers(home) == []


@pytest.mark.slow
def test_sigint_during_gan_gate_then_the_printed_command_resumes(
    synthetic_data: Path, tmp_path: Path
) -> None:
    env = subprocess_env(tmp_path / "home")
    data = ["--data-dir", synthetic_data, "--device", "cpu", "--quiet"]
    tiny_gan = ["--latent-size", "8", "--hidden-size", "16", "--epochs", "1", "--name", "gen"]
    assert run_fmt("gan", "train", *tiny_gan, *data, env=env).returncode == 0
    tiny_ae = ["--latent-dim", "4", "--epochs", "1", "--objective", "denoise", "--name", "dn"]
    assert run_fmt("ae", "train", *tiny_ae, *data, env=env).returncode == 0
    common = ["gan", "gate", "--model", "gen", "--denoiser", "dn", "--name", "g"]
    common += ["--samples", "200", "--width", "4", "--data-dir", synthetic_data, "--device", "cpu"]
    stopped = _interrupt([*common, "--epochs", "400"], env, "g epoch 2/")
    error_line = next(line for line in stopped.stderr.splitlines() if line.startswith("error: "))
    resume_command = error_line.split("resume with: ", 1)[1].split()
    assert " gan gate --name g --resume " in f" {' '.join(resume_command)} "
    arguments = resume_command[resume_command.index("gate") + 1 :]
    resumed = run_fmt("gan", "gate", *arguments, "--json", "--quiet", env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["epochs"] == 400 and summary["resumed_from_epoch"] >= 2
    assert leftovers(tmp_path / "home") == []


@pytest.mark.slow
def test_sigint_during_ae_tune(synthetic_data: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = subprocess_env(home)
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    common = [*["ae", "tune", "--study", "s", "--device", "cpu", "--epochs", "3"]]
    common += ["--storage", storage, "--data-dir", synthetic_data]
    _interrupt([*common, "--trials", "500", "--json"], env, "trial ")
    again = run_fmt(*common, "--trials", "1", "--json", "--quiet", env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)


@pytest.mark.slow
def test_sigint_during_ae_train_then_resume(synthetic_data: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = subprocess_env(home)
    common = [
        *[
            "ae",
            "train",
            "--device",
            "cpu",
            "--latent-dim",
            "4",
            "--batch-size",
            "64",
            "--name",
            "r",
            "--epochs",
            "30",
        ]
    ]
    common += ["--data-dir", synthetic_data]
    _interrupt(common, env, "r epoch 2/")
    resumed = run_fmt(*common, "--resume", "--json", "--quiet", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_from_epoch"] >= 2
    assert stored_models(home) == ["r"] and leftovers(home) == []


SAVER = textwrap.dedent(
    """
    import sys, torch
    from fmnist_toolkit.storage import ModelStore
    store = ModelStore(sys.argv[1], bundled=None)
    value = 0
    print("ready", flush=True)
    while True:
        value += 1
        tensors = {"w": torch.full((2_000_000,), float(value))}
        store.save("m", tensors, {"kind": "test", "value": value})
    """
)


@pytest.mark.slow
def test_sigkill_during_save_leaves_a_whole_model(tmp_path: Path) -> None:
    """Killed at random points of a save loop: the model is always the old or the new one,
    complete and matching its SHA-256; `fmt models prune` clears the leftovers."""
    home = tmp_path / "home"
    store = ModelStore(home, bundled=None)
    store.save("m", {"w": torch.zeros(2_000_000)}, {"kind": "test", "value": 0})
    rng = random.Random(1)
    for _ in range(3):
        process = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(home)], stdout=subprocess.PIPE, text=True
        )
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.2, 1.5))
        process.kill()
        process.wait()
        tensors, config = store.load("m")
        assert torch.all(tensors["w"] == float(config["value"]))
    stale = time.time() - 7200
    for path in leftovers(home):
        os.utime(home / path, (stale, stale))
    env = subprocess_env(home)
    pruned = run_fmt("models", "prune", "--yes", "--json", env=env)
    assert pruned.returncode == 0, pruned.stderr
    json.loads(pruned.stdout)
    assert leftovers(home) == [] and stored_models(home) == ["m"]


# =========================================================================== concurrency
WORKER = textwrap.dedent(
    """
    import random, sys, time
    from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig
    from fmnist_toolkit.engine.ae import train_autoencoder
    from fmnist_toolkit.engine.model_io import load_model
    from fmnist_toolkit.errors import ModelNotFoundError, RunInProgressError
    from fmnist_toolkit.storage import ModelStore
    from fmnist_toolkit.transfer import prune, prune_candidates

    home, data, index, until = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    store = ModelStore(home, bundled=None)
    rng = random.Random(index)
    config = AutoencoderTrainConfig(latent_dim=2, epochs=1, batch_size=128)
    rounds = 0
    while time.time() < until:
        name = f"m{rng.randrange(4)}"
        action = rng.random()
        if action < 0.4:
            try:
                train_autoencoder(
                    name, config, EngineConfig(device="cpu"), data_dir=data, store=store
                )
            except RunInProgressError:
                pass  # another worker is training this name right now: the lock works
        elif action < 0.8:
            for model in store.list():
                try:
                    load_model(model.name, store=store)
                except ModelNotFoundError:
                    pass  # removed by another worker since the listing
        elif action < 0.9:
            try:
                store.remove(name)
            except ModelNotFoundError:
                pass
        else:
            prune(prune_candidates(store, older_than_days=0))
        rounds += 1
    print(rounds)
    """
)


@pytest.mark.slow
def test_four_processes_share_one_store(synthetic_data: Path, tmp_path: Path) -> None:
    home = tmp_path / "shared home"
    env = subprocess_env(home)
    until = time.time() + 30
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(home), str(synthetic_data), str(index), str(until)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(4)
    ]
    for worker in workers:
        stdout, stderr = worker.communicate(timeout=180)
        assert worker.returncode == 0, stderr
        assert int(stdout) > 0
    assert time.time() >= until
    store = ModelStore(home, bundled=None)
    for model in store.list():
        assert model.kind == "autoencoder"
        store.load(model.name)
    assert leftovers(home) == []


def test_load_during_a_save_reads_one_whole_model(tmp_path: Path, monkeypatch) -> None:
    """A save that swaps the folder between a reader's config and weights reads (found by
    review of the stress test's reader): the reader gets the new model, not a false
    'corrupt' error."""
    import fmnist_toolkit.storage.files as storage_files

    store = ModelStore(tmp_path / "home", bundled=None)
    store.save("m", {"w": torch.zeros(4)}, {"kind": "test", "value": 0})
    read_config = storage_files.read_config_file
    swapped = []

    def config_then_save(folder: Path, label: str):
        config = read_config(folder, label)
        if not swapped:
            swapped.append(True)
            store.save("m", {"w": torch.ones(4)}, {"kind": "test", "value": 1})
        return config

    monkeypatch.setattr(storage_files, "read_config_file", config_then_save)
    tensors, config = store.load("m")
    assert config["value"] == 1 and torch.equal(tensors["w"], torch.ones(4))


def test_remove_when_the_checkpoint_vanishes_meanwhile(tmp_path: Path, monkeypatch) -> None:
    """Found by the four-process stress test: a run finishing between `rm`'s look and its
    removal made `remove` fail with a bare FileNotFoundError and leave a .trash- folder."""
    home = tmp_path / "home"
    store = ModelStore(home, bundled=None)
    save_autoencoder(store, "m")
    store.save_checkpoint("m", {"w": torch.zeros(1)}, {"kind": "autoencoder"})
    found = store.check_removable("m")
    store.remove_checkpoint("m")  # the run finished in between
    monkeypatch.setattr(store, "check_removable", lambda name: found)
    store.remove("m")
    assert not store.exists("m") and leftovers(home) == []


# --------------------------------------------------------------------------- the fast exit
FAST_EXIT = textwrap.dedent(
    """
    import atexit, sys
    from pathlib import Path
    from fmnist_toolkit.cli import _exit
    if sys.argv[3] == "torch":
        import torch  # the fast exit applies once torch is loaded

    class Witness:  # finalised by the interpreter's teardown, which the fast exit skips
        def __del__(self, _open=open, _path=sys.argv[1] + ".teardown"):
            with _open(_path, "w") as file:
                file.write("torn down")

    witness = Witness()
    atexit.register(lambda: Path(sys.argv[1]).write_text("hooks ran"))
    print("buffered, no newline", end="")
    code = sys.argv[2]
    _exit(None if code == "None" else int(code) if code.isdigit() else code)
    """
)


def run_fast_exit(
    tmp_path: Path, code: str, imports: str
) -> tuple[subprocess.CompletedProcess, Path]:
    marker = tmp_path / "marker"
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    process = subprocess.run(
        [sys.executable, "-c", FAST_EXIT, str(marker), code, imports],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    return process, marker


@pytest.mark.parametrize(("code", "status"), [("0", 0), ("None", 0), ("2", 2), ("a message", 1)])
def test_fast_exit_keeps_status_output_and_atexit_hooks(
    tmp_path: Path, code: str, status: int
) -> None:
    process, marker = run_fast_exit(tmp_path, code, "torch")
    assert process.returncode == status, process.stderr
    assert process.stdout == "buffered, no newline"
    assert marker.read_text() == "hooks ran"
    assert not marker.with_name("marker.teardown").exists()  # the teardown was skipped
    if status == 1:
        assert process.stderr.strip().endswith("a message")


def test_without_torch_the_ordinary_exit_is_kept(tmp_path: Path) -> None:
    process, marker = run_fast_exit(tmp_path, "3", "no-torch")
    assert process.returncode == 3, process.stderr
    assert process.stdout == "buffered, no newline"
    assert marker.read_text() == "hooks ran"
    assert marker.with_name("marker.teardown").read_text() == "torn down"


def test_fast_exit_with_stdout_closed_at_start(tmp_path: Path) -> None:
    out = tmp_path / "samples.npz"
    env = {**subprocess_env(tmp_path / "home"), "FMT_BUNDLED_MODELS": "1"}
    process = subprocess.run(
        [*fmt("gan", "sample", "--n", "4", out, "--device", "cpu")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
        close_fds=True,
        pass_fds=(),
        preexec_fn=lambda: os.close(1),
    )
    assert process.returncode == 0, process.stderr
    assert "Traceback" not in process.stderr
    assert out.stat().st_size > 0


def test_piped_json_survives_the_fast_exit(tmp_path: Path) -> None:
    env = {**subprocess_env(tmp_path / "home"), "FMT_BUNDLED_MODELS": "1"}
    env.pop("PYTHONUNBUFFERED")
    out = tmp_path / "samples.png"
    process = run_fmt("gan", "sample", "--n", "4", out, "--json", "--device", "cpu", env=env)
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout)["n"] == 4
    assert out.stat().st_size > 0


def test_closed_standard_streams_are_one_line_errors(tmp_path: Path) -> None:
    """Started with stdout or stdin closed (`fmt ... >&-`, `<&-`), Python leaves None where
    the stream was: a command must say so in one line, not raise AttributeError on None."""
    env = {**subprocess_env(tmp_path / "home"), "FMT_BUNDLED_MODELS": "1"}

    def run_closed(descriptor: int, *args: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            fmt(*args), env=env, capture_output=True, text=True,
            timeout=120, check=False, preexec_fn=lambda: os.close(descriptor),
        )  # fmt: skip

    for args in (("models", "list", "--json"), ("data", "path")):
        process = run_closed(1, *args)
        assert process.returncode == 1, (args, process.stderr)
        assert process.stderr.strip() == "error: cannot write to standard output: it is closed"
    process = run_closed(1, "--version")  # written while the options are parsed
    assert process.returncode == 1, process.stderr
    assert process.stderr.strip() == "error: cannot write to standard output: it is closed"
    save_autoencoder(ModelStore(tmp_path / "home"), "mine")
    process = run_closed(0, "models", "rm", "mine")  # asks for confirmation on a terminal
    assert process.returncode == 2 and "Traceback" not in process.stderr
    assert process.stderr.startswith("error: not deleting 'mine': there is no terminal")
    assert len(process.stderr.strip().splitlines()) == 1, process.stderr


def test_a_diverged_autoencoder_is_not_saved(cli, synthetic_data: Path, isolated_home) -> None:
    """NaN losses end the run with one line, exit 1; the model is not saved (it would pass for
    a trained one and be picked as the best by its NaN test MSE) and the checkpoint before
    the divergence is kept."""
    result = cli(
        "ae", "train", "--data-dir", synthetic_data, "--epochs", 2, "--batch-size", 32,
        "--lr", "1e308", "--device", "cpu", "-q",
    )  # fmt: skip
    assert_one_line_error(result, 1, "training diverged at epoch 1", "--restart")
    store = ModelStore()
    assert not store.exists("ae-16")
    assert store.read_checkpoint_state("ae-16")["epoch"] == 0


def test_json_never_holds_nan() -> None:
    from fmnist_toolkit.cli._render import print_json

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        print_json({"test_mse": float("nan"), "history": [{"loss": float("inf")}, {"loss": 1.5}]})
    expected = {"test_mse": None, "history": [{"loss": None}, {"loss": 1.5}]}
    assert json.loads(out.getvalue()) == expected


def test_a_full_disk_at_the_save_keeps_the_checkpoint_and_says_how_to_go_on(
    cli, synthetic_data: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    args = ["ae", "train", "--data-dir", synthetic_data, "--epochs", 2, "--batch-size", 32]
    args += ["--latent-dim", 4, "--device", "cpu", "-q"]
    with monkeypatch.context() as patch:
        patch.setattr(ModelStore, "save", disk_full)
        result = cli(*args)
    assert_one_line_error(
        result, 1, "cannot save the model of 'ae-4' in", "(No space left on device)",
        "the checkpoint of epoch 2 is kept", "--resume",
    )  # fmt: skip
    store = ModelStore()
    assert not store.exists("ae-4") and store.read_checkpoint_state("ae-4")["epoch"] == 2
    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert store.exists("ae-4") and not store.has_checkpoint("ae-4")


def test_import_of_a_folder_says_so(cli, tmp_path: Path, isolated_home: Path) -> None:
    assert_one_line_error(cli("models", "import", tmp_path), 2, "is a folder; give the .zip")
    assert_one_line_error(cli("models", "import", tmp_path / "none.zip"), 1, "no model archive")


def test_export_checks_the_stores_model_not_a_folder_of_that_name_here(
    cli, tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_autoencoder(ModelStore(isolated_home), "victim")
    decoy = tmp_path / "victim"
    decoy.mkdir()
    (decoy / CONFIG_FILE).write_text("{not json")
    monkeypatch.chdir(tmp_path)
    result = cli("models", "export", "victim", tmp_path / "victim.zip")
    assert result.exit_code == 0, result.stderr
    assert zipfile.is_zipfile(tmp_path / "victim.zip")


def test_resuming_is_never_refused_for_the_command_lines_kind(tmp_path: Path) -> None:
    """The printed resume command carries no --arch: a denoiser's run resumed by it arrives
    with the default kind (autoencoder), yet takes its recipe from the checkpoint."""
    from fmnist_toolkit.config import EngineConfig
    from fmnist_toolkit.engine.run import TrainingRun
    from fmnist_toolkit.errors import InvalidNameError

    store = ModelStore(tmp_path, bundled=None)
    store.save("dn", {"x": torch.zeros(1)}, {"kind": "denoiser"})
    store.save_checkpoint("dn", {"x": torch.zeros(1)}, {"kind": "denoiser", "epoch": 1})
    engine = EngineConfig(device="cpu")
    refused = pytest.raises(InvalidNameError, match="'dn' is already your denoiser: an autoenc")
    retraining = TrainingRun.exclusive(
        store, "dn", resume=False, restart=True, engine=engine, kind="autoencoder"
    )
    with refused, retraining:
        pass
    with TrainingRun.exclusive(store, "dn", resume=True, restart=False, engine=engine,
                               kind="autoencoder") as run:  # fmt: skip
        assert run.name == "dn"
