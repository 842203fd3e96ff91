"""The bundled denoiser followed by an unsharp mask of several strengths, in two judges.

Usage: python scripts/sharpen_check.py [N] [SEED] [A,A,...]

For each bundled generator (`gan-dcgan-cond` at 0.7 and at 1, `gan-dcgan`, `gan-mlp`): the
Fréchet distance to the test images of N samples (seed SEED, drawn as `fmt gan eval` draws
them) raw, denoised by `denoiser-unet` as bundled, and denoised then sharpened by each A, in
`fmt gan eval`'s feature space and in the second judge's (scripts/independent_judge.py, whose
cached CNN it reuses); also the mean squared change of the 10,000 clean test images. The
sharpening is applied here by hand, so it measures A before a denoiser is saved with it.
Results: docs/gan.md ("Sharpening what it cleans").
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
_argv, sys.argv = sys.argv, sys.argv[:1]  # independent_judge reads its own arguments
from independent_judge import cleaned_by, drawn, the_two_judges  # noqa: E402

sys.argv = _argv
from fmnist_toolkit.engine.sample import load_denoiser  # noqa: E402
from fmnist_toolkit.models.denoiser import unsharp_mask  # noqa: E402
from fmnist_toolkit.storage import ModelStore  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 1
STRENGTHS = [float(a) for a in (sys.argv[3] if len(sys.argv) > 3 else "0.05,0.1,0.2").split(",")]
DATA_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "fashion-mnist")

torch.set_num_threads(1)
store = ModelStore()
distances, clean = the_two_judges(store, DATA_DIR)
denoiser = load_denoiser("denoiser-unet", store)
denoiser.sharpen = 0.0  # the U-Net and its threshold alone; the masks below are added by hand


with torch.no_grad():
    cleaned = cleaned_by(denoiser, clean)
    for strength in STRENGTHS:
        change = (unsharp_mask(cleaned, strength) - clean).pow(2).mean()
        print(f"clean test images, A = {strength}: mean squared change {change:.6f}", flush=True)
    settings = [("gan-dcgan-cond", 0.7), ("gan-dcgan-cond", 1.0), ("gan-dcgan", 1.0)]
    for name, truncation in [*settings, ("gan-mlp", 1.0)]:
        raw = drawn(name, store, N, SEED, truncation)
        denoised = cleaned_by(denoiser, raw)
        print(f"{name} at {truncation}: raw {distances(raw)}", flush=True)
        print(f"{name} at {truncation}: denoised {distances(denoised)}", flush=True)
        for strength in STRENGTHS:
            sharpened = distances(unsharp_mask(denoised, strength))
            print(f"{name} at {truncation}: denoised, A = {strength} {sharpened}", flush=True)
