"""Defaults in one place. Each can be overridden by an environment variable (named
beside it) and by the matching CLI flag, which wins."""

from __future__ import annotations

import os
from pathlib import Path

# Where batch results go unless --db says otherwise (the spec's `data/experiments.db`).
DEFAULT_DB_PATH = Path(os.environ.get("ALEMS_DB", "data/experiments.db"))

DEFAULT_HZ = 1000.0
DEFAULT_SLOW_HZ = 10.0

# Estimate used only where no energy counter is readable: CPU time of the measured
# process tree × this many watts per busy core. Labelled `estimate` wherever it appears.
ESTIMATE_W_PER_CORE = float(os.environ.get("ALEMS_ESTIMATE_W_PER_CORE", "10.0"))

# Country whose grid factors turn energy into carbon/water/methane (data/factors/).
DEFAULT_COUNTRY = os.environ.get("ALEMS_COUNTRY", "US")


def sysfs_root() -> str:
    return os.environ.get("ALEMS_SYSFS_ROOT", "/sys")


def proc_root() -> str:
    return os.environ.get("ALEMS_PROC_ROOT", "/proc")


def msr_path_template() -> str:
    """MSR device path with `{cpu}` where the CPU number goes."""
    return os.environ.get("ALEMS_MSR_PATH", "/dev/cpu/{cpu}/msr")
