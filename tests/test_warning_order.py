"""One order of the summary's warnings on every surface (summary_warnings.warning_groups):
grouped by kind, the most consequential first — estimate, not quiet, interval unchecked,
few pairs, then the rest — in the order raised within a kind."""

from __future__ import annotations

from alems.analysis.summary_warnings import (FEW_PAIRS, WARNING_KINDS, _few_pairs,
                                             _outside_checked, estimate_warning,
                                             not_quiet_warning, ordered_warnings,
                                             warning_groups, warning_kind)

ROW = {"task": "t", "provider": "p", "arm": "agentic", "ci_low": 1.0, "ci_high": 2.0,
       "confidence": 0.95, "n_pairs": FEW_PAIRS - 7, "coverage_checked": False,
       "coverage_flags": ["cv 3"]}
LOUD = [{"task_name": "t", "provider": "p", "workflow_type": "linear", "run_number": 1,
         "not_quiet_reason": "load"}]


def test_each_builder_is_recognised_as_its_kind():
    assert [warning_kind(w) for w in (estimate_warning(3) + not_quiet_warning(LOUD)
                                      + _outside_checked(ROW) + _few_pairs(ROW))] == \
        list(WARNING_KINDS[:4])
    assert warning_kind("baseline #1 came from msr but runs used powercap") == "other"


def test_groups_come_most_consequential_first_and_keep_raised_order_within_a_kind():
    other1, other2 = "1 run(s) failed with an error", "baseline #1 was measured after"
    few = _few_pairs(ROW)[0]
    raised = [other1, few, *_outside_checked(ROW), other2, *not_quiet_warning(LOUD),
              *estimate_warning(2), few]
    groups = warning_groups(raised)
    assert [k for k, _ in groups] == ["estimate", "not quiet", "interval unchecked",
                                      "few pairs", "other"]
    assert groups[-1][1] == [other1, other2]
    assert ordered_warnings(raised) == [w for _, ws in groups for w in ws]
    assert len(ordered_warnings(raised)) == len(raised) - 1          # `few` once
