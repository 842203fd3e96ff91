"""CUDA paths: float32, bf16 autocast and torch.compile train and match CPU's quality."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.storage import ModelStore

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def small_graph_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    """Groups of two batches captured at their second call: the synthetic data's few batches
    per epoch then go through capture, replay and an epoch's short last group."""
    from fmnist_toolkit.engine import graphs

    monkeypatch.setattr(graphs, "BATCHES_PER_CALL", 2)
    monkeypatch.setattr(graphs, "WARMUP_CALLS", 1)


@pytest.mark.parametrize(
    ("precision", "compile_model"),
    [("fp32", False), ("tf32", False), ("bf16", False), ("fp32", True)],
)
def test_trains_on_cuda(synthetic_data: Path, tmp_path: Path, precision: str, compile_model: bool):
    store = ModelStore(tmp_path)
    config = AutoencoderTrainConfig(latent_dim=4, epochs=3, batch_size=64, lr=3e-3)
    engine = EngineConfig(device="cuda", precision=precision, compile=compile_model)
    result = train_autoencoder("gpu", config, engine, data_dir=synthetic_data, store=store)
    assert result.device.startswith("cuda:0")
    assert result.history[-1]["test_mse"] < result.history[0]["test_mse"]
    model = load_model("gpu", store=store)
    assert next(model.parameters()).device.type == "cpu"


def test_same_seed_same_metrics_on_cuda(synthetic_data: Path, tmp_path: Path) -> None:
    config = AutoencoderTrainConfig(latent_dim=4, epochs=2, batch_size=64, lr=3e-3)
    runs = [
        train_autoencoder(
            "g",
            config,
            EngineConfig(device="cuda"),
            data_dir=synthetic_data,
            store=ModelStore(tmp_path / str(i)),
        )
        for i in range(2)
    ]
    assert runs[0].test_mse == pytest.approx(runs[1].test_mse, rel=1e-4)


def _ae_run(data: Path, store: ModelStore, graphs: bool, callbacks=(), schedule="cosine"):  # type: ignore[no-untyped-def]
    config = AutoencoderTrainConfig(
        latent_dim=4, epochs=3, batch_size=48, lr=3e-3, schedule=schedule
    )
    engine = EngineConfig(device="cuda", precision="fp32", cuda_graphs=graphs)
    return train_autoencoder("g", config, engine, data_dir=data, store=store, callbacks=callbacks)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_cuda_graphs_train_the_autoencoder_as_eager_steps_do(
    synthetic_data: Path, tmp_path: Path, schedule: str
) -> None:
    # batch 48 leaves a short last batch (eager) beside the replayed ones; cosine moves lr
    # every epoch, onecycle every batch (in the optimiser's device tensor).
    graphed = _ae_run(synthetic_data, ModelStore(tmp_path / "g"), graphs=True, schedule=schedule)
    eager = _ae_run(synthetic_data, ModelStore(tmp_path / "e"), graphs=False, schedule=schedule)
    for ours, theirs in zip(graphed.history, eager.history, strict=True):
        assert ours["train_mse"] == pytest.approx(theirs["train_mse"], rel=1e-4)
        assert ours["test_mse"] == pytest.approx(theirs["test_mse"], rel=1e-4)


def test_cuda_graphs_resume_exactly(synthetic_data: Path, tmp_path: Path) -> None:
    from fmnist_toolkit.errors import TrainingInterrupted
    from tests.test_ae import InterruptAfter

    store = ModelStore(tmp_path / "resumed")
    with pytest.raises(TrainingInterrupted):
        _ae_run(synthetic_data, store, graphs=True, callbacks=[InterruptAfter(1)])
    config = AutoencoderTrainConfig(
        latent_dim=4, epochs=3, batch_size=48, lr=3e-3, schedule="cosine"
    )
    resumed = train_autoencoder(
        "g", config, EngineConfig(device="cuda"), data_dir=synthetic_data, store=store, resume=True
    )
    straight = _ae_run(synthetic_data, ModelStore(tmp_path / "straight"), graphs=True)
    assert resumed.resumed_from_epoch == 1
    assert resumed.test_mse == pytest.approx(straight.test_mse, rel=1e-4)


@pytest.mark.parametrize("architecture", ["mlp", "dcgan"])
def test_cuda_graphs_train_the_gan_and_its_average_as_eager_steps_do(
    synthetic_data: Path, tmp_path: Path, architecture: str
) -> None:
    import torch

    from fmnist_toolkit.config import GanTrainConfig
    from fmnist_toolkit.engine.gan import train_gan

    recipe = GanTrainConfig(
        architecture=architecture,
        latent_size=8,
        hidden_size=32,
        width=4,
        epochs=1,
        batch_size=48,
        lr=2e-4,
        ema=0.9,
    )
    weights = []
    for graphs in (True, False):
        store = ModelStore(tmp_path / str(graphs))
        engine = EngineConfig(device="cuda", precision="fp32", cuda_graphs=graphs)
        train_gan("g", recipe, engine, data_dir=synthetic_data, store=store)
        weights.append(store.load("g")[0])
    # Adversarial training amplifies float rounding (cuBLAS may pick other kernels inside a
    # capture), so the two runs agree closely, not to the bit.
    for key, value in weights[0].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, weights[1][key], rtol=1e-2, atol=2e-3)


