"""The instrument: energy and performance counters sampled on one clock, usable without
any LLM. `Sampler` (C core) and `ReplaySampler` (recorded tables) both satisfy the
`SamplerProtocol` the experiment room codes against.

Modules: names (constants), sources/ (discovery), plan (what to sample), sampler
(start/stop/drain), result (SampleResult and its columns), spawn (gated commands), ctxsw
(the workload's context switches), estimate, replay; _native is the only cffi user.

The public names below are loaded on first use (PEP 562), so that `alems.measure.names`
stays cheap to import (the CLI's `--help` needs it, not the C extension or pyarrow).
"""

from __future__ import annotations

import importlib

from alems.measure.names import (DOMAINS, ENERGY_ORDER, MAX_HZ, MIN_HZ, PHASES_METADATA_KEY,
                                 RUN_METADATA_KEY, SOURCE_NAMES)

_LAZY = {
    "Sampler": "sampler", "SampleResult": "result", "Phase": "result",
    "ReplaySampler": "replay", "synthetic_table": "replay", "SamplerProtocol": "protocol",
    "spawn_gated": "spawn", "plan_sources": "plan", "choose_energy": "plan",
    "energy_source_label": "plan", "process_switches": "ctxsw", "SwitchTracker": "ctxsw",
    "Switches": "ctxsw",
}

__all__ = ["DOMAINS", "ENERGY_ORDER", "MAX_HZ", "MIN_HZ", "PHASES_METADATA_KEY",
           "RUN_METADATA_KEY", "SOURCE_NAMES", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'alems.measure' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"alems.measure.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
