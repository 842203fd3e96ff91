"""Every command through the CLI runner: happy paths, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

TINY = ["--latent-dim", "4", "--batch-size", "64", "--device", "cpu"]


def assert_one_line_error(result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def train(cli, data: Path, *extra: str):
    return cli("ae", "train", "--data-dir", data, *TINY, *extra)


def test_ae_train_json_is_one_object_on_stdout(cli, synthetic_data: Path, isolated_home: Path):
    result = train(cli, synthetic_data, "--epochs", "2", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {"name", "path", "epochs", "train_mse", "test_mse", "seconds", "device"} <= set(summary)
    assert summary["name"] == "ae-4" and summary["epochs"] == 2 and summary["device"] == "cpu"
    assert Path(summary["path"]) == isolated_home / "ae-4"
    assert "epoch 1/2" in result.stderr and "epoch 2/2" in result.stderr  # plain lines off a tty


def test_ae_train_quiet_and_human_output(cli, synthetic_data: Path) -> None:
    result = train(cli, synthetic_data, "--epochs", "1", "--quiet", "--name", "mine")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""  # --quiet: no progress; the summary is the result, on stdout
    assert "test_mse" in result.stdout and "mine" in result.stdout


def test_ae_train_epochs_zero_is_a_usage_error(cli, synthetic_data: Path) -> None:
    assert_one_line_error(train(cli, synthetic_data, "--epochs", "0"), 2, "--epochs")


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--lr", "0"], 2, "learning rate"),
        (["--optimizer", "lbfgs"], 2, "--optimizer"),
        (["--device", "tpu"], 2, "unknown device"),
        (["--name", "../escape"], 2, "invalid model name"),
        (["--precision", "fp8"], 2, "--precision"),
        (["--resume", "--name", "never-ran"], 1, "no interrupted run"),
    ],
)
def test_ae_train_bad_input(cli, synthetic_data: Path, args, code, fragment) -> None:
    assert_one_line_error(train(cli, synthetic_data, "--epochs", "1", *args), code, fragment)


def test_ae_train_missing_data(cli) -> None:
    result = cli("ae", "train", "--epochs", "1", "--data-dir", "/nonexistent", "--device", "cpu")
    assert_one_line_error(result, 1, "fmt data fetch", "--data-dir")


def test_ae_train_writes_plots(cli, synthetic_data: Path, tmp_path: Path) -> None:
    result = train(cli, synthetic_data, "--epochs", "1", "--plots", tmp_path / "p", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["plots"]) == 2


def test_models_list_show_path_rm(cli, synthetic_data: Path, isolated_home: Path) -> None:
    empty = cli("models", "list", "--json")
    assert empty.exit_code == 0 and json.loads(empty.stdout) == []
    assert train(cli, synthetic_data, "--epochs", "1", "--quiet").exit_code == 0

    listed = json.loads(cli("models", "list", "--json").stdout)
    assert [(m["name"], m["kind"]) for m in listed] == [("ae-4", "autoencoder")]
    assert Path(listed[0]["path"]) == isolated_home / "ae-4"
    table = cli("models", "list")  # results on stdout, so `fmt models list | grep` finds them
    assert table.exit_code == 0 and "ae-4" in table.stdout and "ae-4" not in table.stderr

    shown = json.loads(cli("models", "show", "ae-4", "--json").stdout)
    assert shown["recipe"]["latent_dim"] == 4 and len(shown["history"]) == 1
    human = cli("models", "show", "ae-4")
    assert human.exit_code == 0 and "latent_dim" in human.stdout and human.stderr == ""
    assert cli("models", "path", "ae-4").stdout.strip() == str(isolated_home / "ae-4")

    refused = cli("models", "rm", "ae-4")  # stdin is not a terminal: no one to ask
    assert_one_line_error(refused, 2, "pass --yes")
    assert (isolated_home / "ae-4").exists()
    removed = cli("models", "rm", "ae-4", "--yes")
    assert removed.exit_code == 0 and not (isolated_home / "ae-4").exists()


@pytest.mark.parametrize("command", [["show", "ghost"], ["path", "ghost"], ["rm", "ghost", "-y"]])
def test_models_unknown_name(cli, command: list[str]) -> None:
    assert_one_line_error(cli("models", *command), 1, "no model named 'ghost'")


def test_load_model_refuses_weights_damaged_after_training(
    cli, synthetic_data: Path, isolated_home: Path
) -> None:
    assert train(cli, synthetic_data, "--epochs", "1", "--quiet").exit_code == 0
    weights = isolated_home / "ae-4" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    from fmnist_toolkit.errors import ModelCorruptError

    with pytest.raises(ModelCorruptError):
        import fmnist_toolkit

        fmnist_toolkit.load_model("ae-4")


def test_unknown_command_is_one_line(cli) -> None:
    assert_one_line_error(cli("ae", "fly"), 2, "fly")


def test_every_group_lists_its_commands(cli) -> None:
    expected = {
        "data": ("fetch", "verify", "path"),
        "models": ("list", "show", "path", "rm"),
        "ae": ("train", "tune", "latent-plot"),
        "clf": ("finetune", "eval", "predict"),
        "gan": ("train", "sample", "eval"),
    }
    for group, commands in expected.items():
        result = cli(group, "--help")
        assert result.exit_code == 0, result.output
        assert all(command in result.stdout for command in commands), (group, result.stdout)


def test_every_command_teaches_with_an_example(cli) -> None:
    import typer

    from fmnist_toolkit.cli import app

    def leaves(command, path):
        subcommands = getattr(command, "commands", None)
        if not subcommands:
            yield path
            return
        for name, sub in subcommands.items():
            yield from leaves(sub, [*path, name])

    commands = list(leaves(typer.main.get_command(app), []))
    assert len(commands) >= 20
    for path in commands:
        result = cli(*path, "--help")
        assert result.exit_code == 0, path
        assert "Example" in result.stdout, f"fmt {' '.join(path)} --help has no example"


def test_a_name_twin_in_case_is_refused_before_training(cli, synthetic_data: Path) -> None:
    assert train(cli, synthetic_data, "--epochs", "1", "--quiet").exit_code == 0  # ae-4
    twin = train(cli, synthetic_data, "--epochs", "1", "--name", "AE-4")
    assert_one_line_error(twin, 2, "differs from the existing 'ae-4' only in case")
    assert "epoch" not in twin.stderr


def test_unwritable_plots_folder_is_one_line(cli, synthetic_data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = train(cli, synthetic_data, "--epochs", "1", "--plots", blocker / "plots")
    assert_one_line_error(result, 1, "--plots", str(blocker))
    assert "epoch" not in result.stderr, "fails before training, not after"
    assert json.loads(cli("models", "list", "--json").stdout) == []


def test_ae_train_refuses_to_discard_an_interrupted_run(
    cli, synthetic_data: Path, isolated_home: Path
) -> None:
    import torch

    from fmnist_toolkit.storage import ModelStore

    ModelStore().save_checkpoint("ae-4", {"x": torch.zeros(1)}, {"epoch": 2})
    assert_one_line_error(train(cli, synthetic_data, "--epochs", "1"), 1, "--resume", "--restart")
    both = train(cli, synthetic_data, "--epochs", "1", "--resume", "--restart")
    assert_one_line_error(both, 2, "contradict")
    restarted = train(cli, synthetic_data, "--epochs", "1", "--restart", "--quiet")
    assert restarted.exit_code == 0, restarted.stderr


def test_resume_notes_ignored_recipe_options(cli, synthetic_data: Path) -> None:
    import torch

    from fmnist_toolkit.storage import ModelStore

    ModelStore().save_checkpoint("ae-4", {"x": torch.zeros(1)}, {"epoch": 2})
    result = train(cli, synthetic_data, "--resume", "--epochs", "9")
    note = result.stderr.splitlines()[0]
    assert note.startswith("note: ") and "ignoring" in note and "--epochs" in note
    assert result.exit_code == 1 and "damaged" in result.stderr  # this checkpoint is a stub


def test_ae_train_on_corrupt_data_names_the_file(cli, synthetic_data: Path, tmp_path) -> None:
    import gzip
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(synthetic_data, damaged)
    images = damaged / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:-10]))
    result = cli("ae", "train", "--data-dir", damaged, "--epochs", "1", "--device", "cpu")
    assert_one_line_error(result, 1, "t10k-images-idx3-ubyte.gz", "truncated")


def _all_commands(command, path=()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _all_commands(sub, (*path, name))


def test_help_reads_right(cli) -> None:
    """Flags show no value, arguments no Typer braces or types, placeholders survive markdown."""
    import re

    import typer

    from fmnist_toolkit.cli import app

    root = typer.main.get_command(app)
    for path, command in _all_commands(root):
        for param in command.params:
            # markdown help eats <placeholders>: write them as WORDS
            assert not re.search(r"<[a-z]", param.help or ""), (path, param.name)
        text = cli(*path, "--help").stdout
        usage = next(line for line in text.splitlines() if "Usage:" in line)
        assert "<bool>" not in text and "{" not in usage, (path, text)
        assert "<list[Path]>" not in text, (path, text)
    train_help = cli("ae", "train", "--help").stdout
    assert "ae-LATENT_DIM" in " ".join(train_help.split())
    assert "Usage: fmt gan sample [OPTIONS] OUT" in cli("gan", "sample", "--help").stdout
    assert "Usage: fmt clf predict [OPTIONS] IMAGES..." in cli("clf", "predict", "--help").stdout


@pytest.mark.parametrize("group", ["data", "models", "ae", "clf", "gan"])
def test_a_group_alone_prints_its_help(cli, group: str) -> None:
    result = cli(group)
    assert result.exit_code == 0, result.stderr
    assert f"Usage: fmt {group}" in result.stdout and "error" not in result.stderr


def test_root_alone_prints_help_and_unknown_root_option_is_one_line(cli) -> None:
    alone = cli()
    assert alone.exit_code == 0 and "Usage: fmt" in alone.stdout
    assert_one_line_error(cli("--nosuch"), 2, "No such option: --nosuch")


def test_mistyped_choice_says_did_you_mean(cli) -> None:
    result = cli("ae", "latent-plot", "--view", "scater")
    assert_one_line_error(result, 2, "did you mean 'scatter'?", "'--view'")
    assert "Value error" not in result.stderr


def test_debug_prints_the_traceback(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = cli("models", "show", "ghost")
    assert "Traceback" not in plain.stderr
    flagged = cli("--debug", "models", "show", "ghost")
    assert flagged.exit_code == 1 and "Traceback" in flagged.stderr
    assert flagged.stderr.strip().splitlines()[-1].startswith("error: no model")
    monkeypatch.setenv("FMT_DEBUG", "1")
    assert "Traceback" in cli("models", "show", "ghost").stderr


def test_models_rm_asks_on_a_terminal(cli, isolated_home: Path, monkeypatch) -> None:
    import torch

    from fmnist_toolkit.cli import models
    from fmnist_toolkit.storage import ModelStore

    ModelStore().save("kept", {"x": torch.zeros(1)}, {"kind": "autoencoder"})
    monkeypatch.setattr(models, "_stdin_is_terminal", lambda: True)
    kept = cli("models", "rm", "kept", input="n\n")
    assert kept.exit_code == 1 and "Delete 'kept'" in kept.stderr
    assert (isolated_home / "kept").exists()
    assert cli("models", "rm", "kept", input="y\n").exit_code == 0
    assert not (isolated_home / "kept").exists()


def test_models_rm_of_a_bundled_model_says_read_only_without_asking(cli, monkeypatch) -> None:
    monkeypatch.delenv("FMT_BUNDLED_MODELS")  # the package's own bundled models
    result = cli("models", "rm", "gan-dcgan", input="y\n")
    assert_one_line_error(result, 1, "read-only")
    assert "Delete" not in result.stderr


def test_models_list_never_cuts_a_name(cli, monkeypatch) -> None:
    import torch

    from fmnist_toolkit.storage import ModelStore

    monkeypatch.setenv("COLUMNS", "80")  # a terminal 80 columns wide
    config = {
        "kind": "classifier",
        "model": {"architecture": "encoder-mlp", "params": {"encoder_architecture": "wide",
                                                            "latent_dim": 16}},
        "metrics": {"val_accuracy": 0.93617, "test_accuracy": 0.9347},
        "created": "2026-11-26T09:30:00+00:00",
    }  # fmt: skip
    for name in ("clf-ae-wide-16-ft", "a-much-longer-classifier-name-1"):
        ModelStore().save(name, {"x": torch.zeros(1)}, config)
    table = cli("models", "list").stdout
    assert "clf-ae-wide-16-ft" in table and "a-much-longer-classifier-name-1" in table, table
    assert max(len(line) for line in table.splitlines()) <= 80


def test_models_show_only_what_applies_and_durations(cli) -> None:
    import torch

    from fmnist_toolkit.cli._render import format_duration
    from fmnist_toolkit.storage import ModelStore

    config = {
        "kind": "generator",
        "model": {"kind": "generator", "architecture": "dcgan",
                  "params": {"latent_size": 100, "width": 64}},
        "recipe": {"architecture": "dcgan", "latent_size": 100, "hidden_size": 784, "width": 64},
        "seconds": 6089.066766022999,
    }  # fmt: skip
    ModelStore().save("gan-x", {"x": torch.zeros(1)}, config)
    shown = cli("models", "show", "gan-x").stdout
    assert "hidden_size" not in shown and "recipe.width" in shown
    assert "1 h 41 min" in shown and "6089.06" not in shown
    # width is the U-Net's in an autoencoder's recipe, and only the U-Net reads the cleaning rules
    unet = {"architecture": "unet", "width": 24, "min_correction": 0.02, "sharpen": 0.05}
    ModelStore().save("dn-x", {"x": torch.zeros(1)}, {"kind": "denoiser", "recipe": unet})
    shown = cli("models", "show", "dn-x").stdout
    assert all(f"recipe.{field}" in shown for field in ("width", "min_correction", "sharpen"))
    seed = {**unet, "architecture": "seed"}
    ModelStore().save("ae-x", {"x": torch.zeros(1)}, {"kind": "autoencoder", "recipe": seed})
    shown = cli("models", "show", "ae-x").stdout
    assert "recipe.architecture" in shown and "recipe.width" not in shown
    assert "min_correction" not in shown and "sharpen" not in shown
    # an autoencoder trained to denoise reads --sharpen (not the U-Net's other rules)
    denoising = {**seed, "objective": "denoise", "sharpen": 1.0}
    ModelStore().save("ae-dn", {"x": torch.zeros(1)}, {"kind": "autoencoder", "recipe": denoising})
    shown = cli("models", "show", "ae-dn").stdout
    assert "recipe.sharpen" in shown and "min_correction" not in shown
    # a folder copied or renamed by hand keeps its old name inside: the store's name is shown
    ModelStore().save("gan-copy", {"x": torch.zeros(1)}, {**config, "name": "gan-x"})
    assert json.loads(cli("models", "show", "gan-copy", "--json").stdout)["name"] == "gan-copy"
    assert [format_duration(s) for s in (12.34, 245, 6089.07)] == [
        "12.3 s",
        "4 min 05 s",
        "1 h 41 min",
    ]


def test_interrupted_runs_show_in_list_and_go_with_rm(cli, isolated_home: Path) -> None:
    import torch

    from fmnist_toolkit.storage import ModelStore

    state = {"kind": "autoencoder", "epoch": 2, "recipe": {"epochs": 5},
             "model": {"architecture": "seed"}}  # fmt: skip
    ModelStore().save_checkpoint("ae-4", {"x": torch.zeros(1)}, state)
    assert "interrupted, epoch 2/5" in cli("models", "list").stdout
    (entry,) = json.loads(cli("models", "list", "--json").stdout)
    assert entry["source"] == "interrupted" and entry["epoch"] == 2
    assert_one_line_error(cli("models", "show", "ae-4"), 1, "--resume")
    assert cli("models", "rm", "ae-4", "--yes").exit_code == 0
    assert not ModelStore().has_checkpoint("ae-4")


def test_unknown_model_name_says_did_you_mean(cli) -> None:
    import torch

    from fmnist_toolkit.storage import ModelStore

    ModelStore().save("ae-16", {"x": torch.zeros(1)}, {"kind": "autoencoder"})
    assert_one_line_error(cli("models", "show", "ae16"), 1, "did you mean 'ae-16'?")


def test_doctor_reports_versions_devices_paths_and_data(
    cli, synthetic_data: Path, isolated_home: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("FMT_DATA_DIR", str(tmp_path / "nothing"))
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {"python", "torch", "typer", "rich", "optuna"} <= set(report["versions"])
    assert report["devices"][0]["device"] == "cpu" and report["store"] == str(isolated_home)
    assert report["data"].startswith("not fetched") and report["problems"] == []
    assert isinstance(report["cpu"]["native_bf16"], bool)
    # the synthetic files are not the published ones: a problem, exit 1, in the table too
    damaged = cli("doctor", "--data-dir", synthetic_data)
    assert damaged.exit_code == 1 and "MD5" in damaged.stdout
    assert "data (--data-dir)" in damaged.stdout
    every_file = json.loads(cli("doctor", "--data-dir", synthetic_data, "--json").stdout)["data"]
    assert every_file.count("MD5") == 4  # each bad file named, not the first alone
    assert report["data_dir_from"] == "FMT_DATA_DIR"


def test_doctor_checks_the_device_and_bundled_settings(cli, monkeypatch) -> None:
    monkeypatch.setenv("FMT_DEVICE", "cpu")
    report = json.loads(cli("doctor", "--json").stdout)
    assert [device["default"] for device in report["devices"] if device["device"] == "cpu"] == [
        True
    ]
    monkeypatch.setenv("FMT_DEVICE", "tpu")
    wrong = cli("doctor", "--json")
    assert wrong.exit_code == 1
    assert any(
        p.startswith("FMT_DEVICE=tpu: unknown device") for p in json.loads(wrong.stdout)["problems"]
    )
    monkeypatch.setenv("FMT_DEVICE", "cpu")
    monkeypatch.setenv("FMT_BUNDLED_MODELS", "0")
    hidden = cli("doctor")
    assert hidden.exit_code == 0 and "FMT_BUNDLED_MODELS=0" in hidden.stdout


def test_doctor_finds_a_store_that_cannot_hold_models(cli, tmp_path: Path, monkeypatch) -> None:
    """FMT_HOME on a file: training would fail with "Not a directory: .../.locks/run"."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FMT_HOME", str(blocker / "store"))
    result = cli("doctor", "--json")
    assert result.exit_code == 1
    problems = json.loads(result.stdout)["problems"]
    assert f"store: FMT_HOME={blocker / 'store'}: {blocker} is a file, not a folder" in problems
    monkeypatch.setenv("FMT_HOME", str(tmp_path / "new" / "store"))  # made on first save
    assert json.loads(cli("doctor", "--json").stdout)["problems"] == []


