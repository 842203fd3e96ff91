"""New images from a trained generator, optionally cleaned by a denoiser, written whole.

Noise is drawn on the CPU from one generator seeded by ``seed`` in fixed-size batches, so the
same model, seed and options give the same images (and byte-identical files) on any run.
Every output is written beside its target and renamed into place: nothing half-written is
ever left at OUT.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fmnist_toolkit.config import IMAGE_TO_IMAGE_KINDS
from fmnist_toolkit.data import CLASS_NAMES
from fmnist_toolkit.engine.defaults import default_generator, denoiser_for
from fmnist_toolkit.engine.device import place_model
from fmnist_toolkit.engine.model_io import load_model
from fmnist_toolkit.engine.outputs import check_sample_target
from fmnist_toolkit.errors import UsageError
from fmnist_toolkit.models.gan import MAX_TRUNCATION
from fmnist_toolkit.storage import (
    ModelStore,
    temporary_beside,
    usual_mode,
    write_file_atomically,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

MAX_SAMPLES = 100_000
MAX_GRID = 10_000  # more images than this make an unreadable picture: use .npz or a folder
SAMPLE_BATCH = 1_000  # bounds memory however large --n is
GRID_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npz", ".npy")
PER_CLASS = 8  # images per requested class when --n is not given


@dataclass(frozen=True)
class SampleRequest:
    """What ``fmt gan sample`` was asked for."""

    count: int = 64
    seed: int = 0
    nrow: int = 8
    denoise: bool = False
    side_by_side: bool = False
    classes: tuple[int, ...] = ()  # a conditional generator's classes, count // len each
    truncation: float | None = None  # the noise's scale; None: the generator's own


def parse_classes(values: list[str] | tuple[str, ...]) -> tuple[int, ...]:
    """Class indices for ``--class`` values: an index 0-9 or a name (case, spaces, hyphens
    and the part after "/" optional: ``sneaker``, ``T-shirt``, ``ankle boot``); ``all`` is
    the ten classes in order."""
    by_name: dict[str, int] = {}
    for index, name in enumerate(CLASS_NAMES):
        by_name[_squash(name)] = index
        by_name[_squash(name.split("/")[0])] = index
    classes: list[int] = []
    for value in values:
        key = _squash(value)
        if key == "all":
            classes.extend(range(len(CLASS_NAMES)))
        elif value.strip().isdigit() and int(value) < len(CLASS_NAMES):
            classes.append(int(value))
        elif key in by_name:
            classes.append(by_name[key])
        else:
            names = ", ".join(name.lower() for name in CLASS_NAMES)
            raise UsageError(f"unknown class {value!r}: use an index 0-9, all, or one of {names}")
    return tuple(classes)


def _squash(name: str) -> str:
    return "".join(character for character in name.lower() if character.isalnum())


def class_labels(classes: tuple[int, ...], count: int) -> torch.Tensor:
    """Labels [count]: ``count // len(classes)`` of each class in turn (one grid row each)."""
    import torch

    return torch.tensor(classes).repeat_interleave(count // len(classes))


@dataclass
class SampleResult:
    """What was written, and which models made it."""

    out: str  # a path, or "-" for standard output
    format: str  # grid, npz, npy, folder
    count: int
    generator: str
    denoiser: str | None
    files: int
    truncation: float = 1.0
    sources: dict[str, str] = field(default_factory=dict)  # model name -> user/bundled/path
    png_bytes: bytes | None = None  # the grid, when OUT is "-"


# --------------------------------------------------------------------------- loading models


def model_source(store: ModelStore, name: str) -> str:
    """user or bundled for a store name (a user's model wins); path for a folder."""
    is_path = os.sep in name or Path(name).expanduser().is_dir()
    return "path" if is_path else store.source(name)


def load_generator(name: str, store: ModelStore, device: str | torch.device = "cpu") -> nn.Module:
    hint = "a sample needs a generator"
    model = load_model(name, store=store, device=device, kind="generator", hint=hint)
    return _placed_for_inference(model)


def load_denoiser(name: str, store: ModelStore, device: str | torch.device = "cpu") -> nn.Module:
    """A denoiser or an autoencoder (any image-to-image model) by name or path."""
    hint = "--denoiser needs one"
    model = load_model(name, store=store, device=device, kind=IMAGE_TO_IMAGE_KINDS, hint=hint)
    return _placed_for_inference(model)


def _placed_for_inference(model: nn.Module) -> nn.Module:
    """The model in the layout its device runs fastest (:func:`place_model`): on the CPU the
    U-Net denoiser cleans a batch about 1.3x faster in channels_last, with the same images
    (to 1e-6). Only for sampling: these models are never saved again."""
    return place_model(model, next(model.parameters()).device)


def choose_denoiser(
    store: ModelStore,
    denoise: bool,
    name: str | None,
    device: str | torch.device = "cpu",
    *,
    generator: nn.Module | None = None,
) -> tuple[str | None, nn.Module | None]:
    """The model that cleans samples and its name: ``name``, or with ``denoise`` alone the
    ``generator``'s recorded one if the store has it, else the store's default
    (:func:`denoiser_for`); (None, None) when neither asks for one."""
    if not (denoise or name):
        return None, None
    name = name or denoiser_for(store, getattr(generator, "denoiser", None))
    return name, load_denoiser(name, store, device)


# --------------------------------------------------------------------------- generating


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[N, 1, H, W] floats in [0, 1] to uint8 [N, H, W]."""
    import torch

    return images[:, 0].clamp(0, 1).mul(255).round().to(torch.uint8)


def generate(
    generator: nn.Module, noise: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Images in [0, 1] [N, 1, 28, 28] on the CPU for a batch of noise (and the class labels
    of a conditional generator), in eval mode."""
    import torch

    was_training = generator.training
    generator.eval()
    device = next(generator.parameters()).device
    given = () if labels is None else (labels.to(device),)
    with torch.no_grad():
        images = generator(noise.to(device), *given).float().cpu()
    generator.train(was_training)
    return (images + 1) / 2


def sample_labels(
    generator: nn.Module, count: int, classes: tuple[int, ...] = ()
) -> torch.Tensor | None:
    """The labels a conditional generator draws ``count`` images of: ``classes`` in turn
    (:func:`class_labels`), or every class equally often (0, 1, …, 9, 0, …); None for an
    unconditional generator (a usage error if ``classes`` were asked for)."""
    import torch

    if not generator.num_classes:
        if classes:
            raise UsageError(
                "--class needs a class-conditional generator (fmt gan train --conditional); "
                "this one is unconditional"
            )
        return None
    if classes:
        return class_labels(classes, count)
    return torch.arange(count) % generator.num_classes


def sample_batches(
    generator: nn.Module,
    denoiser: nn.Module | None,
    count: int,
    seed: int,
    labels: torch.Tensor | None = None,
    truncation: float | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """(raw, denoised or None) float images in [0, 1] on the CPU, SAMPLE_BATCH at a time;
    a conditional generator draws image i of class ``labels[i]``.

    The noise is drawn on the CPU from ``seed`` whatever the models' device, so a seed names
    the same noise everywhere, and scaled by ``truncation`` (default: the generator's own,
    :attr:`Generator.truncation`): below 1 the samples keep nearer the likeliest images,
    trading variety for fidelity (the truncation trick, docs/gan.md)."""
    import torch

    scale = truncation_of(generator, truncation)
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for start in range(0, count, SAMPLE_BATCH):
            size = min(SAMPLE_BATCH, count - start)
            batch_labels = None if labels is None else labels[start : start + size]
            raw = generate(generator, generator.noise(size, noise) * scale, batch_labels)
            denoised = None
            if denoiser is not None:
                on = next(denoiser.parameters()).device
                denoised = denoiser(raw.to(on)).float().cpu().clamp(0, 1)
            yield raw.clamp(0, 1), denoised


# --------------------------------------------------------------------------- writing


def output_format(out: str) -> str:
    """grid, npz, npy or folder from OUT's form; a usage error for anything else."""
    if out == "-":
        return "grid"
    path = Path(out)
    suffix = path.suffix.lower()
    if suffix in GRID_SUFFIXES:
        return "grid"
    if suffix in ARRAY_SUFFIXES:
        return suffix[1:]
    if out.endswith(("/", os.sep)) or path.is_dir() or not suffix:
        return "folder"
    raise UsageError(
        f"cannot tell what to write from {out!r}: use .png or .jpg (a grid), .npz or .npy "
        "(uint8 arrays), a folder (one PNG per image), or - (PNG on standard output)"
    )


def check_request(request: SampleRequest, out: str) -> str:
    """Validate everything before any work; return OUT's format."""
    if not 1 <= request.count <= MAX_SAMPLES:
        raise UsageError(f"--n must be between 1 and {MAX_SAMPLES:,}, not {request.count}")
    if not 1 <= request.nrow <= 1_000:
        raise UsageError(f"--nrow must be between 1 and 1000, not {request.nrow}")
    check_truncation(request.truncation)
    if request.classes and request.count % len(request.classes):
        classes = len(request.classes)
        raise UsageError(
            f"--n {request.count} does not split evenly over {classes} classes: "
            f"use a multiple of {classes} (e.g. --n {PER_CLASS * classes})"
        )
    kind = output_format(out)
    if kind == "grid" and request.count > MAX_GRID:
        raise UsageError(
            f"a grid of {request.count:,} images is unreadable; write at most {MAX_GRID:,}, or "
            "use .npz or a folder"
        )
    if request.side_by_side and (kind != "grid" or not request.denoise):
        raise UsageError(
            "--side-by-side draws a picture of raw and denoised: it needs --denoise "
            "and a .png/.jpg OUT"
        )
    check_sample_target(out, kind)
    return kind


def truncation_of(generator: nn.Module, requested: float | None) -> float:
    """The noise scale to draw at: ``requested`` (checked), else the generator's own."""
    check_truncation(requested)
    return generator.truncation if requested is None else requested


def truncation_label(truncation: float) -> str:
    """The suffix ' at truncation 0.7' for a generator's name when it is not drawn at 1."""
    return "" if truncation == 1 else f" at truncation {truncation:g}"


def check_truncation(truncation: float | None) -> None:
    if truncation is not None and not 0 < truncation <= MAX_TRUNCATION:
        raise UsageError(
            f"--truncation must be above 0 and at most {MAX_TRUNCATION:g}, not {truncation!r}"
        )


def image_grid(
    images: torch.Tensor, *, nrow: int, padding: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """[N, 1, H, W] images in [0, 1] as one [rows * (H + p) + p, cols * (W + p) + p] picture,
    ``nrow`` to a row, the layout of torchvision's ``make_grid``.

    Written here rather than imported: ``import torchvision`` pulls in ``torch._dynamo``,
    1.5 s of the 4 s that ``fmt gan sample`` may take on a laptop CPU (benchmarks/).
    """
    import torch

    count, _, height, width = images.shape
    columns = min(nrow, count)
    rows = -(-count // columns)
    grid = torch.full(
        (rows * (height + padding) + padding, columns * (width + padding) + padding), pad_value
    )
    for index, image in enumerate(images):
        top = padding + (index // columns) * (height + padding)
        left = padding + (index % columns) * (width + padding)
        grid[top : top + height, left : left + width] = image[0]
    return grid


def encode_image(picture: torch.Tensor, image_format: str = "png") -> bytes:
    """A [H, W] picture in [0, 1] as 8-bit grayscale PNG or JPEG bytes."""
    from PIL import Image

    pixels = to_uint8(picture[None, None])[0]
    buffer = io.BytesIO()
    Image.fromarray(pixels.numpy(), mode="L").save(buffer, format=image_format.upper())
    return buffer.getvalue()


def grid_bytes(images: torch.Tensor, *, nrow: int, image_format: str = "png") -> bytes:
    """A grid of [0, 1] images as PNG or JPEG bytes."""
    return encode_image(image_grid(images, nrow=nrow), image_format)


def side_by_side_bytes(
    raw: torch.Tensor, denoised: torch.Tensor, *, nrow: int, labels: tuple[str, str], suffix: str
) -> bytes:
    """Raw and denoised grids in one figure, the report's Fig. 9."""
    from fmnist_toolkit import plots

    grids = [image_grid(images, nrow=nrow) for images in (raw, denoised)]
    figure = plots.image_panels(grids, titles=labels)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=suffix, dpi=150, bbox_inches="tight", metadata=None)
    return buffer.getvalue()


def write_samples(
    request: SampleRequest,
    out: str,
    *,
    generator_name: str | None = None,
    denoiser_name: str | None = None,
    store: ModelStore | None = None,
    device: str = "cpu",
    on_batch: Callable[[int], None] | None = None,
) -> SampleResult:
    """Generate ``request.count`` images on ``device`` (auto, cpu, cuda[:N], mps) and write them
    to OUT (see :func:`output_format`); ``on_batch`` is told each batch's image count once
    the batch is made (a progress bar)."""
    import torch

    from fmnist_toolkit.engine.device import resolve_device

    kind = check_request(request, out)
    compute = resolve_device(device)
    store = store or ModelStore()
    generator_name = generator_name or default_generator(store, conditional=bool(request.classes))
    generator = load_generator(generator_name, store, compute)
    labels = sample_labels(generator, request.count, request.classes)
    denoiser_name, denoiser = choose_denoiser(
        store, request.denoise, denoiser_name, compute, generator=generator
    )
    truncation = truncation_of(generator, request.truncation)
    batches = sample_batches(generator, denoiser, request.count, request.seed, labels, truncation)
    if on_batch is not None:
        batches = _reported(batches, on_batch)
    result = SampleResult(
        out=out,
        format=kind,
        count=request.count,
        generator=generator_name,
        denoiser=denoiser_name,
        files=1,
        truncation=truncation,
        sources={
            name: model_source(store, name)
            for name in (generator_name, denoiser_name)
            if name is not None
        },
    )

    if kind == "folder":
        result.files = _write_folder(Path(out), batches)
        return result
    if kind in ("npz", "npy"):
        arrays = _collect_arrays(batches, request.count, with_raw=denoiser is not None)
        if labels is not None:  # a conditional generator's classes, one per image
            arrays["labels"] = labels.numpy().astype("uint8")
        write_file_atomically(Path(out), lambda path: _save_arrays(path, arrays, kind))
        return result

    raws, finals = [], []
    for raw, denoised in batches:
        raws.append(raw)
        finals.append(denoised if denoised is not None else raw)
    raw_all, final_all = torch.cat(raws), torch.cat(finals)
    image_format = "jpeg" if Path(out).suffix.lower() in (".jpg", ".jpeg") else "png"
    if request.side_by_side:
        content = side_by_side_bytes(
            raw_all,
            final_all,
            nrow=request.nrow,
            labels=(
                f"{generator_name}{truncation_label(truncation)}: raw samples",
                f"denoised by {denoiser_name}",
            ),
            suffix=image_format,
        )
    else:
        content = grid_bytes(final_all, nrow=request.nrow, image_format=image_format)
    if out == "-":
        result.png_bytes = content
    else:
        write_file_atomically(Path(out), lambda path: path.write_bytes(content))
    return result


def _reported(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor | None]], on_batch: Callable[[int], None]
) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    for raw, denoised in batches:
        yield raw, denoised
        on_batch(raw.shape[0])


def _collect_arrays(
    batches: Iterator[tuple[torch.Tensor, torch.Tensor | None]], count: int, *, with_raw: bool
) -> dict[str, np.ndarray]:
    import numpy as np

    images = np.empty((count, 28, 28), dtype=np.uint8)
    raw_images = np.empty((count, 28, 28), dtype=np.uint8) if with_raw else None
    start = 0
    for raw, denoised in batches:
        end = start + raw.shape[0]
        images[start:end] = to_uint8(denoised if denoised is not None else raw).numpy()
        if raw_images is not None:
            raw_images[start:end] = to_uint8(raw).numpy()
        start = end
    return {"images": images, **({"raw": raw_images} if raw_images is not None else {})}


def _save_arrays(path: Path, arrays: dict[str, Any], kind: str) -> None:
    """.npy: the images; .npz: ``images`` (denoised when asked), ``raw`` with --denoise and
    ``labels`` (class indices) from a conditional generator."""
    import numpy as np

    with path.open("wb") as handle:  # a handle: numpy would append a suffix to a bare path
        if kind == "npy":
            np.save(handle, arrays["images"])
        else:
            np.savez_compressed(handle, **arrays)


def _write_folder(target: Path, batches: Iterator[tuple[torch.Tensor, torch.Tensor | None]]) -> int:
    """One PNG per image (00000.png, …) in a temporary folder renamed to ``target``."""
    from PIL import Image

    temporary = temporary_beside(target, folder=True)
    written = 0
    try:
        for raw, denoised in batches:
            for image in to_uint8(denoised if denoised is not None else raw).numpy():
                Image.fromarray(image, mode="L").save(temporary / f"{written:05d}.png")
                written += 1
        if target.is_dir():
            target.rmdir()  # empty, checked before we started
        usual_mode(temporary, folder=True)
        os.replace(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return written
