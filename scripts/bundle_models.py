"""Copy trained models from a store into the package as bundled models, with their manifest.

Usage: python scripts/bundle_models.py --store DIR NAME [NAME ...]

Each model's folder (model.safetensors + config.json) is copied to fmnist_toolkit/pretrained/
and manifest.json records its kind and the SHA-256 of both files, which the store checks
whenever a bundled model is loaded. Models already bundled and not named stay as they are.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist_toolkit.storage import BUNDLED_ROOT, bundle_models

SIZE_LIMIT = 20 * 1024 * 1024  # the whole bundle stays under 20 MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    manifest = bundle_models(args.store, args.names, BUNDLED_ROOT)
    total = sum(path.stat().st_size for path in BUNDLED_ROOT.rglob("*") if path.is_file())
    print(f"bundled {', '.join(manifest['models'])}: {total / 2**20:.2f} MB")
    if total > SIZE_LIMIT:
        raise SystemExit(f"the bundle is {total / 2**20:.1f} MB, over the 20 MB limit")


if __name__ == "__main__":
    main()
