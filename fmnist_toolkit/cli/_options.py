"""Options shared by many commands, declared once."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from fmnist_toolkit.config import PRECISIONS, SCHEDULES, EngineConfig


def choices(name: str, values: Sequence[str]) -> Any:
    """A Typer choice enum made from a tuple of config.py, the one list of the valid values
    (a member per value; ``-`` in a value is ``_`` in the member's name)."""
    return enum.Enum(name, {value.replace("-", "_"): value for value in values}, type=str)


Precision = choices("Precision", PRECISIONS)
Schedule = choices("Schedule", SCHEDULES)


ENGINE = "Engine"
# torch.manual_seed takes 64-bit seeds; a larger one would fail deep in the engine.
MAX_SEED = 2**63 - 1
OUTPUT = "Output"

DeviceOption = Annotated[
    str,
    typer.Option(
        "--device",
        envvar="FMT_DEVICE",
        help="Where to compute: auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps.",
        rich_help_panel=ENGINE,
    ),
]
SeedOption = Annotated[
    int,
    typer.Option(
        "--seed",
        min=0,
        max=MAX_SEED,
        help="Seeds weights and batch order; the same seed on the same device gives the same "
        "metrics.",
        rich_help_panel=ENGINE,
    ),
]
NoiseSeedOption = Annotated[
    int,
    typer.Option(
        "--seed",
        min=0,
        max=MAX_SEED,
        help="Seeds the noise the generator draws from (in gan eval also which 10,000 training "
        "images form the floor); the same seed and device give the same images.",
        rich_help_panel=ENGINE,
    ),
]
PrecisionOption = Annotated[
    Precision,
    typer.Option(
        "--precision",
        help="auto: tf32 on CUDA; bf16 autocast where a CPU has native bf16 and the recipe was "
        "measured faster in it (docs/benchmarks.md); else fp32. fp32 forces torch's float32 "
        "defaults; tf32 lets CUDA's tensor cores multiply float32 matrices in training steps "
        "(fp32 elsewhere); bf16 autocasts on CUDA and CPU (MPS always computes in float32). "
        "The model's config records the choice.",
        rich_help_panel=ENGINE,
    ),
]
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile/--no-compile",
        help="torch.compile the model (CUDA only; ignored elsewhere).",
        rich_help_panel=ENGINE,
    ),
]
CudaGraphsOption = Annotated[
    bool,
    typer.Option(
        "--cuda-graphs/--no-cuda-graphs",
        help="On CUDA, replay each training step as one CUDA graph (the same arithmetic, far "
        "fewer kernel launches); --no-cuda-graphs runs it eagerly. Ignored elsewhere.",
        rich_help_panel=ENGINE,
    ),
]


def schedule_option(panel: str) -> Any:
    """``--schedule`` (any of config.SCHEDULES), shown in the help panel ``panel`` of a recipe."""
    return Annotated[
        Schedule,
        typer.Option(
            "--schedule",
            help="Learning rate over the run: constant (the report's); cosine decay to 0 over "
            "the epochs; onecycle (up from lr/25 to lr over the first 30 % of the batches, "
            "then down to lr/250,000); warmup-cosine (linear warm-up over 5 % of the batches, "
            "then cosine to 0). With onecycle and warmup-cosine the learning rate given is the "
            "peak.",
            rich_help_panel=panel,
        ),
    ]


DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="FMT_DATA_DIR",
        help="Folder with the four Fashion-MNIST IDX files (.gz or not; torchvision's "
        "FashionMNIST/raw/ layout works too). Default: the per-user data folder "
        "(see `fmt data path`).",
        show_default=False,
        file_okay=False,
    ),
]
JsonOption = Annotated[
    bool,
    typer.Option(
        "--json", help="Print one JSON object on stdout instead of tables.", rich_help_panel=OUTPUT
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress output on stderr.", rich_help_panel=OUTPUT),
]
ResumeOption = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Continue the interrupted run of --name from its last checkpoint, "
        "with its saved recipe.",
    ),
]
RestartOption = Annotated[
    bool,
    typer.Option(
        "--restart",
        help="Discard the checkpoint of an interrupted run of --name and start over.",
    ),
]


def check_resume_or_restart(resume: bool, restart: bool) -> None:
    """--resume and --restart together are a usage error."""
    from fmnist_toolkit.errors import UsageError

    if resume and restart:
        raise UsageError("--resume and --restart contradict each other; pick one")


def engine_config(
    device: str, precision: Any, cuda_graphs: bool, *, compile_model: bool = False
) -> EngineConfig:
    """The engine settings of a training command from its --device, --precision,
    --cuda-graphs and (where offered) --compile options."""
    return EngineConfig(
        device=device,
        precision=Precision(precision).value,
        compile=compile_model,
        cuda_graphs=cuda_graphs,
    )
