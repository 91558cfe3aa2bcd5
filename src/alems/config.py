"""Defaults and environment variables, in one place.

Every environment variable the package reads is read here, by a function, when it is
used (never at import: a bad value must not break `import alems` or `alems --help`), and
validated here: a bad value raises one UsageError naming the variable, the value and a
valid example. A CLI flag, where there is one, wins over the variable.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from alems.errors import UsageError

# Where batch results go unless --db or ALEMS_DB says otherwise (the spec's
# `data/experiments.db`).
DB_PATH = Path("data/experiments.db")

DEFAULT_HZ = 1000.0
DEFAULT_SLOW_HZ = 10.0

# Phases + phase marks one run keeps (alems.measure.phases); more are counted as dropped.
MAX_PHASES = 10_000

# Estimate used only where no energy counter is readable: CPU time of the measured
# process tree × this many watts per busy core. Labelled `estimate` wherever it appears.
ESTIMATE_W_PER_CORE = 10.0

# Country whose grid factors turn energy into carbon/water/methane (data/factors/).
COUNTRY = "US"

# The C sampling thread asks for SCHED_FIFO at this priority (best effort; 0 = normal
# scheduling): it sleeps >99 % of the time, and under load normal scheduling wakes it
# milliseconds late.
RT_PRIORITY = 10
RT_PRIORITY_MAX = 99        # SCHED_FIFO's highest priority on Linux
MSR_STRIDE_MAX = 4096       # bytes per emulated register; far above any test layout

# NVIDIA GPUs: NVML is loaded at run time from this library (never linked), and read at
# this rate: the driver's energy counter does not move faster.
NVML_LIB = "libnvidia-ml.so.1"
DEFAULT_GPU_HZ = 100.0

SYSFS_ROOT = "/sys"
PROC_ROOT = "/proc"
MSR_PATH = "/dev/cpu/{cpu}/msr"


def _env(name: str) -> str | None:
    """The variable's value, None when unset or empty (empty means 'use the default')."""
    value = os.environ.get(name)
    return value if value else None


def _bad(name: str, value: str, want: str, example: str) -> UsageError:
    return UsageError(f"environment variable {name}={value!r} is not valid: {want}; "
                      f"e.g. {name}={example}, or unset it")


def _positive_float(name: str, default: float, example: str) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, "not a number", example) from None
    if not math.isfinite(value) or value <= 0:
        raise _bad(name, raw, "must be a finite number > 0", example)
    return value


def _int_in(name: str, default: int, low: int, high: int, example: str) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise _bad(name, raw, "not an integer", example) from None
    if not low <= value <= high:
        raise _bad(name, raw, f"must be an integer from {low} to {high}", example)
    return value


def default_db_path() -> Path:
    """ALEMS_DB, else data/experiments.db."""
    raw = _env("ALEMS_DB")
    if raw is not None and not raw.strip():
        raise _bad("ALEMS_DB", raw, "a path is needed", "data/experiments.db")
    return Path(raw) if raw is not None else DB_PATH


# COLUMNS is clamped: 0 would print nothing, 10**8 would lay out lines of that width.
MIN_COLUMNS, MAX_COLUMNS = 40, 1000


def terminal_columns() -> int | None:
    """COLUMNS (the terminal width a shell exports), clamped to [MIN_COLUMNS, MAX_COLUMNS];
    None if unset or not a number."""
    raw = _env("COLUMNS")
    digits = raw.strip() if raw is not None else ""
    if not digits.isdigit():
        return None
    value = MAX_COLUMNS if len(digits) > 9 else int(digits)
    return min(max(value, MIN_COLUMNS), MAX_COLUMNS)


def environ_with_columns(width: int | None) -> dict[str, str]:
    """The environment as a library that reads $COLUMNS itself (rich) should see it:
    COLUMNS set to `width` (already clamped), or absent."""
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if width is not None:
        environ["COLUMNS"] = str(width)
    return environ


