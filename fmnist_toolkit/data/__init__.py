"""Fashion-MNIST on disk and on the device: find, read, verify, fetch, and batch it.

The four official IDX files are read gzipped or not, from a data directory or from
torchvision's ``FashionMNIST/raw/`` layout inside it. A split is held as one uint8 tensor on the
training device; a batch is an index slice converted to float there, with no DataLoader.

One module per concern: ``idx`` (where the files are, reading them), ``verify`` (MD5s),
``download`` (fetching and copying), ``batches`` (device-resident splits), ``images``
(augmentation and users' pictures). Their public names are all importable from here.
"""

from fmnist_toolkit.data.batches import (
    DeviceSplit,
    epoch_order,
    row_batches,
    shuffled_order,
    split_indices,
    to_unit_float,
)
from fmnist_toolkit.data.download import (
    copy_dataset,
    fetch_dataset,
    official_files,
    official_mirrors,
)
from fmnist_toolkit.data.idx import (
    CLASS_NAMES,
    DATA_DIR_ENV,
    IMAGE_SIZE,
    RAW_MD5,
    SPLIT_FILES,
    SPLITS,
    DatasetFile,
    FileCheck,
    ProgressHook,
    dataset_sha256,
    default_data_dir,
    fetch_command,
    find_file,
    load_fashion_mnist,
    parse_idx,
    read_idx_bytes,
    resolve_data_dir,
)
from fmnist_toolkit.data.images import (
    augment_batch,
    cutout_batch,
    image_like_fashion_mnist,
    mixup,
)
from fmnist_toolkit.data.verify import check_file, verify_dataset

__all__ = [
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "IMAGE_SIZE",
    "RAW_MD5",
    "SPLITS",
    "SPLIT_FILES",
    "DatasetFile",
    "DeviceSplit",
    "FileCheck",
    "ProgressHook",
    "augment_batch",
    "check_file",
    "copy_dataset",
    "cutout_batch",
    "dataset_sha256",
    "default_data_dir",
    "epoch_order",
    "fetch_command",
    "fetch_dataset",
    "find_file",
    "image_like_fashion_mnist",
    "load_fashion_mnist",
    "mixup",
    "official_files",
    "official_mirrors",
    "parse_idx",
    "read_idx_bytes",
    "resolve_data_dir",
    "row_batches",
    "shuffled_order",
    "split_indices",
    "to_unit_float",
    "verify_dataset",
]
