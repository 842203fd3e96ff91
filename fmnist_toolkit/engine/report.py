"""``fmt report``: every figure and number of the course report, re-made on this machine.

The page is built section by section (:mod:`fmnist_toolkit.engine.report_sections`) into a
temporary folder beside OUT, written as ``index.html`` and ``report.md``
(:mod:`fmnist_toolkit.engine.report_page`) and renamed into place: Ctrl-C or a crash leaves
OUT as it was. A section that cannot be drawn here (no data, no tuning study, no model) is
listed with its reason and the command that fixes it; a section that fails shows its error
and the others still render.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from fmnist_toolkit._version import __version__
from fmnist_toolkit.config import AutoencoderTrainConfig, config_from_dict
from fmnist_toolkit.data import (
    SPLIT_FILES,
    DeviceSplit,
    fetch_command,
    find_file,
    resolve_data_dir,
)
from fmnist_toolkit.engine.defaults import (
    best_autoencoder,
    best_classifier,
    default_denoiser,
    default_generator,
)
from fmnist_toolkit.engine.outputs import ensure_writable_folder
from fmnist_toolkit.errors import OutputError, ToolkitError
from fmnist_toolkit.storage import ModelStore, StoredModel, temporary_beside, usual_mode

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure as MatplotlibFigure

# The course report's own numbers, in one place; every "report" column on the page reads them.
REPORT_NUMBERS: dict[str, float] = {
    "ae_test_mse": 0.017237,  # best trial: latent 16, Adam, lr 0.00099, weight decay 3.5237e-5
    "pca16_test_mse": 0.0198,  # the linear baseline, 16 components
    "pca64_test_mse": 0.0098,  # 64 components
    "clf_frozen_accuracy": 0.8349,  # its head on the frozen ae-16 encoder
    "gan_epochs": 300,  # the MLP GAN's training
}
# Its best tuning trial, the recipe of `fmt ae train`'s defaults (batch 256, 60 epochs).
REPORT_BEST_TRIAL: dict[str, Any] = {"optimizer": "adam", "lr": 0.00099, "weight_decay": 3.5237e-5}
REPORT_RECIPE = "Adam, lr 0.00099, weight decay 3.5237e-5, batch 256, 60 epochs"
MARKER_FILE = "report.json"  # marks a folder as an fmt report: a later run may replace it
FIGURE_DPI = 110


@dataclass
class Measure:
    """One number: the report's, the toolkit's as saved with the model, and this machine's."""

    what: str
    unit: str  # mse, accuracy, distance, count or text
    report: float | str | None = None
    toolkit: float | str | None = None  # recorded when the model was trained
    here: float | str | None = None  # measured by this run
    model: str = ""


@dataclass
class FigureFile:
    file: str  # relative to OUT: figures/<name>.png
    caption: str


@dataclass
class Skipped:
    """Something the report has that this run could not make, why, and what would make it."""

    what: str
    reason: str
    command: str = ""


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    status: str = "done"  # done, partial (something skipped), skipped (nothing drawn), failed
    figures: list[FigureFile] = field(default_factory=list)
    measures: list[Measure] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # "ae-16 (bundled)"
    notes: list[str] = field(default_factory=list)  # how the numbers were measured
    error: str = ""
    seconds: float = 0.0


@dataclass
class ReportResult:
    """What ``fmt report`` wrote and found."""

    out: Path
    sections: list[Section]
    device: str
    data: str  # the data folder, or why there is none
    seconds: float
    created: str
    toolkit_version: str = __version__
    versions: dict[str, str] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)  # --retrain's stages

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["out"] = str(self.out)
        return payload


class ReportObserver(Protocol):
    """Progress of a report: the CLI draws it."""

    def section_started(self, index: int, total: int, title: str) -> None: ...

    def section_finished(self, section: Section) -> None: ...


# --------------------------------------------------------------------------- models


def _params(model: StoredModel) -> dict[str, Any]:
    return model.config.get("model", {}).get("params", {}) or {}


def _recipe(model: StoredModel) -> dict[str, Any]:
    return model.config.get("recipe", {}) or {}


def _metric(model: StoredModel, key: str) -> float | None:
    value = model.config.get("metrics", {}).get(key)
    return float(value) if isinstance(value, (int, float)) else None


def _best(
    store: ModelStore, match: Callable[[StoredModel], bool], score: Callable[[StoredModel], Any]
) -> str | None:
    candidates = [(score(model), model.name) for model in store.available() if match(model)]
    return max(candidates)[1] if candidates else None