def test_cuda_graphs_train_the_conditional_hinge_spectral_norm_gan_as_eager_steps_do(
    synthetic_data: Path, tmp_path: Path
) -> None:
    """Issue #16's step (hinge loss, spectral norm's power iteration, the projection
    discriminator, two learning rates) captured with the fused capturable Adam."""
    import torch

    from fmnist_toolkit.config import GanTrainConfig
    from fmnist_toolkit.engine.gan import train_gan

    recipe = GanTrainConfig(
        architecture="dcgan", latent_size=8, width=4, epochs=2, batch_size=48, lr=1e-4,
        d_lr=4e-4, beta1=0.0, beta2=0.9, ema=0.9, loss="hinge", spectral_norm=True,
        conditional=True,
    )  # fmt: skip
    weights = []
    for graphs in (True, False):
        store = ModelStore(tmp_path / str(graphs))
        engine = EngineConfig(device="cuda", precision="fp32", cuda_graphs=graphs)
        result = train_gan("g", recipe, engine, data_dir=synthetic_data, store=store)
        assert all(torch.isfinite(torch.tensor(list(result.final.values()))))
        weights.append(store.load("g")[0])
    for key, value in weights[0].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, weights[1][key], rtol=1e-2, atol=2e-3)
    generator = load_model("g", store=ModelStore(tmp_path / "True"), device="cuda")
    images = generator(torch.randn(4, 8, device="cuda"), torch.tensor([0, 3, 7, 9], device="cuda"))
    assert images.shape == (4, 1, 28, 28)


@pytest.mark.parametrize("tools", [{}, {"schedule": "onecycle", "label_smoothing": 0.1,
                                       "mixup": 0.2, "cutout": 8, "ema": 0.9, "tta_flip": True}],
                         ids=["plain", "tools"])  # fmt: skip
def test_cuda_graphs_train_the_classifier_as_eager_steps_do(
    synthetic_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tools: dict
) -> None:
    from fmnist_toolkit.config import ClassifierTrainConfig
    from fmnist_toolkit.engine.clf import train_classifier

    monkeypatch.setenv("FMT_BUNDLED_MODELS", "1")  # the encoder: the bundled ae-16
    results = []
    for graphs in (True, False):
        config = ClassifierTrainConfig(
            encoder="ae-16", epochs=2, batch_size=48, unfreeze=True, **tools
        )
        engine = EngineConfig(device="cuda", precision="fp32", cuda_graphs=graphs)
        store = ModelStore(tmp_path / str(graphs))
        results.append(train_classifier("c", config, engine, data_dir=synthetic_data, store=store))
    for ours, theirs in zip(results[0].history, results[1].history, strict=True):
        # cuBLAS may pick other kernels inside a capture: close, not bit-identical.
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-3)
        assert ours["val_accuracy"] == pytest.approx(theirs["val_accuracy"], abs=0.02)


def test_the_reports_sgd_trains_eagerly_on_cuda(synthetic_data: Path, tmp_path: Path) -> None:
    # Plain SGD reads its rate back to the host: its steps are not captured, and still train.
    config = AutoencoderTrainConfig(latent_dim=4, epochs=3, batch_size=48, optimizer="sgd", lr=0.05)
    result = train_autoencoder(
        "s",
        config,
        EngineConfig(device="cuda"),
        data_dir=synthetic_data,
        store=ModelStore(tmp_path),
    )
    assert result.history[-1]["test_mse"] < result.history[0]["test_mse"]


def test_a_gate_trains_on_cuda_as_on_the_cpu(synthetic_data: Path, tmp_path: Path) -> None:
    """`fmt gan gate` on CUDA (device-resident samples, captured steps) meets the bars it
    meets on the CPU, and its saved model runs on the CPU."""
    import torch

    from fmnist_toolkit.config import GanTrainConfig, GateTrainConfig
    from fmnist_toolkit.engine.gan import train_gan
    from fmnist_toolkit.engine.gate import train_gate

    store = ModelStore(tmp_path)
    cpu = EngineConfig(device="cpu")
    generator = GanTrainConfig(latent_size=8, hidden_size=32, epochs=1, batch_size=64)
    train_gan("gan-tiny", generator, cpu, data_dir=synthetic_data, store=store)
    denoiser = AutoencoderTrainConfig(epochs=1, batch_size=64, objective="denoise")
    train_autoencoder("ae-dn", denoiser, cpu, data_dir=synthetic_data, store=store)
    config = GateTrainConfig(
        generator="gan-tiny", denoiser="ae-dn", epochs=8, batch_size=64, lr=1e-2, width=4,
        samples=256,
    )  # fmt: skip
    results = {}
    for device in ("cuda", "cpu"):
        engine = EngineConfig(device=device)
        results[device] = train_gate(
            f"gated-{device}", config, engine, data_dir=synthetic_data, store=store
        )
    assert results["cuda"].device.startswith("cuda:0")
    for result in results.values():
        assert result.generated_flagged >= 0.9 and result.clean_flagged <= 0.1
        assert result.clean_mse < 0.1 * result.denoiser_clean_mse
    model = load_model("gated-cuda", store=store)
    images = torch.rand(4, 1, 28, 28)
    assert model(images).shape == images.shape
