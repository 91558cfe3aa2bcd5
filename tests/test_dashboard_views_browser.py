"""What the dashboard draws, in a real headless Chromium (issue 22): a readable run curve
(smoothed, window stated and changeable, raw envelope one click away, never above the
source's ceiling), a filled tool-call table, a labelled compare chart with A and B named
and coloured, the groups list's tax, labels and filter, the group page's warnings by kind,
and the live page's ESTIMATE label, UTC times and shaded phases.

Set ALEMS_DASHBOARD_SHOTS=DIR to keep a screenshot of every view there."""

from __future__ import annotations

import json
import re
import sqlite3

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from alems.analysis.summary_warnings import WARNING_KINDS, warning_groups
from alems.measure.names import POWER_CEILING_METADATA_KEY

from analysis_fixture import build_fixture_db
from inproc import alems_inproc
from test_dashboard_browser import (FIXTURE_GROUP, SCRIPTED_GROUP, _browser_stack,  # noqa: F401
                                    browser, db, page, server, shot, start_dashboard, stop)
from test_dashboard_pages import _Sampler, noisy_estimate_trace

pytestmark = pytest.mark.browser
CEILING_W = 20.0


def _one(db_path, sql: str, *args):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, args).fetchone()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def long_run(db) -> int:
    """A scripted (estimate) run whose samples become 86 s of 1 kHz noise between 0, 5 and
    10 W with 30 W bursts, in a file that states a 20 W ceiling."""
    run_id, rel, t0 = _one(db, "SELECT r.run_id, r.samples_path, r.t_start_ns FROM runs r "
                           "JOIN experiments e USING (exp_id) WHERE e.group_id = ? AND "
                           "r.workflow_type = 'linear' ORDER BY r.run_id DESC LIMIT 1",
                           SCRIPTED_GROUP)
    t_ns, e = noisy_estimate_trace()
    path = db.parent / rel
    meta = dict(pq.read_schema(path).metadata)
    meta[POWER_CEILING_METADATA_KEY.encode()] = json.dumps({"pkg": CEILING_W}).encode()
    table = pa.table({"t_ns": t_ns + t0, "pkg_energy_uj": e}).replace_schema_metadata(meta)
    pq.write_table(table, path)
    return run_id


def _svg_texts(page, selector: str) -> list[str]:
    return page.evaluate(f"[...document.querySelectorAll({selector!r})].map((e) => e.textContent)")


def _traces(page) -> list[dict]:
    return page.evaluate("""document.getElementById('fig-power').data
        .filter((t) => Array.isArray(t.meta))
        .map((t) => ({layer: t.meta[1], visible: t.visible, n: t.x.length,
                      ymax: Math.max(...t.y)}))""")


def test_run_curve_is_smoothed_clipped_and_the_raw_envelope_one_click_away(page, server,
                                                                          long_run):
    page.goto(f"{server}run/{long_run}")
    page.wait_for_selector("#fig-power .main-svg")
    smooth, raw = _traces(page)
    assert smooth["layer"] == "smooth" and smooth["visible"] is not False
    assert 400 <= smooth["n"] <= 1000                 # readable, not 86 000 samples
    assert page.locator("#window-shown").inner_text() == "100 ms"
    assert raw["layer"] == "raw" and raw["visible"] is False
    assert max(smooth["ymax"], raw["ymax"]) <= CEILING_W   # never above the source's ceiling
    note = page.locator("#ceiling-note").inner_text()
    assert "pkg 20 W (ESTIMATE" in note
    clipped = int(page.locator(".clipped").get_attribute("data-clipped"))
    assert clipped > 0 and f"{clipped} pkg point(s) lay above 20 W" in note
    drawn = page.locator("#fig-power g.trace.scatter path.js-line").count()
    shot(page, "run-smoothed")
    page.click("#toggle-raw")
    page.wait_for_function("document.getElementById('fig-power').data"
                           ".some((t) => (t.meta || [])[1] === 'raw' && t.visible === true)")
    assert page.locator("#fig-power g.trace.scatter path.js-line").count() == drawn + 1
    shot(page, "run-raw")
    page.click("#toggle-raw")
    page.wait_for_function("document.getElementById('fig-power').data"
                           ".every((t) => (t.meta || [])[1] !== 'raw' || t.visible === false)")
    # another window: the page says so and draws that many points
    with page.expect_navigation():
        page.select_option("#window-ms", "500")
    assert "window_ms=500" in page.url
    page.wait_for_selector("#fig-power .main-svg")
    assert page.locator("#window-shown").inner_text() == "500 ms"
    assert _traces(page)[0]["n"] == pytest.approx(86_000 / 500, abs=1)
    # a zoom re-reads the window at that window
    page.evaluate("Plotly.relayout('fig-power', {'xaxis.range': [10, 14]})")
    page.wait_for_function("document.getElementById('fig-power').dataset.zoomed !== undefined")
    xs = page.evaluate("document.getElementById('fig-power').data[0].x")
    assert min(xs) >= 9.9 and max(xs) <= 14.1 and len(xs) == pytest.approx(8, abs=1)


