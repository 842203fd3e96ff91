"""The latent space of a saved autoencoder: codes, 2-D projections, separation, walks, figures."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.data import CLASS_NAMES, DeviceSplit
from fmnist_toolkit.engine.device import resolve_device
from fmnist_toolkit.engine.inference import predict_split
from fmnist_toolkit.engine.model_io import load_model, read_model_of_kind
from fmnist_toolkit.engine.outputs import ensure_writable_file, ensure_writable_folder
from fmnist_toolkit.errors import UsageError
from fmnist_toolkit.models import create_model
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

VIEWS = ("scatter", "untrained", "walk", "pca", "tsne")
FIGURE_FORMATS = (".png", ".svg", ".pdf")
KNN_NEIGHBOURS = 5


@dataclass(frozen=True)
class WalkSpec:
    """Where a decoded walk starts and ends: two class centroids, or two test images."""

    from_class: int = 9  # Ankle boot, as in the report
    to_class: int = 7  # Sneaker
    from_index: int | None = None
    to_index: int | None = None
    steps: int = 10


@dataclass
class ViewResult:
    """One figure written: where, and how well its 2-D coordinates separate the classes."""

    view: str
    path: Path
    knn_accuracy: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


def class_index(name_or_index: str) -> int:
    """A class by index (``9``) or name (``ankle-boot``, ``Ankle boot``, ``t-shirt``)."""
    text = name_or_index.strip()
    if text.isdigit() and int(text) < len(CLASS_NAMES):
        return int(text)

    def normalise(value: str) -> str:
        return "".join(ch for ch in value.lower() if ch.isalnum())

    wanted = normalise(text)
    matches = [
        index
        for index, name in enumerate(CLASS_NAMES)
        if normalise(name) == wanted or normalise(name.split("/")[0]) == wanted
    ]
    if not matches:
        names = ", ".join(name.lower().replace(" ", "-").replace("/", "-") for name in CLASS_NAMES)
        raise UsageError(f"unknown class {name_or_index!r}; use 0-9 or one of: {names}")
    return matches[0]


def figure_path(path: Path) -> Path:
    """Check an output file's extension names a format we write (before any work is done)."""
    if path.is_dir():
        raise UsageError(
            f"{path} is a folder: name a figure file ({', '.join(FIGURE_FORMATS)}), or write "
            "every view into the folder with --view all"
        )
    if path.suffix.lower() not in FIGURE_FORMATS:
        raise UsageError(
            f"unknown figure format {path.suffix or '(none)'!r} for {path}; "
            f"use {', '.join(FIGURE_FORMATS)}"
        )
    return ensure_writable_file(path)


def encode(model: nn.Module, split: DeviceSplit) -> torch.Tensor:
    """Latent codes [N, latent_dim] (float32, CPU) of a whole split."""
    return predict_split(model, split, model.encode).cpu()


def knn_accuracy(coords: np.ndarray, labels: np.ndarray, k: int = KNN_NEIGHBOURS) -> float:
    """Leave-one-out k-nearest-neighbour class accuracy in ``coords`` (majority of k others)."""
    import numpy as np
    from sklearn.neighbors import NearestNeighbors

    # kneighbors() without a query leaves each point out, even where codes coincide.
    _, index = NearestNeighbors(n_neighbors=k).fit(coords).kneighbors()
    votes = labels[index]
    counts = np.apply_along_axis(np.bincount, 1, votes, minlength=len(CLASS_NAMES))
    return float((counts.argmax(axis=1) == labels).mean())


