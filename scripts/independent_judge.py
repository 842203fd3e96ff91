"""A second opinion on the denoisers: Fréchet distances in the feature space of a small CNN
trained from scratch (no autoencoder inside), beside `fmt gan eval`'s own (clf-ae-wide-16-ft,
whose encoder was an autoencoder's and so may favour images an autoencoder would draw).

The judge: four 3x3 convolutions (32, 32, 64, 128 channels, batch norm, two max-pools), global
average pooling and a 256-wide layer whose activations are the features; 4 epochs of Adam with a
one-cycle rate (peak 4e-3), batch 128, random left-right mirroring, seed 0 (91.7 % on the test
set). It is cached in CACHE and reused. Then, for each bundled generator (N = 2,000, seed 0,
full variety), the distance of the raw samples and of several cleanings, as "ours/judge's".
Results: docs/gan.md ("A second judge").

Usage: python scripts/independent_judge.py [DATA_DIR] [CACHE]
"""

import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from fmnist_toolkit.data import DeviceSplit, to_unit_float
from fmnist_toolkit.engine.gan_eval import _features_and_classes, frechet_distance
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.engine.sample import (
    load_denoiser,
    load_generator,
    sample_batches,
    sample_labels,
)
from fmnist_toolkit.models.denoiser import unsharp_mask
from fmnist_toolkit.storage import ModelStore

DATA_DIR = sys.argv[1] if len(sys.argv) > 1 else "../shared/fashion-mnist"
CACHE = Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp/independent-judge.pt")
N = 2000


class Judge(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

        self.features = nn.Sequential(
            *block(1, 32), *block(32, 32), nn.MaxPool2d(2),
            *block(32, 64), nn.MaxPool2d(2),
            *block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(128, 256), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(256, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def train_judge(train: DeviceSplit, test: DeviceSplit) -> Judge:
    torch.manual_seed(0)
    judge = Judge().to(memory_format=torch.channels_last)
    images, labels = to_unit_float(train.images), train.labels.long()
    epochs, batch = 4, 128
    optimizer = torch.optim.Adam(judge.parameters(), 2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, 4e-3, total_steps=epochs * (len(images) // batch)
    )
    for epoch in range(epochs):
        judge.train()
        order = torch.randperm(len(images))
        for start in range(0, len(images) - batch + 1, batch):
            index = order[start : start + batch]
            x = images[index]
            mirror = (torch.rand(len(x)) < 0.5).view(-1, 1, 1, 1)
            loss = F.cross_entropy(judge(torch.where(mirror, x.flip(3), x)), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        judge.eval()
        with torch.no_grad():
            predicted = torch.cat(
                [judge(p).argmax(1) for p in to_unit_float(test.images).split(1000)]
            )
        print(f"judge epoch {epoch}: test accuracy {(predicted == test.labels).float().mean():.4f}")
    return judge


def cleaned_by(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``images`` through a denoiser or autoencoder in batches of 1,000, in [0, 1]."""
    return torch.cat([model(part).clamp(0, 1) for part in images.split(1000)])


def two_judges(ours: nn.Module, judge: Judge, clean: torch.Tensor) -> Callable[[torch.Tensor], str]:
    """``distances(images)``: the Fréchet distances of ``images`` to ``clean`` as
    "ours/judge's", in the features of ``fmt gan eval``'s classifier and of the judge."""
    spaces = [
        lambda x: torch.cat([_features_and_classes(ours, p)[0] for p in x.split(1000)]),
        lambda x: torch.cat([judge.features(p) for p in x.split(1000)]).double(),
    ]
    references = [space(clean).numpy() for space in spaces]

    def distances(images: torch.Tensor) -> str:
        pairs = zip(spaces, references, strict=True)
        return "/".join(f"{frechet_distance(s(images).numpy(), r):.2f}" for s, r in pairs)

    return distances


def the_two_judges(
    store: ModelStore, data_dir: str = DATA_DIR
) -> tuple[Callable[[torch.Tensor], str], torch.Tensor]:
    """``distances(images)`` to the 10,000 test images in both feature spaces (``fmt gan
    eval``'s classifier and the judge, trained and cached in CACHE on first use), and those
    test images in [0, 1]."""
    cpu = torch.device("cpu")
    test = DeviceSplit.load("test", data_dir, cpu)
    judge = Judge()
    if CACHE.exists():
        judge.load_state_dict(torch.load(CACHE))
    else:
        judge = train_judge(DeviceSplit.load("train", data_dir, cpu), test)
        torch.save(judge.state_dict(), CACHE)
    judge.eval()
    ours = load_model("clf-ae-wide-16-ft", store=store)
    clean = to_unit_float(test.images)
    with torch.no_grad():
        return two_judges(ours, judge, clean), clean


def drawn(name: str, store: ModelStore, count: int, seed: int, truncation: float) -> torch.Tensor:
    """``count`` raw samples of the generator ``name`` in [0, 1], drawn as ``fmt gan eval``
    draws them (its seed, batches and class order)."""
    generator = load_generator(name, store)
    labels = sample_labels(generator, count)
    batches = sample_batches(generator, None, count, seed, labels, truncation=truncation)
    return torch.cat([images for images, _ in batches])


def main() -> None:
    torch.set_num_threads(1)
    started = time.time()
    store = ModelStore()
    distances, clean = the_two_judges(store)
    denoiser = load_denoiser("denoiser-unet", store)
    autoencoder = load_denoiser("ae-wide-16-onecycle", store)

    with torch.no_grad():
        reconstructed = cleaned_by(autoencoder, clean)
        print(
            "test images: ae",
            distances(reconstructed),
            "ae+sharpen 1",
            distances(unsharp_mask(reconstructed, 1.0)),
        )
        for name in ("gan-dcgan-cond", "gan-dcgan", "gan-mlp"):
            raw = drawn(name, store, N, 0, truncation=1)
            denoised = cleaned_by(denoiser, raw)
            redrawn = cleaned_by(autoencoder, raw)
            rows = {
                "raw": raw,
                "denoiser-unet": denoised,
                "denoiser-unet twice": cleaned_by(denoiser, denoised),
                "ae-wide-16-onecycle": redrawn,
                "ae + sharpen 1": unsharp_mask(redrawn, 1.0),
                "raw + sharpen 0.1": unsharp_mask(raw, 0.1),
            }
            for label, images in rows.items():
                print(f"{name}: {label} {distances(images)}", flush=True)
    print(f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