def test_tool_call_table_shows_step_tool_input_and_output(page, server, db):
    from alems.experiment.providers import ToolCall
    from alems.experiment.workflows.base import Tally
    from alems.experiment.workflows.common import run_call

    tally = Tally()
    run_call(ToolCall("calculator", {"expression": "17 * 3"}), _Sampler(), tally, 1)
    run_call(ToolCall("lookup", {"table": "elements", "key": "Iron"}), _Sampler(), tally, 2)
    (run_id,) = _one(db, "SELECT r.run_id FROM runs r JOIN experiments e USING (exp_id) "
                     "WHERE e.group_id = ? AND r.workflow_type = 'agentic' LIMIT 1",
                     SCRIPTED_GROUP)
    conn = sqlite3.connect(db)
    trace = json.loads(conn.execute("SELECT trace_json FROM runs WHERE run_id = ?",
                                    (run_id,)).fetchone()[0])
    conn.execute("UPDATE runs SET trace_json = ? WHERE run_id = ?",
                 (json.dumps(trace + tally.trace), run_id))
    conn.commit()
    conn.close()
    page.goto(f"{server}run/{run_id}")
    rows = page.locator("#tool-calls tbody tr")
    assert rows.count() == 2
    cells = [rows.nth(0).locator("td").nth(i).inner_text() for i in range(5)]
    assert cells[0] == "1" and cells[1] == "calculator" and "17 * 3" in cells[2]
    assert cells[3] == "51" and cells[4] == "ok"
    assert rows.nth(1).locator("td").nth(1).inner_text() == "lookup"
    assert all(c.strip() for c in cells)


def test_compare_chart_names_tasks_and_colours_a_and_b(page, server):
    page.goto(f"{server}compare?a={FIXTURE_GROUP}&b={SCRIPTED_GROUP}")
    page.wait_for_selector("#fig-compare .main-svg")
    ticks = _svg_texts(page, "#fig-compare .xtick text")
    assert "gsm8k_basic / local" in ticks and "gsm8k_basic / scripted" in ticks
    assert not any("…" in t or t.startswith("20") for t in ticks)
    legend = _svg_texts(page, "#fig-compare .legendtext")
    assert legend == [f"A: {FIXTURE_GROUP}", f"B: {SCRIPTED_GROUP}"]
    colours = page.evaluate("document.getElementById('fig-compare').data"
                            ".map((t) => t.marker.color)")
    assert len(set(colours)) == 2
    ratio = page.locator("#ratio")
    low, high = float(ratio.get_attribute("data-ci-low")), float(ratio.get_attribute(
        "data-ci-high"))
    assert low < float(ratio.get_attribute("data-ratio")) < high
    assert re.search(r"\[[\d.]+, [\d.]+\]", ratio.inner_text())
    shot(page, "compare-labelled")


