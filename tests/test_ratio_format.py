"""Issue 18 item 1: a ratio with its interval is printed by one formatter (precision.fmt_ratio,
tax.tax_cells) and never reads "0×", a bound of "1" that is not 1, or a bound equal to the
estimate that is not."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alems.analysis.precision import SAME_DIGITS, fmt_ratio, fmt_ratio_percent
from alems.analysis.tax import ALL, format_headline, tax_cells


def _row(ratio, low=None, high=None, n=7, reason=None):
    return {"task": ALL, "provider": ALL, "n_pairs": n, "n_tasks": 2, "tax_ratio": ratio,
            "ci_low": low, "ci_high": high, "confidence": 0.95, "ci_null_reason": reason,
            "includes_one": None if low is None else low <= 1 <= high}


# The cases the audit saw (issue 18): value, low, high -> what must be printed.
@pytest.mark.parametrize("ratio, low, high, shown", [
    (13.753, 0.074, 2555.7, ("14", "0.074", "2600")),     # was "0× [0–2600]"
    (20.09, 0.31, 1900.0, ("20", "0.31", "1900")),        # was "0×"
    (7.79, 0.52, 117.0, ("7.8", "0.52", "117")),          # was "8×"
    (4.4, 1.3, 62.0, ("4.4", "1.3", "62")),               # was "4× [1–62] … excludes 1"
    (3.1, 0.97, 30.0, ("3.1", "0.97", "30")),             # was "3× [1–30] … includes 1"
    (1.91, 1.72, 2.11, ("1.91", "1.72", "2.11")),         # a narrow interval as before
])
def test_the_audited_headlines(ratio, low, high, shown):
    assert fmt_ratio(ratio, low, high) == shown
    line = format_headline(_row(ratio, low, high))
    assert f": {shown[0]}× [95 % CI {shown[1]}–{shown[2]}]" in line
    assert ": 0×" not in line


def test_a_bound_near_1_keeps_its_side():
    assert fmt_ratio(1.4, 0.996, 2.2)[1] == "0.996"   # "1.0" would hide "includes 1"
    assert fmt_ratio(1.4, 1.004, 2.2)[1] == "1.004"   # "1.0" would hide "excludes 1"
    assert fmt_ratio(1.4, 1.0, 2.2)[1] == "1.00"      # it is 1: it may read 1


def test_no_interval_keeps_three_digits_and_percent_follows_the_ratio():
    assert fmt_ratio(13.753) == ("13.8", "–", "–")
    assert tax_cells(_row(13.753, reason="one pair"))["ci"] == "– (one pair)"
    assert fmt_ratio_percent(13.753, 0.074, 2555.7) == "+1300"   # 14× = +1300 %
    assert fmt_ratio_percent(1.0234, 1.0101, 1.037) == "+2.3"   # 1.023× = +2.3 %
    assert fmt_ratio_percent(0.5, 0.3, 0.8) == "-50"


def test_tax_cells_is_what_the_headline_prints():
    row = _row(13.753, 0.074, 2555.7)
    c = tax_cells(row)
    assert (c["ratio"], c["ci"]) == ("14×", "[0.074, 2600]")
    assert f"{c['ratio']} [95 % CI {c['low']}–{c['high']}]" in format_headline(row)


def _printed_digits_ok(text: str, v: float, digits: int = 2) -> bool:
    """`text` is `v` to at least `digits` significant digits."""
    return abs(float(text) - v) <= 0.5 * 10 ** (math.floor(math.log10(abs(v))) - digits + 1) \
        * (1 + 1e-9)


positive = st.floats(min_value=1e-3, max_value=1e5, allow_nan=False, allow_infinity=False)


@settings(max_examples=3000, deadline=None)
@given(positive, positive, positive)
def test_any_interval_prints_honestly(a, b, c):
    low, v, high = sorted((a, b, c))
    est, lo, hi = fmt_ratio(v, low, high)
    assert _printed_digits_ok(est, v)                        # ≥ 2 significant digits
    assert _printed_digits_ok(lo, low) and _printed_digits_ok(hi, high)
    assert float(lo) <= float(est) <= float(hi)              # order kept
    tol = 0.5 * 10.0 ** (1 - SAME_DIGITS)
    for text, x in ((lo, low), (hi, high)):                  # "1" only when it is 1
        if float(text) == 1.0:
            assert abs(x - 1.0) <= tol
        assert (float(text) < 1) == (x < 1) or abs(x - 1.0) <= tol   # same side of 1
    for text, x in ((lo, low), (hi, high)):                  # never reads as the estimate
        if float(text) == float(est):
            assert abs(x - v) <= tol * max(x, v)
