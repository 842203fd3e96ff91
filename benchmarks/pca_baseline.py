"""The linear baseline of the report: test MSE of PCA reconstructions with k components.

PCA is fitted on the 60,000 training images (pixels in [0, 1]) and reconstructs the 10,000
test images; the MSE is per pixel, as `fmt ae train` reports it.

Usage: python benchmarks/pca_baseline.py --data-dir ../shared/fashion-mnist [--components 2 16 64]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist_toolkit.data import load_fashion_mnist
from fmnist_toolkit.engine.latent import pca_test_mse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/fashion-mnist"))
    parser.add_argument("--components", type=int, nargs="+", default=[2, 16, 64])
    args = parser.parse_args()
    train = load_fashion_mnist("train", args.data_dir)[0]
    test = load_fashion_mnist("test", args.data_dir)[0]
    for k, mse in pca_test_mse(train, test, args.components).items():
        print(f"PCA-{k:<3d} test MSE {mse:.5f}")


if __name__ == "__main__":
    main()