def test_cpu_bf16_comes_from_the_cpu_flags(tmp_path: Path) -> None:
    from fmnist_toolkit.engine.doctor import cpu_features

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: Xeon\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile\n")
    features = cpu_features(cpuinfo)
    assert features["name"] == "Xeon" and features["bf16_flags"] == ["avx512_bf16"]
    assert features["native_bf16"] is True
    cpuinfo.write_text("model name\t: Old\nflags\t\t: fpu sse avx2\n")
    assert cpu_features(cpuinfo)["bf16_flags"] == []


def test_choices_come_from_config_and_agree_with_the_registry() -> None:
    from fmnist_toolkit import config
    from fmnist_toolkit.cli import _options, ae, gan, tune
    from fmnist_toolkit.models import architectures

    pairs = [
        (_options.Precision, config.PRECISIONS),
        (ae.Optimizer, config.OPTIMIZERS),
        (ae.Schedule, config.SCHEDULES),
        (
            ae.AutoencoderArchitecture,
            config.AUTOENCODER_ARCHITECTURES + config.DENOISER_ARCHITECTURES,
        ),
        (gan.GanArchitecture, config.GAN_ARCHITECTURES),
        (tune.SearchDimension, config.SEARCH_DIMENSIONS),
    ]
    for choice, values in pairs:
        assert tuple(member.value for member in choice) == values, choice
    registered = {
        kind: sorted(a for k, a in architectures() if k == kind) for kind, _ in architectures()
    }
    assert sorted(config.AUTOENCODER_ARCHITECTURES) == registered["autoencoder"]
    denoisers = (*config.DENOISER_ARCHITECTURES, config.GATED_ARCHITECTURE)
    assert sorted(denoisers) == registered["denoiser"]
    assert sorted(config.MODEL_KINDS) == sorted(set(registered) - {"discriminator"})
    assert (
        sorted(config.GAN_ARCHITECTURES) == registered["generator"] == registered["discriminator"]
    )


def test_ae_and_gan_arch_are_both_choices(cli) -> None:
    for group in ("ae", "gan"):
        result = cli(group, "train", "--arch", "resnet")
        assert_one_line_error(result, 2, "--arch")
