"""``python -m fmnist_toolkit``: the same app as ``fmt``."""

from fmnist_toolkit.cli import main

if __name__ == "__main__":
    main()
