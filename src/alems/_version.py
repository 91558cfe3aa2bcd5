"""The package version (kept apart so the instrument can name it without importing the
public API that alems/__init__.py loads)."""

__version__ = "0.1.0"
