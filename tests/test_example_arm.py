"""The worked custom arm of examples/ (plan, execute, critique) in a batch with the
scripted provider: its runs are stored with their stages as phases, and the batch prints
its tax — in process, and as a user runs it from the repository root."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys

from alems.analysis.closing import batch_closing
from alems.cli.progress import format_summary
from alems.experiment.batch import BatchRunner
from alems.experiment.plan import BatchConfig
from alems.experiment.providers.scripted import ScriptedProvider

from _fake_sampling import BusyReplaySampler
from test_batch import REPO, env_for

ARM = "examples.plan_execute_critique:agent"


def reply(prompt, system=None):
    """Plans one calculator call, drafts 'Answer: 4', and the critique accepts the draft."""
    if '"tool_calls"' in (system or ""):
        return '{"tool_calls": [{"tool": "calculator", "expression": "2 + 2"}]}'
    if "Proposed answer" in prompt:
        return "OK"
    return "Answer: 4"


def test_example_arm_stores_its_runs_and_prints_its_tax(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    db = tmp_path / "e.db"
    cfg = BatchConfig(tasks=["gsm8k_basic"], providers=["scripted"], workflows=["linear", ARM],
                      repetitions=2, seed=3, hz=200.0, db_path=db, save_db=True,
                      baseline_duration_s=0.02, baseline_reps=2, group_id="g-example")
    summary = BatchRunner(cfg, sampler_factory=lambda: BusyReplaySampler(
        pkg_w=2.0, core_w=None, busy_w=30.0, hz=200.0),
        provider_factory=lambda name: ScriptedProvider(reply, delay_s=0.005),
        log=lambda m: None, progress=False, closing=batch_closing).run()
    text = format_summary(summary)
    assert f"orchestration tax of {ARM}: " in text
    assert summary.arm_headlines[ARM].split(": ")[1][0].isdigit(), "a ratio, not n/a"
    # the closing lines are `alems summary`'s first lines, also without an agentic arm
    from alems.analysis.groups import open_db, resolve_group
    from alems.analysis.summary import build_summary
    from alems.analysis.views import headline_lines

    ro = open_db(db)
    heads = headline_lines(build_summary(ro, db, resolve_group(ro, "g-example")))
    assert heads[0].endswith("the group ran no agentic arm (see the other arms' lines)")
    closing = text.splitlines()
    at = closing.index("  " + heads[0])
    assert closing[at:at + 2] == ["  " + h for h in heads]
    conn = sqlite3.connect(db)
    runs = conn.execute("SELECT run_id, status, response, llm_calls, tool_calls, trace_json "
                        "FROM runs WHERE workflow_type = ?", (ARM,)).fetchall()
    assert len(runs) == 2 and {r[1] for r in runs} == {"ok"}
    run_id, _, response, llm_calls, tool_calls, trace = runs[0]
    assert response == "Answer: 4", "the critique said OK: the draft is the answer"
    assert (llm_calls, tool_calls) == (3, 1)
    assert [t["output"] for t in json.loads(trace) if t["event"] == "tool"] == ["4"]
    phases = conn.execute("SELECT p.name, p.kind, q.name FROM phases p LEFT JOIN phases q "
                          "ON q.run_id = p.run_id AND q.seq = p.parent_seq WHERE p.run_id = ? "
                          "ORDER BY p.seq", (run_id,)).fetchall()
    assert phases == [("agent", "agent", None), ("plan", "planning", "agent"),
                      ("llm", "llm", "plan"), ("execute", "execution", "agent"),
                      ("tool:calculator", "tool", "execute"), ("answer", "synthesis", "agent"),
                      ("llm", "llm", "answer"), ("critique", "step", "answer"),
                      ("llm", "llm", "critique")]
    conn.close()


def test_example_arm_from_the_command_line_in_the_repository(tmp_path):
    """As the README says: from the repository root, the scripted provider's default replies.
    `-P`: the current folder is not on sys.path, as under the installed `alems` script."""
    db = tmp_path / "e.db"
    proc = subprocess.run(
        [sys.executable, "-P", "-m", "alems", "batch", "--tasks", "gsm8k_basic", "--providers",
         "scripted", "-n", "2", "--workflows", f"linear,{ARM}", "--db", str(db),
         "--baseline-duration", "0.05", "--baseline-reps", "2", "--no-warm-up"],
        cwd=REPO, env=env_for(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"orchestration tax of {ARM}: " in proc.stdout
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM runs WHERE workflow_type = ? AND status = 'ok'",
                        (ARM,)).fetchone()[0] == 2
    # the session records which file the arm's code came from, and its hash
    source = json.loads(conn.execute("SELECT settings_json FROM batch_sessions").fetchone()[0]
                        )["arm_sources"][ARM]
    path = REPO / "examples" / "plan_execute_critique.py"
    assert source == {"file": str(path), "qualname": "agent",
                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    conn.close()