def _autoencoder(latent_dim: int, architecture: str | None) -> Callable[[StoredModel], bool]:
    return lambda model: (
        model.kind == "autoencoder"
        and _params(model).get("latent_dim") == latent_dim
        and architecture in (None, model.config.get("model", {}).get("architecture"))
        and _recipe(model).get("objective", "reconstruct") == "reconstruct"
        and _metric(model, "test_mse") is not None
    )


# What makes an autoencoder "the report's recipe": the course report's trial, `fmt ae train`'s
# defaults (epochs may differ: the report's own retraining scales them).
_REPORT_RECIPE = ("optimizer", "lr", "weight_decay", "batch_size", "schedule")


def _report_recipe(model: StoredModel) -> bool:
    # Fields an older toolkit did not write (schedule) take their defaults, as on loading.
    saved = config_from_dict(AutoencoderTrainConfig, _recipe(model))
    report = AutoencoderTrainConfig()
    return all(getattr(saved, key) == getattr(report, key) for key in _REPORT_RECIPE)


def _classifier(unfreeze: bool) -> Callable[[StoredModel], bool]:
    return lambda model: (
        model.kind == "classifier"
        and bool(_recipe(model).get("unfreeze")) == unfreeze
        and _params(model).get("encoder_architecture") == "seed"
        and _params(model).get("latent_dim") == 16
    )


def report_models(store: ModelStore) -> dict[str, str | None]:
    """The model of each role on the page: the best of the report's recipe in the store (a
    user's model or a bundled one), and the toolkit's own best; None where there is none."""

    def lowest_mse(model: StoredModel) -> float:
        return -(_metric(model, "test_mse") or 0.0)

    def accuracy(model: StoredModel) -> float:
        return _metric(model, "test_accuracy") or 0.0

    def trained_longest(model: StoredModel) -> tuple[int, str]:
        return len(model.config.get("history", [])), str(model.config.get("created", ""))

    def report_recipe_16(model: StoredModel) -> bool:
        return _autoencoder(16, "seed")(model) and _report_recipe(model)

    def optional(choose: Callable[[], str]) -> str | None:
        try:
            return choose()
        except ToolkitError:
            return None

    return {
        "ae-2": _best(store, _autoencoder(2, None), lowest_mse),
        "ae-16": _best(store, report_recipe_16, lowest_mse),
        "clf-frozen": _best(store, _classifier(False), accuracy),
        "clf-finetuned": _best(store, _classifier(True), accuracy),
        "gan-mlp": _best(
            store,
            lambda model: (
                model.kind == "generator"
                and model.config.get("model", {}).get("architecture") == "mlp"
            ),
            trained_longest,
        ),
        "best-ae": optional(lambda: best_autoencoder(store, purpose="", option="")),
        "best-clf": optional(lambda: best_classifier(store, purpose="", option="")),
        "generator": optional(lambda: default_generator(store)),
        "denoiser": optional(lambda: default_denoiser(store)),
    }


# --------------------------------------------------------------------------- the context


