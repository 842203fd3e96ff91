"""``python -m fmnist_toolkit``: the same app as ``fmt``."""

from fmnist_toolkit.cli import run

if __name__ == "__main__":
    run()