def test_groups_list_has_the_tax_labels_and_a_filter(page, server, db):
    p = alems_inproc("tag", SCRIPTED_GROUP, "dry-run", "--note", "scripted model, no energy",
                     "--db", str(db))
    assert p.returncode == 0, p.stderr
    page.goto(server)
    row = page.locator(f'tr[data-group="{SCRIPTED_GROUP}"]')
    row.locator(".headline-tax .tax").wait_for(timeout=60_000)   # a cold list reloads itself
    assert re.search(r"×\s+\[[\d.]+, [\d.]+\]", row.locator(".headline-tax").inner_text())
    assert "dry-run" in row.inner_text() and "scripted model, no energy" in row.inner_text()
    assert "agentic" in row.inner_text() and "ESTIMATE" in row.inner_text()
    page.fill("#group-filter", "DRY-RUN")
    page.wait_for_function("document.querySelectorAll('#groups tbody tr:not([hidden])')"
                           ".length === 1")
    assert page.locator(f'tr[data-group="{FIXTURE_GROUP}"]').is_hidden()
    assert page.locator("#group-count").inner_text() == "1 of 2 batch(es)"
    shot(page, "groups-filtered")
    page.fill("#group-filter", "")
    page.wait_for_function("document.querySelectorAll('#groups tbody tr:not([hidden])')"
                           ".length === 2")


def test_group_warnings_come_by_kind_three_first_the_rest_behind_a_toggle(page, server, db):
    """The page lists `alems summary`'s warnings in `warning_groups` order: three shown, the
    rest behind a toggle. Which kinds the scripted batch raises depends on the machine (a
    busy one adds "not quiet"), so the expected list comes from the summary itself."""
    proc = alems_inproc("summary", "--db", str(db), "--group-id", SCRIPTED_GROUP,
                        "--format", "json")
    assert proc.returncode == 0, proc.stderr
    expected = [k for k, ws in warning_groups(json.loads(proc.stdout)["warnings"]) for _ in ws]
    assert expected[0] == "estimate" and len(expected) > 3     # the scripted batch's estimate
    page.goto(f"{server}group/{SCRIPTED_GROUP}")
    top = page.locator("#warnings-top li")
    assert top.count() == 3
    kinds = [top.nth(i).get_attribute("data-kind") for i in range(3)]
    rest = page.locator("#warnings-more li")
    assert rest.count() >= 1 and not rest.first.is_visible()
    order = kinds + [rest.nth(i).get_attribute("data-kind") for i in range(rest.count())]
    assert order == expected
    assert order == sorted(order, key=WARNING_KINDS.index)
    page.click("#warnings-more summary")
    assert rest.first.is_visible()
    shot(page, "group-warnings")


def test_live_page_labels_the_estimate_in_utc_and_shades_the_last_runs_phases(page, tmp_path):
    db_path = build_fixture_db(tmp_path / "experiments.db", tasks=("gsm8k_basic",), reps=1,
                               planned_reps=3, status="running")
    folder = tmp_path / "samples" / f"group_id={FIXTURE_GROUP}" / "exp_id=1"
    schema = pa.schema([("t_ns", pa.int64()), ("pkg_energy_uj", pa.float64())],
                       metadata={"energy_source": "estimate",
                                 POWER_CEILING_METADATA_KEY: json.dumps({"pkg": CEILING_W})})
    t = np.arange(2000, dtype=np.int64) * 1_000_000
    with pa.OSFile(str(folder / "run_id=9.parquet.partial"), "wb") as sink, \
            pa.ipc.new_stream(sink, schema) as writer:
        writer.write_table(pa.table({"t_ns": t, "pkg_energy_uj": t / 1e6 * 25e3},
                                    schema=schema))   # 25 W: above the ceiling
    proc, url = start_dashboard(db_path)
    try:
        page.goto(url + "live")
        page.wait_for_selector("#live[data-curve-points]")
        assert "ESTIMATE" in page.locator("#live-energy").inner_text()
        name = page.evaluate("document.getElementById('fig-live').data[0].name")
        assert "ESTIMATE" in name
        assert max(page.evaluate("document.getElementById('fig-live').data[0].y")) <= CEILING_W
        assert "pkg point(s) above the source's 20 W drawn at it" in page.locator(
            "#live-curve-note").inner_text()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z",
                            page.locator("#live-updated").inner_text())
        page.wait_for_function("document.getElementById('fig-last').dataset.drawn")
        shapes = page.evaluate("document.getElementById('fig-last').layout.shapes.length")
        assert shapes >= 3                                # planning, execution, synthesis…
        assert "planning" in page.locator("#fig-last").inner_text()
        shot(page, "live-estimate")
    finally:
        stop(proc)
