"""One training epoch of the seed autoencoder: fmt's device-resident batches vs a DataLoader.

Both sides train the same model (same seed) with the same optimiser step, batch size and
device, in the same process; only the way batches reach the model differs:

- fmt: the split is one uint8 tensor on the device; a batch is an index slice made float there.
- textbook: torchvision's ``FashionMNIST`` dataset with ``ToTensor()`` and a shuffling
  ``DataLoader`` (PIL image per sample, collate, copy to the device).

Usage:
    python benchmarks/epoch_throughput.py --data-dir ../shared/fashion-mnist [--device cpu]
        [--repeats 3] [--workers 0] [--precision fp32|bf16] [--compile] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from fmnist_toolkit.config import AutoencoderTrainConfig
from fmnist_toolkit.data import SPLIT_FILES, DeviceSplit, find_file
from fmnist_toolkit.engine.ae import make_optimizer, reconstruction_step
from fmnist_toolkit.engine.device import (
    describe_device,
    maybe_compile,
    place_model,
    resolve_device,
    synchronize,
)
from fmnist_toolkit.engine.loop import LoopState, fit
from fmnist_toolkit.models import build_model


def torchvision_root(data_dir: Path, scratch: Path) -> Path:
    """torchvision wants decompressed files under <root>/FashionMNIST/raw/."""
    raw = scratch / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in SPLIT_FILES["train"] + SPLIT_FILES["test"]:
        source = find_file(data_dir, name)
        assert source is not None, f"no {name} in {data_dir}"
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as src, (raw / name).open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return scratch


def epoch_timer(device: torch.device, precision: str, compile_model: bool):
    """A function timing one epoch over ``batches()``; the model and optimiser persist across
    calls, so a compiled model compiles once (in the warm-up epoch)."""
    config = AutoencoderTrainConfig()
    torch.manual_seed(0)
    model = place_model(build_model("autoencoder", "seed", latent_dim=config.latent_dim), device)
    step = reconstruction_step(
        maybe_compile(model, device, compile_model),
        make_optimizer(model, config),
        precision=precision,
    )

    def timed_epoch(batches) -> float:
        state = LoopState(epochs=1, batches_per_epoch=0)
        synchronize(device)
        started = time.perf_counter()
        fit(step, batches, state, train_metric="train_mse")  # reads the loss once: a sync
        synchronize(device)
        return time.perf_counter() - started

    return timed_epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/fashion-mnist"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0])
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--skip-dataloader", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    device = resolve_device(args.device)
    train = DeviceSplit.load("train", args.data_dir, device)
    generator = torch.Generator().manual_seed(0)

    def ours():
        return train.batches(args.batch_size, generator)

    variants = {"fmt device-resident": ours}
    scratch = Path(tempfile.mkdtemp(prefix="fmt-bench-"))
    try:
        if not args.skip_dataloader:
            dataset = datasets.FashionMNIST(
                torchvision_root(args.data_dir, scratch),
                train=True,
                download=False,
                transform=transforms.ToTensor(),
            )
            for workers in args.workers:
                loader = DataLoader(
                    dataset,
                    batch_size=args.batch_size,
                    shuffle=True,
                    num_workers=workers,
                    pin_memory=device.type == "cuda",
                )

                def textbook(loader=loader):
                    for images, labels in loader:
                        yield images.to(device, non_blocking=True), labels.to(device)

                variants[f"DataLoader (num_workers={workers})"] = textbook

        results = {}
        for label, batches in variants.items():
            timed_epoch = epoch_timer(device, args.precision, args.compile)
            timed_epoch(batches)  # warm-up (and compilation)
            results[label] = statistics.median(timed_epoch(batches) for _ in range(args.repeats))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    ours_seconds = results["fmt device-resident"]
    report = {
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "precision": args.precision,
        "compile": args.compile,
        "repeats": args.repeats,
        "seconds_per_epoch": {k: round(v, 3) for k, v in results.items()},
        "speedup_vs": {
            k: round(v / ours_seconds, 2) for k, v in results.items() if v != ours_seconds
        },
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"device {report['device']}, {report['threads']} threads, batch {args.batch_size}, "
        f"{args.precision}{' + compile' if args.compile else ''}, median of {args.repeats}"
    )
    for label, seconds in results.items():
        ratio = f"{seconds / ours_seconds:5.2f}x" if label != "fmt device-resident" else "     "
        print(f"  {label:28s} {seconds:7.3f} s/epoch  {ratio}")


if __name__ == "__main__":
    main()
