"""``fmt ae tune``: the search, its storage, several workers, dead workers and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import assert_one_line_error

TINY = ["--device", "cpu", "--latent-dim", "4", "--epochs", "2"]
LONG = 150  # epochs of a trial that must still be running when it is killed (a few seconds)


def tune_args(data: Path, study: str, *extra: object) -> list[str]:
    return ["ae", "tune", "--study", study, "--data-dir", str(data), *TINY, *map(str, extra)]


def fmt_command(*args: object) -> list[str]:
    return [sys.executable, "-m", "fmnist_toolkit", *map(str, args)]


def load_study(storage_url: str, name: str):
    import optuna

    from fmnist_toolkit.engine.tune import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage_url, heartbeat=0))


def finished_numbers(study) -> list[int]:
    return sorted(trial.number for trial in study.trials if trial.state.is_finished())


def test_tune_adds_trials_resumes_and_shows(cli, synthetic_data: Path, tmp_path: Path) -> None:
    first = cli(*tune_args(synthetic_data, "s", "--trials", 3, "--no-prune", "--json", "-q"))
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["trials_run"] == 3
    assert report["counts"] == {"complete": 3}
    assert report["setup"]["epochs"] == 2 and report["setup"]["latent_dim"] == 4
    values = [trial["val_mse"] for trial in report["trials"]]
    assert report["best"]["val_mse"] == min(values)
    assert set(report["best"]["params"]) == {"optimizer", "lr", "weight_decay"}
    for trial in report["trials"]:
        assert trial["epochs"] == 2
        assert 1e-4 <= trial["params"]["lr"] <= 1e-3
        assert 1e-5 <= trial["params"]["weight_decay"] <= 1e-3

    again = cli(*tune_args(synthetic_data, "s", "--trials", 2, "--no-prune", "--json", "-q"))
    assert again.exit_code == 0, again.output
    assert [trial["number"] for trial in json.loads(again.stdout)["trials"]] == [0, 1, 2, 3, 4]

    shown = cli("ae", "tune", "--study", "s", "--trials", "0", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["trials_run"] == 0
    assert len(json.loads(shown.stdout)["trials"]) == 5
    table = cli("ae", "tune", "--study", "s", "--trials", "0")
    assert table.exit_code == 0 and "best: trial" in table.stdout  # the study: a result


def test_same_seed_gives_the_same_study(cli, synthetic_data: Path) -> None:
    def params(study: str) -> list[dict]:
        result = cli(*tune_args(synthetic_data, study, "--trials", 2, "--json", "-q"))
        assert result.exit_code == 0, result.output
        return [
            (trial["params"], trial["val_mse"]) for trial in json.loads(result.stdout)["trials"]
        ]

    first, second = params("a"), params("b")
    assert first == second
    assert first[0][0] != first[1][0]  # trials are seeded by their number, not all alike


def test_search_widens_the_space_and_plots_use_optuna(
    cli, synthetic_data: Path, tmp_path: Path
) -> None:
    plots = tmp_path / "plots"
    result = cli(
        *tune_args(synthetic_data, "wide", "--trials", 3, "--no-prune", "--json", "-q"),
        "--search", "schedule", "--search", "batch-size", "--plots", plots,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for trial in report["trials"]:
        assert trial["params"]["schedule"] in ("constant", "cosine", "onecycle", "warmup-cosine")
        assert trial["params"]["batch_size"] in (64, 128, 256, 512)
        assert 1e-4 <= trial["params"]["lr"] <= 1e-2
    assert report["setup"]["schedules"] == ["constant", "cosine", "onecycle", "warmup-cosine"]
    names = sorted(path.name for path in plots.iterdir())
    assert names == [
        "wide-history.png",
        "wide-parallel-coordinate.png",
        "wide-param-importances.png",
    ]
    assert all((plots / name).stat().st_size > 10_000 for name in names)


def test_train_best_saves_a_model_that_names_its_study(cli, synthetic_data: Path) -> None:
    result = cli(
        *tune_args(synthetic_data, "best", "--trials", 2, "--json", "-q"),
        "--train-best", "--best-epochs", 1, "--name", "tuned",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trained"]["name"] == "tuned" and report["trained"]["epochs"] == 1

    from fmnist_toolkit import load_model
    from fmnist_toolkit.storage import ModelStore

    config = ModelStore().read_config("tuned")
    tuning = config["provenance"]["tuning"]
    assert tuning["study"] == "best" and tuning["trial"] == report["best"]["number"]
    assert config["recipe"]["lr"] == report["best"]["params"]["lr"]
    assert config["recipe"]["latent_dim"] == 4 and config["recipe"]["epochs"] == 1
    assert load_model("tuned").encode is not None


def test_train_best_checks_its_name_first_and_resumes_after_ctrl_c(
    cli, synthetic_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist_toolkit.engine import tune as tune_engine
    from fmnist_toolkit.storage import ModelStore
    from tests.test_ae import InterruptAfter

    bad = cli(*tune_args(synthetic_data, "my study", "--trials", 1, "--train-best"))
    assert_one_line_error(bad, 2, "invalid model name 'ae-my study'")
    never_ran = cli("ae", "tune", "--study", "my study", "--trials", "0")
    assert_one_line_error(never_ran, 1, "no study named 'my study'")  # no trial was spent
    alone = cli(*tune_args(synthetic_data, "tb", "--trials", 1, "--resume"))
    assert_one_line_error(alone, 2, "--resume is for the --train-best run")

    train = tune_engine.train_autoencoder

    def interrupted(*args, **kwargs):
        return train(*args, **{**kwargs, "callbacks": [InterruptAfter(1)]})

    monkeypatch.setattr(tune_engine, "train_autoencoder", interrupted)
    best = ("--train-best", "--best-epochs", 2, "-q")
    stopped = cli(*tune_args(synthetic_data, "tb", "--trials", 1, *best))
    assert stopped.exit_code == 130
    resume = f"fmt ae train --name ae-tb --resume --data-dir {synthetic_data} --device cpu"
    assert stopped.stderr.strip().endswith(f"resume with: {resume}")
    monkeypatch.setattr(tune_engine, "train_autoencoder", train)

    again = cli(*tune_args(synthetic_data, "tb", "--trials", 1, *best))
    assert_one_line_error(again, 1, "continue it with --resume or discard it with --restart")
    shown = json.loads(cli("ae", "tune", "--study", "tb", "--trials", "0", "--json").stdout)
    assert len(shown["trials"]) == 1  # refused before its trial, not after
    resumed = cli(*tune_args(synthetic_data, "tb", "--trials", 0, *best, "--resume", "--json"))
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["trained"]["epochs"] == 2
    assert ModelStore().read_config("ae-tb")["provenance"]["tuning"]["study"] == "tb"


def test_bad_inputs_are_one_line(cli, synthetic_data: Path, tmp_path: Path) -> None:
    created = cli(*tune_args(synthetic_data, "s", "--trials", 1, "-q"))
    assert created.exit_code == 0, created.output

    other_epochs = cli(*tune_args(synthetic_data, "s", "--trials", 1, "--epochs", 3))
    assert_one_line_error(other_epochs, 2, "epochs 2 (now 3)")
    assert_one_line_error(
        cli("ae", "tune", "--study", "nope", "--trials", "0"), 1, "studies here: s"
    )
    unreachable = cli(
        "ae", "tune", "--study", "x", "--storage", "postgresql+psycopg://u:secret@127.0.0.1:1/db"
    )
    assert_one_line_error(unreachable, 1, "cannot open storage postgresql+psycopg://u:***@")
    assert "secret" not in unreachable.output
    no_driver = cli("ae", "tune", "--study", "x", "--storage", "mysql+pymysql://u@127.0.0.1:1/d")
    assert_one_line_error(no_driver, 1, "fmnist-toolkit[mysql]")
    # Values that can never work are usage errors (exit 2), unlike a server that is down.
    for garbage in ("nonsense://", "bogus://x", "not a url"):
        refused = cli("ae", "tune", "--study", "x", "--storage", garbage)
        assert_one_line_error(refused, 2, "is not a storage URL: use sqlite:///FILE")
    bad_port = cli("ae", "tune", "--study", "x", "--storage", "postgresql://u:secret@h:port/d")
    assert_one_line_error(bad_port, 2, "postgresql://u:***@h:port/d is not a storage URL")
    assert "secret" not in bad_port.output
    for in_memory in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        lost = cli(*tune_args(synthetic_data, "m", "--trials", 1, "--storage", in_memory))
        assert_one_line_error(lost, 2, "in-memory SQLite database is lost")
    assert_one_line_error(cli(*tune_args(synthetic_data, "v", "--val-fraction", 1.5)), 2, "0 and 1")
    empty = cli("ae", "tune", "--study", "empty", "--trials", "0", "--train-best")
    assert_one_line_error(empty, 1, "no study named 'empty'")


# --------------------------------------------------------------------------- several workers


def run_workers(storage: str, data: Path, env: dict[str, str], count: int, trials: int) -> None:
    workers = [
        subprocess.Popen(
            fmt_command(*tune_args(data, "shared", "--trials", trials, "--storage", storage, "-q")),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        assert "Traceback" not in err and "error" not in err.lower(), err


def check_shared_study(storage: str, total: int) -> None:
    study = load_study(storage, "shared")
    assert finished_numbers(study) == list(range(total))
    assert all(trial.state.name in ("COMPLETE", "PRUNED") for trial in study.trials)
    sampled = [tuple(sorted(trial.params.items())) for trial in study.trials]
    assert len(set(sampled)) == len(sampled)  # no two workers drew the same recipe


def worker_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FMT_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_two_workers_share_one_study(kind: str, synthetic_data: Path, tmp_path: Path) -> None:
    storage = (
        f"sqlite:///{tmp_path / 'study.db'}"
        if kind == "sqlite"
        else f"journal:{tmp_path / 'j.log'}"
    )
    run_workers(storage, synthetic_data, worker_env(tmp_path), count=2, trials=3)
    check_shared_study(storage, 6)


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("FMT_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: FMT_TEST_POSTGRES_URL is unset (.ci/run starts one)")
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.begin() as connection:  # a clean database for each test
            connection.execute(sqlalchemy.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    except sqlalchemy.exc.OperationalError as error:
        pytest.skip(f"PostgreSQL at {url} is unreachable: {error.orig}")
    finally:
        engine.dispose()
    return url


@pytest.mark.slow
def test_two_workers_share_one_postgresql_study(
    postgres_url: str, synthetic_data: Path, tmp_path: Path
) -> None:
    run_workers(postgres_url, synthetic_data, worker_env(tmp_path), count=2, trials=3)
    check_shared_study(postgres_url, 6)


def wait_for_running_trial(
    storage: str, process: subprocess.Popen, seconds: float = 120, count: int = 1
) -> int:
    """The number of the first running trial, once ``count`` trials report epochs."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        try:
            running = [t for t in load_study(storage, "shared").trials if t.state.name == "RUNNING"]
        except KeyError:  # the study is not created yet
            running = []
        reporting = [trial for trial in running if trial.intermediate_values]
        if len(reporting) >= count:
            return reporting[0].number
        time.sleep(0.2)
    raise AssertionError("no trial started running")


