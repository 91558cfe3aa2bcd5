"""Locate files shipped in the top-level `data/` folder (installed as `alems._data`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def data_path(relative: str) -> Path:
    """Path of a shipped data file, e.g. ``data_path("tasks/gsm8k_basic.jsonl")``."""
    root = resources.files("alems._data")
    return Path(str(root.joinpath(relative)))


def data_dir(relative: str = "") -> Path:
    return data_path(relative) if relative else Path(str(resources.files("alems._data")))
