"""CUDA paths: float32, bf16 autocast and torch.compile train and match CPU's quality."""

from __future__ import annotations

from pathlib import Path

import pytest

from fmnist_toolkit.config import AutoencoderTrainConfig, EngineConfig
from fmnist_toolkit.engine.ae import train_autoencoder
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.storage import ModelStore

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize(
    ("precision", "compile_model"), [("fp32", False), ("bf16", False), ("fp32", True)]
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
