"""t-SNE of all 10,000 test codes of a saved autoencoder: scikit-learn (fmt's) vs openTSNE.

Both seeded, PCA-initialised, perplexity 30, all cores; reports wall time and the 5-NN class
accuracy of each embedding (the figure `fmt ae latent-plot` prints). Target: under 60 s on 2 cores.

Usage: FMT_HOME=... python benchmarks/tsne_speed.py --model ae-16 --data-dir ../shared/fashion-mnist
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from fmnist_toolkit.engine.latent import knn_accuracy, open_latent_space, tsne_2d


def open_tsne(codes: np.ndarray, seed: int, perplexity: float) -> np.ndarray:
    """openTSNE's FFT-accelerated t-SNE, set up like fmt's (install openTSNE to compare)."""
    from openTSNE import TSNE

    embedding = TSNE(perplexity=perplexity, initialization="pca", random_state=seed, n_jobs=-1)
    return np.asarray(embedding.fit(np.ascontiguousarray(codes, dtype=np.float64)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ae-16")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/fashion-mnist"))
    parser.add_argument("--perplexity", type=float, default=30.0)
    args = parser.parse_args()
    space = open_latent_space(args.model, data_dir=args.data_dir, device="cpu")
    print(f"{len(space.codes)} codes of {space.name}, {os.cpu_count()} CPU cores")
    for label, embed in (("scikit-learn", tsne_2d), ("openTSNE", open_tsne)):
        started = time.perf_counter()
        try:
            coords = embed(space.codes, 0, args.perplexity)
        except ImportError:
            print(f"  {label:13s} not installed")
            continue
        seconds = time.perf_counter() - started
        accuracy = knn_accuracy(coords, space.labels)
        print(f"  {label:13s} {seconds:6.1f} s   5-NN accuracy {accuracy:.1%}")


if __name__ == "__main__":
    main()
