"""Figures, one function per figure; each returns a matplotlib Figure (no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure


def save_figure(figure: Figure, path: Path, *, dpi: int = 150) -> Path:
    """Write a figure (format from the extension), creating the folder; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def loss_curves(
    history: Sequence[dict[str, float]],
    *,
    metrics: Sequence[str],
    title: str,
    ylabel: str = "loss",
) -> Figure:
    """Per-epoch curves of the named metrics on a log scale."""
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
