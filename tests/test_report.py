"""`fmt report`: the page from retrained tiny models, reuse and resume of --retrain, no data,
failures, Ctrl-C, bad inputs, and the page in a real browser."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from fmnist_toolkit.engine import report as report_engine
from fmnist_toolkit.engine import report_sections
from fmnist_toolkit.engine.report_page import format_value
from tests.conftest import write_dataset
from tests.test_cli import assert_one_line_error

# --retrain at 1/100 of the report's epochs: 1-3 epochs per model, 2 tuning trials.
EPOCHS_SCALE = 0.01
TINY = (
    "--epochs-scale",
    str(EPOCHS_SCALE),
    "--samples",
    "300",
    "--tsne-points",
    "150",
    "--device",
    "cpu",
)
SECTION_KEYS = ["data", "autoencoder", "tuning", "latent", "classifier", "gan"]


@pytest.fixture(scope="module")
def data_512(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Synthetic data with enough test images for a Fréchet distance of 128-D features."""
    return write_dataset(tmp_path_factory.mktemp("fmnist-512"), train=512, test=512)


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory, data_512: Path) -> dict:
    """A store filled by `fmt report OUT --retrain` on synthetic data, the report it wrote and
    the JSON it printed; then the stages once more, which reuse what the first run trained."""
    from typer.testing import CliRunner

    from fmnist_toolkit.cli import app
    from fmnist_toolkit.config import EngineConfig
    from fmnist_toolkit.engine.report_retrain import report_stages, retrain_models
    from fmnist_toolkit.storage import ModelStore

    home = tmp_path_factory.mktemp("report-home")
    out = home.parent / f"{home.name}-report"
    result = CliRunner().invoke(
        app,
        ["report", str(out), "--retrain", "--data-dir", str(data_512), *TINY, "--json"],
        env={"FMT_HOME": str(home), "FMT_BUNDLED_MODELS": "0"},
    )
    assert result.exit_code == 0, result.output
    again = retrain_models(
        report_stages(epochs_scale=EPOCHS_SCALE),
        EngineConfig(device="cpu"),
        data_dir=data_512,
        store=ModelStore(home, bundled=None),
    )
    return {"out": out, "first": json.loads(result.stdout), "again": again}


