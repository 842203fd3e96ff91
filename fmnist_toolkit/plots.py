"""Figures, one function per figure; each returns a matplotlib Figure (no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist_toolkit.storage import cannot_write, write_file_atomically

if TYPE_CHECKING:
    import numpy as np
    import torch
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class ScatterPanel:
    """One panel of a latent scatter: 2-D coordinates [N, 2], a subtitle and axis labels."""

    coords: np.ndarray
    subtitle: str
    xlabel: str
    ylabel: str
    note: str = ""  # written in the panel's corner, e.g. its 5-NN accuracy


def save_figure(figure: Figure, path: Path, *, dpi: int = 150) -> Path:
    """Write a figure (format from the extension, PNG without one), creating its folder, through
    a temporary file, so that an interrupted run never leaves half an image; return the path."""
    import matplotlib

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise cannot_write(path, error) from None
    kind = path.suffix.lstrip(".").lower() or matplotlib.rcParams["savefig.format"]
    write_file_atomically(
        path, lambda temporary: figure.savefig(temporary, format=kind, dpi=dpi, bbox_inches="tight")
    )
    return path


def loss_curves(
    history: Sequence[dict[str, float]],
    *,
    metrics: Sequence[str],
    title: str,
    ylabel: str = "loss",
    log_scale: bool = True,
) -> Figure:
    """Per-epoch curves of the named metrics (on a log scale unless told otherwise)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.add_subplot()
    epochs = [row["epoch"] for row in history]
    for metric in metrics:
        values = [row[metric] for row in history if metric in row]
        if values:
            axes.plot(
                epochs[: len(values)],
                values,
                marker="o" if len(values) < 30 else None,
                markersize=3,
                label=metric.replace("_", " "),
            )
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    if log_scale:
        axes.set_yscale("log")
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    return figure


def image_rows(
    rows: Sequence[torch.Tensor],
    *,
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str,
) -> Figure:
    """Rows of grayscale images [K, 1, 28, 28] in [0, 1], e.g. test images over reconstructions."""
    from matplotlib.figure import Figure

    columns = len(column_labels)
    figure = Figure(figsize=(1.2 * columns, 1.35 * len(rows) + 0.5), layout="constrained")
    grid = figure.subplots(len(rows), columns, squeeze=False)
    for row_index, (images, row_label) in enumerate(zip(rows, row_labels, strict=True)):
        for column, axes in enumerate(grid[row_index]):
            axes.imshow(images[column, 0].detach().cpu().numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes.set_xticks([])
            axes.set_yticks([])
            if row_index == 0:
                axes.set_title(column_labels[column], fontsize=8)
            if column == 0:
                axes.set_ylabel(row_label, fontsize=9)
    figure.suptitle(title)
    return figure


def image_panels(
    images: Sequence[torch.Tensor], *, titles: Sequence[str], columns: int | None = None
) -> Figure:
    """Grayscale pictures [H, W] in [0, 1] side by side (e.g. raw and denoised sample grids),
    ``columns`` to a row (default: all in one row)."""
    from matplotlib.figure import Figure

    columns = columns or len(images)
    rows = -(-len(images) // columns)
    height, width = images[0].shape
    scale = 6.0 / max(height, width)
    figure = Figure(
        figsize=(columns * width * scale + 0.4, rows * (height * scale + 0.6)),
        layout="constrained",
    )
    panels = list(figure.subplots(rows, columns, squeeze=False).flat)
    for axes in panels[len(images) :]:  # a last row with room to spare
        axes.set_axis_off()
    for axes, image, title in zip(panels[: len(images)], images, titles, strict=True):
        axes.imshow(image.detach().cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axes.set_title(title, fontsize=10)
        axes.set_axis_off()
    return figure


def _scatter_by_class(axes, coords: np.ndarray, labels: np.ndarray, class_names) -> None:
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    for index, name in enumerate(class_names):
        chosen = labels == index
        axes.scatter(
            coords[chosen, 0],
            coords[chosen, 1],
            s=3,
            alpha=0.5,
            color=colours(index),
            label=name,
            rasterized=True,
            linewidths=0,
        )


def latent_scatter(
    panels: Sequence[ScatterPanel],
    labels: np.ndarray,
    class_names: Sequence[str],
    *,
    title: str,
    shared_limits: bool = False,
) -> Figure:
    """Points coloured by class (tab10, legend with class names), one panel per projection.

    Small, half-transparent points keep 10,000 codes readable; ``shared_limits`` puts every
    panel on the same axes scale, so spreads can be compared by eye (a panel that shrinks to a
    dot on that scale gets a magnified inset).
    """
    import numpy as np
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.2 * len(panels) + 1.8, 6.0), layout="constrained")
    grid = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, panel in zip(grid, panels, strict=True):
        _scatter_by_class(axes, panel.coords, labels, class_names)
        axes.set_title(panel.subtitle)
        axes.set_xlabel(panel.xlabel)
        axes.set_ylabel(panel.ylabel)
        axes.grid(True, alpha=0.2)
        if panel.note:
            axes.text(
                0.02,
                0.98,
                panel.note,
                transform=axes.transAxes,
                va="top",
                fontsize=9,
                bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8},
            )
    if shared_limits:
        every = np.concatenate([panel.coords for panel in panels])
        low, high = every.min(axis=0), every.max(axis=0)
        margin = 0.03 * (high - low)
        shared_extent = float((high - low).max())
        for axes, panel in zip(grid, panels, strict=True):
            axes.set_xlim(low[0] - margin[0], high[0] + margin[0])
            axes.set_ylim(low[1] - margin[1], high[1] + margin[1])
            extent = float(np.ptp(panel.coords, axis=0).max())
            if extent < 0.1 * shared_extent:
                inset = axes.inset_axes((0.55, 0.55, 0.42, 0.42))
                _scatter_by_class(inset, panel.coords, labels, class_names)
                inset.set_xticks([])
                inset.set_yticks([])
                inset.set_title(
                    f"zoomed {shared_extent / max(extent, 1e-12):.0f} times", fontsize=8
                )
    figure.legend(
        *grid[0].get_legend_handles_labels(),
        loc="outside right center",
        markerscale=4,
        frameon=False,
        title="class",
    )
    figure.suptitle(title)
    return figure


