"""Each bundled generator's samples raw and through each named denoiser, in two judges.

Usage: python scripts/denoiser_check.py [N] [SEED] [DENOISER,...] [GENERATOR,...]

For `gan-dcgan-cond` (at its recorded 0.7 and at 1), `gan-dcgan` and `gan-mlp` (or only the
GENERATORs named): the Fréchet
distance to the test images of N samples (seed SEED, drawn as `fmt gan eval` draws them), raw
and cleaned by each denoiser as bundled, in `fmt gan eval`'s feature space and in the second
judge's (scripts/independent_judge.py's small CNN, trained and cached on first use); also each
denoiser's mean squared change of the 10,000 clean test images. Results: docs/gan.md ("A
denoiser per generator").
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
_argv, sys.argv = sys.argv, sys.argv[:1]  # independent_judge reads its own arguments
from independent_judge import cleaned_by, drawn, the_two_judges  # noqa: E402

sys.argv = _argv
from fmnist_toolkit.engine.sample import load_denoiser  # noqa: E402
from fmnist_toolkit.storage import ModelStore  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 1
NAMES = (sys.argv[3] if len(sys.argv) > 3 else "denoiser-unet,denoiser-gan-mlp").split(",")
GENERATORS = sys.argv[4].split(",") if len(sys.argv) > 4 else None
DATA_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "fashion-mnist")

torch.set_num_threads(1)
store = ModelStore()
distances, clean = the_two_judges(store, DATA_DIR)
denoisers = {name: load_denoiser(name, store) for name in NAMES}


with torch.no_grad():
    for name, model in denoisers.items():
        change = (cleaned_by(model, clean) - clean).pow(2).mean()
        print(f"clean test images, {name}: mean squared change {change:.6f}", flush=True)
    settings = [("gan-dcgan-cond", 0.7), ("gan-dcgan-cond", 1.0), ("gan-dcgan", 1.0)]
    for generator_name, truncation in [*settings, ("gan-mlp", 1.0)]:
        if GENERATORS is not None and generator_name not in GENERATORS:
            continue
        raw = drawn(generator_name, store, N, SEED, truncation)
        print(f"{generator_name} at {truncation}: raw {distances(raw)}", flush=True)
        for name, model in denoisers.items():
            cleaned = distances(cleaned_by(model, raw))
            print(f"{generator_name} at {truncation}: {name} {cleaned}", flush=True)