def environ_with(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`: what a measured command is started with."""
    return {**os.environ, **extra}


# The marker FIFO `alems sample` hands its command (measure/markchannel.py).
MARK_ENV = "ALEMS_MARK_FIFO"


def mark_fifo() -> str | None:
    """The marker FIFO named in this process's environment; None outside a measured command."""
    return _env(MARK_ENV)


def estimate_w_per_core() -> float:
    """ALEMS_ESTIMATE_W_PER_CORE (watts per busy core of the CPU-time estimate)."""
    return _positive_float("ALEMS_ESTIMATE_W_PER_CORE", ESTIMATE_W_PER_CORE, "10")


def default_country() -> str:
    """ALEMS_COUNTRY (grid factors' country code), else US."""
    raw = _env("ALEMS_COUNTRY")
    if raw is None:
        return COUNTRY
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,15}", raw.strip()):
        raise _bad("ALEMS_COUNTRY", raw, "a country code of letters", "US")
    return raw.strip()


def factors_path() -> Path | None:
    """ALEMS_FACTORS: a grid-factor CSV overriding the shipped one (None = shipped)."""
    raw = _env("ALEMS_FACTORS")
    return None if raw is None else Path(raw)


def _root(name: str, default: str, example: str) -> str:
    raw = _env(name)
    if raw is None:
        return default
    if not raw.strip():
        raise _bad(name, raw, "a path is needed", example)
    return raw


def sysfs_root() -> str:
    return _root("ALEMS_SYSFS_ROOT", SYSFS_ROOT, "/sys")


def proc_root() -> str:
    return _root("ALEMS_PROC_ROOT", PROC_ROOT, "/proc")


def msr_path_template() -> str:
    """MSR device path with `{cpu}` where the CPU number goes (ALEMS_MSR_PATH)."""
    raw = _root("ALEMS_MSR_PATH", MSR_PATH, MSR_PATH)
    if "{cpu}" not in raw:
        raise _bad("ALEMS_MSR_PATH", raw, "it must contain {cpu}", MSR_PATH)
    # {cpu} is substituted with str.replace (msr_device_path), so other braces are literal.
    return raw


def msr_device_path(template: str, cpu: int) -> str:
    """The MSR path of one CPU: `{cpu}` replaced, any other text (braces too) kept as is."""
    return template.replace("{cpu}", str(cpu))


def rt_priority() -> int:
    """ALEMS_RT_PRIORITY: SCHED_FIFO priority of the sampling thread (0 disables)."""
    return _int_in("ALEMS_RT_PRIORITY", RT_PRIORITY, 0, RT_PRIORITY_MAX, "10")


def cpu_vendor() -> str | None:
    """ALEMS_CPU_VENDOR: 'intel' or 'amd' overriding /proc/cpuinfo; None = detect."""
    raw = _env("ALEMS_CPU_VENDOR")
    if raw is None:
        return None
    if raw.strip().lower() not in ("intel", "amd"):
        raise _bad("ALEMS_CPU_VENDOR", raw, "intel or amd", "intel")
    return raw.strip().lower()


def msr_stride() -> int:
    """ALEMS_MSR_STRIDE: bytes per register in the MSR file (1 on real hardware; test
    fixtures use 8)."""
    return _int_in("ALEMS_MSR_STRIDE", 1, 1, MSR_STRIDE_MAX, "1")


def cloud_model() -> str | None:
    """ALEMS_CLOUD_MODEL: the cloud provider's model name (None = its default)."""
    return _env("ALEMS_CLOUD_MODEL")


def anthropic_api_key() -> str | None:
    return _env("ANTHROPIC_API_KEY")


def _http_url(name: str, example: str) -> str | None:
    raw = _env(name)
    if raw is not None and not re.match(r"https?://[^\s/]+", raw):
        raise _bad(name, raw, "an http(s) URL", example)
    return raw


def anthropic_base_url() -> str | None:
    """ANTHROPIC_BASE_URL: an http(s) URL (None = the SDK's default)."""
    return _http_url("ANTHROPIC_BASE_URL", "https://api.anthropic.com")


# OpenAI-compatible endpoints (alems.experiment.providers.openai_compat). Each preset's
# base URL can be pointed elsewhere (a proxy, a test's loopback server).
GROQ_BASE_URL = "https://api.groq.com/openai/v1"
OLLAMA_BASE_URL = "http://127.0.0.1:11434/v1"


def openai_api_key() -> str | None:
    return _env("OPENAI_API_KEY")


def openai_base_url() -> str | None:
    """OPENAI_BASE_URL (the openai SDK's own variable): None = api.openai.com."""
    return _http_url("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")


def groq_api_key() -> str | None:
    return _env("GROQ_API_KEY")


def groq_base_url() -> str:
    """ALEMS_GROQ_BASE_URL, else Groq's OpenAI-compatible endpoint."""
    return _http_url("ALEMS_GROQ_BASE_URL", GROQ_BASE_URL) or GROQ_BASE_URL


def ollama_base_url() -> str:
    """ALEMS_OLLAMA_BASE_URL, else Ollama's default port on this machine."""
    return _http_url("ALEMS_OLLAMA_BASE_URL", OLLAMA_BASE_URL) or OLLAMA_BASE_URL


def nvml_lib() -> str:
    """ALEMS_NVML_LIB: path (or soname) of the NVML library, else libnvidia-ml.so.1."""
    return _root("ALEMS_NVML_LIB", NVML_LIB, "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1")


def cuda_visible_devices() -> str | None:
    """CUDA_VISIBLE_DEVICES as set (None when unset). Unlike other variables an empty value
    is meaningful here: CUDA then sees no GPU."""
    return os.environ.get("CUDA_VISIBLE_DEVICES")
