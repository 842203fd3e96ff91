"""The gate recipe: a denoiser that cleans only what looks generated (``fmt gan gate``).

A redrawing denoiser brings a weak generator's samples much closer to real clothes, and changes
every real photograph too. The recipe trains a small detector of one generator's samples
against the training images (binary cross-entropy, both sides quantised to 8 bits like the
dataset, so that rounding tells nothing), and saves the denoiser behind it
(:class:`fmnist_toolkit.models.denoiser.GatedDenoiser`): an image moves towards its cleaned
version by the detector's probability that the generator drew it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import (
    GATED_ARCHITECTURE,
    IMAGE_TO_IMAGE_KINDS,
    MIN_GATE_SAMPLES,
    EngineConfig,
    GateTrainConfig,
    ModelSpec,
    config_to_dict,
)
from fmnist_toolkit.data import (
    DeviceSplit,
    dataset_sha256,
    epoch_order,
    row_batches,
    split_indices,
    to_unit_float,
)
from fmnist_toolkit.engine import checkpoint as checkpointing
from fmnist_toolkit.engine.callbacks import Checkpoint
from fmnist_toolkit.engine.denoise import denoising_mse, generator_samples
from fmnist_toolkit.engine.device import (
    adam_options,
    autocast,
    place_model,
    resolve_device,
    resolve_engine,
    seed_everything,
)
from fmnist_toolkit.engine.graphs import accelerated_step, graph_ready
from fmnist_toolkit.engine.inference import INFERENCE_BATCH
from fmnist_toolkit.engine.loop import Callback, LoopState, Step, fit
from fmnist_toolkit.engine.model_io import check_state_dict, read_model_of_kind
from fmnist_toolkit.engine.run import TrainingRun, run_description
from fmnist_toolkit.errors import UsageError
from fmnist_toolkit.models import create_model
from fmnist_toolkit.storage import ModelStore

if TYPE_CHECKING:
    import torch
    from torch import nn

# Noise of the generator samples the detector learns from: far from the seeds samples are
# judged with (fmt gan eval --seed 0 or 1) and from the denoisers' clean samples.
GATE_SAMPLES_SEED = 1_000_005


@dataclass
class GateTrainResult:
    """What ``fmt gan gate`` reports."""

    name: str
    path: Path
    generator: str
    denoiser: str
    epochs: int
    val_accuracy: float
    generated_flagged: float  # held-out generator samples the detector takes for generated
    clean_flagged: float  # test images it takes for generated
    clean_mse: float  # mean squared change of the test images through the gated denoiser
    denoiser_clean_mse: float  # the same through the denoiser alone
    seconds: float
    device: str
    resumed_from_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def check_gate_config(config: GateTrainConfig) -> None:
    """Values that can never train: a usage error before any data is read."""
    if min(config.epochs, config.batch_size, config.width) < 1:
        raise UsageError("epochs, batch size and width must be at least 1")
    if config.samples < MIN_GATE_SAMPLES:
        raise UsageError(f"--samples must be at least {MIN_GATE_SAMPLES}")
    if not math.isfinite(config.lr) or config.lr <= 0:
        raise UsageError("the learning rate must be a finite number > 0")
    if not 0.01 <= config.val_fraction <= 0.5:
        raise UsageError("the validation fraction must be between 0.01 and 0.5")


@dataclass
class GateTraining:
    """What one gate run trains with: the gated model (only its detector learns), the
    optimiser, the seeded batch order and the (image, generated?) training and validation
    sets, uint8 on the device."""

    config: GateTrainConfig
    engine: EngineConfig
    device: torch.device
    model: nn.Module
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    images: torch.Tensor  # uint8 [N, 28, 28]: training images, then generator samples
    generated: torch.Tensor  # float [N]: 1 for a generator sample
    val_images: torch.Tensor
    val_generated: torch.Tensor

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images, generated = epoch_order((self.images, self.generated), self.shuffle)
        for batch, targets in row_batches((images, generated), self.config.batch_size):
            yield to_unit_float(batch), targets

    def step(self) -> Step:
        """Binary cross-entropy of the detector, with the batch accuracy."""
        import torch

        model, optimizer = self.model, self.optimizer
        device, precision = self.device, self.engine.precision

        def step(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, int]:
            images, targets = batch
            with autocast(device, precision):
                logits = model.generated_logits(images).float()
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            accuracy = ((logits.detach() > 0).float() == targets).float().mean()
            return torch.stack([loss.detach(), accuracy]), targets.shape[0]

        graphs = graph_ready(optimizer, device, enabled=self.engine.cuda_graphs)
        return accelerated_step(step, device, cuda_graphs=graphs, precision=precision)

    def generated_probability(self, images: torch.Tensor) -> torch.Tensor:
        """[N] detector probabilities of uint8 ``images``, in eval mode, in batches."""
        import torch

        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), autocast(self.device, self.engine.precision):
                return torch.cat(
                    [
                        torch.sigmoid(self.model.generated_logits(to_unit_float(part)).float())
                        for part in images.split(INFERENCE_BATCH)
                    ]
                )
        finally:
            self.model.train(was_training)

    def evaluate(self) -> dict[str, float]:
        """Accuracy on the held-out images and samples, and each side's share flagged."""
        flagged = self.generated_probability(self.val_images) > 0.5
        truth = self.val_generated > 0.5
        return {
            "val_accuracy": float((flagged == truth).float().mean()),
            "val_generated_flagged": float(flagged[truth].float().mean()),
            "val_clean_flagged": float(flagged[~truth].float().mean()),
        }

    def fit(self, state: LoopState, callbacks: Sequence[Callback]) -> None:
        fit(
            self.step(),
            self.batches,
            state,
            evaluate=self.evaluate,
            train_metric=("train_loss", "train_accuracy"),
            callbacks=callbacks,
        )

    def checkpoint(self) -> Checkpoint:
        return checkpointing.model_optimizer_and_order(self.model, self.optimizer, self.shuffle)

    def restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], label: str) -> None:
        checkpointing.restore_model_optimizer_and_order(
            self.model, self.optimizer, self.shuffle, tensors, meta, label
        )


