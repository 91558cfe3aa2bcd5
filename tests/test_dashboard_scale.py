"""The group page stays light for a large group (issue 23): its run list comes a page at a
time, its energy figure draws quartile boxes above a number of runs, and both are kept
until the group's runs change."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

pytest.importorskip("starlette")

from alems.analysis import views  # noqa: E402
from alems.dashboard import figures, group_cache, pages  # noqa: E402

GROUP = "g-20260110-100000"


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    from analysis_fixture import build_fixture_db

    return build_fixture_db(tmp_path_factory.mktemp("scale") / "experiments.db",
                            tasks=("gsm8k_basic",), reps=4)


@pytest.fixture
def client(fixture_db):
    from starlette.testclient import TestClient

    from alems.dashboard.app import create_app

    with TestClient(create_app(fixture_db), base_url="http://127.0.0.1") as c:
        yield c


def _run_ids(html: str) -> list[int]:
    table = html.split('id="runs"', 1)[1].split("</table>", 1)[0]
    return [int(x) for x in re.findall(r'<a href="/run/(\d+)">', table)]


def test_the_run_list_comes_a_page_at_a_time(client, fixture_db, monkeypatch):
    conn = pages.reads.open_readonly(fixture_db)
    every = [r["run_id"] for r in pages.reads.group_runs(conn, GROUP)]
    conn.close()
    assert len(every) == 8
    monkeypatch.setattr(pages, "RUNS_PER_PAGE", 3)
    first, third = client.get(f"/group/{GROUP}"), client.get(f"/group/{GROUP}?page=3")
    assert _run_ids(first.text) == every[:3] and _run_ids(third.text) == every[6:]
    assert "runs 1–3 of 8" in first.text and 'href="?page=2">next' in first.text
    assert 'href="?page=2">previous' in third.text and ">next<" not in third.text
    assert "Runs (8)" in first.text
    for bad, why in (("0", "whole number"), ("x", "whole number"), ("4", "has 3 page(s)")):
        r = client.get(f"/group/{GROUP}?page={bad}")
        assert r.status_code == 404 and why in r.text


def test_a_short_list_has_no_pager(client):
    text = client.get(f"/group/{GROUP}").text
    assert len(_run_ids(text)) == 8 and 'id="runs-pager"' not in text


def test_many_runs_are_drawn_as_quartile_boxes(monkeypatch):
    rng = np.random.default_rng(3)
    runs = [{"run_id": i, "task_name": "t", "provider": "p", "run_number": i,
             "workflow_type": "linear", "status": "ok",
             "dynamic_energy_uj": float(v)} for i, v in enumerate(rng.lognormal(13, 0.4, 99))]
    runs.append(dict(runs[0], run_id=999, dynamic_energy_uj=1e9))     # an outlier
    points = figures.energy_distribution_figure(runs)["data"][0]
    assert len(points["y"]) == 100 and points["boxpoints"] == "all"
    monkeypatch.setattr(figures, "BOX_POINTS_MAX", 99)
    (box,) = figures.energy_distribution_figure(runs)["data"]
    ys = np.array([r["dynamic_energy_uj"] / 1e6 for r in runs])
    q1, med, q3 = np.percentile(ys, [25, 50, 75])
    assert "y" not in box and box["boxpoints"] is False and box["x"] == ["t / p"]
    assert box["q1"] == [q1] and box["median"] == [med] and box["q3"] == [q3]
    assert box["upperfence"] == [ys[ys <= q3 + 1.5 * (q3 - q1)].max()] < [1000.0]
    assert box["mean"] == [pytest.approx(ys.mean())] and box["name"] == "linear (100 runs)"


def test_the_energy_figure_is_kept_until_the_runs_change(fixture_db, monkeypatch):
    conn = pages.reads.open_readonly(fixture_db)
    group = pages.resolve_group(conn, GROUP)
    monkeypatch.setattr(group_cache, "FIGURES", {})
    calls = []
    real = group_cache.reads.group_run_energies
    monkeypatch.setattr(group_cache.reads, "group_run_energies",
                        lambda c, g: calls.append(g) or real(c, g))
    stamp = pages.reads.group_stamp(conn, GROUP)
    first = group_cache.group_figure(conn, fixture_db, group, stamp)
    assert group_cache.group_figure(conn, fixture_db, group, stamp) == first and len(calls) == 1
    group_cache.group_figure(conn, fixture_db, group, stamp + ("changed",))
    assert len(calls) == 2
    assert json.loads(first[2])["data"] and first[:2] == (8, ["powercap"])
    conn.close()


@pytest.mark.parametrize("workflows", [("linear", "agentic", "react"), ("linear", "react"),
                                       ("linear",)])
def test_the_groups_list_shows_the_summarys_headline_without_building_it(tmp_path,
                                                                         workflows):
    from analysis_fixture import build_fixture_db

    db = build_fixture_db(tmp_path / "e.db", reps=5, workflows=workflows)
    conn = pages.reads.open_readonly(db)
    group = pages.resolve_group(conn, GROUP)
    head, accuracy, why = group_cache.quick_headline(conn, group)
    summary, summary_why = pages.summarize(conn, db, group)
    conn.close()
    assert why == summary_why
    if summary is None:
        assert "only linear" in why and head is None and accuracy == []
        return
    full = views.headline_row(summary)
    assert {k: head[k] for k in full if k in head} == {k: full[k] for k in full if k in head}
    assert {"tax_ratio", "ci_low", "ci_high", "n_pairs"} <= set(head)
    assert (full["n_pairs"] > 0) == ("agentic" in workflows)
    assert accuracy == views.accuracy_per_arm(summary)


def test_the_groups_list_keeps_its_quick_headlines(fixture_db, monkeypatch):
    conn = pages.reads.open_readonly(fixture_db)
    monkeypatch.setattr(pages, "_summaries", {})
    monkeypatch.setattr(group_cache, "QUICK", {})
    monkeypatch.setattr(pages.ANALYSIS_READY, "is_set", lambda: True)
    calls = []
    real = group_cache.quick_headline
    monkeypatch.setattr(group_cache, "quick_headline", lambda c, g: calls.append(g) or real(c, g))
    first = pages.groups_page(conn, fixture_db)
    assert pages.groups_page(conn, fixture_db) == first and len(calls) == 1
    assert first["groups"][0]["headline"]["n_pairs"] > 0
    conn.close()


def test_a_page_waits_for_the_summary_being_built_instead_of_building_it_again(
        fixture_db, monkeypatch):
    """The warm-up and a first visitor ask for the same group's summary at once: built once."""
    import threading

    import alems.analysis.summary as summary_mod

    monkeypatch.setattr(pages, "_summaries", {})
    inside, release, calls = threading.Event(), threading.Event(), []

    def slow_build(conn, db_path, group):
        calls.append(group.group_id)
        if len(calls) == 1:           # the first build lasts until the test releases it
            inside.set()
            release.wait()
        return {"tax": []}

    monkeypatch.setattr(summary_mod, "build_summary", slow_build)
    answers = []

    def visit():
        conn = pages.reads.open_readonly(fixture_db)
        answers.append(pages.summarize(conn, fixture_db, pages.resolve_group(conn, GROUP)))
        conn.close()

    first = threading.Thread(target=visit, daemon=True)
    second = threading.Thread(target=visit, daemon=True)
    first.start()
    inside.wait()
    try:
        second.start()
        second.join(0.5)              # the second visitor is held until the first is done
        assert second.is_alive() and calls == [GROUP]
    finally:
        release.set()
    first.join(), second.join()
    assert calls == [GROUP] and answers == [({"tax": []}, None)] * 2
