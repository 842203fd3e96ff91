"""Seconds per GAN epoch (batch 64, 4 epochs, ``fit`` alone) for engine variants, on a GPU.

    python benchmarks/gan_epoch_variants.py DATA_DIR mlp|dcgan group16|group1|bf16|eager|compile

``group16``: today's default (16 steps per CUDA graph); ``group1``: one step per graph;
``bf16``: bf16 autocast; ``eager``: no graphs; ``compile``: torch.compile of both networks.
``DEV=cpu LIMIT=640`` tries it on a CPU with 640 images. One JSON line (docs/benchmarks.md).
"""

import json
import os
import sys
import time

import torch

from fmnist_toolkit.config import EngineConfig, GanTrainConfig
from fmnist_toolkit.data import DeviceSplit
from fmnist_toolkit.engine import graphs
from fmnist_toolkit.engine.gan import GAN_METRICS, GanTraining
from fmnist_toolkit.engine.gan_step import batches_with_noise
from fmnist_toolkit.engine.loop import LoopState, fit

data = sys.argv[1]
arch = sys.argv[2]
variant = sys.argv[3]
dev = torch.device(os.environ.get("DEV", "cuda"))
train = DeviceSplit.load("train", data, dev)
if os.environ.get("LIMIT"):
    train = train.subset(torch.arange(int(os.environ["LIMIT"])))
cfg = GanTrainConfig.for_architecture(arch, epochs=4)
graphs.BATCHES_PER_CALL = 1 if variant == "group1" else 16
eng = EngineConfig(
    device=dev.type,
    precision="bf16" if variant == "bf16" else "fp32",
    cuda_graphs=variant != "eager",
)
run = GanTraining.build(cfg, eng, dev)
if variant.startswith("compile"):
    run.generator = torch.compile(run.generator, mode="max-autotune-no-cudagraphs")
    run.discriminator = torch.compile(run.discriminator, mode="max-autotune-no-cudagraphs")
state = LoopState(cfg.epochs, train.num_batches(cfg.batch_size))
t0 = time.perf_counter()
try:
    run.generator.train()
    run.discriminator.train()
    fit(
        run.step(),
        lambda: batches_with_noise(train, cfg.batch_size, run.shuffle, run.noise, cfg.latent_size),
        state,
        train_metric=GAN_METRICS,
    )
    torch.cuda.synchronize() if dev.type == "cuda" else None
    print(
        json.dumps(
            {
                "arch": arch,
                "variant": variant,
                "epoch_seconds": [round(r["seconds"], 3) for r in state.history],
                "last": {k: round(state.history[-1][k], 4) for k in GAN_METRICS},
                "total": round(time.perf_counter() - t0, 1),
            }
        )
    )
except Exception as error:
    print(json.dumps({"arch": arch, "variant": variant, "error": repr(error)[:300]}))
