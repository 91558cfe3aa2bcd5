"""Gaps between samples that could hide a whole energy-counter wrap.

Wrap correction adds one counter range to every negative step; if the counter wrapped
twice between two samples a whole range is lost without a trace. A gap can hold a full
range when gap × the domain's plausible maximum power ≥ the range. Before a run that is
names.PLAUSIBLE_MAX_W; within a run it is at most RUN_POWER_HEADROOM × the domain's mean
power over the run (the run's own evidence; on real RAPL ranges of ~262 kJ either bound
flags only gaps of minutes). Such a gap makes
the energy of that domain over any span containing it unknown (NULL with the
reason `gap_reason`), never a silently low number. `check_rate` refuses a sampling rate at
which an ordinary gap (names.ORDINARY_GAP_PERIODS periods) could already do so.
"""

from __future__ import annotations

import numpy as np

from alems.errors import AlemsError
from alems.measure.names import ORDINARY_GAP_PERIODS, PLAUSIBLE_MAX_W, RUN_POWER_HEADROOM


def range_j(col) -> float | None:
    """A wrapping energy column's range in J (None when it does not wrap)."""
    if col.kind != "energy" or not col.wrap_raw:
        return None
    return col.wrap_raw * col.scale / 1e6


def min_safe_gap_ns(columns, power_w: dict[str, float] | None = None
                    ) -> dict[str, tuple[float, str]]:
    """domain -> (the shortest gap in ns that could hold a whole range, zone name);
    power_w: the plausible maximum power per domain (default PLAUSIBLE_MAX_W)."""
    power_w = power_w or PLAUSIBLE_MAX_W
    out: dict[str, tuple[float, str]] = {}
    for col in columns:
        rj = range_j(col)
        if rj is None or col.domain not in power_w:
            continue
        limit_ns = rj / power_w[col.domain] * 1e9
        if col.domain not in out or limit_ns < out[col.domain][0]:
            out[col.domain] = (limit_ns, col.zone or col.name)
    return out


def check_rate(hz: float, columns) -> None:
    """Refuse `hz` when an ordinary gap could hold a whole counter range."""
    gap_ns = ORDINARY_GAP_PERIODS * 1e9 / hz
    for dom, (limit_ns, zone) in min_safe_gap_ns(columns).items():
        if gap_ns >= limit_ns:
            need = ORDINARY_GAP_PERIODS * 1e9 / limit_ns
            raise AlemsError(
                f"--hz {hz:g} is too low for {dom} zone {zone}: its counter wraps after "
                f"{limit_ns / 1e9 * PLAUSIBLE_MAX_W[dom]:g} J, {limit_ns / 1e9:.3g} s at "
                f"{PLAUSIBLE_MAX_W[dom]:g} W, so a skipped sample could hide a whole wrap; "
                f"use --hz above {need:.3g}")


def run_plausible_w(t_ns: np.ndarray, energy_uj: dict[str, np.ndarray]) -> dict[str, float]:
    """Plausible maximum power per domain within a run (see the module docstring)."""
    span_s = (float(t_ns[-1]) - float(t_ns[0])) / 1e9
    out = {}
    for dom, cap in PLAUSIBLE_MAX_W.items():
        y = energy_uj.get(dom)
        mean_w = (float(y[-1] - y[0]) / 1e6 / span_s) if y is not None and span_s > 0 else cap
        out[dom] = min(cap, max(1.0, RUN_POWER_HEADROOM * mean_w))
    return out


def wrap_gaps(t_ns: np.ndarray, columns, energy_uj: dict[str, np.ndarray]) -> list[dict]:
    """Every gap between consecutive samples that could hide a wrap, per domain:
    {"domain", "zone", "start_ns", "end_ns", "gap_s", "limit_s"}; energy_uj: the
    wrap-corrected cumulative energy per domain."""
    t = np.asarray(t_ns, dtype=np.int64)
    if len(t) < 2:
        return []
    d = np.diff(t)
    out = []
    for dom, (limit_ns, zone) in min_safe_gap_ns(columns, run_plausible_w(t, energy_uj)).items():
        for i in np.flatnonzero(d >= limit_ns):
            out.append({"domain": dom, "zone": zone, "start_ns": int(t[i]),
                        "end_ns": int(t[i + 1]), "gap_s": float(d[i]) / 1e9,
                        "limit_s": limit_ns / 1e9})
    return out


def min_gap_floor_ns(columns) -> int | None:
    """The shortest gap that could ever hold a whole range (at PLAUSIBLE_MAX_W): gaps at
    least this long are kept while samples stream by (`result.Ends`), the others never
    matter. None when no energy column wraps."""
    limits = [limit for limit, _ in min_safe_gap_ns(columns).values()]
    return int(min(limits)) if limits else None


def wrap_gaps_from_ends(ends, columns) -> list[dict]:
    """`wrap_gaps` from what streamed by: the long gaps `ends` kept and the run's first
    and last values (the run's plausible power needs only those)."""
    if ends.samples < 2 or not ends.gaps:
        return []
    t = np.array([ends.first["t_ns"], ends.last["t_ns"]], dtype=np.int64)
    energy = {d: np.array([ends.first[f"{d}_energy_uj"], ends.last[f"{d}_energy_uj"]])
              for d in PLAUSIBLE_MAX_W if f"{d}_energy_uj" in ends.first}
    out = []
    for dom, (limit_ns, zone) in min_safe_gap_ns(columns, run_plausible_w(t, energy)).items():
        for start, end in ends.gaps:
            if end - start >= limit_ns:
                out.append({"domain": dom, "zone": zone, "start_ns": int(start),
                            "end_ns": int(end), "gap_s": (end - start) / 1e9,
                            "limit_s": limit_ns / 1e9})
    return out


def gap_reason(g: dict) -> str:
    return (f"a {g['gap_s']:.3g} s gap between samples could hide a whole {g['domain']} "
            f"counter wrap (zone {g['zone']} can wrap in {g['limit_s']:.3g} s at plausible "
            "maximum power); energy unknown")


def gaps_within(gaps: list[dict], domain: str, t0_ns: int, t1_ns: int) -> list[dict]:
    """The gaps of `domain` that overlap [t0, t1]."""
    return [g for g in gaps if g["domain"] == domain
            and g["end_ns"] > t0_ns and g["start_ns"] < t1_ns]
