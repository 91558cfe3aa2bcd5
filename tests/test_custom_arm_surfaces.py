"""A custom arm's tax on every surface, as the built-in arms': `alems summary` (text and
JSON), the report and the dashboard read its headline and its per task × provider rows;
a group without an agentic arm (`--workflows linear,mypkg:agent`) still has a summary,
report and dashboard, its headline saying there is no agentic arm."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pandas")
pytest.importorskip("scipy")

from alems.analysis.groups import open_db, resolve_group  # noqa: E402
from alems.analysis.report import build_report  # noqa: E402
from alems.analysis.summary import build_summary  # noqa: E402
from alems.analysis.views import arm_tax_rows, headline_lines  # noqa: E402
from alems.cli import app  # noqa: E402
from alems.cli._common import run_app  # noqa: E402

from analysis_fixture import build_fixture_db  # noqa: E402

ARM = "mypkg.agents:my_agent"


def _surfaces(db, capsys, monkeypatch):
    conn = open_db(db)
    group = resolve_group(conn, "latest")
    summary = build_summary(conn, db, group)
    monkeypatch.setenv("COLUMNS", "400")
    assert run_app(app, ["summary", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert run_app(app, ["summary", "--db", str(db), "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    blocks = build_report(conn, db, group)
    pytest.importorskip("starlette")
    pytest.importorskip("httpx")
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    with TestClient(create_app(db), base_url="http://127.0.0.1") as c:
        page = c.get(f"/group/{summary['group_id']}")
    assert page.status_code == 200
    return summary, text, as_json, blocks, page.text


@pytest.mark.parametrize("workflows", [("linear", "agentic", ARM), ("linear", ARM)])
def test_custom_arm_tax_on_every_surface(tmp_path, capsys, monkeypatch, workflows):
    db = build_fixture_db(tmp_path / "experiments.db", workflows=workflows)
    summary, text, as_json, blocks, page = _surfaces(db, capsys, monkeypatch)
    mine = summary["arm_tax"][ARM]
    line = mine["headline_text"]
    assert line.startswith(f"orchestration tax of {ARM}: ") and "n/a" not in line
    assert line in headline_lines(summary) and line in text.splitlines()
    assert as_json["arm_tax"][ARM]["headline_text"] == line
    assert line in [b.text for b in blocks if b.kind == "p"]
    rows = [t for t in arm_tax_rows(summary) if t["arm"] == ARM]
    assert len(rows) == len(mine["rows"]) == 4   # 2 tasks, per provider, overall
    assert page.count(f'data-arm="{ARM}"') == len(rows)
    table = next(b for b in blocks if b.kind == "table" and b.text.startswith("Orchestration tax"))
    assert sum(r[0] == ARM for r in table.rows) == len(rows)
    assert run_app(app, ["status", "--db", str(db)]) == 0   # its progress row lines up
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")
            and " failed " in line]
    assert len(rows) == len(workflows) and len({line.index("/") for line in rows}) == 1
    if "agentic" not in workflows:
        assert summary["headline_text"] == ("orchestration tax: n/a — the group ran no "
                                            "agentic arm (see the other arms' lines)")
        assert {t["arm"] for t in arm_tax_rows(summary)} == {ARM}, "no empty agentic rows"
        assert not [w for w in summary["warnings"] if "left out of the tax" in w]
    else:
        assert summary["headline_text"].startswith("orchestration tax: ")
        assert page.count('data-arm="agentic"') == 4
