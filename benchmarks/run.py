"""The toolkit's speed, recipe by recipe, against a textbook loop measured in the same run.

For each recipe — ae seed, ae wide, clf frozen, clf --unfreeze, gan mlp, gan dcgan, one tune
trial — the seconds of one epoch through the toolkit's own recipe function (the code
`fmt ... train` runs, its test or validation pass included) and through the textbook loop of
benchmarks/textbook.py (same model, batch size and device, float32); for `gan sample` and
`gan eval`, the seconds of one call of the command against a plain script doing the same.
Also: the ratio, the share of the device's measured matmul peak that an epoch reaches
(FLOPs of one epoch, counted by torch's FlopCounterMode, over its seconds and the peak), and
peak RSS and GPU memory. Every measurement runs in a fresh process, so each peak is its own.

The toolkit runs with its defaults (`--precision auto`, CUDA graphs on CUDA); the textbook
in float32. `--quick` uses a tenth of the data (6,000 training and 1,000 test images) and
scales the epoch to the full set: under 2 minutes on a 2-core CPU.

Usage:
    python benchmarks/run.py [--data-dir ../shared/fashion-mnist] [--device cpu] [--quick]
        [--only ae-seed gan-mlp ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RECIPES = (
    "ae-seed",
    "ae-wide",
    "clf-frozen",
    "clf-unfreeze",
    "gan-mlp",
    "gan-dcgan",
    "tune-trial",
    "sample-64-denoise",
    "sample-100k",
    "gan-eval",
)
FULL = (60_000, 10_000)  # training and test images
QUICK = (6_000, 1_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, default=HERE.parent.parent / "shared" / "fashion-mnist"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--precision", default="auto", help="the toolkit's --precision (the textbook: fp32)"
    )
    parser.add_argument("--only", nargs="+", choices=RECIPES, default=list(RECIPES))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("RECIPE", "SIDE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args)))
        return

    import torch

    from fmnist_toolkit.engine.device import describe_device, resolve_device, resolve_precision

    device = resolve_device(args.device)
    peak = matmul_peak(device)
    rows = []
    started = time.perf_counter()
    for recipe in args.only:
        row = {"recipe": recipe}
        for side in ("toolkit", "textbook"):
            row[side] = child(recipe, side, args)
            if not args.json:
                print(f"  {recipe} {side}: {row[side]}", file=sys.stderr)
        ours, theirs = row["toolkit"]["seconds"], row["textbook"]["seconds"]
        row["ratio"] = round(theirs / ours, 2) if ours and theirs else None
        # The work the toolkit does where it differs (a frozen head trains on cached codes).
        flops = row["toolkit"].get("flops") or row["textbook"].get("flops")
        row["peak_fraction"] = round(flops / ours / peak, 4) if flops and ours else None
        rows.append(row)
    report = {
        "device": describe_device(device),
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "precision_auto": {
            recipe: resolve_precision("auto", device, recipe)
            for recipe in ("autoencoder", "classifier", "gan")
        },
        "quick": args.quick,
        "precision": args.precision,
        "total_seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)


def child(recipe: str, side: str, args: argparse.Namespace) -> dict:
    """One measurement in a fresh process (its own peak memory)."""
    command = [sys.executable, __file__, "--child", recipe, side, "--device", args.device]
    command += ["--precision", args.precision]
    command += ["--data-dir", str(args.data_dir)] + (["--quick"] if args.quick else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"{recipe} {side} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return {"seconds": None, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def matmul_peak(device) -> float:  # type: ignore[no-untyped-def]
    """FLOP/s of a float32 4096 x 4096 matrix product on ``device`` (best of a few)."""
    import torch

    from fmnist_toolkit.engine.device import synchronize

    size = 4096 if device.type != "cpu" else 2048
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        started = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def measure(recipe: str, side: str, args: argparse.Namespace) -> dict:
    """Runs in the child process: one recipe on one side."""
    import torch

    from fmnist_toolkit.engine.device import resolve_device

    device = resolve_device(args.device)
    limit = QUICK if args.quick else FULL
    scale = FULL[0] / limit[0]
    with tempfile.TemporaryDirectory(prefix="fmt-bench-") as scratch:
        scratch_path = Path(scratch)
        os.environ["FMT_HOME"] = str(scratch_path / "home")
        if side == "toolkit":
            result = toolkit(recipe, device, args.data_dir, limit, scratch_path, args.precision)
        else:
            result = textbook(recipe, device, args.data_dir, limit, scratch_path)
    if result.get("per") == "epoch":
        result["seconds"] = round(result["seconds"] * scale, 3)
        if result.get("flops"):
            result["flops"] = result["flops"] * scale
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if device.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return result


def subset_data(data_dir: Path, limit: tuple[int, int], scratch: Path) -> Path:
    """The first ``limit`` training and test images as IDX files (the toolkit's reader)."""
    import struct

    from fmnist_toolkit.data import load_fashion_mnist

    folder = scratch / "data"
    folder.mkdir()
    for split, count in zip(("train", "t10k"), limit, strict=True):
        images, labels = load_fashion_mnist("train" if split == "train" else "test", data_dir)
        images, labels = images[:count], labels[:count]
        (folder / f"{split}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, count, 28, 28) + images.numpy().tobytes()
        )
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, count) + labels.to(dtype=images.dtype).numpy().tobytes()
        )
    return folder


