"""What a gated denoiser does to real images and to its generator's samples, as one PNG.

Usage: python scripts/gate_figure.py OUT_PNG [--data-dir DIR] [--denoiser NAME] [--generator NAME]

Top row: 24 test images, as they are, through the gated denoiser's wrapped redraw alone, and
through the gated denoiser; bottom row: 24 samples of the generator (seed 0) the same three
ways. Titles give each panel's mean detector probability (docs/gan.md, "A gate").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fmnist_toolkit import plots
from fmnist_toolkit.data import load_fashion_mnist
from fmnist_toolkit.engine.sample import image_grid, load_denoiser, load_generator, sample_batches
from fmnist_toolkit.storage import ModelStore

COUNT = 24


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--data-dir", default="../shared/fashion-mnist")
    parser.add_argument("--denoiser", default="denoiser-gan-mlp")
    parser.add_argument("--generator", default="gan-mlp")
    args = parser.parse_args()
    store = ModelStore()
    gated = load_denoiser(args.denoiser, store)
    images, _ = load_fashion_mnist("test", args.data_dir)
    real = images[:COUNT].unsqueeze(1).float() / 255
    generated, _ = next(sample_batches(load_generator(args.generator, store), None, COUNT, 0))
    grids, titles = [], []
    with torch.no_grad():
        for label, batch in (("test images", real), (f"{args.generator} samples", generated)):
            p = torch.sigmoid(gated.generated_logits(batch)).mean()
            for view, picture in (
                (f"{label}", batch),
                ("redrawn (the wrapped denoiser alone)", gated.denoiser(batch).clamp(0, 1)),
                (f"{args.denoiser} (mean p {p:.2f})", gated(batch)),
            ):
                grids.append(image_grid(picture, nrow=6))
                titles.append(view)
    figure = plots.image_panels(grids, titles=titles, columns=3)
    print(plots.save_figure(figure, args.out))


if __name__ == "__main__":
    main()
