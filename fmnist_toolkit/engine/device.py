"""The one place that names devices: choice (auto/cpu/cuda/mps), autocast, compilation, seeding."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fmnist_toolkit.config import PRECISIONS, EngineConfig
from fmnist_toolkit.errors import DeviceUnavailableError, UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICE_ENV = "FMT_DEVICE"
_DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; an explicit device must exist here."""
    import torch

    spec = (spec or "auto").strip().lower()
    # Said when the device came from the environment, where a user would not look for it.
    from_env = os.environ.get(DEVICE_ENV, "").strip().lower() == spec
    instead = f"unset {DEVICE_ENV} or use --device cpu" if from_env else "use --device cpu"
    if not _DEVICE_PATTERN.fullmatch(spec):
        where = f" (from {DEVICE_ENV})" if from_env else ""
        raise UsageError(f"unknown device {spec!r}{where}; use auto, cpu, cuda, cuda:N or mps")
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {spec!r} asked for, but CUDA is not available here; {instead}"
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {spec!r} asked for, but this machine has "
                f"{torch.cuda.device_count()} CUDA device(s); {instead}"
            )
    if spec == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            f"device 'mps' asked for, but Apple MPS is not available here; {instead}"
        )
    return torch.device(spec)


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def describe_device(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)``, ``cpu``, ``mps``: what a person wants in a report."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return device.type


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; use one of: {', '.join(PRECISIONS)}")
    return precision


# Where ``--precision auto`` picks bf16: (device type, recipe) pairs measured faster in bf16 at
# the same quality by benchmarks/run.py (docs/benchmarks.md). Everything else runs float32. On a
# CPU only where it multiplies bf16 natively; emulated bf16 is slower than float32 there.
AUTO_BF16: frozenset[tuple[str, str]] = frozenset({("cpu", "gan")})


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The CPU's feature flags as Linux lists them; empty elsewhere."""
    try:
        lines = cpuinfo.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:  # not Linux: no portable way to tell
        return set()
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX), from its flags."""
    return bool(cpu_flags(cpuinfo) & set(CPU_BF16_FLAGS))


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast computes natively on ``device`` (MPS: never, here)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device, recipe: str) -> str:
    """``auto`` → tf32 on CUDA, bf16 where :data:`AUTO_BF16` lists (device, recipe) and the
    device has native bf16, else fp32; ``tf32`` is fp32 off CUDA; ``fp32`` and ``bf16`` are kept
    (bf16 on MPS computes in float32)."""
    if precision == "tf32":
        return "tf32" if device.type == "cuda" else "fp32"
    if precision != "auto":
        return check_precision(precision)
    if (device.type, recipe) in AUTO_BF16 and bf16_supported(device):
        return "bf16"
    return "tf32" if device.type == "cuda" else "fp32"


def resolve_engine(engine: EngineConfig, device: torch.device, recipe: str) -> EngineConfig:
    """``engine`` with its precision resolved (:func:`resolve_precision`) for ``device``."""
    return dataclasses.replace(
        engine, precision=resolve_precision(engine.precision, device, recipe)
    )


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast on CUDA and CPU when asked for; float32 otherwise (and always on MPS)."""
    import torch

    if check_precision(precision) == "bf16" and device.type in ("cuda", "cpu"):
        # No cache of cast weights: a CUDA graph must not capture a cache it cannot refill.
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext()


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Within: float32 matrix products on CUDA's TF32 tensor cores when ``precision`` is tf32
    (torch already lets cuDNN convolutions use them); torch's setting is restored after.

    At batch 64 the MLP GAN's 784x784 products take ~40 us each in strict float32 on an
    H100-class GPU and dominate its step (docs/benchmarks.md).
    """
    import torch

    if precision != "tf32":
        yield
        return
    matmul = torch.backends.cuda.matmul
    # torch >= 2.9 names the setting fp32_precision and refuses a mix with the older flag.
    setting, value = (
        ("fp32_precision", "tf32") if hasattr(matmul, "fp32_precision") else ("allow_tf32", True)
    )
    before = getattr(matmul, setting)
    setattr(matmul, setting, value)
    try:
        yield
    finally:
        setattr(matmul, setting, before)


def adam_options(device: torch.device) -> dict[str, bool]:
    """Keyword arguments that make torch's Adam fastest on ``device``.

    The fused kernel updates every weight in one pass: on a 2-core CPU about 6x faster per
    step than the default loop for the autoencoder and 11x for the MLP GAN's two optimisers
    (benchmarks/run.py; the arithmetic is Adam's, rounded in another order). On CUDA also
    capturable, so that a whole step can be replayed as a CUDA graph
    (:mod:`fmnist_toolkit.engine.graphs`). MPS: torch's default.
    """
    if device.type == "cuda":
        return {"fused": True, "capturable": True}
    if device.type == "cpu":
        return {"fused": True}
    return {}


def place_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a model to ``device`` in the memory layout that trains fastest there.

    On CPU, channels_last sends the transposed convolutions through oneDNN instead of the
    generic path: about 1.3x faster per training step of the seed autoencoder (benchmarks/);
    and narrow transposed convolutions compute their forward as a convolution plus a pixel
    shuffle (:mod:`fmnist_toolkit.engine.subpixel`; same weights, same backward).
    """
    import torch

    from fmnist_toolkit.engine.subpixel import use_subpixel_forward

    model = model.to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        use_subpixel_forward(model)
    return model


def maybe_compile(model: nn.Module, device: torch.device, enabled: bool) -> nn.Module:
    """``torch.compile`` on CUDA when asked for; the model itself elsewhere."""
    import torch

    if enabled and device.type == "cuda":
        return torch.compile(model)  # type: ignore[return-value]
    return model


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weights) and return the CPU generator that orders the batches."""
    import torch

    if not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be between 0 and 2^63 - 1, not {seed}")
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so wall-clock timings mean something."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