def toolkit(recipe: str, device, data_dir: Path, limit, scratch: Path, precision: str) -> dict:  # type: ignore[no-untyped-def]
    from fmnist_toolkit.config import (
        AutoencoderTrainConfig,
        ClassifierTrainConfig,
        EngineConfig,
        GanTrainConfig,
        TuneConfig,
    )
    from fmnist_toolkit.storage import ModelStore

    engine = EngineConfig(device=str(device), precision=precision)
    store = ModelStore()
    data = subset_data(data_dir, limit, scratch) if limit != FULL else data_dir
    if recipe.startswith("ae-"):
        from fmnist_toolkit.engine.ae import train_autoencoder

        config = AutoencoderTrainConfig(architecture=recipe[3:], epochs=2)
        result = train_autoencoder("bench", config, engine, data_dir=data, store=store)
        return epoch_result(result.history, store)
    if recipe.startswith("clf-"):
        from fmnist_toolkit.engine.clf import train_classifier

        config = ClassifierTrainConfig(encoder="ae-16", epochs=2, unfreeze=recipe == "clf-unfreeze")
        result = train_classifier("bench", config, engine, data_dir=data, store=store)
        measured = epoch_result(result.history, store, test=result.test.accuracy)
        if not config.unfreeze:  # its epoch is the head alone, on codes computed once
            head = step_flops("classifier-head", "encoder-mlp", device, config.batch_size)
            measured["flops"] = head * steps(limit[0], config.batch_size)
        return measured
    if recipe.startswith("gan-") and recipe != "gan-eval":
        from fmnist_toolkit.engine.gan import train_gan

        config = GanTrainConfig.for_architecture(recipe[4:], epochs=2)
        result = train_gan("bench", config, engine, data_dir=data, store=store)
        return epoch_result(result.history, store)
    if recipe == "tune-trial":
        from fmnist_toolkit.engine.tune import run_study

        tune = TuneConfig(study="bench", trials=2, epochs=2, prune=False)
        started = time.perf_counter()
        run_study(tune, engine, data_dir=data, store=store)
        # A trial trains on 90 % of the data: scale its epochs like the others.
        per_trial = (time.perf_counter() - started) / tune.trials
        return {"seconds": per_trial / tune.epochs, "per": "epoch", "note": "per trial epoch"}
    return cli_call(recipe, device, data_dir, scratch)


def epoch_result(history: list[dict], store, **quality) -> dict:  # type: ignore[no-untyped-def]
    row = history[-1]
    metrics = {k: round(v, 5) for k, v in row.items() if k not in ("epoch", "seconds")}
    engine = store.read_config("bench").get("engine", {})
    return {
        "seconds": row["seconds"],
        "per": "epoch",
        "precision": engine.get("precision"),
        "metrics": {**metrics, **quality},
    }


def cli_call(recipe: str, device, data_dir: Path, scratch: Path) -> dict:  # type: ignore[no-untyped-def]
    """The command as a user types it, timed from the shell."""
    command = {
        "sample-64-denoise": ["gan", "sample", "--n", "64", "--denoise", str(scratch / "out.png")],
        "sample-100k": ["gan", "sample", "--n", "100000", str(scratch / "out.npy")],
        "gan-eval": ["gan", "eval", "--data-dir", str(data_dir), "--json"],
    }[recipe]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "fmnist_toolkit", *command],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    result: dict = {"seconds": round(seconds, 3), "per": "call"}
    if recipe == "gan-eval":
        rows = json.loads(done.stdout)["rows"]
        result["frechet_distance"] = [round(row["frechet_distance"], 3) for row in rows]
    return result


