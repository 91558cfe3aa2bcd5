"""Printing numbers with the precision their interval supports (no `222.300 J` when the
interval is ±13 J): the half-width is kept to two significant digits and the value and the
bounds are rounded to the same decimal place. JSON output keeps full precision."""

from __future__ import annotations

import math
from typing import TypeGuard

UNCERTAINTY_DIGITS = 2      # significant digits kept of an interval's half-width
NO_INTERVAL_DIGITS = 3      # significant digits of a value that has no interval


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
