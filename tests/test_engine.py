"""Device choice, the training loop and checkpoint serialisation."""

from __future__ import annotations

import io
import itertools

import pytest
import torch

from fmnist_toolkit.engine import device as device_module
from fmnist_toolkit.engine.checkpoint import optimizer_to_tensors, restore_optimizer
from fmnist_toolkit.engine.device import autocast, resolve_device, resolve_precision
from fmnist_toolkit.engine.loop import Callback, LoopState, fit
from fmnist_toolkit.errors import DeviceUnavailableError, UsageError


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected is None and not (torch.backends.mps.is_available()):
        assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "cuda:x", "tpu", "cpu0"])
def test_unknown_device_is_a_usage_error(spec: str) -> None:
    with pytest.raises(UsageError):
        resolve_device(spec)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FMT_DEVICE", raising=False)
    with pytest.raises(DeviceUnavailableError, match=r"; use --device cpu$"):
        resolve_device("cuda:1")
    monkeypatch.setenv("FMT_DEVICE", "cuda:1")  # from the environment: say where it came from
    with pytest.raises(DeviceUnavailableError, match=r"; unset FMT_DEVICE or use --device cpu$"):
        resolve_device("cuda:1")


def test_fp32_never_autocasts_and_bf16_does_on_cpu() -> None:
    with autocast(torch.device("cpu"), "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_auto_precision_needs_native_bf16_and_a_measured_gain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu, "gan") == "bf16"
    assert resolve_precision("auto", cpu, "autoencoder") == "fp32"  # not measured faster
    assert resolve_precision("fp32", cpu, "gan") == "fp32"  # forced
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu, "gan") == "fp32"  # emulated bf16 is slower
    assert resolve_precision("bf16", cpu, "gan") == "bf16"  # asked for: honoured
    with pytest.raises(UsageError):
        resolve_precision("fp16", cpu, "gan")


def test_auto_precision_is_tf32_on_cuda_and_tf32_means_fp32_elsewhere() -> None:
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    for recipe in ("autoencoder", "classifier", "gan"):
        assert resolve_precision("auto", cuda, recipe) == "tf32"
    assert resolve_precision("fp32", cuda, "gan") == "fp32"
    assert resolve_precision("tf32", cpu, "gan") == "fp32"  # recorded as what ran


def test_tf32_products_only_inside_the_context_and_restored_after() -> None:
    matmul = torch.backends.cuda.matmul
    setting = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    before = getattr(matmul, setting)
    with device_module.matmul_precision("tf32"):
        assert getattr(matmul, setting) in ("tf32", True)
    assert getattr(matmul, setting) == before
    with device_module.matmul_precision("fp32"):
        assert getattr(matmul, setting) == before


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in [
        ("avx2 avx512f avx512_bf16", True),
        ("avx2 amx_tile amx_bf16", True),
        ("avx2 fma", False),
    ]:
        cpuinfo.write_text(f"processor : 0\nflags\t\t: fpu {flags} sse2\n")
        assert device_module.cpu_has_native_bf16(cpuinfo) is native
    assert device_module.cpu_has_native_bf16(tmp_path / "missing") is False


class Recorder(Callback):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_fit_start(self, state: LoopState) -> None:
        self.events.append(f"start@{state.epoch}")

    def on_batch_end(self, state: LoopState) -> None:
        self.events.append("b")

    def on_epoch_end(self, state: LoopState) -> None:
        self.events.append(f"epoch{state.epoch}")

    def on_fit_end(self, state: LoopState) -> None:
        self.events.append("end")


def test_fit_runs_remaining_epochs_and_weights_the_loss_by_batch_size() -> None:
    recorder = Recorder()
    state = LoopState(epochs=3, batches_per_epoch=2, epoch=1)

    def step(batch: float) -> tuple[torch.Tensor, int]:
        return torch.tensor(batch), 3 if batch == 1.0 else 1

    fit(step, lambda: [1.0, 5.0], state, evaluate=lambda: {"val": 7.0}, callbacks=[recorder])
    assert recorder.events == ["start@1", "b", "b", "epoch2", "b", "b", "epoch3", "end"]
    assert [row["epoch"] for row in state.history] == [2, 3]
    assert state.history[0]["train_loss"] == pytest.approx((1.0 * 3 + 5.0) / 4)
    assert state.history[0]["val"] == 7.0


