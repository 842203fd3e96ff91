"""Raw GAN samples beside the same samples cleaned by denoisers, as one PNG per generator.

Usage: python scripts/denoiser_figure.py OUT_DIR [--denoisers NAME ...] [--generators NAME ...]
                                         [--suffix TEXT]

Writes OUT_DIR/denoisers-<generator><suffix>.png (by default for gan-dcgan and gan-mlp, through
ae-wide-16-onecycle and denoiser-unet): 32 samples (seed 0) raw and through each denoiser
(docs/gan.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist_toolkit import plots
from fmnist_toolkit.engine.sample import image_grid, load_denoiser, load_generator, sample_batches
from fmnist_toolkit.storage import ModelStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--denoisers", nargs="+", default=["ae-wide-16-onecycle", "denoiser-unet"])
    parser.add_argument("--generators", nargs="+", default=["gan-dcgan", "gan-mlp"])
    parser.add_argument("--suffix", default="")
    parser.add_argument("--n", type=int, default=32)
    args = parser.parse_args()
    store = ModelStore()
    for name in args.generators:
        generator = load_generator(name, store)
        grids, titles = [], [f"{name}: raw samples"]
        for denoiser_name in args.denoisers:
            denoiser = load_denoiser(denoiser_name, store)
            raw, denoised = next(sample_batches(generator, denoiser, args.n, seed=0))
            grids.append(image_grid(denoised, nrow=8))
            titles.append(f"denoised by {denoiser_name}")
        grids.insert(0, image_grid(raw, nrow=8))
        figure = plots.image_panels(grids, titles=titles)
        path = plots.save_figure(figure, args.out_dir / f"denoisers-{name}{args.suffix}.png")
        print(path)


if __name__ == "__main__":
    main()
