"""The textbook loops the toolkit is measured against: plain PyTorch as the tutorials and
pytorch/examples write it, with the toolkit's own models, batch sizes and float32.

torchvision's ``FashionMNIST`` dataset with ``ToTensor()`` (a PIL image per sample), a
shuffling ``DataLoader`` with the default workers (0), ``.to(device)`` per batch, torch's
default Adam, ``loss.item()`` per step for the running loss, and a test/validation pass with
``torch.no_grad()`` over a DataLoader. Each function returns the seconds of its last epoch (the
first warms up) or of its call.
"""

from __future__ import annotations

import gzip
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from fmnist_toolkit.data import SPLIT_FILES, find_file
from fmnist_toolkit.engine.device import synchronize
from fmnist_toolkit.models import build_model


def torchvision_root(data_dir: Path, scratch: Path) -> Path:
    """torchvision wants decompressed files under <root>/FashionMNIST/raw/."""
    raw = scratch / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in SPLIT_FILES["train"] + SPLIT_FILES["test"]:
        source = find_file(data_dir, name)
        assert source is not None, f"no {name} in {data_dir}"
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rb") as src, (raw / name).open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return scratch


def datasets(root: Path, limit: tuple[int, int] | None, transform=None):  # type: ignore[no-untyped-def]
    """(train, test) torchvision datasets, the first ``limit`` images of each when given."""
    from torchvision import datasets as tv_datasets
    from torchvision import transforms

    transform = transform or transforms.ToTensor()
    train = tv_datasets.FashionMNIST(root, train=True, download=False, transform=transform)
    test = tv_datasets.FashionMNIST(
        root, train=False, download=False, transform=transforms.ToTensor()
    )
    if limit is not None:
        train, test = Subset(train, range(limit[0])), Subset(test, range(limit[1]))
    return train, test


def timed_epochs(epoch: Callable[[], None], device: torch.device, epochs: int = 2) -> float:
    """Seconds of the last of ``epochs`` epochs."""
    seconds = 0.0
    for _ in range(epochs):
        synchronize(device)
        started = time.perf_counter()
        epoch()
        synchronize(device)
        seconds = time.perf_counter() - started
    return seconds


def autoencoder_epoch(
    architecture: str, root: Path, device: torch.device, limit: tuple[int, int] | None
) -> float:
    """The report's recipe: Adam lr 0.00099, batch 256, MSE, a test pass after each epoch."""
    train, test = datasets(root, limit)
    torch.manual_seed(0)
    model = build_model("autoencoder", architecture, latent_dim=16).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.00099, weight_decay=3.5237e-5)
    train_loader = DataLoader(train, batch_size=256, shuffle=True)
    test_loader = DataLoader(test, batch_size=256)

    def epoch() -> None:
        model.train()
        running = 0.0
        for images, _ in train_loader:
            images = images.to(device)
            loss = nn.functional.mse_loss(model(images), images)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            running += loss.item()
        model.eval()
        with torch.no_grad():
            for images, _ in test_loader:
                images = images.to(device)
                running += nn.functional.mse_loss(model(images), images).item()

    return timed_epochs(epoch, device)