def test_fit_hands_a_grouped_step_lists_of_batches_and_counts_each_batch() -> None:
    calls: list[list[float]] = []
    batch_counts: list[int] = []

    class GroupedStep:
        batches_per_call = 2

        def __call__(self, batches: list[float]) -> tuple[torch.Tensor, int]:
            calls.append(batches)
            return torch.tensor(sum(batches) / len(batches)), len(batches)

    class Counter(Callback):
        def on_batch_end(self, state: LoopState) -> None:
            batch_counts.append(state.batch)

    state = LoopState(epochs=1, batches_per_epoch=5)
    fit(GroupedStep(), lambda: [1.0, 2.0, 3.0, 4.0, 5.0], state, callbacks=[Counter()])
    assert calls == [[1.0, 2.0], [3.0, 4.0], [5.0]]
    assert batch_counts == [2, 4, 5]
    assert state.history[0]["train_loss"] == pytest.approx(3.0)


def test_the_progress_bar_counts_the_batches_of_grouped_calls() -> None:
    from rich.console import Console

    from fmnist_toolkit.engine.callbacks import ProgressCallback

    console = Console(file=io.StringIO(), force_terminal=True)
    progress = ProgressCallback(console, label="t")
    state = LoopState(epochs=2, batches_per_epoch=5, epoch=1)
    progress.on_fit_start(state)
    state.batch = 4
    progress.on_batch_end(state)
    assert progress._progress.tasks[0].completed == 9  # type: ignore[union-attr]
    progress.on_fit_end(state)


def test_fit_end_runs_when_interrupted() -> None:
    recorder = Recorder()

    def step(batch: float) -> tuple[torch.Tensor, int]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(step, lambda: [1.0], LoopState(epochs=1, batches_per_epoch=1), callbacks=[recorder])
    assert recorder.events == ["start@0", "end"]


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizer_state_round_trips_without_pickle(name: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    make = {
        "adam": lambda p: torch.optim.Adam(p, lr=0.1),
        "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9),
    }[name]
    optimizer = make(model.parameters())
    for _ in range(2):
        model(torch.randn(4, 3)).sum().backward()
        optimizer.step()
    tensors, meta = optimizer_to_tensors(optimizer)
    import json

    meta = json.loads(json.dumps(meta))  # what the checkpoint's JSON gives back
    fresh = make(model.parameters())
    restore_optimizer(fresh, tensors, meta)
    original, restored = optimizer.state_dict(), fresh.state_dict()
    for index, slots in original["state"].items():
        for slot, value in slots.items():
            other = restored["state"][index][slot]
            assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other


def test_onecycle_and_warmup_cosine_change_the_rate_every_batch() -> None:
    """The rates a fit sees, batch by batch: one-cycle climbs from peak/25 to the peak at 30 %
    of the steps and ends near 0; warm-up + cosine climbs linearly, then decays to 0."""
    from fmnist_toolkit.engine.callbacks import LearningRateSchedule

    def rates_of(schedule: str, epochs: int = 4, batches: int = 5) -> list[float]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        callback = LearningRateSchedule(optimizer, schedule)
        seen: list[float] = []

        def step(batch: object) -> tuple[torch.Tensor, int]:
            seen.append(float(optimizer.param_groups[0]["lr"]))
            return torch.zeros(()), 1

        fit(step, lambda: range(batches), LoopState(epochs, batches), callbacks=[callback])
        return seen

    onecycle = rates_of("onecycle")
    # torch's OneCycleLR with its defaults gives the same rates, step for step.
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    reference = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=0.1, total_steps=20, cycle_momentum=False
    )
    expected = []
    for _ in range(20):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        reference.step()
    assert onecycle == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert onecycle[0] == pytest.approx(0.1 / 25) and onecycle[-1] == pytest.approx(0.1 / 25e4)
    assert max(onecycle) == pytest.approx(0.1)
    warmup = rates_of("warmup-cosine")
    assert warmup[0] == pytest.approx(0.1)  # 5 % of 20 steps: one warm-up step
    assert rates_of("warmup-cosine", epochs=20, batches=10)[:5] == pytest.approx(
        [0.01, 0.02, 0.03, 0.04, 0.05]
    )
    assert all(a >= b for a, b in itertools.pairwise(warmup))
    assert warmup[-1] < 0.1 * 0.01


