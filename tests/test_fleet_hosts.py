"""The tax per host and pooled with the host as a block (alems.analysis.hosts)."""

from __future__ import annotations

import sqlite3

import pytest

pd = pytest.importorskip("pandas")

from alems.store.reads import runs_frame  # noqa: E402
from alems.analysis.hosts import host_tax  # noqa: E402

from test_batch import make_runner  # noqa: E402


def frame(pairs):
    """pairs: (host, rep, linear J, agentic J, cpu, source) -> a runs frame as summary has it."""
    rows = []
    for host, rep, lin, ag, cpu, src in pairs:
        for wf, j in (("linear", lin), ("agentic", ag)):
            rows.append({"task_name": "t", "provider": "p", "run_number": rep,
                         "workflow_type": wf, "ok": True, "dynamic_energy_j": j,
                         "host": host, "cpu_model": cpu, "energy_source": src})
    return pd.DataFrame(rows)


def test_per_host_and_host_blocked_pooled_tax():
    pairs = [("a", r, 1.0, 2.0, "X", "powercap") for r in range(1, 6)]
    pairs += [("b", r, 10.0, 30.0, "X", "powercap") for r in range(6, 11)]
    res = host_tax(frame(pairs))
    by_host = {r["host"]: r for r in res.per_host}
    assert by_host["a"]["tax_ratio"] == pytest.approx(2.0) and by_host["a"]["n_pairs"] == 5
    assert by_host["b"]["tax_ratio"] == pytest.approx(3.0)
    (pooled,) = res.pooled
    assert pooled["tax_ratio"] == pytest.approx(160 / 55) and pooled["n_hosts"] == 2
    # resampling within hosts keeps 5 pairs of each: with no spread inside a host, no spread
    # at all; a bootstrap that mixed hosts would give a wide interval here
    assert pooled["ci_low"] == pytest.approx(160 / 55) == pooled["ci_high"]
    assert res.warnings == []


def test_warns_when_hosts_differ_and_drops_crossed_pairs():
    pairs = [("a", 1, 1.0, 2.0, "Xeon", "powercap"), ("a", 2, 1.0, 2.5, "Xeon", "powercap"),
             ("b", 3, 1.0, 3.0, "EPYC", "estimate"), ("b", 4, 1.0, 3.5, "EPYC", "estimate")]
    df = frame(pairs)
    df.loc[(df["run_number"] == 4) & (df["workflow_type"] == "agentic"), "host"] = "a"
    res = host_tax(df)
    text = " | ".join(res.warnings)
    assert "energy source" in text and "powercap" in text and "b: estimate" in text
    assert "CPU model" in text and "Xeon" in text and "EPYC" in text
    assert "1 pair(s) have their arms on different hosts" in text
    assert sum(r["n_pairs"] for r in res.per_host) == 3 and res.pooled[0]["n_pairs"] == 3


def test_runs_of_a_local_batch_are_one_host(tmp_path):
    make_runner(tmp_path).run()
    conn = sqlite3.connect(tmp_path / "data" / "experiments.db")
    runs = runs_frame(conn, "g-test")
    runs["ok"] = runs["status"] == "ok"
    runs["dynamic_energy_j"] = runs["dynamic_energy_uj"] / 1e6
    res = host_tax(runs)
    assert len(res.hosts) == 1 and res.hosts[0]["runs"] == 8 and res.warnings == []
    assert sorted(r["n_pairs"] for r in res.per_host) == [2, 2]
    assert [r["tax_ratio"] for r in res.per_host] == [p["tax_ratio"] for p in res.pooled]


def test_summary_carries_per_host_tax_and_warns_when_hosts_differ(tmp_path):
    from alems.analysis.groups import open_db, resolve_group
    from alems.analysis.summary import build_summary

    make_runner(tmp_path).run()
    db = tmp_path / "data" / "experiments.db"
    with sqlite3.connect(db) as conn:  # as if repetition 2 of every pair ran on another machine
        conn.execute("UPDATE runs SET host = 'node-b', cpu_model = 'EPYC' WHERE run_number = 2")
        conn.execute("UPDATE runs SET cpu_model = 'Xeon' WHERE run_number != 2")
    conn = open_db(db)
    s = build_summary(conn, db, resolve_group(conn, "latest"))
    hosts = {r["host"] for r in s["hosts"]["per_host"]}
    assert len(hosts) == 2 and "node-b" in hosts
    assert all(r["blocked_by"] == "host" and r["n_hosts"] == 2 for r in s["hosts"]["pooled"])
    assert any("CPU model" in w and "EPYC" in w for w in s["warnings"])


def test_every_non_linear_arm_gets_its_tax_per_host_and_pooled():
    """Three arms on two hosts: react has its per-host and pooled rows beside agentic's, each
    with its own ratio, and the table every surface shows (views.host_tax_rows) has them."""
    from alems.analysis.views import HOST_COLUMNS, host_tax_rows

    rows = []
    for host, reps, lin in (("a", range(1, 4), 1.0), ("b", range(4, 7), 10.0)):
        for rep in reps:
            for wf, factor in (("linear", 1.0), ("agentic", 2.0), ("react", 4.0)):
                rows.append({"task_name": "t", "provider": "p", "run_number": rep,
                             "workflow_type": wf, "ok": True,
                             "dynamic_energy_j": lin * factor * (1 + 0.01 * rep),
                             "host": host, "cpu_model": "X", "energy_source": "powercap"})
    res = host_tax(pd.DataFrame(rows))
    by = {(r["arm"], r["host"]): r for r in res.per_host}
    assert set(by) == {(arm, host) for arm in ("agentic", "react") for host in "ab"}
    for host in "ab":
        assert by[("agentic", host)]["tax_ratio"] == pytest.approx(2.0)
        assert by[("react", host)]["tax_ratio"] == pytest.approx(4.0)
        assert by[("react", host)]["n_pairs"] == 3
    assert [(p["arm"], p["n_hosts"]) for p in res.pooled] == [("agentic", 2), ("react", 2)]
    assert res.pooled[1]["tax_ratio"] == pytest.approx(4.0) and res.warnings == []
    summary = {"hosts": {"machines": res.hosts, "per_host": res.per_host,
                         "pooled": res.pooled}}
    table = host_tax_rows(summary)
    arm_col = HOST_COLUMNS.index("arm")
    assert [r[arm_col] for r in table] == ["agentic"] * 2 + ["react"] * 2 + ["agentic", "react"]
    assert all(len(r) == len(HOST_COLUMNS) for r in table)
    react_a = next(r for r in table if r[0] == "a" and r[arm_col] == "react")
    assert react_a[HOST_COLUMNS.index("tax ratio")] == "4.0×"
