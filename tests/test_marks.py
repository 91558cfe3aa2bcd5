"""Phase marks from any process (alems.measure.markchannel): `alems mark` and `alems.mark`
under `alems sample`, order by the sender's time stamp, a flood that is bounded and
counted, and the no-op outside a measurement. Real CLI, real C sampler, empty fake sysfs
(the labelled estimate)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import alems
from inproc import alems_inproc
from alems import config
from alems.measure import markchannel
from alems.config import MARK_ENV
from alems.measure.markchannel import MarkChannel
from alems.measure.phases import PhaseRecorder
from alems.store.samples import read_phases

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def env(tmp_path) -> dict:
    """`alems` on PATH (this checkout), no energy counters (the estimate)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "alems"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -c '
                       f'"from alems.cli import main; main()" "$@"\n')
    wrapper.chmod(0o755)
    (tmp_path / "sys").mkdir()
    e = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
         "ALEMS_SYSFS_ROOT": str(tmp_path / "sys"),
         "ALEMS_MSR_PATH": str(tmp_path / "no-msr" / "{cpu}"),
         "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    e.pop(MARK_ENV, None)
    e.pop("ALEMS_ESTIMATE_W_PER_CORE", None)
    return e


def sample(env: dict, tmp_path: Path, *command: str, quiet: bool = False):
    out, js = tmp_path / "run.parquet", tmp_path / "run.json"
    proc = subprocess.run(["alems", "sample", *(["-q"] if quiet else []), "--hz", "500",
                           "-o", str(out), "--summary-json", str(js), "--", *command],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(js.read_text()), read_phases(out)


def python_child(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


# ---------------------------------------------------------------- the shell

def test_a_shell_script_marking_twice_gets_two_phases_in_parquet_and_summary(env, tmp_path):
    script = tmp_path / "steps.sh"
    script.write_text(f"alems mark load\n{sys.executable} -c 'sum(range(10**6))'\n"
                      "alems mark think\nsleep 0.2\n")
    proc, summary, phases = sample(env, tmp_path, "sh", str(script))
    assert [p["name"] for p in phases] == ["load", "think"]
    assert all(p["kind"] == "mark" and p["energy_uj"] > 0 for p in phases)
    assert phases[0]["end_ns"] == phases[1]["start_ns"]  # a mark ends the previous phase
    assert [p["name"] for p in summary["phases"]] == ["load", "think"]
    assert summary["phases"][0]["energy_j"]["pkg"] == pytest.approx(
        phases[0]["energy_uj"] / 1e6)
    assert summary["marks"] == {"received": 2, "dropped": 0, "lost_by_senders": 0}
    table = proc.stderr[proc.stderr.index("phases"):]
    assert "load" in table and "think" in table and "energy_j.pkg" in table


def test_end_mark_closes_a_phase_and_a_plain_line_is_a_mark(env, tmp_path):
    script = (f"alems mark one; alems mark --end; sleep 0.05; "
              f'printf "two\\n" > "${MARK_ENV}"; sleep 0.05')
    _, summary, phases = sample(env, tmp_path, "sh", "-c", script, quiet=True)
    one, two = phases
    assert (one["name"], two["name"]) == ("one", "two")
    assert one["end_ns"] < two["start_ns"]  # --end closed it; the gap is no phase


def test_alems_mark_outside_a_measurement_does_nothing(env):
    proc = alems_inproc("mark", "x", env=env)
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""


def test_alems_mark_into_a_finished_run_warns_and_succeeds(env, tmp_path):
    proc = alems_inproc("mark", "x", env={**env, MARK_ENV: str(tmp_path / "gone")})
    assert proc.returncode == 0 and "alems: warning: mark 'x' was not delivered" in proc.stderr


@pytest.mark.parametrize("args", [[], ["x", "--end"], [" \t"]])
def test_alems_mark_bad_input_is_one_line(env, args):
    proc = alems_inproc("mark", *args, env=env)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("alems: error: "), proc.stderr


# ---------------------------------------------------------------- Python, threads, children

def test_python_mark_is_a_no_op_outside_a_measurement(monkeypatch, tmp_path):
    monkeypatch.delenv(MARK_ENV, raising=False)
    assert alems.mark("nothing") is None
    monkeypatch.setenv(MARK_ENV, str(tmp_path / "gone"))  # a run that is over: no reader
    assert alems.mark("nothing") is False


def test_marks_from_threads_and_children_land_in_order(env, tmp_path):
    child = ("import alems\n"
             "for k in range(40): alems.mark(f'c{sys.argv[1]}-{k}')\n")
    code = f"""
        import subprocess, sys, threading, time, os
        import alems
        def thread(i):
            for k in range(40):
                alems.mark(f"t{{i}}-{{k}}")
        kids = [subprocess.Popen([sys.executable, "-c", "import sys\\n" + {child!r}, str(i)])
                for i in range(2)]
        ts = [threading.Thread(target=thread, args=(i,)) for i in range(3)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert all(k.wait() == 0 for k in kids)
        # stamped before written: the FIFO sees b first, the phases must put a first
        fd = os.open(os.environ["{MARK_ENV}"], os.O_WRONLY)
        t0 = time.monotonic_ns()
        os.write(fd, f"{{t0 + 2}}\\tlate-b\\n".encode())
        os.write(fd, f"{{t0 + 1}}\\tlate-a\\n".encode())
    """
    _, summary, phases = sample(env, tmp_path, *python_child(code), quiet=True)
    names = [p["name"] for p in phases]
    assert summary["marks"]["received"] == 5 * 40 + 2 and len(names) == 202
    starts = [p["start_ns"] for p in phases]
    assert starts == sorted(starts)
    # each mark ends where the next (by time stamp) begins
    assert [p["end_ns"] for p in phases[:-1]] == starts[1:]
    for sender in ("t0", "t1", "t2", "c0", "c1"):  # each sender's marks in its own order
        ks = [int(n.split("-")[1]) for n in names if n.startswith(sender + "-")]
        assert ks == list(range(40)), sender
    assert names[-2:] == ["late-a", "late-b"]


def test_a_flood_of_marks_is_bounded_and_counted_and_the_sampler_keeps_up(env, tmp_path):
    code = """
        import alems
        for k in range(100_000):
            alems.mark(f"m{k}")
    """
    proc, summary, phases = sample(env, tmp_path, *python_child(code), quiet=True)
    marks = summary["marks"]
    assert marks["received"] == len(phases) <= config.MAX_PHASES
    assert marks["received"] + marks["dropped"] + marks["lost_by_senders"] == 100_000
    assert marks["dropped"] + marks["lost_by_senders"] > 0
    assert summary["dropped_samples"] == 0  # the drain never fell behind the C sampler
    assert "phase marks were" in proc.stderr  # reported, even with -q


def test_in_process_flood_keeps_the_bound_and_counts_exactly(tmp_path):
    (tmp_path / "sys").mkdir()
    with alems.measure("flood", hz=200, sysfs_root=str(tmp_path / "sys")) as m:
        kept = sum(bool(alems.mark(f"m{k}")) for k in range(100_000))
    assert kept == config.MAX_PHASES == len(m.phases)
    assert m.summary["marks"]["dropped"] == 100_000 - config.MAX_PHASES
    assert any("phase marks were dropped" in w for w in m.summary["warnings"])


def test_a_full_channel_counts_lost_marks_and_the_next_line_reports_them(monkeypatch):
    """A sender never blocks on a full FIFO: the mark counts as lost and the next line
    that gets through carries the count."""
    rec = PhaseRecorder()
    with MarkChannel(rec) as channel:
        monkeypatch.setenv(MARK_ENV, channel.path)
        sender = markchannel._Sender()
        monkeypatch.setattr(markchannel, "_SENDER", sender)
        real_write = os.write
        full = {"on": True}

        def write(fd, data):
            if full["on"] and fd == sender._fd:
                raise BlockingIOError
            return real_write(fd, data)

        monkeypatch.setattr(markchannel.os, "write", write)
        assert markchannel.send_mark("a") is False and markchannel.send_mark("b") is False
        full["on"] = False
        assert markchannel.send_mark("c") is True
        deadline = time.monotonic() + 30
        while rec.marks_received < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert rec.mark_stats() == {"received": 1, "dropped": 0, "lost_by_senders": 2}
    assert [p.name for p in rec.phases(None)] == ["c"]


def test_line_format(tmp_path):
    assert markchannel.parse_line(b"123\tload", 9) == ("mark", 123, "load")
    assert markchannel.parse_line(b"plain name", 9) == ("mark", 9, "plain name")
    assert markchannel.parse_line(b"!lost\t4", 9) == ("lost", 9, 4)
    assert markchannel.parse_line(b"x\ty", 9) == ("mark", 9, "x y")
    assert markchannel.parse_line(b"5\t", 9) == ("mark", 5, "")  # an end mark
    long = markchannel.clean_name("é" * 500)
    assert len(long.encode()) <= markchannel.MAX_NAME_BYTES and set(long) == {"é"}


def test_a_writer_that_never_stops_cannot_keep_the_channel_open(monkeypatch):
    """The reader takes at most what the FIFO holds before it looks for the wake-up
    again, so close() returns even if the FIFO never runs dry."""
    rec = PhaseRecorder()
    channel = MarkChannel(rec).open()
    fifo_fd = channel._fds[0]
    real_read = os.read

    def endless(fd, n):
        return b"1\tx\n" * 64 if fd == fifo_fd else real_read(fd, n)

    monkeypatch.setattr(markchannel.os, "read", endless)
    os.write(channel._fds[1], b"\n")  # readable from now on: the fake read never takes it
    deadline = time.monotonic() + 30
    while rec.dropped == 0 and time.monotonic() < deadline:  # wait for the flood
        time.sleep(0.01)
    closer = threading.Thread(target=channel.close, daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive()
    assert rec.marks_received == config.MAX_PHASES and rec.dropped > 0


def test_otel_spans_of_a_command_under_alems_sample_become_phases(env, tmp_path):
    """No in-process measurement: the span processor sends each ended span through the
    command's marker channel, and the run's phases keep kinds, attributes and nesting."""
    code = """
        import threading
        from opentelemetry.sdk.trace import TracerProvider
        from alems.otel import PhaseSpanProcessor
        provider = TracerProvider()
        provider.add_span_processor(PhaseSpanProcessor())
        tracer = provider.get_tracer("t")
        def agent(i):
            with tracer.start_as_current_span(f"agent {i}"):
                with tracer.start_as_current_span("chat m", attributes={
                        "gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": i,
                        "big": "x" * 10_000}):
                    sum(range(100_000))
        ts = [threading.Thread(target=agent, args=(i,)) for i in range(2)]
        [t.start() for t in ts]; [t.join() for t in ts]
    """
    _, summary, phases = sample(env, tmp_path, *python_child(code), quiet=True)
    assert len(phases) == 4 and "marks" not in summary  # no mark, nothing dropped
    for i in range(2):
        [step] = [p for p in phases if p["name"] == f"agent {i}"]
        [call] = [p for p in phases if p["parent_seq"] == step["seq"]]
        assert (step["kind"], call["kind"]) == ("agent_step", "model_call")
        assert call["detail"]["gen_ai.usage.input_tokens"] == i
        assert call["detail"]["big"] == "x" * markchannel.MAX_NAME_BYTES  # cut to fit a line
        assert step["start_ns"] <= call["start_ns"] < call["end_ns"] <= step["end_ns"]


def test_span_lines_fit_one_write_and_malformed_ones_are_counted():
    line = markchannel.span_line("s", "tool_call", 1, 2, {"span_id": "a", "v": ["y" * 9000]})
    assert line is not None and len(line) <= 4096
    assert json.loads(line)["detail"] == {"span_id": "a"}  # too big even cut: ids only
    kind, _, span = markchannel.parse_line(line.rstrip(b"\n"), 7)
    assert kind == "span" and span["start_ns"] == 1 and span["kind"] == "tool_call"
    rec = PhaseRecorder()
    channel = MarkChannel(rec)
    channel._take(b'{"name": "x"}\n{"name": "ok", "kind": "k", "start_ns": 5, "end_ns": 4}\n')
    assert rec.dropped == 2 and rec.phases(None) == []