def test_per_batch_schedule_depends_on_the_position_alone() -> None:
    """A resumed run (a fresh callback, started at epoch 2) sets the rates an uninterrupted
    one would."""
    from fmnist_toolkit.engine.callbacks import LearningRateSchedule

    def rate_at(epoch: int, batch: int) -> float:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        callback = LearningRateSchedule(optimizer, "onecycle")
        state = LoopState(epochs=4, batches_per_epoch=5, epoch=epoch)
        callback.on_epoch_start(state)
        for done in range(1, batch + 1):
            state.batch = done
            callback.on_batch_end(state)
        return float(optimizer.param_groups[0]["lr"])

    from fmnist_toolkit.engine.callbacks import schedule_factor

    for epoch, batch in ((0, 0), (2, 0), (2, 3), (3, 4)):
        step = epoch * 5 + batch
        assert rate_at(epoch, batch) == pytest.approx(0.1 * schedule_factor("onecycle", step, 20))


def test_cosine_schedule_decays_to_zero_from_the_epoch_alone() -> None:
    from fmnist_toolkit.engine.callbacks import LearningRateSchedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    cosine = LearningRateSchedule(optimizer, "cosine")
    rates = []
    for epoch in range(4):
        cosine.on_epoch_start(LoopState(epochs=4, batches_per_epoch=1, epoch=epoch))
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2])


def test_a_saved_config_loads_equal_to_the_one_saved() -> None:
    """Through JSON and back, tuple fields included (JSON writes them as lists): the report's
    retraining reuses a stage only when the saved recipe equals the one it would run."""
    import dataclasses
    import json

    from fmnist_toolkit.config import AutoencoderTrainConfig, TuneConfig, config_from_dict

    for config in (
        AutoencoderTrainConfig(epochs=3, clean_samples=("gan-dcgan",)),
        AutoencoderTrainConfig(),
        TuneConfig(study="s", search=("schedule", "batch-size")),
    ):
        saved = json.loads(json.dumps(dataclasses.asdict(config)))
        assert config_from_dict(type(config), saved) == config


def test_configs_saved_before_the_new_fields_load_as_the_recipes_they_were() -> None:
    """A saved recipe without schedule (autoencoder) or without the classifier's tools loads
    with them off: the report's recipes."""
    import json

    from fmnist_toolkit.config import (
        AutoencoderTrainConfig,
        ClassifierTrainConfig,
        config_from_dict,
    )
    from fmnist_toolkit.storage import BUNDLED_ROOT

    bundled_ae = json.loads((BUNDLED_ROOT / "ae-16" / "config.json").read_text())["recipe"]
    assert "schedule" not in bundled_ae
    assert config_from_dict(AutoencoderTrainConfig, bundled_ae).schedule == "constant"
    saved = json.loads((BUNDLED_ROOT / "clf-ae-wide-16-ft" / "config.json").read_text())
    recipe = config_from_dict(ClassifierTrainConfig, saved["recipe"])
    assert (recipe.schedule, recipe.label_smoothing, recipe.mixup, recipe.cutout) == (
        "constant",
        0.0,
        0.0,
        0,
    )
    assert (recipe.ema, recipe.tta_flip, recipe.augment_codes) == (0.0, False, False)
    assert "tta_flip" not in saved["model"]["params"]


def test_a_network_too_large_for_memory_is_said_plainly() -> None:
    """torch's allocator error names a C++ source line; the user gets what it means."""
    from fmnist_toolkit.errors import ModelCorruptError
    from fmnist_toolkit.models import build_model

    with pytest.raises(ModelCorruptError, match=r"^generator/mlp with latent_size 10+ does not"):
        build_model("generator", "mlp", latent_size=10**11)
