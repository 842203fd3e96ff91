"""Seconds per training epoch of each GAN architecture, from timed adversarial steps.

Times ``--batches`` steps (one discriminator and one generator update each) of the recipe's
own step function at the default batch size, after a warm-up, and scales to one epoch of the
60,000 training images. Images are random tensors: the cost of a step does not depend on them.

Usage:
    python benchmarks/gan_step.py [--device cpu] [--batches 40] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from fmnist_toolkit.config import GanTrainConfig
from fmnist_toolkit.engine.device import describe_device, place_model, resolve_device, synchronize
from fmnist_toolkit.engine.gan import adversarial_step, build_network

VARIANTS = {
    "mlp (h 784)": GanTrainConfig(architecture="mlp"),
    "dcgan (width 64)": GanTrainConfig(architecture="dcgan", width=64),
    "dcgan (width 32)": GanTrainConfig(architecture="dcgan", width=32),
}


def seconds_per_epoch(config: GanTrainConfig, device: torch.device, batches: int) -> float:
    torch.manual_seed(0)
    generator = place_model(build_network(config.generator_spec()), device)
    discriminator = place_model(build_network(config.discriminator_spec()), device)
    optimizers = tuple(
        torch.optim.Adam(network.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
        for network in (generator, discriminator)
    )
    step = adversarial_step(generator, discriminator, optimizers, torch.Generator().manual_seed(1))
    batch = (torch.rand(config.batch_size, 1, 28, 28, device=device), None)
    for _ in range(5):
        step(batch)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(batches):
        step(batch)
    synchronize(device)
    per_batch = (time.perf_counter() - started) / batches
    return per_batch * -(-60_000 // config.batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    results = {
        name: round(seconds_per_epoch(config, device, args.batches), 2)
        for name, config in VARIANTS.items()
    }
    record = {
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "batch_size": dataclasses.asdict(GanTrainConfig())["batch_size"],
        "seconds_per_epoch": results,
    }
    if args.json:
        print(json.dumps(record))
    else:
        for name, seconds in results.items():
            print(f"{name:>18}: {seconds:8.1f} s/epoch on {record['device']}")


if __name__ == "__main__":
    main()