def pca_2d(codes: np.ndarray, seed: int) -> tuple[np.ndarray, list[float]]:
    """Two principal components and the share of variance each explains."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    coords = pca.fit_transform(codes)
    return coords, [float(ratio) for ratio in pca.explained_variance_ratio_]


def pca_test_mse(
    train_images: torch.Tensor, test_images: torch.Tensor, components: Sequence[int]
) -> dict[int, float]:
    """Test MSE per pixel of PCA reconstructions with each number of components, fitted on the
    training images (uint8 [N, 28, 28]): the report's linear baseline for the autoencoder."""
    import torch

    images = train_images.flatten(1).double().cpu() / 255
    mean = images.mean(0)
    centred = images - mean
    # The eigenvectors of the 784 x 784 covariance are the principal directions.
    _, directions = torch.linalg.eigh(centred.T @ centred)
    targets = test_images.flatten(1).double().cpu() / 255
    errors = {}
    for count in components:
        basis = directions[:, -count:]  # eigh sorts them ascending: the last are the largest
        reconstruction = (targets - mean) @ basis @ basis.T + mean
        errors[count] = float(((reconstruction - targets) ** 2).mean())
    return errors


def check_perplexity(perplexity: float, points: int) -> None:
    """t-SNE needs 1 <= perplexity < points / 3."""
    if not 1 <= perplexity < points / 3:
        raise UsageError(
            f"--perplexity must be at least 1 and below {points / 3:.0f} for {points} points"
        )


def tsne_2d(codes: np.ndarray, seed: int, perplexity: float) -> np.ndarray:
    """A seeded, PCA-initialised t-SNE embedding with scikit-learn (Barnes-Hut, all cores).

    Chosen over openTSNE after measuring: 42 s against 52 s for the 10,000 test codes of a
    16-D model on 2 cores, with the same class separation (benchmarks/tsne_speed.py).
    """
    from sklearn.manifold import TSNE

    check_perplexity(perplexity, len(codes))
    tsne = TSNE(perplexity=perplexity, init="pca", random_state=seed, n_jobs=-1)
    return tsne.fit_transform(codes)


@dataclass
class LatentSpace:
    """A saved autoencoder with the test set encoded: what every view draws from."""

    name: str
    model: nn.Module
    latent_dim: int
    seed: int
    test: DeviceSplit
    codes: np.ndarray  # [N, latent_dim]
    labels: np.ndarray  # [N]
    spec: Any

    @property
    def title(self) -> str:
        return f"{self.name} (latent {self.latent_dim})"


def open_latent_space(
    name_or_path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    store: ModelStore | None = None,
) -> LatentSpace:
    """Load an autoencoder (by name or path) and encode the 10,000 test images with it."""
    _, config, _, spec = read_model_of_kind(name_or_path, "autoencoder", store)
    torch_device = resolve_device(device)
    model = load_model(name_or_path, store=store, device=torch_device)
    test = DeviceSplit.load("test", data_dir, torch_device)
    space_codes = encode(model, test).numpy()
    name = str(config.get("name") or Path(name_or_path).name)
    seed = int(config.get("recipe", {}).get("seed", 0))
    return LatentSpace(
        name=name,
        model=model,
        latent_dim=int(space_codes.shape[1]),
        seed=seed,
        test=test,
        codes=space_codes,
        labels=test.labels.cpu().numpy(),
        spec=spec,
    )


def supported_views(space: LatentSpace) -> list[str]:
    """Views a model supports: a scatter of raw codes needs a 2-D latent."""
    return [view for view in VIEWS if view != "scatter" or space.latent_dim == 2]


def _untrained_codes(space: LatentSpace) -> np.ndarray:
    """Codes of a freshly initialised network of the same architecture and seed."""
    import torch

    torch.manual_seed(space.seed)
    fresh = create_model(space.spec)
    fresh = fresh.to(space.test.images.device).eval()
    return encode(fresh, space.test).numpy()