def figure_files(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


def test_retrain_trains_every_stage_then_reuses_it(retrained: dict) -> None:
    first = {stage["stage"]: stage for stage in retrained["first"]["stages"]}
    assert list(first) == ["ae-2", "ae-16", "tuning", "clf-frozen", "clf-finetuned", "gan-mlp"]
    assert {stage["status"] for stage in first.values()} == {"trained"}
    assert first["clf-frozen"]["model"] == "report-clf-ae-16"
    again = {result.stage: result for result in retrained["again"]}
    assert {result.status for result in again.values()} == {"reused"}
    assert {s: again[s].model for s in again} == {s: first[s]["model"] for s in first}


def test_the_page_has_every_section_figure_and_number(retrained: dict) -> None:
    out: Path = retrained["out"]
    payload = retrained["first"]
    sections = {section["key"]: section for section in payload["sections"]}
    assert list(sections) == SECTION_KEYS
    for key, section in sections.items():
        assert section["status"] == "done", (key, section["error"], section["skipped"])
    page = (out / "index.html").read_text()
    files = figure_files(page)
    assert len(files) >= 17 and len(set(files)) == len(files)
    for file in files:
        assert (out / file).read_bytes()[:4] == b"\x89PNG", file
    assert sorted(p.name for p in (out / "figures").iterdir()) == sorted(
        Path(f).name for f in files
    ), "every figure written is on the page"
    for number in ("0.017237", "83.49%", "0.019800", "0.009800"):
        assert number in page, number
    measures = [m for s in payload["sections"] for m in s["measures"]]
    assert any(m["what"].startswith("Fréchet distance") and m["here"] for m in measures)
    assert any(m["what"].startswith("5-NN") for m in measures)
    assert any("PCA with 16" in m["what"] and m["here"] for m in measures)
    markdown = (out / "report.md").read_text()
    assert all(f"]({file})" in markdown for file in files)
    assert "http" not in page.replace("http-equiv", "")
    assert "<script" not in page
    assert not list(out.parent.glob(f".{out.name}.*")), "no temporary folder is left"


def test_retrain_resumes_an_interrupted_stage(
    data_512: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist_toolkit.config import EngineConfig
    from fmnist_toolkit.engine.report_retrain import report_stages, retrain_models
    from fmnist_toolkit.errors import TrainingInterrupted
    from fmnist_toolkit.storage import ModelStore
    from tests.test_ae import InterruptAfter

    store = ModelStore(tmp_path / "store")
    stages = [s for s in report_stages(epochs_scale=0.05) if s.role == "ae-16"]  # 3 epochs
    with pytest.raises(TrainingInterrupted):
        retrain_models(
            stages,
            EngineConfig(device="cpu"),
            data_dir=data_512,
            store=store,
            callbacks=lambda label: [InterruptAfter(1)],
        )
    assert store.has_checkpoint("report-ae-16") and not store.exists("report-ae-16")
    results = retrain_models(stages, EngineConfig(device="cpu"), data_dir=data_512, store=store)
    assert [(r.model, r.status) for r in results] == [("report-ae-16", "resumed")]
    assert len(store.read_config("report-ae-16")["history"]) == 3
    # Another recipe is not this model: a fresh stage trains again.
    longer = [s for s in report_stages(epochs_scale=0.1) if s.role == "ae-16"]
    results = retrain_models(longer, EngineConfig(device="cpu"), data_dir=data_512, store=store)
    assert results[0].status == "trained"


def test_a_users_model_of_the_same_recipe_is_reused(data_512: Path, tmp_path: Path) -> None:
    import dataclasses

    from fmnist_toolkit.config import EngineConfig
    from fmnist_toolkit.engine.ae import train_autoencoder
    from fmnist_toolkit.engine.report_retrain import report_stages, retrain_models
    from fmnist_toolkit.storage import ModelStore

    store = ModelStore(tmp_path / "store")
    stage = next(s for s in report_stages(epochs_scale=0.02) if s.role == "ae-2")
    train_autoencoder(
        "my-ae", stage.recipe, EngineConfig(device="cpu"), data_dir=data_512, store=store
    )
    results = retrain_models([stage], EngineConfig(device="cpu"), data_dir=data_512, store=store)
    assert [(r.model, r.status) for r in results] == [("my-ae", "reused")]
    other = dataclasses.replace(stage, recipe=dataclasses.replace(stage.recipe, seed=1))
    results = retrain_models([other], EngineConfig(device="cpu"), data_dir=data_512, store=store)
    assert [(r.model, r.status) for r in results] == [("report-ae-2", "trained")]


def test_a_failed_stage_skips_the_stages_that_need_it(
    data_512: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist_toolkit.config import EngineConfig
    from fmnist_toolkit.engine import report_retrain
    from fmnist_toolkit.errors import OutputError
    from fmnist_toolkit.storage import ModelStore

    def broken(*args, **kwargs) -> None:
        raise OutputError("the disk is full")

    monkeypatch.setattr(report_retrain, "_train", broken)
    stages = [
        stage
        for stage in report_retrain.report_stages(epochs_scale=EPOCHS_SCALE)
        if stage.role in ("ae-16", "clf-frozen")
    ]
    results = report_retrain.retrain_models(
        stages, EngineConfig(device="cpu"), data_dir=data_512, store=ModelStore(tmp_path)
    )
    assert [(r.stage, r.status) for r in results] == [
        ("ae-16", "failed"),
        ("clf-frozen", "skipped"),
    ]
    assert results[0].detail == "the disk is full"


def test_ctrl_c_during_retrain_says_how_to_go_on(
    cli, data_512: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fmnist_toolkit.engine import report_retrain
    from fmnist_toolkit.errors import TrainingInterrupted

    def interrupted(stage, *args, **kwargs) -> None:
        raise TrainingInterrupted(
            "interrupted; 1/60 epochs are saved in a checkpoint",
            model_name=stage.name,
            completed_epochs=1,
        )

    monkeypatch.setattr(report_retrain, "_train", interrupted)
    out = tmp_path / "report"
    result = cli("report", out, "--retrain", "--data-dir", data_512, "--device", "cpu", "-q")
    assert_one_line_error(result, 130, "1/60 epochs", "run the same command again")
    assert not out.exists()


def test_without_data_or_models_everything_is_skipped_with_a_command(cli, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = cli("report", out, "--data-dir", tmp_path / "nothing", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    statuses = {s["key"]: s["status"] for s in payload["sections"]}
    assert set(statuses.values()) == {"skipped"}, statuses
    page = (out / "index.html").read_text()
    assert "fmt data fetch" in page and "fmt ae train" in page and "fmt gan train" in page
    assert "not found in" in payload["data"]


def test_bundled_models_without_data_draw_what_needs_no_data(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FMT_BUNDLED_MODELS")
    out = tmp_path / "report"
    result = cli("report", out, "--data-dir", tmp_path / "nothing", "--device", "cpu", "--json")
    assert result.exit_code == 0, result.output
    sections = {s["key"]: s for s in json.loads(result.stdout)["sections"]}
    assert sections["data"]["status"] == "skipped"
    for key in ("autoencoder", "classifier", "gan"):
        assert sections[key]["status"] == "partial", key
        assert sections[key]["figures"], key
    captions = " ".join(f["caption"] for f in sections["classifier"]["figures"])
    assert "as saved when it was trained" in captions
    assert "ae-16 (bundled)" in sections["autoencoder"]["models"]
    accuracy = next(m for m in sections["classifier"]["measures"] if "frozen" in m["what"])
    assert accuracy["report"] == 0.8349 and accuracy["toolkit"] == pytest.approx(0.862)


def test_a_failing_section_is_shown_and_the_others_render(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx, section) -> None:
        raise RuntimeError("something broke")

    sections = list(report_sections.SECTIONS)
    sections[0] = ("data", "Fashion-MNIST", broken)
    monkeypatch.setattr(report_sections, "SECTIONS", sections)
    out = tmp_path / "report"
    result = cli("report", out, "--data-dir", tmp_path / "nothing", "--device", "cpu", "-q")
    assert_one_line_error(result, 1, "1 section(s) failed (Fashion-MNIST)")
    page = (out / "index.html").read_text()
    assert "This section failed: RuntimeError: something broke" in page
    assert page.count("<section") == len(SECTION_KEYS)


def test_ctrl_c_leaves_the_earlier_report_untouched(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    assert cli("report", out, "--data-dir", tmp_path / "nothing", "--device", "cpu").exit_code == 0
    before = (out / "index.html").read_text()

    def interrupted(ctx, section) -> None:
        raise KeyboardInterrupt

    sections = report_sections.SECTIONS
    monkeypatch.setattr(report_sections, "SECTIONS", [("data", "Fashion-MNIST", interrupted)])
    result = cli("report", out, "--data-dir", tmp_path / "nothing", "--device", "cpu")
    assert result.exit_code == 130
    assert (out / "index.html").read_text() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    # The same command again replaces the earlier report whole.
    monkeypatch.setattr(report_sections, "SECTIONS", sections)
    (out / "figures" / "stale.png").write_bytes(b"")
    assert cli("report", out, "--data-dir", tmp_path / "nothing", "--device", "cpu").exit_code == 0
    assert not (out / "figures" / "stale.png").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize(
    ("make", "code", "fragment"),
    [
        (lambda out: out.write_text("x"), 2, "is a file"),
        (lambda out: (out.mkdir(), (out / "notes.txt").write_text("x")), 1, "not empty"),
    ],
    ids=["a-file", "someone-elses-folder"],
)
def test_refuses_to_overwrite_what_is_not_a_report(
    cli, tmp_path: Path, make, code: int, fragment: str
) -> None:
    out = tmp_path / "out"
    make(out)
    result = cli("report", out, "--device", "cpu", "-q")
    assert_one_line_error(result, code, fragment)


def test_bad_options(cli, tmp_path: Path) -> None:
    assert cli("report", tmp_path / "r", "--samples", "1").exit_code == 2
    assert cli("report", tmp_path / "r", "--tsne-points", "5").exit_code == 2
    assert cli("report").exit_code == 2


def test_retrain_needs_the_data(cli, tmp_path: Path) -> None:
    result = cli("report", tmp_path / "r", "--retrain", "--data-dir", tmp_path / "nothing", "-q")
    assert_one_line_error(result, 1, "fmt data fetch")
    assert not (tmp_path / "r").exists()


def test_numbers_are_formatted_as_the_report_prints_them() -> None:
    assert format_value(0.017237, "mse") == "0.017237"
    assert format_value(0.8349, "accuracy") == "83.49%"
    assert format_value(118.72, "distance") == "118.7"
    assert format_value(None, "mse") == "—"
    assert report_engine.REPORT_NUMBERS["ae_test_mse"] == 0.017237


@pytest.mark.realdata
def test_the_autoencoder_section_on_the_real_data(
    real_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """The bundled ae-16 re-measured on the real test set gives the MSE it saved, and PCA the
    baseline of docs/results.md."""
    import torch

    from fmnist_toolkit.storage import ModelStore

    monkeypatch.delenv("FMT_BUNDLED_MODELS")
    store = ModelStore()
    ctx = report_engine.ReportContext(
        store=store,
        models=report_engine.report_models(store),
        figures=tmp_path,
        data_dir=real_data,
        device=torch.device("cpu"),
    )
    section = report_engine.run_section(
        report_sections.autoencoder, ctx, report_engine.Section("autoencoder", "")
    )
    assert section.status == "done", section.error
    measures = {m.what: m for m in section.measures}
    mse = measures["test MSE, latent 16"]
    assert mse.model == "ae-16" and mse.here == pytest.approx(mse.toolkit, rel=1e-3)
    pca = measures["test MSE, PCA with 16 components (linear baseline)"]
    assert pca.here == pytest.approx(0.02045, abs=5e-5)


# --------------------------------------------------------------------------- in a browser


CHECK_SCRIPT = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const check = {
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.src),
    // Every address the page names, resolved (file:// resources have no Resource Timing).
    addresses: Array.from(document.querySelectorAll("[src], [href]")).map((e) => e.src || e.href),
    height: document.body.scrollHeight,
  };
  const pre = document.createElement("pre");
  pre.id = "fmt-check";
  pre.textContent = JSON.stringify(check);
  document.body.appendChild(pre);
});
</script>"""


def find_chromium() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)


def chromium_command(binary: str, profile: Path, *args: str) -> list[str]:
    import os

    quiet = [
        "--headless",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    # Chromium's sandbox refuses to run as root (CI containers).
    return [binary, *quiet, *(["--no-sandbox"] if os.geteuid() == 0 else []), *args]


def page_requests(net_log: Path) -> list[str]:
    """URLs the page asked the network for: the net log's requests that have an initiator
    (the browser's own background requests have none: 'not an origin')."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    starts = [event.get("params", {}) for event in log["events"] if event["type"] == start]
    return [
        params["url"]
        for params in starts
        if "url" in params and params.get("initiator") != "not an origin"
    ]


def test_the_page_renders_in_a_browser_with_every_image_and_no_outside_request(
    retrained: dict, tmp_path: Path
) -> None:
    import html
    import subprocess

    from PIL import Image

    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium installed (Debian: apt-get install chromium)")
    folder = tmp_path / "page"
    shutil.copytree(retrained["out"], folder)
    page = (folder / "index.html").read_text()
    (folder / "check.html").write_text(page.replace("</body>", CHECK_SCRIPT + "</body>"))
    net_log = tmp_path / "net-log.json"
    rendered = subprocess.run(
        chromium_command(
            binary,
            tmp_path / "profile",
            "--virtual-time-budget=10000",
            f"--log-net-log={net_log}",
            "--dump-dom",
            (folder / "check.html").as_uri(),
        ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    found = re.search(r'<pre id="fmt-check">(.*?)</pre>', rendered.stdout, re.S)
    assert found, rendered.stdout[-2000:]
    check = json.loads(html.unescape(found[1]))
    assert check["images"] == len(figure_files(page)) >= 17
    assert check["broken"] == []
    inside = folder.as_uri() + "/"
    assert check["addresses"] and all(url.startswith(inside) for url in check["addresses"])
    assert page_requests(net_log) == []
    assert check["height"] > 5000  # the figures are laid out, not collapsed

    screenshot = tmp_path / "page.png"
    subprocess.run(
        chromium_command(
            binary,
            tmp_path / "profile",
            f"--screenshot={screenshot}",
            "--window-size=1280,2000",
            (folder / "index.html").as_uri(),
        ),
        capture_output=True,
        timeout=120,
        check=True,
    )
    colours = Image.open(screenshot).convert("L").getextrema()
    assert colours[1] - colours[0] > 100, "the screenshot is not blank"


def test_a_generator_drawn_below_full_variety_says_so() -> None:
    from fmnist_toolkit.engine.sample import truncation_label

    assert truncation_label(1.0) == ""
    assert truncation_label(0.7) == " at truncation 0.7"
