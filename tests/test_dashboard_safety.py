"""The dashboard against a hostile database and hostile requests, without a browser (issue
24, items 5-6): stored text is never markup (every page, the figures' JSON, dashboard.js),
a token-less server answers only loopback names (DNS rebinding), redirects stay on this
server, the login page shows nothing of the results, limits wrong tokens and refuses weak
ones. The same payloads in a real browser: test_dashboard_xss_browser."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from alems.dashboard import access  # noqa: E402
from alems.dashboard.app import HERE, create_app, script_json  # noqa: E402
from alems.errors import UsageError  # noqa: E402

from xss_fixture import GROUP_PAYLOAD, MARKERS, PAYLOAD, build_xss_db  # noqa: E402

TOKEN = "a-strong-token-of-24-chars"
LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="module")
def xss_db(tmp_path_factory) -> Path:
    return build_xss_db(tmp_path_factory.mktemp("xss") / "experiments.db")


def page_urls() -> list[str]:
    g = quote(GROUP_PAYLOAD, safe="")
    return ["/", f"/group/{g}", "/run/1", "/run/2", f"/compare?a={g}&b={g}",
            f"/live?group={g}", "/live", "/login"]


# ---------------------------------------------------------------- 5: stored XSS

def test_no_page_puts_stored_text_into_html_as_markup(xss_db):
    with TestClient(create_app(xss_db), base_url=LOCAL) as c:
        for url in page_urls():
            r = c.get(url)
            assert r.status_code == 200, (url, r.text[:300])
            for m in MARKERS:
                assert m not in r.text, (url, m)
            # the figures' JSON in <script type="application/json">: no '<' that could
            # close the element, and the data is unchanged once parsed
            for blob in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>',
                                   r.text, re.S):
                assert "<" not in blob
                json.loads(blob)
        workflows = c.get(f"/api/live?group={quote(GROUP_PAYLOAD, safe='')}").json()[
            "workflows"]   # (built-in arms first: catalog.arms.ordered_arms)
        assert any(PAYLOAD in w["workflow"] for w in workflows), \
            "the API sends the text as data (shown as text)"


def test_every_template_is_autoescaped_whatever_its_name():
    from alems.dashboard.app import _templates

    env = _templates().env
    for name in ("x.html", "x.txt", "x"):
        assert env.from_string("{{ v }}").render(v="<b>") == "&lt;b&gt;", name
    assert env.autoescape is True


@pytest.mark.parametrize("value", ["</script><script>window.__xss=1</script>", "<!--",
                                   "a & b > c", "\u2028\u2029", PAYLOAD])
def test_script_json_cannot_end_its_script_element(value):
    text = json.dumps({"name": value})
    safe = str(script_json(text))
    assert not re.search(r"[<>&\u2028\u2029]", safe)
    assert json.loads(safe) == {"name": value}


def test_the_plot_macro_keeps_json_inside_its_script_element():
    """Whatever JSON a figure gives (plotly escapes '</' itself; the macro does not rely
    on it)."""
    from alems.dashboard.app import _templates

    tpl = _templates().env.from_string(
        '{% from "_macros.html" import plot %}{{ plot("fig", json) }}')
    html = tpl.render(json=json.dumps({"name": PAYLOAD}))
    blob = re.search(r'<script type="application/json"[^>]*>(.*)</script>', html, re.S).group(1)
    assert "<" not in blob and json.loads(blob) == {"name": PAYLOAD}


def test_dashboard_js_never_writes_markup_from_data():
    js = (HERE / "static" / "dashboard.js").read_text()
    code = "\n".join(ln for ln in js.splitlines() if not ln.lstrip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, sink


# ---------------------------------------------------------------- 6: who may read it

@pytest.mark.parametrize("host,ok", [
    ("127.0.0.1", True), ("127.0.0.1:8050", True), ("localhost:8050", True),
    ("LOCALHOST", True), ("[::1]:8050", True), ("127.1.2.3", True),
    ("evil.example", False), ("evil.example:8050", False), ("127.0.0.1.evil.example", False),
    ("localhost.evil.example:80", False), ("", False), ("[::1", False),
])
def test_without_a_token_only_loopback_names_are_answered(xss_db, host, ok):
    with TestClient(create_app(xss_db), base_url=LOCAL) as c:
        for url in ("/", "/api/live"):
            r = c.get(url, headers={"host": host})
            assert (r.status_code != 400) == ok, (host, url, r.status_code)
            if not ok:
                assert "experiments.db" not in r.text and "gsm8k" not in r.text


def test_the_configured_host_is_answered_too(xss_db):
    with TestClient(create_app(xss_db, host="lab-box.local"), base_url=LOCAL) as c:
        assert c.get("/", headers={"host": "lab-box.local:8050"}).status_code == 200
        assert c.get("/", headers={"host": "other.local"}).status_code == 400


def test_with_a_token_any_host_still_needs_it(xss_db):
    with TestClient(create_app(xss_db, token=TOKEN), base_url=LOCAL,
                    follow_redirects=False) as c:
        r = c.get("/", headers={"host": "evil.example"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")


@pytest.mark.parametrize("path", ["//evil.example/", "//evil.example/x?y=1", "/\\evil.example/",
                                  "/%2F%2Fevil.example/"])
def test_a_token_in_the_url_never_redirects_off_site(xss_db, path):
    with TestClient(create_app(xss_db, token=TOKEN), base_url=LOCAL,
                    follow_redirects=False) as c:
        sep = "&" if "?" in path else "?"
        r = c.get(f"{LOCAL}{path}{sep}token={TOKEN}")
        assert r.status_code == 303
        loc = r.headers["location"]
        assert loc.startswith("/") and loc[1:2] not in ("/", "\\"), loc


@pytest.mark.parametrize("nxt", ["//evil.example/", "/\\evil.example", "https://evil.example/",
                                 "/\r\nSet-Cookie: x=1", "javascript:alert(1)"])
def test_login_next_stays_on_this_server(xss_db, nxt):
    with TestClient(create_app(xss_db, token=TOKEN), base_url=LOCAL,
                    follow_redirects=False) as c:
        r = c.post("/login", data={"token": TOKEN, "next": nxt})
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_the_login_page_shows_nothing_of_the_results(xss_db):
    with TestClient(create_app(xss_db, token=TOKEN), base_url=LOCAL,
                    follow_redirects=False) as c:
        for r in (c.get("/login"), c.post("/login", data={"token": "wrong" * 5, "next": "/"})):
            assert str(xss_db) not in r.text and "experiments.db" not in r.text
            assert "gsm8k" not in r.text


def test_wrong_tokens_are_limited_per_client(xss_db):
    with TestClient(create_app(xss_db, token=TOKEN), base_url=LOCAL,
                    follow_redirects=False) as c:
        for _ in range(access.FREE_ATTEMPTS - 1):
            assert c.post("/login", data={"token": "x" * 20, "next": "/"}).status_code == 401
        assert c.get(f"/?token={'y' * 20}").status_code == 303    # a URL guess counts too
        r = c.post("/login", data={"token": TOKEN, "next": "/"})    # even the right one waits
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert c.get(f"/?token={TOKEN}").status_code == 429


def test_the_wait_doubles_and_ends():
    now = [1000.0]
    a = access.Attempts(clock=lambda: now[0])
    for _ in range(access.FREE_ATTEMPTS - 1):
        a.failed("c")
        assert a.wait_s("c") == 0
    waits = []
    for _ in range(4):
        a.failed("c")
        waits.append(a.wait_s("c"))
    assert waits == [2.0, 4.0, 8.0, 16.0] and a.wait_s("other") == 0
    now[0] += 16.0
    assert a.wait_s("c") == 0
    for _ in range(20):
        a.failed("c")
    assert a.wait_s("c") == access.LOCKOUT_MAX_S
    a.succeeded("c")
    assert a.wait_s("c") == 0


def test_the_clients_remembered_are_bounded(monkeypatch):
    monkeypatch.setattr(access, "MAX_TRACKED_CLIENTS", 3)
    now = [0.0]
    a = access.Attempts(clock=lambda: now[0])
    for _ in range(access.FREE_ATTEMPTS + 3):
        a.failed("locked-long")            # its wait ends last: kept
    for i in range(10):
        a.failed(f"c{i}")
    assert len(a._failed) <= 3 and a.wait_s("locked-long") > 0


@pytest.mark.parametrize("token", ["a", "tok-123", "x" * (access.MIN_TOKEN_CHARS - 1), " " * 20])
def test_weak_tokens_are_refused(xss_db, token):
    with pytest.raises(UsageError, match="--token"):
        create_app(xss_db, token=token)


def test_the_command_refuses_a_weak_token_in_one_line(xss_db):
    proc = subprocess.run([sys.executable, "-m", "alems", "dashboard", "--db", str(xss_db),
                           "--token", "abc", "--port", "0"], capture_output=True, text=True,
                          timeout=60)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "at least 16" in lines[0], proc.stderr
