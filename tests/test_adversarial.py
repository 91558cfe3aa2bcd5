"""Adversarial suite (issue 10): signals at random points of scripted batches, fuzzed flags
and task files, a small full file system, two concurrent batches. Each must end in no
traceback, no lost or duplicated run and no damaged file. Seeded: a failure reproduces."""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import time

import pytest

from _hardening_util import (alems, alems_quick, batch_args, check_store, count_runs, fill, popen,
                             small_tmpfs)

SEED = 20260110


@pytest.mark.signals
def test_signals_at_random_points_lose_or_duplicate_nothing(tmp_path):
    rng = random.Random(SEED)
    db = tmp_path / "experiments.db"
    args = batch_args(db, "--cool-down", "0.1", reps=3, tasks="gsm8k_basic,factual_qa")
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL, signal.SIGTERM]
    for sig in signals:
        proc = popen(tmp_path, *args)
        time.sleep(rng.uniform(0.5, 4.0))       # anywhere: start-up, baseline, a run, a write
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, err
        if proc.returncode > 0 and err.strip():  # quiet: killed before any work began
            assert err.splitlines()[-1].startswith("alems: error:"), err
        check_store(db, after_kill=True)
    done = alems(tmp_path, *args, timeout=180)
    assert done.returncode == 0, done.stderr
    rows = check_store(db)
    per_session = {}
    for r in rows:   # a batch that finished before its signal leaves a complete session
        per_session.setdefault(r["group_id"], []).append(r)
    assert per_session and all(len(v) == 12 for v in per_session.values())
    conn = sqlite3.connect(db)
    assert {s for (s,) in conn.execute("SELECT status FROM batch_sessions")} == {"completed"}
    conn.close()


NASTY = ["-1", "1e308", "-1e308", "inf", "-inf", "nan", "1e-9", str(2 ** 64),
         str(2 ** 70), "99999999999999999999", "abc", "", "0x10"]
NUMBER_FLAGS = ["--repetitions", "--cool-down", "--seed", "--temperature", "--max-tokens",
                "--threads", "--n-ctx", "--hz", "--baseline-duration", "--baseline-reps",
                "--baseline-max-age", "--max-steps", "--max-tool-calls", "--start-from"]


def test_fuzzed_flags_give_one_line_never_a_traceback(tmp_path, capfd, monkeypatch):
    from alems.cli import app
    from alems.cli._common import run_app

    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED)
    for _ in range(80):
        flags = []
        for flag in rng.sample(NUMBER_FLAGS, rng.randint(1, 3)):
            flags += [flag, rng.choice(NASTY)]
        code = run_app(app, ["batch", "--tasks", "gsm8k_basic", "--providers", "scripted",
                             "--db", str(tmp_path / "fz.db"), *flags])
        err = capfd.readouterr().err
        assert "Traceback" not in err, (flags, err)
        assert code in (1, 2), (flags, code, err)   # every NASTY value is out of range
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("alems: error:"), (flags, err)
    assert not (tmp_path / "fz.db").exists()


def _fuzzed_line(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return "".join(chr(rng.randrange(1, 0x2FF)) for _ in range(rng.randrange(1, 200)))
    if kind == 1:
        depth = rng.choice([10, 1000, 50_000])
        return "[" * depth + "]" * depth
    if kind == 2:
        return json.dumps({"prompt": rng.choice([1e308, None, [], {}, True, "  "]),
                           "answer": "1"})
    if kind == 3:
        return json.dumps({"prompt": "q", "answer": rng.choice(["x", "", "nan", "1/0x"]),
                           "answer_type": "number"})
    if kind == 4:
        return json.dumps({"question": "q", "answer": rng.choice(["#### ", "####x", "no"])})
    if kind == 5:
        return json.dumps({"prompt": "q", "answer": "1",
                           "complexity_level": rng.choice([0, 4, 1.5, "2", 10 ** 30])})
    if kind == 6:
        return '{"prompt": "' + "p" * rng.choice([10, 1_100_000]) + '", "answer": "1"'
    return json.dumps({"prompt": "q", "answer": "1", "needs_tool": rng.choice(["rm", 3, []])})


def test_fuzzed_task_files_give_one_line(tmp_path, capfd, monkeypatch):
    from alems.cli import app
    from alems.cli._common import run_app

    monkeypatch.chdir(tmp_path)
    rng = random.Random(SEED)
    for i in range(40):
        path = tmp_path / f"t{i}.jsonl"
        path.write_text("\n".join(_fuzzed_line(rng) for _ in range(rng.randint(1, 3))) + "\n")
        code = run_app(app, ["batch", "--tasks", str(path), "--providers", "scripted",
                             "--db", str(tmp_path / "fz.db")])
        err = capfd.readouterr().err
        assert code == 1 and "Traceback" not in err, (path.read_text()[:200], err)
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1, err
    assert not (tmp_path / "fz.db").exists()


def test_a_full_file_system_stops_the_batch_in_one_line_and_damages_nothing(tmp_path):
    mnt = tmp_path / "small"
    with small_tmpfs(mnt, "3m"):
        db = mnt / "experiments.db"
        first = alems_quick(tmp_path, *batch_args(db, reps=1))   # a healthy session to protect
        assert first.returncode == 0, first.stderr
        kept = check_store(db)
        fill(mnt)
        r = alems_quick(tmp_path, *batch_args(db, "--new-session", reps=3))
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.splitlines()[-1].startswith("alems: error:"), r.stderr
        (mnt / "filler").unlink()
        rows = check_store(db)
        assert {x["run_id"] for x in kept} <= {x["run_id"] for x in rows}
        again = alems_quick(tmp_path, *batch_args(db, reps=3))   # resumes, completes
        assert again.returncode == 0, again.stderr
        check_store(db)


def test_two_concurrent_batches_never_share_a_session(tmp_path):
    db = tmp_path / "experiments.db"
    args = batch_args(db, "--cool-down", "0.2", reps=3)
    a, b = popen(tmp_path, *args), popen(tmp_path, *args)
    outs = [p.communicate(timeout=180) for p in (a, b)]
    for p, (_, err) in zip((a, b), outs):
        assert "Traceback" not in err, err
        assert p.returncode in (0, 1), err
        if p.returncode == 1:
            assert "being run by another batch" in err.splitlines()[-1], err
    assert 0 in (a.returncode, b.returncode)
    rows = check_store(db)
    per_session = {}
    for r in rows:
        per_session.setdefault(r["group_id"], []).append(r)
    assert all(len(v) == 6 for v in per_session.values()), "a session is incomplete"
    if a.returncode == 1 or b.returncode == 1:   # the refused one resumes nothing twice
        assert count_runs(db) == 6 * len(per_session)
