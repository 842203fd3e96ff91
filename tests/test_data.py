"""Reading, checking and batching Fashion-MNIST files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from fmnist_toolkit import load_fashion_mnist
from fmnist_toolkit.data import (
    DeviceSplit,
    find_file,
    resolve_data_dir,
    verify_dataset,
)
from fmnist_toolkit.errors import DataCorruptError, DataMissingError, UsageError
from tests.conftest import raw_files_of, write_dataset


def test_loads_both_splits_as_uint8_and_int64(synthetic_data: Path) -> None:
    images, labels = load_fashion_mnist("train", synthetic_data)
    assert images.dtype == torch.uint8 and images.shape == (256, 28, 28)
    assert labels.dtype == torch.int64 and labels.shape == (256,)
    assert labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    test_images, _ = load_fashion_mnist("test", synthetic_data)
    assert test_images.shape == (128, 28, 28)


def test_plain_gzipped_and_torchvision_layouts_read_the_same(tmp_path: Path) -> None:
    plain = write_dataset(tmp_path / "plain", gzipped=False)
    gzipped = write_dataset(tmp_path / "gz", gzipped=True)
    torchvision_root = tmp_path / "tv"
    shutil.copytree(plain, torchvision_root / "FashionMNIST" / "raw")
    reference = load_fashion_mnist("train", gzipped)
    for folder in (plain, torchvision_root):
        images, labels = load_fashion_mnist("train", folder)
        assert torch.equal(images, reference[0]) and torch.equal(labels, reference[1])


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FMT_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("FMT_DATA_DIR")
    assert resolve_data_dir(None).name == "fashion-mnist"
    assert "fmnist-toolkit" in str(resolve_data_dir(None))


def test_missing_data_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(DataMissingError, match=r"fmt data fetch.*--data-dir"):
        load_fashion_mnist("train", tmp_path)


def test_unknown_split_is_a_usage_error(synthetic_data: Path) -> None:
    with pytest.raises(UsageError):
        load_fashion_mnist("validation", synthetic_data)


def _damaged_copy(source: Path, tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "damaged"
    shutil.copytree(source, folder)
    return folder, folder / "train-images-idx3-ubyte.gz"


def test_truncated_file_names_file_and_problem(synthetic_data: Path, tmp_path: Path) -> None:
    folder, path = _damaged_copy(synthetic_data, tmp_path)
    content = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(content[:-100]))
    with pytest.raises(DataCorruptError, match=r"train-images-idx3-ubyte\.gz: truncated"):
        load_fashion_mnist("train", folder)


def test_broken_gzip_stream(synthetic_data: Path, tmp_path: Path) -> None:
    folder, path = _damaged_copy(synthetic_data, tmp_path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataCorruptError, match="gzip"):
        load_fashion_mnist("train", folder)


def test_wrong_magic(synthetic_data: Path, tmp_path: Path) -> None:
    folder, _ = _damaged_copy(synthetic_data, tmp_path)
    labels = folder / "train-labels-idx1-ubyte.gz"
    images = folder / "train-images-idx3-ubyte.gz"
    labels.write_bytes(images.read_bytes())  # an image file under the labels' name
    with pytest.raises(DataCorruptError, match=r"labels-idx1-ubyte\.gz: wrong magic number"):
        load_fashion_mnist("train", folder)


def test_verify_by_decompressed_content(synthetic_data: Path, tmp_path: Path) -> None:
    expected = raw_files_of(synthetic_data)
    assert all(check.ok for check in verify_dataset(synthetic_data, expected))
    # Re-compressing changes the archive bytes but not the content: still valid.
    folder, path = _damaged_copy(synthetic_data, tmp_path)
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()), compresslevel=1))
    assert all(check.ok for check in verify_dataset(folder, expected))
    # One changed pixel is not.
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[-1] ^= 0xFF
    path.write_bytes(gzip.compress(bytes(content)))
    checks = {check.name: check for check in verify_dataset(folder, expected)}
    assert not checks["train-images-idx3-ubyte"].ok
    assert "MD5" in checks["train-images-idx3-ubyte"].problem
    assert checks["t10k-labels-idx1-ubyte"].ok


def test_official_checksums_reject_synthetic_data(synthetic_data: Path) -> None:
    checks = verify_dataset(synthetic_data)
    assert len(checks) == 4 and not any(check.ok for check in checks)


def test_find_file_prefers_flat_layout(tmp_path: Path) -> None:
    assert find_file(tmp_path, "train-images-idx3-ubyte") is None
    nested = tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte.gz"
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"")
    assert find_file(tmp_path, "train-images-idx3-ubyte") == nested
    flat = tmp_path / "train-images-idx3-ubyte.gz"
    flat.write_bytes(b"")
    assert find_file(tmp_path, "train-images-idx3-ubyte") == flat
    plain = tmp_path / "train-images-idx3-ubyte"
    plain.write_bytes(b"")
    assert find_file(tmp_path, "train-images-idx3-ubyte") == plain


def test_a_split_without_images_is_refused(tmp_path: Path) -> None:
    folder = write_dataset(tmp_path / "empty", train=0, test=4)
    with pytest.raises(DataCorruptError, match="no images"):
        load_fashion_mnist("train", folder)


def test_device_split_batches_cover_everything_once(synthetic_data: Path) -> None:
    split = DeviceSplit.load("train", synthetic_data, torch.device("cpu"))
    seen = []
    for images, labels in split.batches(100, torch.Generator().manual_seed(3)):
        assert images.dtype == torch.float32 and images.shape[1:] == (1, 28, 28)
        assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
        seen.append(labels)
    assert (
        [len(batch) for batch in seen]
        == [100, 100, 56]
        == [min(100, 256 - 100 * i) for i in range(split.num_batches(100))]
    )
    assert torch.equal(torch.cat(seen).sort().values, split.labels.sort().values)


def test_device_split_shuffle_is_seeded(synthetic_data: Path) -> None:
    split = DeviceSplit.load("train", synthetic_data, torch.device("cpu"))

    def order(seed: int) -> list[int]:
        return [
            int(images.sum() * 1000)
            for images, _ in split.batches(32, torch.Generator().manual_seed(seed))
        ]

    assert order(1) == order(1)
    assert order(1) != order(2)
    unshuffled = [labels.tolist() for _, labels in split.batches(128)]
    assert unshuffled[0] == split.labels[:128].tolist()


def test_augment_batch_mirrors_and_shifts_each_image_on_its_own() -> None:
    import itertools

    from fmnist_toolkit.data import augment_batch

    images = torch.rand(64, 1, 28, 28)
    augmented = augment_batch(images, torch.Generator().manual_seed(0))
    again = augment_batch(images, torch.Generator().manual_seed(0))
    assert augmented.shape == images.shape and torch.equal(augmented, again)

    def transform_of(original: torch.Tensor, result: torch.Tensor) -> tuple[bool, int, int]:
        for flip, dy, dx in itertools.product((False, True), range(5), range(5)):
            source = original.flip(-1) if flip else original
            padded = torch.nn.functional.pad(source, (2, 2, 2, 2))
            if torch.equal(padded[..., dy : dy + 28, dx : dx + 28], result):
                return flip, dy, dx
        raise AssertionError("not a mirrored and shifted copy of its image")

    transforms = [transform_of(images[i], augmented[i]) for i in range(len(images))]
    assert len(set(transforms)) > 10, "each image draws its own mirror and shift"
    assert {flip for flip, _, _ in transforms} == {False, True}
