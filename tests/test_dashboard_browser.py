"""`alems dashboard` in a real headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright): the server runs as `alems dashboard --port 0`, the database is written by
`alems batch --providers scripted` (plus the analysis fixture for realistic power).

Set ALEMS_DASHBOARD_SHOTS=DIR to keep a screenshot of every view there."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from alems.analysis.tax import tax_cells
from alems.analysis.views import headline_row

from analysis_fixture import build_fixture_db

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")
sync_api = None   # playwright.sync_api, imported when this tier runs (not at collection)


@pytest.fixture(scope="module", autouse=True)
def _browser_stack():
    global sync_api
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    pytest.importorskip("starlette")
    pytest.importorskip("scipy")
    sync_api = pytest.importorskip("playwright.sync_api")


FIXTURE_GROUP = "g-20260110-100000"
SCRIPTED_GROUP = "g-scripted"
SHOTS = os.environ.get("ALEMS_DASHBOARD_SHOTS")
BATCH_FLAGS = ["--providers", "scripted", "--hz", "200", "--baseline-duration", "0.05",
               "--baseline-reps", "1"]


def _env(cwd: Path) -> dict:
    env = dict(os.environ, ALEMS_DB=str(cwd / "unused.db"))
    return env


def _alems(cwd: Path, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "alems", *args], cwd=cwd, env=_env(cwd),
                          capture_output=True, text=True, timeout=timeout)


def start_dashboard(db: Path, *extra) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "alems", "dashboard", "--db", str(db),
                             "--port", "0", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no URL printed: {line!r} {proc.stderr.read()}")
    return proc, m.group(1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dashb")
    path = build_fixture_db(root / "data" / "experiments.db")
    proc = _alems(root, "batch", "--tasks", "gsm8k_basic", "--repetitions", "3", *BATCH_FLAGS,
                  "--db", str(path), "--group-id", SCRIPTED_GROUP)
    assert proc.returncode == 0, proc.stderr
    return path


@pytest.fixture(scope="module")
def server(db):
    proc, url = start_dashboard(db)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright (shared with test_dashboard_xss_browser)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)")
    api = pytest.importorskip("playwright.sync_api")
    with api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    pg.close()
    assert not errors, f"JavaScript errors: {errors}"


def shot(page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def test_groups_page_lists_both_groups(page, server):
    page.goto(server)
    rows = page.locator("#groups tbody tr")
    assert {rows.nth(i).get_attribute("data-group") for i in range(rows.count())} == {
        FIXTURE_GROUP, SCRIPTED_GROUP}
    text = page.locator(f'tr[data-group="{SCRIPTED_GROUP}"]').inner_text()
    assert "completed" in text and "6/6" in text and "ESTIMATE" in text
    shot(page, "groups")


@pytest.mark.parametrize("group", [FIXTURE_GROUP, SCRIPTED_GROUP])
def test_group_page_headline_is_alems_summary_json(page, server, db, group):
    proc = _alems(db.parent, "summary", "--db", str(db), "--group-id", group, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    expected = headline_row(json.loads(proc.stdout))
    page.goto(f"{server}group/{group}")
    head = page.locator("#headline")
    if expected is None or expected["tax_ratio"] is None:
        assert "no" in head.inner_text().lower()
    else:
        assert float(head.get_attribute("data-tax-ratio")) == pytest.approx(
            expected["tax_ratio"], rel=1e-12)
        assert tax_cells(expected)["ratio"] in head.inner_text()
    page.wait_for_selector("#fig-energy .main-svg")
    assert page.locator("#fig-energy g.trace.boxes").count() >= 1
    shot(page, f"group-{group}")


def test_group_page_plots_render(page, server):
    page.goto(f"{server}group/{FIXTURE_GROUP}")
    page.wait_for_selector("#fig-phases .main-svg")
    assert page.locator("#fig-phases g.trace.bars").count() >= 4   # one per phase kind
    assert page.locator("#warnings li").count() >= 1


def test_run_page_power_curve_with_phases_and_zoom(page, server, db):
    import sqlite3

    conn = sqlite3.connect(db)
    run_id = conn.execute("SELECT r.run_id FROM runs r JOIN experiments e USING (exp_id) "
                          "WHERE e.group_id = ? AND r.workflow_type = 'agentic' "
                          "AND r.status = 'ok' LIMIT 1", (FIXTURE_GROUP,)).fetchone()[0]
    conn.close()
    page.goto(f"{server}run/{run_id}")
    page.wait_for_selector("#fig-power .main-svg")
    svg_text = page.locator("#fig-power").inner_text()
    for name in ("planning", "execution", "synthesis"):
        assert name in svg_text
    assert page.locator("#fig-power g.trace.scatter").count() >= 2   # pkg and core
    assert page.locator("#phases tbody tr").count() >= 6
    shot(page, "run")
    page.evaluate("Plotly.relayout('fig-power', {'xaxis.range': [0.1, 0.2]})")
    page.wait_for_function("document.getElementById('fig-power').dataset.zoomed !== undefined")
    xs = page.evaluate("document.getElementById('fig-power').data[0].x")
    assert min(xs) >= 0.09 and max(xs) <= 0.21


def test_scripted_run_shows_answer_plan_and_tool_calls(page, server, db):
    import sqlite3

    conn = sqlite3.connect(db)
    run_id = conn.execute("SELECT r.run_id FROM runs r JOIN experiments e USING (exp_id) "
                          "WHERE e.group_id = ? AND r.workflow_type = 'agentic' LIMIT 1",
                          (SCRIPTED_GROUP,)).fetchone()[0]
    conn.close()
    page.goto(f"{server}run/{run_id}")
    assert page.locator("#answer").inner_text().count("expected") == 1
    assert page.locator("#plan").count() == 1 and page.locator("#plan").inner_text().strip()
    assert page.locator("#counters").inner_text().count("energy_source") == 1
    shot(page, "run-scripted")


def test_compare_page(page, server):
    page.goto(f"{server}compare?a={FIXTURE_GROUP}&b={SCRIPTED_GROUP}")
    assert page.locator(".side").count() == 2
    page.wait_for_selector("#fig-compare .main-svg")
    shot(page, "compare")


def test_unknown_group_is_a_clear_page(page, server):
    page.goto(f"{server}group/nope")
    assert "unknown group id 'nope'" in page.locator("#problem").inner_text()


def test_live_view_follows_a_running_batch(page, db, tmp_path):
    live_db = tmp_path / "data" / "experiments.db"
    proc_srv, url = start_dashboard(live_db)
    batch = subprocess.Popen(
        [sys.executable, "-m", "alems", "batch", "--tasks", "gsm8k_basic", "--repetitions", "4",
         *BATCH_FLAGS, "--cool-down", "0.7", "--db", str(live_db), "--group-id", "g-live"],
        cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        page.goto(url + "live")        # before the batch has written anything: a clear page
        deadline = time.monotonic() + 60
        while "g-live" not in page.content() and time.monotonic() < deadline:
            page.wait_for_timeout(300)
            page.goto(url + "live?group=g-live")
        page.wait_for_selector("#live[data-done]", timeout=20_000)
        first = int(page.locator("#live").get_attribute("data-done"))
        page.wait_for_function(f"Number(document.getElementById('live').dataset.done) > {first}",
                               timeout=60_000)
        assert "ETA" in page.locator("#live").inner_text()
        done_in_table = sum(int(page.locator("#live-workflows tbody tr").nth(i).locator("td").nth(1)
                                .inner_text()) for i in range(2))
        assert done_in_table >= first + 1
        shot(page, "live-progress")
    finally:
        batch.wait(120)
        stop(proc_srv)
    assert batch.returncode == 0


def test_live_view_draws_the_partial_samples_stream_as_it_grows(page, tmp_path):
    db = build_fixture_db(tmp_path / "experiments.db", tasks=("gsm8k_basic",), reps=1,
                          planned_reps=3, status="running")
    proc, url = start_dashboard(db)
    folder = tmp_path / "samples" / f"group_id={FIXTURE_GROUP}" / "exp_id=1"
    schema = pa.schema([("t_ns", pa.int64()), ("pkg_energy_uj", pa.float64())])
    sink = pa.OSFile(str(folder / "run_id=7.parquet.partial"), "wb")
    writer = pa.ipc.new_stream(sink, schema)

    def write(i0: int, n: int, watts: float):
        t = (np.arange(i0, i0 + n) * 1_000_000).astype(np.int64)
        e = np.arange(i0, i0 + n) * watts * 1000.0
        writer.write_table(pa.table({"t_ns": t, "pkg_energy_uj": e}, schema=schema))
        sink.flush()

    try:
        write(0, 400, 12.0)
        page.goto(url + "live")
        page.wait_for_selector("#live[data-curve-points]", timeout=10_000)
        page.wait_for_selector("#fig-live .main-svg")
        n1 = page.evaluate("document.getElementById('fig-live').data[0].x.length")
        write(400, 800, 12.0)
        page.wait_for_function(f"document.getElementById('fig-live').data[0].x.length > {n1}",
                               timeout=10_000)
        shot(page, "live-curve")
    finally:
        writer.close()
        sink.close()
        stop(proc)


def test_token_page_then_results(page, db):
    proc, url = start_dashboard(db, "--token", "tok-123-tok-123-tok-123")
    try:
        page.goto(url)
        assert "needs its token" in page.inner_text("body")
        shot(page, "token")
        page.fill("#token", "tok-123-tok-123-tok-123")
        page.click("button[type=submit]")
        page.wait_for_selector("#groups")
    finally:
        stop(proc)
