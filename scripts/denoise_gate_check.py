"""Would denoising only the noisy-looking samples help? Fréchet distances (as `fmt gan eval`
computes them: N = 2,000, seed 0, features of clf-ae-wide-16-ft) of the bundled generators'
samples raw, all through the default denoiser, and through it only where the denoiser changes a
sample more than a quantile of its changes to the clean test images. Results: docs/gan.md.

Usage: python scripts/denoise_gate_check.py [DATA_DIR]
"""

import sys
import time

import torch

from fmnist_toolkit.data import DeviceSplit, to_unit_float
from fmnist_toolkit.engine.gan_eval import _features_and_classes, frechet_distance
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.engine.sample import (
    load_denoiser,
    load_generator,
    sample_batches,
    sample_labels,
)
from fmnist_toolkit.storage import ModelStore

N = 2000
DATA_DIR = sys.argv[1] if len(sys.argv) > 1 else "../shared/fashion-mnist"
t0 = time.time()
store = ModelStore()
clf = load_model("clf-ae-wide-16-ft", store=store)
test = DeviceSplit.load("test", DATA_DIR, torch.device("cpu"))
den = load_denoiser("denoiser-unet", store)


def feats(images):
    return torch.cat([_features_and_classes(clf, p)[0] for p in images.split(1000)]).numpy()


with torch.no_grad():
    clean = to_unit_float(test.images)
    ref = feats(clean)
    clean_change = torch.cat(
        [((den(p).clamp(0, 1) - p) ** 2).mean((1, 2, 3)) for p in clean.split(1000)]
    )
    qs = {q: clean_change.quantile(q).item() for q in (0.5, 0.9, 0.99)}
    qs["max"] = clean_change.max().item()
    print("clean change quantiles", {k: f"{v:.2e}" for k, v in qs.items()}, flush=True)
    for name in ("gan-dcgan-cond", "gan-dcgan", "gan-mlp"):
        g = load_generator(name, store)
        labels = sample_labels(g, N)
        raw = torch.cat([r for r, _ in sample_batches(g, None, N, 0, labels, truncation=1)])
        dn = torch.cat([den(p).clamp(0, 1) for p in raw.split(1000)])
        e = ((dn - raw) ** 2).mean((1, 2, 3))
        raw_distance = frechet_distance(feats(raw), ref)
        line = f"{name}: raw {raw_distance:.2f} full {frechet_distance(feats(dn), ref):.2f}"
        line += f" | sample change quantiles 0.5 {e.quantile(0.5):.2e} 0.9 {e.quantile(0.9):.2e}"
        # Thresholds: quantiles of the clean images' changes, then of the samples' own.
        thresholds = {f"gate>{k}": tau for k, tau in qs.items()}
        thresholds |= {f"top {1 - q:.0%} noisiest": e.quantile(q).item() for q in (0.5, 0.9)}
        for label, tau in thresholds.items():
            gate = (e > tau).float().view(-1, 1, 1, 1)
            out = raw + gate * (dn - raw)
            distance = frechet_distance(feats(out), ref)
            line += f" | {label}: {gate.mean():.2f} on, FD {distance:.2f}"
        print(line, f"({time.time() - t0:.0f}s)", flush=True)