def classifier_epoch(
    unfreeze: bool, root: Path, device: torch.device, limit: tuple[int, int] | None
) -> float:
    """An encoder (the report's) plus the report's head; frozen: the encoder runs under
    no_grad on every batch; unfrozen: everything trains, with torchvision's per-sample flip and
    shift. A validation pass (the test images stand in) after each epoch."""
    from torchvision import transforms

    augment = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(),
            transforms.RandomAffine(0, translate=(2 / 28, 2 / 28)),
            transforms.ToTensor(),
        ]
    )
    train, test = datasets(root, limit, augment if unfreeze else None)
    torch.manual_seed(0)
    model = build_model("classifier", "encoder-mlp", encoder_architecture="seed", latent_dim=16).to(
        device
    )
    if not unfreeze:
        model.encoder.requires_grad_(False)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=2e-4, weight_decay=1e-5)
    train_loader = DataLoader(train, batch_size=256, shuffle=True)
    test_loader = DataLoader(test, batch_size=256)

    def epoch() -> None:
        model.train()
        correct = 0
        for images, labels in train_loader:
            images, labels = images.to(device), labels.to(device)
            if unfreeze:
                log_probs = model(images)
            else:
                with torch.no_grad():
                    codes = model.encode(images)
                log_probs = model.classify_codes(codes)
            loss = nn.functional.nll_loss(log_probs, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            correct += (log_probs.argmax(1) == labels).sum().item()
        model.eval()
        with torch.no_grad():
            for images, labels in test_loader:
                images, labels = images.to(device), labels.to(device)
                correct += (model(images).argmax(1) == labels).sum().item()

    return timed_epochs(epoch, device)


def gan_epoch(
    architecture: str, root: Path, device: torch.device, limit: tuple[int, int] | None
) -> float:
    """pytorch/examples' DCGAN loop: D on real and fake, then G, BCE, Adam(lr, 0.5), batch 64."""
    from torchvision import transforms

    normalise = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    train, _ = datasets(root, limit, normalise)
    torch.manual_seed(0)
    size = {"hidden_size": 784} if architecture == "mlp" else {"width": 64}
    generator = build_model("generator", architecture, latent_size=100, **size).to(device)
    discriminator = build_model("discriminator", architecture, **size).to(device)
    lr = 1e-4 if architecture == "mlp" else 2e-4
    g_optimizer = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    d_optimizer = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(0.5, 0.999))
    bce = nn.BCEWithLogitsLoss()
    loader = DataLoader(train, batch_size=64, shuffle=True)

    def epoch() -> None:
        for real, _ in loader:
            real = real.to(device)
            count = real.shape[0]
            ones = torch.ones(count, device=device)
            zeros = torch.zeros(count, device=device)
            fake = generator(torch.randn(count, 100, device=device))
            d_optimizer.zero_grad()
            d_loss = bce(discriminator(real), ones) + bce(discriminator(fake.detach()), zeros)
            d_loss.backward()
            d_optimizer.step()
            g_optimizer.zero_grad()
            g_loss = bce(discriminator(fake), ones)
            g_loss.backward()
            g_optimizer.step()
            _ = d_loss.item(), g_loss.item()

    return timed_epochs(epoch, device)


def bundled(name: str) -> Path:
    import fmnist_toolkit

    return Path(fmnist_toolkit.__file__).parent / "pretrained" / name


def load_bundled(name: str, kind: str) -> nn.Module:
    """A bundled model rebuilt from its config and safetensors weights, the plain way."""
    import json

    from safetensors.torch import load_file

    spec = json.loads((bundled(name) / "config.json").read_text())["model"]
    model = build_model(kind, spec["architecture"], **spec["params"])
    model.load_state_dict(load_file(bundled(name) / "model.safetensors"))
    return model.eval()


def sample_call(count: int, denoise: bool, out: Path) -> None:
    """Images from the toolkit's default generator (the bundled class-conditional DCGAN,
    every class in turn) in batches of 1,000, optionally through its default denoiser (the
    bundled U-Net); a grid PNG by torchvision's save_image, or a .npy of uint8."""
    import json

    import numpy as np
    from torchvision.utils import save_image

    generator = load_bundled("gan-dcgan-cond", "generator")
    config = json.loads((bundled("gan-dcgan-cond") / "config.json").read_text())
    truncation = config.get("sampling", {}).get("truncation", 1.0)  # as the toolkit draws it
    denoiser = load_bundled("denoiser-unet", "denoiser") if denoise else None
    torch.manual_seed(0)
    chunks = []
    with torch.no_grad():
        for start in range(0, count, 1000):
            batch = min(1000, count - start)
            labels = torch.arange(start, start + batch) % 10
            images = generator(torch.randn(batch, 100) * truncation, labels) * 0.5 + 0.5
            if denoiser is not None:
                images = denoiser(images)
            chunks.append(images)
    images = torch.cat(chunks)
    if out.suffix == ".npy":
        np.save(out, (images[:, 0] * 255).round().to(torch.uint8).numpy())
    else:
        save_image(images, out, nrow=8)


def eval_call(count: int, data_dir: Path) -> float:
    """The Fréchet distance of the bundled generator's samples to the test set in the bundled
    classifier's feature space, with scipy's sqrtm: what the toolkit's gan eval reports."""
    import numpy as np
    from scipy import linalg

    from fmnist_toolkit.data import load_fashion_mnist

    generator = load_bundled("gan-dcgan", "generator")
    classifier = load_bundled("clf-ae-wide-16-ft", "classifier")
    test_images, _ = load_fashion_mnist("test", data_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        fake = torch.cat(
            [
                classifier.features(generator(torch.randn(1000, 100)) * 0.5 + 0.5)
                for _ in range(count // 1000)
            ]
        )
        real = torch.cat(
            [
                classifier.features(test_images[i : i + 1000, None].float() / 255)
                for i in range(0, len(test_images), 1000)
            ]
        )
    a, b = fake.double().numpy(), real.double().numpy()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
