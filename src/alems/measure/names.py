"""Names and limits of the instrument, each defined once: energy domains, source names,
sampling-rate limits and the Parquet metadata keys every samples file uses."""

from __future__ import annotations

# Canonical energy domains, in the order columns and tables list them.
DOMAINS = ("pkg", "core", "uncore", "dram", "psys")

# Sources a caller may name with --sources / Sampler(sources=…); energy sources are tried
# in ENERGY_ORDER when none is named.
SOURCE_NAMES = ("powercap", "perf-power", "msr", "perf", "slow")
ENERGY_ORDER = ("powercap", "perf-power", "msr")

# Sampling rates accepted everywhere (Hz). A 50 µs period is already far above what RAPL
# updates (~1 ms); anything higher only measures the sampler.
MIN_HZ = 0.0  # exclusive
MAX_HZ = 20_000.0

# Parquet key-value metadata: phase marks (JSON list) and the run's ids (JSON object).
PHASES_METADATA_KEY = "alems.phases"
RUN_METADATA_KEY = "alems.run"

# A run's samples while it runs: an Arrow IPC stream at `<final samples path>` + this.
PARTIAL_SUFFIX = ".partial"
# Parquet key-value metadata of a file recovered from the stream of a killed run (JSON:
# samples, duration_s, recovered_at).
RECOVERED_METADATA_KEY = "alems.recovered"