def textbook(recipe: str, device, data_dir: Path, limit, scratch: Path) -> dict:  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(HERE))
    import textbook as loops

    quick = None if limit == FULL else limit
    if recipe.startswith(("ae-", "clf-", "gan-m", "gan-d", "tune")):
        root = loops.torchvision_root(data_dir, scratch)
        if recipe.startswith("ae-") or recipe == "tune-trial":
            architecture = "seed" if recipe == "tune-trial" else recipe[3:]
            seconds = loops.autoencoder_epoch(architecture, root, device, quick)
            flops = step_flops("autoencoder", architecture, device) * steps(limit[0], 256)
        elif recipe.startswith("clf-"):
            seconds = loops.classifier_epoch(recipe == "clf-unfreeze", root, device, quick)
            flops = None
        else:
            seconds = loops.gan_epoch(recipe[4:], root, device, quick)
            flops = step_flops("gan", recipe[4:], device) * steps(limit[0], 64)
        return {"seconds": seconds, "per": "epoch", "flops": flops}
    code = {
        "sample-64-denoise": f"t.sample_call(64, True, Path({str(scratch / 'out.png')!r}))",
        "sample-100k": f"t.sample_call(100_000, False, Path({str(scratch / 'out.npy')!r}))",
        "gan-eval": f"print(t.eval_call(10_000, Path({str(data_dir)!r})))",
    }[recipe]
    script = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); from pathlib import Path; "
        f"import textbook as t; {code}"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    return {"seconds": round(time.perf_counter() - started, 3), "per": "call"}


def steps(count: int, batch_size: int) -> int:
    return -(-count // batch_size)


def step_flops(family: str, architecture: str, device, batch_size: int = 64) -> float:  # type: ignore[no-untyped-def]
    """Matmul and convolution FLOPs of one training step (forward and backward)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fmnist_toolkit.models import build_model

    counter = FlopCounterMode(display=False)
    if family == "classifier-head":
        classifier = build_model("classifier", architecture).to(device)
        codes = torch.rand(batch_size, 16, device=device)
        with counter:
            classifier.classify_codes(codes).mean().backward()
        return counter.get_total_flops()
    if family == "autoencoder":
        model = build_model("autoencoder", architecture, latent_dim=16).to(device)
        images = torch.rand(256, 1, 28, 28, device=device)
        with counter:
            torch.nn.functional.mse_loss(model(images), images).backward()
        return counter.get_total_flops()
    size = {"hidden_size": 784} if architecture == "mlp" else {"width": 64}
    generator = build_model("generator", architecture, latent_size=100, **size).to(device)
    discriminator = build_model("discriminator", architecture, **size).to(device)
    real = torch.rand(64, 1, 28, 28, device=device)
    with counter:
        fake = generator(torch.randn(64, 100, device=device))
        (discriminator(real).mean() + discriminator(fake.detach()).mean()).backward()
        discriminator(fake).mean().backward()
    return counter.get_total_flops()


def print_table(report: dict) -> None:
    print(
        f"{report['device']}, {report['threads']} threads, float32 matmul peak "
        f"{report['matmul_peak_gflops']} GFLOP/s, precision auto: {report['precision_auto']}"
        f"{', quick (a tenth of the data, scaled)' if report['quick'] else ''}"
    )
    header = (
        f"{'recipe':18} {'per':5} {'toolkit s':>10} {'textbook s':>10} {'ratio':>6} "
        f"{'peak %':>7} {'RSS MB':>7} {'GPU MB':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in report["rows"]:
        ours, theirs = row["toolkit"], row["textbook"]
        fraction = f"{100 * row['peak_fraction']:.1f}" if row["peak_fraction"] else "-"
        print(
            f"{row['recipe']:18} {ours.get('per', '?'):5} {fmt(ours['seconds']):>10} "
            f"{fmt(theirs['seconds']):>10} {fmt(row['ratio'], 'x'):>6} {fraction:>7} "
            f"{ours.get('peak_rss_mb', '-'):>7} {ours.get('peak_gpu_mb', '-'):>7}"
        )
    print(f"total {report['total_seconds']} s")


def fmt(value, suffix: str = "") -> str:  # type: ignore[no-untyped-def]
    return (
        "-" if value is None else f"{value:.3f}{suffix}" if value < 10 else f"{value:.1f}{suffix}"
    )


if __name__ == "__main__":
    main()
