"""The dashboard's page data without a browser (issue 22): the run page's smoothed curve,
its window and the source's ceiling, the tool-call table from the stored trace, the compare
page's ratio interval, the groups list, tags and the numbers' precision."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("tsdownsample")
pytest.importorskip("httpx")
pytest.importorskip("scipy")

from alems.analysis import views  # noqa: E402
from alems.dashboard import curves, pages  # noqa: E402
from alems.errors import UsageError  # noqa: E402
from alems.experiment.providers import ToolCall  # noqa: E402
from alems.experiment.workflows.base import Tally  # noqa: E402
from alems.experiment.workflows.common import run_call, skipped  # noqa: E402

from waiting import wait_until  # noqa: E402


def noisy_estimate_trace(n: int = 86_000, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """1 kHz samples of an estimate that jumps between 0, 5 and 10 W each ms, with 30 ms
    bursts at 30 W (above a 20 W ceiling): (t_ns, cumulative energy µJ)."""
    rng = np.random.default_rng(seed)
    watts = rng.choice([0.0, 5.0, 10.0], size=n)
    for start in range(500, n, 7_000):
        watts[start:start + 30] = 30.0
    t_ns = np.arange(n, dtype=np.int64) * 1_000_000
    return t_ns, np.cumsum(watts * 1e3)        # W × 1 ms = 1e3 µJ


# ------------------------------------------------------------------ curves
def test_default_window_shows_at_most_1000_and_at_least_400_points():
    for span_s in (0.05, 0.3, 1.7, 86.0, 3600.0):
        w = curves.default_window_ms(span_s, 0.001)
        assert w in curves.WINDOW_STEPS_MS
        n = span_s * 1e3 / w
        assert n <= curves.TARGET_POINTS and (n >= 400 or w == 2.0)
    assert curves.default_window_ms(86.0, 0.001) == 100.0


def test_window_means_are_the_energy_over_each_window():
    t_ns, e = noisy_estimate_trace(10_000)
    mid, w = curves.window_mean_power(t_ns, e, 100.0)
    assert mid.size == 100 and mid[0] == pytest.approx(0.05)
    watts = np.diff(e, prepend=0.0) / 1e3
    expected = [watts[i * 100 + 1: i * 100 + 101].mean() for i in range(99)]
    assert w[:99] == pytest.approx(expected, rel=1e-9)


def test_curves_are_clipped_to_the_ceiling_and_count_what_was():
    import pyarrow as pa

    t_ns, e = noisy_estimate_trace()
    table = pa.table({"t_ns": t_ns, "pkg_energy_uj": e})
    free = curves.curves_from_table(table)["pkg"]
    assert free["w"].max() > 20.0 and free["clipped"] == 0     # the raw envelope overshoots
    c = curves.curves_from_table(table, ceilings_w={"pkg": 20.0})["pkg"]
    assert c["w"].max() <= 20.0 and c["smooth_w"].max() <= 20.0
    assert c["clipped"] == int((free["w"] > 20).sum() + (free["smooth_w"] > 20).sum()) > 0
    assert c["window_ms"] == 100.0 and 400 <= c["smooth_w"].size <= 1000
    # readable: the smoothed curve moves far less from point to point than the raw one
    assert np.median(abs(np.diff(c["smooth_w"]))) < np.median(abs(np.diff(c["w"]))) / 3


def test_window_param_accepts_the_offered_steps_only():
    assert pages.window_param(None) is None and pages.window_param("auto") is None
    assert pages.window_param("50") == 50.0
    for bad in ("3", "nan", "-5", "1e400", "abc"):
        with pytest.raises(UsageError, match="window_ms must be one of"):
            pages.window_param(bad)


def test_ceilings_of_older_estimate_files_come_from_w_per_core_and_the_hosts_cpus(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    table = pa.table({"t_ns": [0, 1], "pkg_energy_uj": [0.0, 1.0]})
    pq.write_table(table.replace_schema_metadata(
        {"estimate_model": json.dumps({"w_per_core": 10.0})}), path)
    assert curves.read_power_ceilings(path, cpus=2) == {"pkg": 20.0}
    assert curves.read_power_ceilings(path) == {}
    pq.write_table(table.replace_schema_metadata(
        {"alems.power_ceiling_w": json.dumps({"pkg": 95.0, "dram": "x"})}), path)
    assert curves.read_power_ceilings(path, cpus=2) == {"pkg": 95.0}


def test_the_sampler_states_the_estimates_ceiling():
    from alems.measure.estimate import power_ceilings_w
    from alems.measure.sources.base import Column

    zones = [Column("pkg_0", [], "energy", domain="pkg", max_power_w=95.0),
             Column("pkg_1", [], "energy", domain="pkg", max_power_w=95.0),
             Column("dram_0", [], "energy", domain="dram")]
    assert power_ceilings_w(zones, None) == {"pkg": 190.0}       # dram states no limit
    assert power_ceilings_w([], {"w_per_core": 10.0}, cpus=2) == {"pkg": 20.0}


# ------------------------------------------------------------------ tool calls
class _Sampler:
    class _Phase:
        detail: dict = {}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def phase(self, *a, **kw):
        return self._Phase()


def test_tool_rows_read_the_trace_the_workflows_store():
    tally = Tally()
    run_call(ToolCall("calculator", {"expression": "2 * 3"}, id="c1"), _Sampler(), tally, 1)
    run_call(ToolCall("nope", {}, malformed="unknown tool 'nope'"), _Sampler(), tally, 2)
    skipped(ToolCall("calculator", {"expression": "1"}), "tool-call limit", tally, 3)
    trace = json.loads(json.dumps(tally.trace))              # as stored in runs.trace_json
    rows = pages.tool_rows(trace)
    assert [r["step"] for r in rows] == ["1", "2", "3"]
    assert [r["tool"] for r in rows] == ["calculator", "nope", "calculator"]
    assert json.loads(rows[0]["input"]) == {"expression": "2 * 3"}
    assert rows[0]["output"] == "6" and rows[0]["status"] == "ok"
    assert rows[1]["status"] == "malformed: unknown tool 'nope'"
    assert rows[2]["status"] == "not run: tool-call limit"


# ------------------------------------------------------------------ compare
def _row(ratio, low, high, df, confidence=0.95):
    return {"tax_ratio": ratio, "ci_low": low, "ci_high": high, "df": df,
            "confidence": confidence, "ci_null_reason": None}


def test_ratio_of_taxes_combines_the_two_log_variances():
    from scipy import stats as sps

    from alems.analysis.tax import tax_between

    t9 = sps.t.ppf(0.975, 9)
    a = _row(2.0, 2.0 * np.exp(-t9 * 0.1), 2.0 * np.exp(t9 * 0.1), 9.0)
    b = _row(1.25, 1.25 * np.exp(-t9 * 0.1), 1.25 * np.exp(t9 * 0.1), 9.0)
    r = tax_between(a, b)
    assert r["tax_ratio"] == pytest.approx(1.6)
    assert r["df"] == pytest.approx(18.0)            # Satterthwaite: equal se, equal df
    half = sps.t.ppf(0.975, 18.0) * np.sqrt(2) * 0.1
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((1.6 * np.exp(-half), 1.6 * np.exp(half)))
    # B known exactly: A ÷ B's interval is A's, scaled
    exact = _row(2.0, 2.0, 2.0, 5.0)
    r = tax_between(a, exact)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((a["ci_low"] / 2, a["ci_high"] / 2))
    # swapped: the reciprocal interval
    ab, ba = tax_between(a, b), tax_between(b, a)
    assert (ba["ci_low"], ba["ci_high"]) == pytest.approx((1 / ab["ci_high"], 1 / ab["ci_low"]))


def test_ratio_of_taxes_is_not_given_without_both_intervals():
    from alems.analysis.tax import tax_between

    a = _row(2.0, 1.5, 2.5, 9.0)
    assert tax_between(a, a, same_batch=True)["tax_ratio"] is None
    no_ci = dict(a, ci_low=None, ci_high=None, df=None, ci_null_reason="one pair: no interval")
    r = tax_between(a, no_ci)
    assert r["tax_ratio"] is None and "one pair" in r["ci_null_reason"]
    assert tax_between(None, a)["ci_null_reason"] == "A has no overall tax"
    assert tax_between(a, dict(a, confidence=0.9))["tax_ratio"] is None


def test_ratio_of_taxes_interval_covers_the_true_ratio():
    """Two independent batches of 10 log-normal pairs (taxes 3 and 2): the 95 % interval
    of their ratio covers 1.5 in about 95 % of 400 simulated comparisons."""
    from alems.analysis.stats import ratio_of_sums
    from alems.analysis.tax import tax_between

    rng = np.random.default_rng(11)
    sd = 0.3

    def batch(tax):
        lin = rng.lognormal(np.log(50), 0.2, 10)
        est = ratio_of_sums(lin, lin * rng.lognormal(np.log(tax) - sd ** 2 / 2, sd, 10))
        return _row(est.ratio, est.ci_low, est.ci_high, est.df)

    hits = 0
    for _ in range(400):
        r = tax_between(batch(3.0), batch(2.0))
        hits += r["ci_low"] <= 1.5 <= r["ci_high"]
    assert 0.90 <= hits / 400 <= 0.99


# ------------------------------------------------------------------ groups list, tags
@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    from analysis_fixture import build_fixture_db

    return build_fixture_db(tmp_path_factory.mktemp("pages") / "experiments.db",
                            tasks=("gsm8k_basic",), reps=4)


def test_tag_writes_labels_and_the_groups_list_shows_them_read_only(fixture_db):
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app
    from inproc import alems_inproc

    group = "g-20260110-100000"
    p = alems_inproc("tag", "latest", "new-kernel", "v2", "--note", "first <b>run</b>",
                     "--db", str(fixture_db))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"{group}: tagged new-kernel, v2; note added"
    assert alems_inproc("tag", group, "--remove", "v2", "--db", str(fixture_db)).returncode == 0
    with TestClient(create_app(fixture_db), base_url="http://127.0.0.1") as c:
        # until the analysis stack is loaded the list says "summarising…" and reloads
        text = wait_until(lambda: (lambda t: "summarising" not in t and t)(c.get("/").text),
                          "the groups list's summaries")
    row = text.split(f'data-group="{group}"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="tag">new-kernel</span>' in row and ">v2<" not in row
    assert "first &lt;b&gt;run&lt;/b&gt;" in row                       # text, never markup
    # the headline tax with its interval, every arm's accuracy, the energy source
    from alems.analysis.tax import tax_cells

    conn = pages.reads.open_readonly(fixture_db)
    s = pages.summarize(conn, fixture_db, pages.resolve_group(conn, group))[0]
    conn.close()
    cells = tax_cells(views.headline_row(s))
    assert f'<span class="tax">{cells["ratio"]}</span> <span class="ci">{cells["ci"]}</span>' in row
    assert "agentic " in row and "linear " in row and "measured (powercap)" in row


def test_a_cold_groups_list_answers_at_once_and_reloads_itself(fixture_db, monkeypatch):
    import threading

    from starlette.testclient import TestClient

    from alems.dashboard import app as app_mod
    from alems.dashboard.app import create_app

    monkeypatch.setattr(pages, "ANALYSIS_READY", threading.Event())   # still loading
    monkeypatch.setattr(pages, "_summaries", {})
    monkeypatch.setattr(app_mod, "_warm_up", lambda db_path: None)
    with TestClient(create_app(fixture_db), base_url="http://127.0.0.1") as c:
        r = c.get("/")
        assert r.status_code == 200 and '<meta http-equiv="refresh" content="2">' in r.text
        assert "summarising…" in r.text and "g-20260110-100000" in r.text
        pages.ANALYSIS_READY.set()
        r = c.get("/")
        assert "summarising" not in r.text and 'http-equiv="refresh"' not in r.text
        assert '<span class="tax">' in r.text


@pytest.mark.parametrize("args, needle", [
    (["two words"], "a tag is one word"),
    ([], "give tags to add"),
    (["x" * 65], "at most 64 characters"),
    (["--note", "  "], "an empty note says nothing"),
])
def test_tag_refuses_bad_labels_with_one_line(fixture_db, args, needle):
    from inproc import alems_inproc

    p = alems_inproc("tag", "latest", *args, "--db", str(fixture_db))
    assert p.returncode != 0 and needle in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("alems: error:")


def test_an_older_database_gains_the_labels_table(tmp_path):
    import sqlite3

    from alems.store import db as store_db
    from analysis_fixture import build_fixture_db
    from inproc import alems_inproc

    path = build_fixture_db(tmp_path / "experiments.db", tasks=("gsm8k_basic",), reps=2)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE group_labels")
    conn.execute("UPDATE schema_info SET value = ? WHERE key = 'version'",
                 ("5",))     # the version before the labels (6)
    conn.commit()
    conn.close()
    p = alems_inproc("tag", "latest", "old-db", "--db", str(path))
    assert p.returncode == 0, p.stderr
    conn = sqlite3.connect(path)
    assert store_db.schema_version(conn) == store_db.SCHEMA_VERSION
    assert conn.execute("SELECT kind, text FROM group_labels").fetchall() == [("tag", "old-db")]
    conn.close()


# ------------------------------------------------------------------ precision
def test_group_page_numbers_keep_the_precision_their_interval_supports(fixture_db,
                                                                       monkeypatch):
    from starlette.testclient import TestClient

    from alems.analysis.precision import DAGGER, mean_sd_ci
    from alems.dashboard.app import create_app

    group = "g-20260110-100000"
    real = pages.summarize

    def with_a_note(conn, db_path, g, *stamp):
        s, why = real(conn, db_path, g, *stamp)
        s = json.loads(json.dumps(s))              # the cached summary stays as it was
        s["workflows"][0]["dynamic_energy_j"]["ci_note"] = "below 0"
        return s, why

    with TestClient(create_app(fixture_db), base_url="http://127.0.0.1") as c:
        plain = c.get(f"/group/{group}").text
        monkeypatch.setattr(pages, "summarize", with_a_note)
        noted = c.get(f"/group/{group}").text
    conn = pages.reads.open_readonly(fixture_db)
    s = real(conn, fixture_db, pages.resolve_group(conn, group))[0]
    conn.close()
    table = plain.split('id="workflows"', 1)[1].split("</table>", 1)[0]
    for w in s["workflows"]:
        mean_sd, ci = mean_sd_ci(w["dynamic_energy_j"])
        assert f"<td>{mean_sd}</td><td>{ci}</td>" in table
    assert DAGGER not in table and 'id="dagger-note"' not in plain
    assert f"{DAGGER}</td>" in noted and 'id="dagger-note"' in noted
    assert "reaches below 0 J for a positive quantity" in noted


def test_a_run_page_says_when_its_file_states_no_ceiling(fixture_db):
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    conn = pages.reads.open_readonly(fixture_db)
    run_id = pages.reads.group_runs(conn, "g-20260110-100000")[0]["run_id"]
    conn.close()
    with TestClient(create_app(fixture_db), base_url="http://127.0.0.1") as c:
        text = c.get(f"/run/{run_id}").text      # the fixture's files predate the ceiling
    assert "states no ceiling for its source" in text and "unclipped" in text
    assert 'class="warn clipped"' not in text
