"""``fmt doctor``: versions, devices, paths and checks of this installation."""

from __future__ import annotations

import dataclasses

import typer

from fmnist_toolkit.cli._options import DataDirOption, JsonOption
from fmnist_toolkit.cli._render import print_json, print_result, typed_options


def doctor(
    ctx: typer.Context, data_dir: DataDirOption = None, json_output: JsonOption = False
) -> None:
    """Versions, devices (and whether the CPU computes bf16 natively), the store and data
    folders, and whether the data and the bundled models are intact (exit 1 if not).

    Paste its output into a bug report.

    Example: fmt doctor > doctor.txt
    """
    from rich.table import Table

    from fmnist_toolkit.engine.device import DEVICE_ENV
    from fmnist_toolkit.engine.doctor import diagnose
    from fmnist_toolkit.storage import BUNDLED_ENV

    # FMT_DATA_DIR also arrives as data_dir: only a typed --data-dir is reported as one.
    diagnosis = diagnose(data_dir if typed_options(ctx, ["data_dir"]) else None)
    if json_output:
        print_json(dataclasses.asdict(diagnosis))
    else:
        table = Table(title="fmt doctor", show_header=False)
        table.add_column("what", style="bold", no_wrap=True)
        table.add_column("found")
        for package, version in diagnosis.versions.items():
            table.add_row(package, version or "not installed")
        cpu = diagnosis.cpu
        bf16 = "native bf16" if cpu["native_bf16"] else "bf16 emulated (slower than fp32)"
        table.add_row("cpu", f"{cpu['name']}, {cpu['cores']} cores, {cpu['capability']}, {bf16}")
        for device in diagnosis.devices:
            details = [device["name"]]
            if "memory_gib" in device:
                details.append(f"{device['memory_gib']} GiB")
            if device["auto"]:
                details.append("picked by --device auto")
            if device["default"] and not device["auto"]:
                details.append(f"used without --device ({DEVICE_ENV})")
            table.add_row(f"device {device['device']}", ", ".join(details))
        table.add_row("store (FMT_HOME)", diagnosis.store)
        table.add_row(f"data ({diagnosis.data_dir_from})", diagnosis.data_dir)
        table.add_row("data check", diagnosis.data)
        if diagnosis.bundled_setting is not None:
            table.add_row("bundled models", f"{BUNDLED_ENV}={diagnosis.bundled_setting}")
        for name, state in diagnosis.bundled.items():
            table.add_row(f"bundled {name}", state)
        for problem in diagnosis.problems:
            if problem.startswith(DEVICE_ENV):
                table.add_row("problem", problem)
        print_result(table)
    if diagnosis.problems:
        raise typer.Exit(1)
