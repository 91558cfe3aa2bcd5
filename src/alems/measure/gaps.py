"""Gaps between samples that could hide a whole energy-counter wrap.

Wrap correction adds one counter range to every negative step; if the counter wrapped
twice between two samples a whole range is lost without a trace. A gap can hold a full
range when gap × the zone's plausible maximum power ≥ the range. That power is a bound the
run itself cannot shrink (a stall that hides a range also hides the power that would show
it): the zone's highest power limit as powercap reports it (`constraint_*_max_power_uw`,
`Column.max_power_w`), else names.PLAUSIBLE_MAX_W of its domain. Such a gap makes the energy
of that domain over any span containing it unknown (NULL with the reason `gap_reason`),
never a silently low number; on real RAPL (ranges of ~262 kJ) only gaps of minutes qualify.
`check_rate` refuses a sampling rate at which an ordinary gap (names.ORDINARY_GAP_PERIODS
periods) could already do so.
"""

from __future__ import annotations

import numpy as np

from alems.errors import AlemsError
from alems.measure.names import ORDINARY_GAP_PERIODS, PLAUSIBLE_MAX_W


def range_j(col) -> float | None:
    """A wrapping energy column's range in J (None when it does not wrap)."""
    if col.kind != "energy" or not col.wrap_raw:
        return None
    return col.wrap_raw * col.scale / 1e6


def plausible_w(col) -> float | None:
    """The most power zone `col` can draw on average over a gap (see the module docstring);
    None for a domain without a ceiling."""
    if col.max_power_w is not None and col.max_power_w > 0:
        return float(col.max_power_w)
    return PLAUSIBLE_MAX_W.get(col.domain)


def min_safe_gap_ns(columns) -> dict[str, tuple[float, str, float]]:
    """domain -> (the shortest gap in ns that could hold a whole range of one of its
    zones, that zone's name, the zone's plausible power in W)."""
    out: dict[str, tuple[float, str, float]] = {}
    for col in columns:
        rj = range_j(col)
        power_w = plausible_w(col) if rj is not None else None
        if rj is None or power_w is None:
            continue
        limit_ns = rj / power_w * 1e9
        if col.domain not in out or limit_ns < out[col.domain][0]:
            out[col.domain] = (limit_ns, col.zone or col.name, power_w)
    return out


def check_rate(hz: float, columns) -> None:
    """Refuse `hz` when an ordinary gap could hold a whole counter range."""
    gap_ns = ORDINARY_GAP_PERIODS * 1e9 / hz
    for dom, (limit_ns, zone, power_w) in min_safe_gap_ns(columns).items():
        if gap_ns >= limit_ns:
            need = ORDINARY_GAP_PERIODS * 1e9 / limit_ns
            raise AlemsError(
                f"--hz {hz:g} is too low for {dom} zone {zone}: its counter wraps after "
                f"{limit_ns / 1e9 * power_w:g} J, {limit_ns / 1e9:.3g} s at "
                f"{power_w:g} W, so a skipped sample could hide a whole wrap; "
                f"use --hz above {need:.3g}")


def _gap(dom: str, zone: str, start_ns: int, end_ns: int, limit_ns: float) -> dict:
    return {"domain": dom, "zone": zone, "start_ns": int(start_ns), "end_ns": int(end_ns),
            "gap_s": (int(end_ns) - int(start_ns)) / 1e9, "limit_s": limit_ns / 1e9}


def wrap_gaps(t_ns: np.ndarray, columns) -> list[dict]:
    """Every gap between consecutive samples that could hide a wrap, per domain:
    {"domain", "zone", "start_ns", "end_ns", "gap_s", "limit_s"}."""
    t = np.asarray(t_ns, dtype=np.int64)
    if len(t) < 2:
        return []
    d = np.diff(t)
    return [_gap(dom, zone, t[i], t[i + 1], limit_ns)
            for dom, (limit_ns, zone, _) in min_safe_gap_ns(columns).items()
            for i in np.flatnonzero(d >= limit_ns)]


def min_gap_floor_ns(columns) -> int | None:
    """The shortest gap that could ever hold a whole range: gaps at least this long are
    kept while samples stream by (`result.Ends`), the others never matter. None when no
    energy column wraps."""
    limits = [limit for limit, _, _ in min_safe_gap_ns(columns).values()]
    return int(min(limits)) if limits else None


def wrap_gaps_from_ends(ends, columns) -> list[dict]:
    """`wrap_gaps` from the long gaps that `ends` kept while the samples streamed by."""
    if ends.samples < 2 or not ends.gaps:
        return []
    return [_gap(dom, zone, start, end, limit_ns)
            for dom, (limit_ns, zone, _) in min_safe_gap_ns(columns).items()
            for start, end in ends.gaps if end - start >= limit_ns]


def gap_reason(g: dict) -> str:
    return (f"a {g['gap_s']:.3g} s gap between samples could hide a whole {g['domain']} "
            f"counter wrap (zone {g['zone']} can wrap in {g['limit_s']:.3g} s at plausible "
            "maximum power); energy unknown")


def gaps_within(gaps: list[dict], domain: str, t0_ns: int, t1_ns: int) -> list[dict]:
    """The gaps of `domain` that overlap [t0, t1]."""
    return [g for g in gaps if g["domain"] == domain
            and g["end_ns"] > t0_ns and g["start_ns"] < t1_ns]
