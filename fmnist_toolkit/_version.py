"""The toolkit's version, in one place (read by pyproject.toml and the code)."""

__version__ = "0.1.0"
