"""Copy trained models from a store into the package as bundled models, with their manifest.

Usage: python scripts/bundle_models.py --store DIR NAME [NAME ...] [--retire NAME ...]
                                       [--half NAME ...]

Each model's folder (model.safetensors + config.json) is copied to fmnist_toolkit/pretrained/
and manifest.json records its kind and the SHA-256 of both files, which the store checks
whenever a bundled model is loaded. Models already bundled and not named stay as they are;
--retire removes bundled ones (a superseded model, to keep the bundle under its limit);
--half keeps a named model's float32 weights as float16 (half its bytes; loading widens them).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fmnist_toolkit.storage import BUNDLED_ROOT, bundle_models
from fmnist_toolkit.storage.bundling import BUNDLE_SIZE_LIMIT, bundle_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--retire", nargs="+", default=[], metavar="NAME")
    parser.add_argument("--half", nargs="+", default=[], metavar="NAME")
    args = parser.parse_args()
    manifest = bundle_models(
        args.store, args.names, BUNDLED_ROOT, retire=tuple(args.retire), half=tuple(args.half)
    )
    total = bundle_size(BUNDLED_ROOT)
    print(f"bundled {', '.join(manifest['models'])}: {total / 1e6:.2f} MB ({total:,} bytes)")
    if total >= BUNDLE_SIZE_LIMIT:
        raise SystemExit(f"the bundle is {total / 1e6:.2f} MB, over the 20 MB limit")


if __name__ == "__main__":
    main()
