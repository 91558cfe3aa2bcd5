"""Locate files shipped in the top-level `data/` folder (installed as `alems._data`).

An installed A-LEMS finds them in the package ``alems._data``. A source checkout run with
``PYTHONPATH=src`` (no install) has no such package, so we fall back to the repository's
own ``data/`` folder next to ``src/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_REPO_DATA = Path(__file__).resolve().parents[2] / "data"


def _root() -> Path:
    try:
        root = Path(str(resources.files("alems._data")))
    except (ModuleNotFoundError, TypeError):
        return _REPO_DATA
    if root.is_dir():
        return root
    return _REPO_DATA


def data_path(relative: str) -> Path:
    """Path of a shipped data file, e.g. ``data_path("tasks/gsm8k_basic.jsonl")``."""
    return _root() / relative


def data_dir(relative: str = "") -> Path:
    return data_path(relative) if relative else _root()
