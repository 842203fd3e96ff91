"""Ensembles of frozen heads: the mean of the class probabilities of heads trained with
different seeds by `SAVE_LOG_PROBS=DIR python scripts/frozen_head_variants.py plain 60 SEED`.
For every k, the accuracy of every k-head combination of the saved seeds (min, mean, max).
Results: docs/classifier.md.

Usage: python scripts/frozen_head_ensemble.py DIR
"""

import itertools
import sys
from pathlib import Path

import torch

saved = {path.stem: torch.load(path) for path in sorted(Path(sys.argv[1]).glob("lp-*.pt"))}
heads = list(saved)
validation_labels, test_labels = next(iter(saved.values()))[2:]


def accuracy(log_probs: list[torch.Tensor], labels: torch.Tensor) -> float:
    probabilities = torch.stack([lp.exp() for lp in log_probs]).mean(0)
    return (probabilities.argmax(1) == labels).float().mean().item()


for head in heads:
    validation, test = saved[head][:2]
    print(f"{head}: validation {accuracy([validation], validation_labels):.4f}", end=" ")
    print(f"test {accuracy([test], test_labels):.4f}")
for k in range(2, len(heads) + 1):
    results = [
        (
            accuracy([saved[h][0] for h in combo], validation_labels),
            accuracy([saved[h][1] for h in combo], test_labels),
        )
        for combo in itertools.combinations(heads, k)
    ]
    tests = [test for _, test in results]
    mean_validation = sum(v for v, _ in results) / len(results)
    print(
        f"{k} heads: test min {min(tests):.4f} mean {sum(tests) / len(tests):.4f} "
        f"max {max(tests):.4f}; validation mean {mean_validation:.4f}"
    )
