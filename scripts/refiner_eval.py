"""Screen denoisers quickly: Fréchet distances (N samples, one seed) for several denoisers on
the three bundled generators, from samples and reference features computed once.

Gives the numbers of ``fmt gan eval --model GEN --denoise --denoiser NAME --n N --seed S``
(same sampling, classifier and formula), plus each denoiser's clean change (mean squared
change of the 10,000 clean test images, as ``denoising_metrics`` reports it as clean_mse).

    python scripts/refiner_eval.py --n 2000 --seed 0 denoiser-unet my-refiner
"""

from __future__ import annotations

import argparse
import time

import torch

from fmnist_toolkit.data import DeviceSplit, to_unit_float
from fmnist_toolkit.engine.denoise import denoising_mse
from fmnist_toolkit.engine.gan_eval import _features_and_classes, frechet_distance
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.engine.sample import (
    load_denoiser,
    load_generator,
    sample_batches,
    sample_labels,
)
from fmnist_toolkit.storage import ModelStore

GENERATORS = ("gan-mlp", "gan-dcgan", "gan-dcgan-cond")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("denoisers", nargs="*")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--features", default="clf-ae-wide-16-ft")
    parser.add_argument("--generators", nargs="*", default=list(GENERATORS))
    args = parser.parse_args()
    started = time.perf_counter()
    store = ModelStore()
    classifier = load_model(args.features, store=store)
    test = DeviceSplit.load("test", args.data_dir, torch.device("cpu"))
    with torch.no_grad():
        reference = _features_and_classes(classifier, to_unit_float(test.images))[0].numpy()
        samples = {}
        for name in args.generators:
            generator = load_generator(name, store)
            labels = sample_labels(generator, args.n)
            samples[name] = torch.cat(
                [
                    raw
                    for raw, _ in sample_batches(
                        generator, None, args.n, args.seed, labels, truncation=1
                    )
                ]
            )

        def distance(images: torch.Tensor) -> float:
            features = torch.cat(
                [_features_and_classes(classifier, part)[0] for part in images.split(1000)]
            )
            return frechet_distance(features.numpy(), reference)

        rows = [("raw", {name: distance(images) for name, images in samples.items()}, None)]
        for denoiser_name in args.denoisers:
            denoiser = load_denoiser(denoiser_name, store)
            cleaned = {
                name: distance(
                    torch.cat([denoiser(part).clamp(0, 1) for part in images.split(1000)])
                )
                for name, images in samples.items()
            }
            clean = denoising_mse(denoiser, test, to_unit_float(test.images))
            rows.append((denoiser_name, cleaned, clean))
    print(f"N = {args.n}, seed {args.seed}, features {args.features}")
    print(f"{'denoiser':<32}" + "".join(f"{g:>16}" for g in args.generators) + f"{'clean':>12}")
    for label, distances, clean in rows:
        clean_text = "" if clean is None else f"{clean:.6f}"
        print(
            f"{label:<32}"
            + "".join(f"{distances[g]:>16.2f}" for g in args.generators)
            + f"{clean_text:>12}"
        )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
