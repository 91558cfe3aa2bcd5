"""Stored XSS in a real browser (issue 24, item 5): every page of a dashboard over a
database whose every stored text carries script (xss_fixture: task, workflow, provider,
model, host, answers, notes, phase names, the group id…) runs none of it — `window.__xss`,
which each payload would set, stays undefined, also after /live has redrawn itself from
/api/live several times."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest

from test_dashboard_browser import browser, start_dashboard, stop  # noqa: F401 (a fixture)
from xss_fixture import GROUP_PAYLOAD, build_xss_db

pytestmark = pytest.mark.browser

TOKEN = "xss-test-token-0123456789"
LIVE_POLLS = 3


@pytest.fixture(scope="module")
def xss_db(tmp_path_factory) -> Path:
    return build_xss_db(tmp_path_factory.mktemp("xssb") / "experiments.db")


def _no_script_ran(page) -> None:
    page.wait_for_load_state("networkidle")   # an injected <img src=x> has failed by now
    assert page.evaluate("window.__xss") is None, page.url


@pytest.fixture(scope="module")
def server(xss_db):
    proc, url = start_dashboard(xss_db)
    yield url
    stop(proc)


def test_no_page_runs_stored_script(browser, server):
    g = quote(GROUP_PAYLOAD, safe="")
    page = browser.new_page()
    try:
        for path in ("", f"group/{g}", "run/1", "run/2", f"compare?a={g}&b={g}"):
            page.goto(server + path)
            _no_script_ran(page)
        page.goto(f"{server}live?group={g}")
        page.wait_for_function(f"Number(document.getElementById('live').dataset.polls) >= "
                               f"{LIVE_POLLS}")
        _no_script_ran(page)
        # the redrawn table shows the stored text as text
        assert "<img src=x" in page.locator("#live-workflows tbody").inner_text()
    finally:
        page.close()


def test_the_login_page_runs_no_script(browser, xss_db):
    proc, url = start_dashboard(xss_db, "--token", TOKEN)
    page = browser.new_page()
    try:
        page.goto(f"{url}group/{quote(GROUP_PAYLOAD, safe='')}")
        _no_script_ran(page)
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("h1")
        _no_script_ran(page)
    finally:
        page.close()
        stop(proc)