def find_data(data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The data folder when all four files are in it, else None."""
    folder = resolve_data_dir(data_dir)
    names = [name for pair in SPLIT_FILES.values() for name in pair]
    return folder if all(find_file(folder, name) for name in names) else None


@dataclass
class ReportContext:
    """What every section draws from: the store, the models, the data (when present), the
    device and the folder the figures go to."""

    store: ModelStore
    models: dict[str, str | None]
    figures: Path  # the temporary OUT's figures/
    data_dir: Path | None  # None: no data here
    device: torch.device
    fetch_data: str = "fmt data fetch"  # the command that gets the data where it was looked for
    seed: int = 0
    study: str = "report"
    storage: str | None = None
    samples: int = 2_000  # generated images per Fréchet distance
    tsne_points: int = 10_000
    _splits: dict[str, DeviceSplit] = field(default_factory=dict)

    def split(self, name: str) -> DeviceSplit:
        """The train or test split on the device, read once."""
        if name not in self._splits:
            self._splits[name] = DeviceSplit.load(name, self.data_dir, self.device)
        return self._splits[name]

    def has_data(self, section: Section, what: str) -> bool:
        """Whether the data is here; if not, ``what`` is listed as skipped in ``section``."""
        if self.data_dir is None:
            section.skipped.append(Skipped(what, "needs Fashion-MNIST", self.fetch_data))
        return self.data_dir is not None

    def model(self, section: Section, role: str, what: str, command: str) -> str | None:
        """The model of ``role`` (its name also listed in the section), or None with ``what``
        listed as skipped and the command that trains one."""
        name = self.models.get(role)
        if name is None:
            section.skipped.append(Skipped(what, f"no {role} model in the store", command))
            return None
        return self.uses(section, name)

    def uses(self, section: Section, name: str) -> str:
        """List ``name`` (and where it comes from) among the section's models; return it."""
        label = f"{name} ({self.store.source(name)})"
        if label not in section.models:
            section.models.append(label)
        return name

    def save(self, section: Section, name: str, figure: MatplotlibFigure, caption: str) -> None:
        """Write a figure as figures/<section>-<name>.png and list it in the section."""
        from fmnist_toolkit import plots

        file = f"{section.key}-{name}.png"
        plots.save_figure(figure, self.figures / file, dpi=FIGURE_DPI)
        section.figures.append(FigureFile(f"figures/{file}", caption))

    def attach(self, section: Section, file: str, caption: str) -> None:
        """List a figure an engine function already wrote into figures/."""
        section.figures.append(FigureFile(f"figures/{file}", caption))


# --------------------------------------------------------------------------- the output


def check_report_folder(out: Path) -> None:
    """OUT must be new, empty or an earlier report (which a finished run replaces)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out} is a file; name a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER_FILE).is_file():
        raise OutputError(
            f"{out} is not empty and holds no earlier report; name a new or empty folder"
        )
    ensure_writable_folder(out.parent if str(out.parent) else Path("."))


def _replace_folder(temporary: Path, out: Path) -> None:
    """Put the finished report at OUT; an earlier one is moved aside first, then removed."""
    usual_mode(temporary, folder=True)
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(temporary, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _device_line(device: torch.device, described: str) -> str:
    """The device, and for the CPU how many cores it may use: what the times depend on."""
    import torch

    if device.type != "cpu":
        return described
    threads = torch.get_num_threads()
    return f"{described}, {threads} thread{'' if threads == 1 else 's'} of {os.cpu_count()} cores"


def _versions() -> dict[str, str]:
    import platform

    import torch

    return {"python": platform.python_version(), "torch": torch.__version__}


def run_section(
    draw: Callable[[ReportContext, Section], None], ctx: ReportContext, section: Section
) -> Section:
    """Draw one section; an error in it is recorded on the page instead of ending the run."""
    started = time.perf_counter()
    try:
        draw(ctx, section)
    except ToolkitError as error:
        section.status, section.error = "failed", str(error)
    except Exception as error:  # a bug in one section must not cost the other figures
        section.status, section.error = "failed", f"{type(error).__name__}: {error}"
    section.seconds = time.perf_counter() - started
    if section.status != "failed" and section.skipped:
        drew = section.figures or any(m.here is not None for m in section.measures)
        section.status = "partial" if drew else "skipped"
    return section


def write_report(
    out: Path,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    store: ModelStore | None = None,
    models: dict[str, str | None] | None = None,
    seed: int = 0,
    study: str = "report",
    storage: str | None = None,
    samples: int = 2_000,
    tsne_points: int = 10_000,
    stages: list[dict[str, Any]] | None = None,
    observer: ReportObserver | None = None,
) -> ReportResult:
    """Draw every section into a temporary folder beside ``out`` and rename it into place.

    ``models`` overrides :func:`report_models` role by role (``--retrain`` names what it
    trained); ``stages`` (the retrained stages) are listed on the page.
    """
    from fmnist_toolkit.engine.device import describe_device, resolve_device
    from fmnist_toolkit.engine.report_page import write_pages
    from fmnist_toolkit.engine.report_sections import SECTIONS

    check_report_folder(out)
    store = store or ModelStore()
    started = time.perf_counter()
    torch_device = resolve_device(device)
    found = find_data(data_dir)
    chosen = {**report_models(store), **(models or {})}
    temporary = temporary_beside(out, folder=True)
    try:
        (temporary / "figures").mkdir()
        ctx = ReportContext(
            store=store,
            models=chosen,
            figures=temporary / "figures",
            data_dir=found,
            device=torch_device,
            fetch_data=fetch_command(resolve_data_dir(data_dir)),
            seed=seed,
            study=study,
            storage=storage,
            samples=samples,
            tsne_points=tsne_points,
        )
        sections = []
        for index, (key, title, draw) in enumerate(SECTIONS):
            if observer is not None:
                observer.section_started(index, len(SECTIONS), title)
            section = run_section(draw, ctx, Section(key, title))
            sections.append(section)
            if observer is not None:
                observer.section_finished(section)
        result = ReportResult(
            out=out,
            sections=sections,
            device=_device_line(torch_device, describe_device(torch_device)),
            data=str(found) if found else f"not found in {resolve_data_dir(data_dir)}",
            seconds=time.perf_counter() - started,
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            versions=_versions(),
            stages=stages or [],
        )
        write_pages(result, temporary)
        (temporary / MARKER_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n")
        _replace_folder(temporary, out)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return result