@pytest.mark.slow
def test_killed_worker_trial_is_failed_and_retried(synthetic_data: Path, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    env = worker_env(tmp_path)
    long_trial = tune_args(synthetic_data, "shared", "--storage", storage, "--heartbeat", 1)
    victim = subprocess.Popen(
        fmt_command(*long_trial, "--trials", 1, "--epochs", LONG, "--no-prune", "-q"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    killed = wait_for_running_trial(storage, victim)
    victim.kill()  # SIGKILL: no chance to record anything
    victim.wait()
    time.sleep(2.5)  # past the grace period of 2 heartbeats

    rescuer = subprocess.run(
        fmt_command(*long_trial, "--trials", 1, "--epochs", LONG, "--no-prune", "-q", "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert rescuer.returncode == 0, rescuer.stderr
    study = load_study(storage, "shared")
    states = {trial.number: trial.state.name for trial in study.trials}
    assert states[killed] == "FAIL"
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"
    assert retries[0].params == study.trials[killed].params


@pytest.mark.slow
@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_fails_the_running_trial_and_the_study_goes_on(
    jobs: int, synthetic_data: Path, tmp_path: Path
) -> None:
    """The SIGINT goes to the command's process alone, as a supervisor's kill -INT would: with
    --jobs 2 it must reach the workers too."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    env = worker_env(tmp_path)
    args = tune_args(synthetic_data, "shared", "--storage", storage, "--no-prune", "--epochs", LONG)
    process = subprocess.Popen(
        fmt_command(*args, "--trials", 3, "--jobs", jobs),
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    interrupted = wait_for_running_trial(storage, process, count=jobs)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "run the same command to add more" in lines[0], err
    assert "keeps 0 complete trials" in lines[0]
    assert "Traceback" not in err
    trials = load_study(storage, "shared").trials
    assert trials[interrupted].state.name == "FAIL"
    assert [trial.state.name for trial in trials] == ["FAIL"] * jobs  # no worker went on

    again = subprocess.run(
        fmt_command(*args, "--trials", 1, "--json", "-q"),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"] == {"fail": jobs, "complete": 1}


def test_schedule_search_samples_every_schedule_and_lr_up_to_1e_2() -> None:
    """The space, sampled directly: with the schedule searched the learning rate reaches 1e-2
    and every schedule comes up; without it the report's 1e-4..1e-3 stays."""
    import optuna

    from fmnist_toolkit.config import SCHEDULES, TuneConfig
    from fmnist_toolkit.engine.tune_search import suggest_recipe

    def sampled(search: tuple[str, ...]) -> list:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        tune = TuneConfig(study="space", search=search)
        return [suggest_recipe(study.ask(), tune) for _ in range(200)]

    scheduled = sampled(("schedule", "batch-size"))
    assert {recipe.schedule for recipe in scheduled} == set(SCHEDULES)
    assert max(recipe.lr for recipe in scheduled) > 1e-3
    assert all(1e-4 <= recipe.lr <= 1e-2 for recipe in scheduled)
    assert {recipe.batch_size for recipe in scheduled} == {64, 128, 256, 512}
    assert all(1e-4 <= recipe.lr <= 1e-3 for recipe in sampled(()))
    # A study that searched the schedules before onecycle existed recorded no "schedules".
    assert "schedules" not in TuneConfig(study="old").setup()
    assert TuneConfig(study="s", search=("schedule",)).setup()["schedules"] == list(SCHEDULES)
