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
# updates (~1 ms); anything higher only measures the sampler. Below MIN_HZ (one sample per
# 10 s) a run has too few samples to integrate and a stop waits a whole period.
MIN_HZ = 0.1
MAX_HZ = 20_000.0

# Parquet key-value metadata: phase marks (JSON list) and the run's ids (JSON object).
PHASES_METADATA_KEY = "alems.phases"
RUN_METADATA_KEY = "alems.run"
# Parquet key-value metadata: the most power each energy domain's source can report (JSON
# object domain -> W; alems.measure.estimate.power_ceilings_w). Plots never draw above it.
POWER_CEILING_METADATA_KEY = "alems.power_ceiling_w"

# The most power a zone of each domain can plausibly draw on average over a gap between
# two samples (W, per zone: one package / one counter), used where the zone states no power
# limit of its own (powercap constraint_*_max_power_uw: alems.measure.gaps). A gap longer
# than range ÷ this may hide a whole counter wrap, which no correction can recover. Server
# packages reach ~400 W; psys covers the platform.
PLAUSIBLE_MAX_W = {"pkg": 500.0, "core": 400.0, "uncore": 150.0, "dram": 60.0, "psys": 600.0}
# An ordinary gap: one skipped deadline (two periods). A --hz at which such a gap could
# hold a whole counter range is refused.
ORDINARY_GAP_PERIODS = 2
# A run's samples while it runs: an Arrow IPC stream at `<final samples path>` + this.
PARTIAL_SUFFIX = ".partial"
# Parquet key-value metadata of a file recovered from the stream of a killed run (JSON:
# samples, duration_s, recovered_at).
RECOVERED_METADATA_KEY = "alems.recovered"