def check_walk(space: LatentSpace, walk: WalkSpec) -> None:
    """A walk's ends must exist: two test images in range, or two classes with test images."""
    if walk.steps < 2:
        raise UsageError("--steps must be at least 2")
    if walk.from_index is not None or walk.to_index is not None:
        if walk.from_index is None or walk.to_index is None:
            raise UsageError("--from-index and --to-index go together")
        for index in (walk.from_index, walk.to_index):
            if not 0 <= index < len(space.codes):
                raise UsageError(f"test image index {index} is outside 0..{len(space.codes) - 1}")
        return
    for label in (walk.from_class, walk.to_class):
        if not (space.labels == label).any():
            raise UsageError(f"no test image of class {CLASS_NAMES[label]!r} to walk from or to")


def _walk_images(space: LatentSpace, walk: WalkSpec) -> tuple[torch.Tensor, list[str], str]:
    """Decoded images along the line between two latent points, captions and a description."""
    import torch

    check_walk(space, walk)
    codes = torch.from_numpy(space.codes)
    if walk.from_index is not None and walk.to_index is not None:
        start, end = codes[walk.from_index], codes[walk.to_index]
        ends = (f"test #{walk.from_index}", f"test #{walk.to_index}")
    else:
        labels = torch.from_numpy(space.labels)
        start = codes[labels == walk.from_class].mean(0)
        end = codes[labels == walk.to_class].mean(0)
        ends = (CLASS_NAMES[walk.from_class], CLASS_NAMES[walk.to_class])
    weights = torch.linspace(0, 1, walk.steps).unsqueeze(1)
    path = (1 - weights) * start + weights * end
    device = space.test.images.device
    with torch.no_grad():
        images = space.model.decode(path.to(device)).float().cpu()
    captions = [f"{weight:.2f}" for weight in weights.squeeze(1).tolist()]
    captions[0], captions[-1] = ends
    return images, captions, f"{ends[0]} → {ends[1]}"


def _knn_note(accuracy: float) -> str:
    return f"{KNN_NEIGHBOURS}-NN class accuracy {accuracy:.1%}"


def draw_view(
    space: LatentSpace,
    view: str,
    path: Path,
    *,
    perplexity: float = 30.0,
    walk: WalkSpec | None = None,
    dpi: int = 150,
) -> ViewResult:
    """Compute one view, write its figure to ``path`` and return its numbers."""
    from fmnist_toolkit import plots

    if view not in VIEWS:
        raise UsageError(f"unknown view {view!r}; use one of: {', '.join(VIEWS)} or all")
    class_names = list(CLASS_NAMES)
    if view == "scatter":
        if space.latent_dim != 2:
            raise UsageError(
                f"{space.name} has a {space.latent_dim}-D latent and scatter draws 2-D codes; "
                "use --view pca or --view tsne (or a model trained with --latent-dim 2)"
            )
        accuracy = {"trained": knn_accuracy(space.codes, space.labels)}
        panels = [plots.ScatterPanel(space.codes, "", "z₁", "z₂", _knn_note(accuracy["trained"]))]
        figure = plots.latent_scatter(
            panels, space.labels, class_names, title=f"{space.title}: test-set latent codes"
        )
        details: dict[str, Any] = {}
    elif view == "untrained":
        trained, untrained = space.codes, _untrained_codes(space)
        axis = ("z₁", "z₂")
        if space.latent_dim != 2:  # project both the same way a reader would: PCA
            trained, untrained = pca_2d(trained, space.seed)[0], pca_2d(untrained, space.seed)[0]
            axis = ("PC 1", "PC 2")
        accuracy = {
            "trained": knn_accuracy(trained, space.labels),
            "untrained": knn_accuracy(untrained, space.labels),
        }
        panels = [
            plots.ScatterPanel(trained, "trained", *axis, _knn_note(accuracy["trained"])),
            plots.ScatterPanel(
                untrained,
                f"untrained (same architecture, seed {space.seed})",
                *axis,
                _knn_note(accuracy["untrained"]),
            ),
        ]
        figure = plots.latent_scatter(
            panels,
            space.labels,
            class_names,
            shared_limits=True,
            title=f"{space.title}: trained vs untrained encoder",
        )
        details = {"projection": "none" if space.latent_dim == 2 else "pca"}
    elif view == "walk":
        images, captions, description = _walk_images(space, walk or WalkSpec())
        figure = plots.image_rows(
            [images],
            row_labels=[""],
            column_labels=captions,
            title=f"{space.title}: decoded walk {description}",
        )
        accuracy, details = {}, {"from": captions[0], "to": captions[-1], "steps": len(captions)}
    elif view == "pca":
        coords, variance = pca_2d(space.codes, space.seed)
        accuracy = {"trained": knn_accuracy(coords, space.labels)}
        panels = [
            plots.ScatterPanel(
                coords,
                "",
                f"PC 1 ({variance[0]:.1%} of variance)",
                f"PC 2 ({variance[1]:.1%} of variance)",
                _knn_note(accuracy["trained"]),
            )
        ]
        figure = plots.latent_scatter(
            panels, space.labels, class_names, title=f"{space.title}: PCA of test-set codes"
        )
        details = {"explained_variance": variance}
    else:  # tsne
        started = time.perf_counter()
        coords = tsne_2d(space.codes, space.seed, perplexity)
        seconds = time.perf_counter() - started
        accuracy = {"trained": knn_accuracy(coords, space.labels)}
        panels = [
            plots.ScatterPanel(coords, "", "t-SNE 1", "t-SNE 2", _knn_note(accuracy["trained"]))
        ]
        figure = plots.latent_scatter(
            panels,
            space.labels,
            class_names,
            title=f"{space.title}: t-SNE of test-set codes (perplexity {perplexity:g})",
        )
        details = {"perplexity": perplexity, "seconds": round(seconds, 1)}
    plots.save_figure(figure, path, dpi=dpi)
    return ViewResult(view=view, path=path, knn_accuracy=accuracy, details=details)


