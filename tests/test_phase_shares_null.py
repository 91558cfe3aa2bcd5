"""Issue 18 item 6: the summary never fills phase energy the measurement refused (NULL:
a sample gap could hide a counter wrap); the shares add up the same runs above and below
the line."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("pandas")
pytest.importorskip("scipy")

from alems.analysis.groups import open_db, resolve_group  # noqa: E402
from alems.analysis.summary import build_summary  # noqa: E402
from analysis_fixture import build_fixture_db  # noqa: E402

TASK = "gsm8k_basic"


def _agentic_runs(raw) -> list[int]:
    return [r for (r,) in raw.execute(
        "SELECT r.run_id FROM runs r JOIN experiments e USING (exp_id) WHERE e.task_name = ? "
        "AND r.workflow_type = 'agentic' AND r.status = 'ok' ORDER BY r.run_id", (TASK,))]


def _expected_llm_share(raw, run_ids: list[int]) -> float:
    marks = ",".join("?" * len(run_ids))
    llm = raw.execute(f"SELECT SUM(energy_uj) FROM phases WHERE kind = 'llm' AND run_id IN "
                      f"({marks})", run_ids).fetchone()[0]
    pkg = raw.execute(f"SELECT SUM(pkg_energy_uj) FROM runs WHERE run_id IN ({marks})",
                      run_ids).fetchone()[0]
    return llm / pkg


@pytest.mark.parametrize("run_energy_null", [True, False])
def test_null_phase_energy_is_not_refilled_and_its_run_leaves_both_sides(tmp_path,
                                                                         run_energy_null):
    db = build_fixture_db(tmp_path / "e.db", with_error=False)
    raw = sqlite3.connect(db)
    runs = _agentic_runs(raw)
    gap_run = runs[1]
    # what the measurement stores when a gap could hide a wrap: NULL phase energy (and,
    # when the gap falls inside the run's span, NULL package energy too)
    raw.execute("UPDATE phases SET energy_uj = NULL WHERE run_id = ? AND kind = 'llm'",
                (gap_run,))
    if run_energy_null:
        raw.execute("UPDATE runs SET pkg_energy_uj = NULL WHERE run_id = ?", (gap_run,))
    raw.commit()
    kept = [r for r in runs if r != gap_run]
    expected = _expected_llm_share(raw, kept)

    conn = open_db(db)
    s = build_summary(conn, db, resolve_group(conn, "latest"))
    llm = next(p for p in s["phases"] if p["task"] == TASK and p["kind"] == "llm")
    assert llm["share"] == pytest.approx(expected, rel=1e-12)
    assert llm["n_runs"] == len(kept)
    for basis in ("stage", "activity"):
        shares = [p["share"] for p in s["phases"] if p["task"] == TASK and p["basis"] == basis]
        assert sum(shares) == pytest.approx(1.0, abs=1e-9)
    assert any("1 agentic run(s) left out of the phase shares" in w for w in s["warnings"])
    # the other task, untouched, keeps all its runs
    other = next(p for p in s["phases"] if p["task"] != TASK and p["kind"] == "llm")
    assert other["n_runs"] == len(runs)
