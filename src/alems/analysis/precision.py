"""Printing numbers with the precision their interval supports (no `222.300 J` when the
interval is ±13 J): the half-width is kept to two significant digits and the value and the
bounds are rounded to the same decimal place. JSON output keeps full precision.

A ratio with its (lopsided, log-scale) interval is printed by `fmt_ratio`, the one
formatter of the orchestration tax on every surface: there the half-width can be in the
hundreds, so each number is rounded on its own (see `fmt_ratio`)."""

from __future__ import annotations

import math
from typing import TypeGuard

# The level of every interval unless asked otherwise (`--confidence`); what a summary stored
# for the dashboard is built at (analysis.stored_summary).
DEFAULT_CONFIDENCE = 0.95

UNCERTAINTY_DIGITS = 2      # significant digits kept of an interval's half-width
NO_INTERVAL_DIGITS = 3      # significant digits of a value that has no interval
RATIO_MIN_DIGITS = 2        # significant digits a printed ratio (and each bound) keeps at least
SAME_DIGITS = 6             # numbers equal to this many significant digits are "the same"


def _finite(v) -> TypeGuard[float]:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def decimals_for(half_width: float | None) -> int | None:
    """Decimal places that keep UNCERTAINTY_DIGITS significant digits of `half_width`
    (negative: round to tens, hundreds…); None when there is no usable half-width."""
    if not _finite(half_width) or half_width <= 0:
        return None
    return UNCERTAINTY_DIGITS - 1 - math.floor(math.log10(half_width))


def _fmt(v: float, decimals: int) -> str:
    if decimals >= 0:
        return f"{v:.{decimals}f}"
    return f"{round(v, decimals):.0f}"


def fmt_value(v, half_width=None) -> str:
    """`v` rounded as its interval's half-width allows; 3 significant digits without one."""
    if not _finite(v):
        return "–"
    d = decimals_for(half_width)
    if d is None:       # significant digits, trailing zeros kept, never e-notation
        d = 0 if v == 0 else NO_INTERVAL_DIGITS - 1 - math.floor(math.log10(abs(v)))
    return _fmt(v, d)


def fmt_interval(v, low, high) -> tuple[str, str, str]:
    """(value, low, high) rounded alike, to what the interval (half its width) supports."""
    if not (_finite(low) and _finite(high)):
        return fmt_value(v), "–", "–"
    half = (high - low) / 2
    if half <= 0:   # zero-width interval: the value's own 3 significant digits
        return fmt_value(v), fmt_value(low), fmt_value(high)
    d = decimals_for(half)
    if d is None:  # not reached: a finite positive half-width has its decimals
        return fmt_value(v), fmt_value(low), fmt_value(high)
    return (_fmt(v, d) if _finite(v) else "–"), _fmt(low, d), _fmt(high, d)


def _sig_decimals(v: float, digits: int) -> int:
    """Decimal places that keep `digits` significant digits of `v` (0 for v = 0)."""
    return 0 if v == 0 else digits - 1 - math.floor(math.log10(abs(v)))


def _same(a: float, b: float) -> bool:
    """Equal within rounding: to SAME_DIGITS significant digits."""
    return abs(a - b) <= 0.5 * 10.0 ** (1 - SAME_DIGITS) * max(abs(a), abs(b))


def _ratio_decimals(v: float, low, high) -> dict[str, int]:
    """Decimal places of value 'v', bound 'low' and 'high' (see fmt_ratio)."""
    if not (_finite(low) and _finite(high)):
        return {"v": _sig_decimals(v, NO_INTERVAL_DIGITS)}
    vals = {"low": low, "v": v, "high": high}
    floor_d = decimals_for((high - low) / 2)   # None for a zero-width interval
    d = {k: max(_sig_decimals(x, RATIO_MIN_DIGITS), floor_d if floor_d is not None else -99)
         for k, x in vals.items()}
    cap = {k: _sig_decimals(x, SAME_DIGITS + 1) for k, x in vals.items()}

    def shown(k: str) -> float:
        return float(_fmt(vals[k], d[k]))

    for _ in range(4 * (SAME_DIGITS + 2)):      # each pass adds a digit somewhere, or stops
        changed = False
        for k in ("low", "high"):   # a bound reads 1 only when it is 1
            if shown(k) == 1.0 and not _same(vals[k], 1.0) and d[k] < cap[k]:
                d[k] += 1
                changed = True
        for a, b in (("low", "v"), ("v", "high"), ("low", "high")):
            # order kept; two numbers read alike exactly when they are alike. Both go to
            # the same decimal place first (one grid keeps their order), then finer.
            if _same(vals[a], vals[b]):
                if d[a] != d[b]:
                    d[a] = d[b] = max(d[a], d[b])
                    changed = True
            elif shown(a) >= shown(b):
                grid = max(d[a], d[b]) + (d[a] == d[b])
                d[a] = d[b] = min(grid, max(cap[a], cap[b]))
                changed = True
        if not changed:
            break
    return d


def fmt_ratio(v, low=None, high=None) -> tuple[str, str, str]:
    """(value, low, high) of a ratio and its interval as printed everywhere (the tax on the
    batch's closing lines, `alems summary`, the report and the dashboard).

    Each number keeps at least RATIO_MIN_DIGITS significant digits and at least the decimal
    place of the interval's half-width (2 significant digits of it); then digits are added
    where needed so that a bound reads 1 only when it is 1, two numbers read alike only when
    they are equal (to SAME_DIGITS digits), and low ≤ value ≤ high as printed. Without an
    interval the value keeps NO_INTERVAL_DIGITS significant digits."""
    if not _finite(v):
        return "–", "–", "–"
    d = _ratio_decimals(float(v), low, high)
    if "low" not in d:
        return _fmt(v, d["v"]), "–", "–"
    return _fmt(v, d["v"]), _fmt(low, d["low"]), _fmt(high, d["high"])


def fmt_ratio_percent(v, low=None, high=None) -> str:
    """(ratio − 1) × 100 with a sign, to the precision `fmt_ratio` prints the ratio with
    (two decimal places fewer: 1.023× is +2.3 %)."""
    if not _finite(v):
        return "–"
    pct = (float(v) - 1.0) * 100.0
    text = _fmt(pct, _ratio_decimals(float(v), low, high)["v"] - 2)
    return text if text.startswith("-") else "+" + text


DAGGER = "†"   # marks an interval of a positive quantity that reaches below 0


def dagger_note(pct: int) -> str:
    """The footnote of DAGGER, the same under every table that uses it."""
    return (f"{DAGGER} the {pct} % t interval reaches below 0 J for a positive quantity: too "
            "few or too spread runs; read it as 'at most' its upper bound")


def mean_sd_ci(d: dict) -> tuple[str, str]:
    """('mean ± sd', '[low, high]') of a summary interval dict (mean, sd, ci_low, ci_high,
    ci_note) rounded to what the interval supports; DAGGER marks an interval of a positive
    quantity that reaches below 0 (its `ci_note`)."""
    mean, low, high = fmt_interval(d["mean"], d["ci_low"], d["ci_high"])
    half = None if d["ci_low"] is None else (d["ci_high"] - d["ci_low"]) / 2
    sd = "–" if d["sd"] is None else (
        fmt_value(d["sd"]) if decimals_for(half) is None else fmt_value(d["sd"], half))
    ci = "–" if d["ci_low"] is None else f"[{low}, {high}]" + (DAGGER if d.get("ci_note")
                                                                else "")
    return f"{mean} ± {sd}", ci
