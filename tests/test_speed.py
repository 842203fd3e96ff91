"""The speed machinery on a CPU: checkpoints held in memory between writes, the generator
average inside the step, batches gathered once per epoch, the precision a run records, and
tuning trials in parallel processes. (The CUDA-graph replay itself is tested in test_gpu.py.)"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

from fmnist_toolkit.config import EngineConfig, GanTrainConfig
from fmnist_toolkit.data import DeviceSplit, shuffled_order
from fmnist_toolkit.engine import device as device_module
from fmnist_toolkit.engine.averaging import WeightAverage
from fmnist_toolkit.engine.callbacks import CheckpointCallback
from fmnist_toolkit.engine.gan import train_gan
from fmnist_toolkit.engine.graphs import accelerated_step, graph_ready
from fmnist_toolkit.engine.loop import Callback, LoopState, fit
from fmnist_toolkit.models.gan import DCGANGenerator
from fmnist_toolkit.storage import ModelStore
from tests.test_ae import InterruptAfter


def run_with_checkpoints(
    epochs: int, every_seconds: float, stop_after: int | None = None
) -> list[tuple[int, float]]:
    """Fit a one-weight 'model'; return (epoch, weight) of every checkpoint written."""
    weight = torch.zeros(1)
    written: list[tuple[int, float]] = []

    def step(batch: float) -> tuple[torch.Tensor, int]:
        weight.add_(1.0)  # the model keeps changing after each epoch's checkpoint is taken
        return torch.tensor(batch), 1

    def collect(state: LoopState):  # type: ignore[no-untyped-def]
        return {"weight": weight}, {"epoch": state.epoch, "history": state.history}

    def write(checkpoint) -> None:  # type: ignore[no-untyped-def]
        tensors, meta = checkpoint
        written.append((meta["epoch"], float(tensors["weight"])))

    checkpoints = CheckpointCallback(collect, write, every_seconds=every_seconds)
    callbacks: list[Callback] = [checkpoints]
    if stop_after is not None:
        callbacks.append(InterruptAfter(stop_after))
    with contextlib.suppress(KeyboardInterrupt):
        fit(
            step,
            lambda: [1.0, 2.0],
            LoopState(epochs=epochs, batches_per_epoch=2),
            callbacks=callbacks,
        )
    assert checkpoints.saved_epoch == written[-1][0]
    return written


def test_checkpoints_are_written_every_epoch_when_epochs_are_slow() -> None:
    assert run_with_checkpoints(3, every_seconds=0.0) == [(0, 0), (1, 2), (2, 4), (3, 6)]


def test_fast_epochs_are_held_in_memory_and_the_last_is_written_at_the_end() -> None:
    assert run_with_checkpoints(4, every_seconds=3600) == [(0, 0), (4, 8)]


def test_ctrl_c_writes_the_last_finished_epoch_held_in_memory() -> None:
    # Interrupted after epoch 2's callbacks: the copy taken at epoch 2 holds weight 4, not
    # whatever the model became after it.
    assert run_with_checkpoints(5, every_seconds=3600, stop_after=2) == [(0, 0), (2, 4)]


def test_generator_average_moves_each_weight_by_one_minus_decay_per_update() -> None:
    torch.manual_seed(0)
    generator = DCGANGenerator(latent_size=4, width=2)
    average = WeightAverage(generator, decay=0.9)
    expected = {name: value.clone() for name, value in generator.named_parameters()}
    for _ in range(3):
        with torch.no_grad():
            for parameter in generator.parameters():
                parameter.add_(torch.randn_like(parameter))
        average.update()
        for name, value in generator.named_parameters():
            expected[name] = expected[name] + 0.1 * (value.detach() - expected[name])
    for name, value in average.average.module.named_parameters():
        torch.testing.assert_close(value, expected[name])
    assert int(average.average.n_averaged) == 3


def test_an_epoch_is_gathered_once_in_the_seeded_order() -> None:
    images = torch.arange(10 * 28 * 28, dtype=torch.int64).remainder(256).to(torch.uint8)
    split = DeviceSplit(images.view(10, 28, 28), torch.arange(10))
    batches = list(split.batches(4, torch.Generator().manual_seed(3)))
    order = shuffled_order(10, torch.Generator().manual_seed(3))
    assert [len(labels) for _, labels in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([labels for _, labels in batches]), order)
    first_images = batches[0][0]
    assert first_images.shape == (4, 1, 28, 28) and first_images.dtype == torch.float32
    assert torch.equal(first_images[:, 0], split.images[order[:4]].float() / 255)


def test_off_cuda_steps_run_as_they_are() -> None:
    def step(batch):  # type: ignore[no-untyped-def]
        return batch

    cpu = torch.device("cpu")
    assert accelerated_step(step, cpu) is step
    optimizer = torch.optim.Adam([torch.zeros(2, requires_grad=True)], lr=0.1)
    assert graph_ready(optimizer, cpu, enabled=True) is False
    assert optimizer.param_groups[0]["lr"] == 0.1  # a number: nothing to capture on a CPU


def test_only_capturable_optimisers_are_made_ready_for_graphs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cuda = torch.device("cuda")
    weight = torch.zeros(2, requires_grad=True)
    sgd = torch.optim.SGD([weight], lr=0.1)
    assert graph_ready(sgd, cuda, enabled=True) is False  # its update reads the rate back
    assert sgd.param_groups[0]["lr"] == 0.1
    adam = torch.optim.Adam([weight], lr=0.1, capturable=True)
    assert graph_ready(adam, cuda, enabled=False) is False
    monkeypatch.setattr(torch, "tensor", lambda value, device: ("tensor", value, device))
    assert graph_ready(adam, cuda, enabled=True) is True
    assert adam.param_groups[0]["lr"] == ("tensor", 0.1, cuda)


def test_auto_precision_is_resolved_and_recorded(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = GanTrainConfig(
        architecture="mlp", latent_size=8, hidden_size=16, epochs=1, batch_size=64
    )
    store = ModelStore(tmp_path)
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    train_gan("native", recipe, EngineConfig(device="cpu"), data_dir=synthetic_data, store=store)
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    train_gan("plain", recipe, EngineConfig(device="cpu"), data_dir=synthetic_data, store=store)
    assert store.read_config("native")["engine"]["precision"] == "bf16"
    assert store.read_config("plain")["engine"]["precision"] == "fp32"


@pytest.mark.slow
def test_tune_jobs_runs_trials_in_parallel_processes(
    cli, synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FMT_HOME", str(tmp_path / "home"))
    common = ["ae", "tune", "--study", "par", "--data-dir", synthetic_data, "--device", "cpu"]
    common += ["--latent-dim", "4", "--epochs", "1", "--no-prune"]
    result = cli(*common, "--trials", "3", "--jobs", "2", "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["trials_run"] == 3 and report["counts"] == {"complete": 3}
    assert sorted(trial["number"] for trial in report["trials"]) == [0, 1, 2]
    again = cli(*common, "--trials", "0", "--json")
    assert json.loads(again.stdout)["counts"] == {"complete": 3}
    bad = cli(*common, "--trials", "2", "--jobs", "0")
    assert bad.exit_code == 2


def test_a_restored_fused_optimizer_steps_like_the_uninterrupted_one() -> None:
    from fmnist_toolkit.engine.checkpoint import optimizer_to_tensors, restore_optimizer

    def convolution() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)

    def gradients(model: torch.nn.Module, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        for parameter in model.parameters():
            parameter.grad = torch.randn(parameter.shape, generator=generator).to(
                memory_format=torch.channels_last
                if parameter.dim() == 4
                else torch.contiguous_format
            )

    straight, resumed = convolution(), convolution()
    optimizers = [torch.optim.Adam(m.parameters(), lr=0.1, fused=True) for m in (straight, resumed)]
    for seed in range(2):
        gradients(straight, seed)
        optimizers[0].step()
    tensors, meta = optimizer_to_tensors(optimizers[0])
    saved = {key: value.contiguous().clone() for key, value in tensors.items()}  # as a file gives
    resumed.load_state_dict(straight.state_dict())
    restore_optimizer(optimizers[1], saved, meta)
    gradients(straight, 2)
    gradients(resumed, 2)
    for optimizer in optimizers:
        optimizer.step()
    for ours, theirs in zip(resumed.parameters(), straight.parameters(), strict=True):
        assert torch.equal(ours, theirs)