def plot_latent_views(
    name_or_path: str | os.PathLike[str],
    views: Sequence[str],
    out: Path,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    device: str = "auto",
    perplexity: float = 30.0,
    walk: WalkSpec | None = None,
    dpi: int = 150,
    figure_format: str = "png",
    store: ModelStore | None = None,
    on_view: Callable[[str, int, int], None] | None = None,
) -> list[ViewResult]:
    """Write figures of the latent space: one view to the file ``out``, or with ``views=["all"]``
    every view the model supports to ``out/<model>-<view>.<figure_format>``.

    ``on_view(view, index, count)`` is called before each view is drawn (for progress)."""
    every = list(views) == ["all"]
    unknown = [view for view in views if view not in VIEWS and not every]
    if unknown:
        raise UsageError(f"unknown view {unknown[0]!r}; use one of: {', '.join(VIEWS)} or all")
    if not every:
        figure_path(out)
    elif out.suffix.lower() in FIGURE_FORMATS:
        raise UsageError(f"--view all writes several figures: --out must be a folder, not {out}")
    if perplexity < 1:  # the upper bound depends on the number of points, checked later
        raise UsageError("--perplexity must be at least 1")
    space = open_latent_space(name_or_path, data_dir=data_dir, device=device, store=store)
    chosen = supported_views(space) if every else list(views[:1])  # one view: one file
    # Check every view's options before drawing any, so a bad one never leaves half the set.
    if "walk" in chosen:
        check_walk(space, walk or WalkSpec())
    if "tsne" in chosen:
        check_perplexity(perplexity, len(space.codes))
    paths = [out]  # checked above
    if every:
        ensure_writable_folder(out)
        paths = [figure_path(out / f"{space.name}-{view}.{figure_format}") for view in chosen]
    drawn = []
    for index, (view, path) in enumerate(zip(chosen, paths, strict=True)):
        if on_view is not None:
            on_view(view, index, len(chosen))
        drawn.append(draw_view(space, view, path, perplexity=perplexity, walk=walk, dpi=dpi))
    return drawn
