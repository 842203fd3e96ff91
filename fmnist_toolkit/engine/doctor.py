"""``fmt doctor``: what this installation runs on, where it keeps things, and whether they are
intact — the facts a bug report needs."""

from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.engine.device import CPU_BF16_FLAGS, CPUINFO, cpu_flags, cpu_has_native_bf16

if TYPE_CHECKING:
    from fmnist_toolkit.storage import ModelStore

PACKAGES = ("fmnist-toolkit", "torch", "typer", "rich", "optuna")


@dataclass
class Diagnosis:
    """Versions, devices, paths and checks; ``problems`` lists what is broken."""

    versions: dict[str, str | None]
    devices: list[dict[str, Any]]
    cpu: dict[str, Any]
    store: str
    data_dir: str
    data_dir_from: str  # "--data-dir", "FMT_DATA_DIR" or "default"
    data: str  # "verified", "not fetched" or every file's problem
    bundled: dict[str, str]  # name -> "verified" or its problem
    bundled_setting: str | None = None  # FMT_BUNDLED_MODELS, when set
    problems: list[str] = field(default_factory=list)


def package_versions() -> dict[str, str | None]:
    """Python and the installed versions of the packages that matter (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def cpu_features(cpuinfo: Path = CPUINFO) -> dict[str, Any]:
    """The CPU's name, torch's SIMD level and whether it computes bfloat16 natively (what
    ``--precision auto`` goes by: without it bf16 is emulated and slower than float32)."""
    import torch

    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):  # not Linux: no model name to read
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                name = value.strip()
                break
    native = sorted(cpu_flags(cpuinfo) & set(CPU_BF16_FLAGS))
    return {
        "name": name,
        "cores": os.cpu_count(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(cpuinfo),
        "bf16_flags": native,
    }


def devices(problems: list[str] | None = None) -> list[dict[str, Any]]:
    """Every device --device can name here, with what auto picks (``auto``) and what commands
    use without --device (``default``: FMT_DEVICE's, else auto's). An FMT_DEVICE that names no
    device here is added to ``problems``."""
    import torch

    from fmnist_toolkit.engine.device import DEVICE_ENV, resolve_device
    from fmnist_toolkit.errors import ToolkitError

    found: list[dict[str, Any]] = [{"device": "cpu", "name": "CPU"}]
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        properties = torch.cuda.get_device_properties(index)
        found.append(
            {
                "device": f"cuda:{index}",
                "name": properties.name,
                "memory_gib": round(properties.total_memory / 2**30, 1),
                "bf16": torch.cuda.is_bf16_supported(),
            }
        )
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append({"device": "mps", "name": "Apple MPS"})
    auto = str(resolve_device("auto"))
    default = auto
    setting = os.environ.get(DEVICE_ENV, "").strip()
    if setting:
        try:
            default = str(resolve_device(setting))
        except ToolkitError as error:
            default = ""
            if problems is not None:
                problems.append(f"{DEVICE_ENV}={setting}: {error}")
    for entry in found:
        entry["auto"] = entry["device"] in (auto, f"{auto}:0")
        entry["default"] = entry["device"] in (default, f"{default}:0")
    return found


def store_problem(store: ModelStore) -> str | None:
    """Why models could not be saved in ``store`` (None: they can, as far as permissions
    tell without writing), naming FMT_HOME when it chose the folder."""
    where = store.described_root
    existing = store.root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"store: {where}: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"store: {where}: {existing} is not writable, so no model can be saved"
    return None


def diagnose(data_dir: str | os.PathLike[str] | None = None) -> Diagnosis:
    """Everything ``fmt doctor`` reports; reading the data and bundled models, writing nothing."""
    from fmnist_toolkit.data import DATA_DIR_ENV, fetch_command, resolve_data_dir, verify_dataset
    from fmnist_toolkit.storage import BUNDLED_ENV, ModelStore

    store = ModelStore()
    folder = resolve_data_dir(data_dir)
    if data_dir is not None and str(data_dir) != "":
        data_dir_from = "--data-dir"
    else:
        data_dir_from = DATA_DIR_ENV if os.environ.get(DATA_DIR_ENV) else "default"
    checks = verify_dataset(folder)
    problems: list[str] = []
    found = devices(problems)
    if (problem := store_problem(store)) is not None:
        problems.append(problem)
    if all(check.path is None for check in checks):
        data = f"not fetched ({fetch_command(folder)})"
    elif all(check.ok for check in checks):
        data = "verified"
    else:
        data = "; ".join(f"{check.name}: {check.problem}" for check in checks if not check.ok)
        problems.append(f"data: {data}")
    bundled = {}
    for name, problem in store.check_bundled().items():
        bundled[name] = problem or "verified"
        if problem:
            problems.append(problem)
    return Diagnosis(
        versions=package_versions(),
        devices=found,
        cpu=cpu_features(),
        store=str(store.root),
        data_dir=str(folder),
        data_dir_from=data_dir_from,
        data=data,
        bundled=bundled,
        bundled_setting=os.environ.get(BUNDLED_ENV) or None,
        problems=problems,
    )
