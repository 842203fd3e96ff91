"""Re-measure every bundled autoencoder, denoiser and classifier on the test set, as a new
user would.

Usage: python scripts/measure_bundled.py --data-dir DIR [--device cpu] [--json]

Autoencoders and denoisers through ``fmnist_toolkit.load_model`` (test MSE per pixel; for one
trained to denoise, its denoising test MSE and how much it changes clean test images; for a
gated denoiser, which only the generator's samples are meant to change, the latter), classifiers
through ``fmt clf eval``'s library call (test accuracy); each beside the figure its config
recorded when it was trained. Run it from a fresh install with an empty ``FMT_HOME`` so that
only the bundled models are seen.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import torch

    import fmnist_toolkit
    from fmnist_toolkit.config import GATED_ARCHITECTURE
    from fmnist_toolkit.data import DeviceSplit
    from fmnist_toolkit.engine.ae import reconstruction_mse
    from fmnist_toolkit.engine.clf_eval import evaluate_classifier
    from fmnist_toolkit.engine.defaults import trained_to_denoise
    from fmnist_toolkit.engine.denoise import corrupted_test_images, denoising_metrics
    from fmnist_toolkit.storage import ModelStore

    device = torch.device(args.device)
    test = DeviceSplit.load("test", args.data_dir, device)
    rows = []
    for model in ModelStore().available():
        if model.source != "bundled" or model.kind not in ("autoencoder", "denoiser", "classifier"):
            continue
        recorded = model.config.get("metrics", {})
        gated = model.config.get("model", {}).get("architecture") == GATED_ARCHITECTURE
        if gated or trained_to_denoise(model.config):
            network = fmnist_toolkit.load_model(model.name, device=args.device)
            measured = denoising_metrics(network, test, corrupted_test_images(test))
            # A gate is meant to change its generator's samples only: its figure is the change
            # of clean images (it records no denoising test MSE).
            figures = [("clean_mse", "clean change")]
            if not gated:
                figures.insert(0, ("test_mse", "denoising test MSE"))
            for key, metric in figures:
                rows.append((model.name, metric, recorded.get(key), measured[key]))
        elif model.kind == "autoencoder":
            network = fmnist_toolkit.load_model(model.name, device=args.device)
            measured = reconstruction_mse(network, test)
            rows.append((model.name, "test MSE", recorded.get("test_mse"), measured))
        else:
            metrics = evaluate_classifier(model.name, data_dir=args.data_dir, device=args.device)
            rows.append(
                (model.name, "test accuracy", recorded.get("test_accuracy"), metrics.accuracy)
            )
    if args.json:
        print(
            json.dumps(
                [
                    dict(zip(("model", "metric", "recorded", "measured"), row, strict=True))
                    for row in rows
                ]
            )
        )
        return
    print("| model | metric | recorded when trained | re-measured |")
    print("| --- | --- | --- | --- |")
    for name, metric, recorded, measured in rows:
        shown = f"{recorded:.6f}" if isinstance(recorded, float) else "—"
        print(f"| `{name}` | {metric} | {shown} | {measured:.6f} |")


if __name__ == "__main__":
    main()