def _source(name: str, config: dict[str, Any]) -> dict[str, Any]:
    """What a gate records of the generator or denoiser it was trained with."""
    return {"name": name, "weights_sha256": config.get("weights_sha256")}


def train_gate(
    name: str,
    config: GateTrainConfig,
    engine: EngineConfig,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    store: ModelStore | None = None,
    resume: bool = False,
    restart: bool = False,
    callbacks: Sequence[Callback] = (),
) -> GateTrainResult:
    """Train a detector of ``config.generator``'s samples in front of ``config.denoiser`` and
    save the gated denoiser as ``name`` (kind denoiser, architecture gated).

    The detector learns from the training images (not generated) and ``config.samples``
    samples of the generator at full variety (generated), a ``val_fraction`` of each held
    out; the test images are only measured, at the end: how many the detector flags, and how
    much the gated denoiser changes them. Checkpoints every epoch like every recipe.
    """
    store = store or ModelStore()
    with TrainingRun.exclusive(
        store, name, resume=resume, restart=restart, engine=engine, kind="denoiser"
    ) as run:
        config, engine = run.settings(GateTrainConfig, config, engine)
        check_gate_config(config)
        denoiser_tensors, denoiser_config, denoiser_label, denoiser_spec = read_model_of_kind(
            config.denoiser, IMAGE_TO_IMAGE_KINDS, store, hint="--denoiser needs one"
        )
        _, generator_config, _, _ = read_model_of_kind(
            config.generator, "generator", store, hint="--model needs one"
        )
        sources = {
            "generator": _source(config.generator, generator_config),
            "denoiser": _source(config.denoiser, denoiser_config),
        }
        if run.saved_value("sources", sources) != sources:
            raise UsageError(
                f"the generator or denoiser changed since the run of {name!r} was "
                "interrupted; start again with --restart"
            )

        import torch

        device = resolve_device(engine.device)
        engine = resolve_engine(engine, device, "gate")
        full_train = DeviceSplit.load("train", data_dir, device)
        data_sha256 = dataset_sha256(full_train.images, full_train.labels)
        test = DeviceSplit.load("test", data_dir, device)
        samples = generator_samples(
            (str(config.generator),), config.samples, store, device, seed=GATE_SAMPLES_SEED
        )
        real_train, real_val = split_indices(len(full_train), config.val_fraction, config.seed)
        fake_train, fake_val = split_indices(len(samples), config.val_fraction, config.seed)

        shuffle = seed_everything(config.seed)
        spec = ModelSpec(
            "denoiser",
            GATED_ARCHITECTURE,
            {"denoiser": config_to_dict(denoiser_spec), "width": config.width},
        )
        model = create_model(spec)
        check_state_dict(model.denoiser, denoiser_tensors, denoiser_label)
        model.denoiser.load_state_dict(denoiser_tensors)
        model = place_model(model, device)
        optimizer = torch.optim.Adam(
            model.detector.parameters(), lr=config.lr, **adam_options(device)
        )

        def labelled(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            images = torch.cat([full_train.images[real.to(device)], samples[fake.to(device)]])
            generated = torch.cat([torch.zeros(len(real)), torch.ones(len(fake))]).to(device)
            return images, generated

        images, generated = labelled(real_train, fake_train)
        val_images, val_generated = labelled(real_val, fake_val)
        training = GateTraining(
            config=config,
            engine=engine,
            device=device,
            model=model,
            optimizer=optimizer,
            shuffle=shuffle,
            images=images,
            generated=generated,
            val_images=val_images,
            val_generated=val_generated,
        )
        state = LoopState(config.epochs, -(-len(images) // config.batch_size))
        run.begin(
            training,
            state,
            description=run_description(spec, config, engine, sources=sources),
            data_sha256=data_sha256,
            device=device,
        )
        run.fit(lambda loop_callbacks: training.fit(state, loop_callbacks), callbacks)

        last = state.last
        clean_flagged = float((training.generated_probability(test.images) > 0.5).float().mean())
        clean = to_unit_float(test.images)  # "corrupted" by nothing: the change of clean images
        clean_mse = denoising_mse(model, test, clean, precision=engine.precision)
        denoiser_clean_mse = denoising_mse(model.denoiser, test, clean, precision=engine.precision)
        path = run.save(
            model.state_dict(),
            {
                "metrics": {
                    "val_accuracy": last["val_accuracy"],
                    "generated_flagged": last["val_generated_flagged"],
                    "clean_flagged": clean_flagged,
                    "clean_mse": clean_mse,
                    "denoiser_clean_mse": denoiser_clean_mse,
                }
            },
        )
    return GateTrainResult(
        name=name,
        path=path,
        generator=str(config.generator),
        denoiser=str(config.denoiser),
        epochs=state.epoch,
        val_accuracy=last["val_accuracy"],
        generated_flagged=last["val_generated_flagged"],
        clean_flagged=clean_flagged,
        clean_mse=clean_mse,
        denoiser_clean_mse=denoiser_clean_mse,
        seconds=run.seconds,
        device=run.device_name,
        resumed_from_epoch=run.resumed_from,
        history=state.history,
    )
