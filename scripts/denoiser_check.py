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
from independent_judge import CACHE, Judge, train_judge, two_judges  # noqa: E402

sys.argv = _argv
from fmnist_toolkit.data import DeviceSplit, to_unit_float  # noqa: E402
from fmnist_toolkit.engine.model_io import load_model  # noqa: E402
from fmnist_toolkit.engine.sample import (  # noqa: E402
    load_denoiser,
    load_generator,
    sample_batches,
    sample_labels,
)
from fmnist_toolkit.storage import ModelStore  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 1
NAMES = (sys.argv[3] if len(sys.argv) > 3 else "denoiser-unet,ae-wide-64-denoise").split(",")
GENERATORS = sys.argv[4].split(",") if len(sys.argv) > 4 else None
DATA_DIR = str(Path(__file__).resolve().parents[2] / "shared" / "fashion-mnist")

torch.set_num_threads(1)
cpu = torch.device("cpu")
test = DeviceSplit.load("test", DATA_DIR, cpu)
judge = Judge()
if CACHE.exists():
    judge.load_state_dict(torch.load(CACHE))
else:
    judge = train_judge(DeviceSplit.load("train", DATA_DIR, cpu), test)
    torch.save(judge.state_dict(), CACHE)
judge.eval()
store = ModelStore()
ours = load_model("clf-ae-wide-16-ft", store=store)
denoisers = {name: load_denoiser(name, store) for name in NAMES}


def clean_with(model, images):
    return torch.cat([model(part).clamp(0, 1) for part in images.split(1000)])


with torch.no_grad():
    clean = to_unit_float(test.images)
    distances = two_judges(ours, judge, clean)
    for name, model in denoisers.items():
        change = (clean_with(model, clean) - clean).pow(2).mean()
        print(f"clean test images, {name}: mean squared change {change:.6f}", flush=True)
    settings = [("gan-dcgan-cond", 0.7), ("gan-dcgan-cond", 1.0), ("gan-dcgan", 1.0)]
    for generator_name, truncation in [*settings, ("gan-mlp", 1.0)]:
        if GENERATORS is not None and generator_name not in GENERATORS:
            continue
        generator = load_generator(generator_name, store)
        labels = sample_labels(generator, N)
        batches = sample_batches(generator, None, N, SEED, labels, truncation=truncation)
        raw = torch.cat([images for images, _ in batches])
        print(f"{generator_name} at {truncation}: raw {distances(raw)}", flush=True)
        for name, model in denoisers.items():
            cleaned = distances(clean_with(model, raw))
            print(f"{generator_name} at {truncation}: {name} {cleaned}", flush=True)