def training_curves(history: Sequence[dict[str, float]], *, best_epoch: int, title: str) -> Figure:
    """Train and validation loss beside validation accuracy, the chosen epoch marked."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    for metric in ("train_loss", "val_loss"):
        loss_axes.plot(epochs, [row[metric] for row in history], label=metric.replace("_", " "))
    loss_axes.set_ylabel("cross-entropy")
    loss_axes.set_yscale("log")
    for metric in ("train_accuracy", "val_accuracy"):
        values = [row[metric] for row in history if metric in row]
        if values:
            accuracy_axes.plot(epochs[: len(values)], values, label=metric.replace("_", " "))
    accuracy_axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    accuracy_axes.set_ylabel("accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.axvline(
            best_epoch,
            color="grey",
            linestyle="--",
            linewidth=1,
            label=f"best epoch ({best_epoch})",
        )
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return figure


def confusion_matrices(
    confusion: Sequence[Sequence[int]], class_names: Sequence[str], *, title: str
) -> Figure:
    """The confusion matrix twice: counts, and normalised per true class (rows sum to 1)."""
    import numpy as np
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=float)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = Figure(figsize=(17, 7.4), layout="constrained")
    for axes, matrix, subtitle, text in zip(
        figure.subplots(1, 2),
        (counts, rows),
        ("counts", "normalised per true class"),
        (lambda v: f"{v:.0f}", lambda v: f"{v:.2f}"),
        strict=True,
    ):
        image = axes.imshow(matrix, cmap="Blues")
        figure.colorbar(image, ax=axes, shrink=0.8)
        ticks = range(len(class_names))
        axes.set_xticks(ticks, class_names, rotation=45, ha="right")
        axes.set_yticks(ticks, class_names)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        axes.set_title(subtitle)
        threshold = matrix.max() / 2
        for i in ticks:
            for j in ticks:
                axes.text(
                    j,
                    i,
                    text(matrix[i, j]),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if matrix[i, j] > threshold else "black",
                )
    figure.suptitle(title)
    return figure
