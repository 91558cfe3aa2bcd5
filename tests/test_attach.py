"""Issue 20: a local server is part of the measurement. `alems sample --pid` attaches to a
running process; `alems batch --server-pid` (or the process found listening on a loopback
--base-url's port) adds it to every run's perf counters and CPU time, recorded in
runs.counted_pids. The server is tests/busy_server.py: it listens on 127.0.0.1 and, on
request, burns CPU in two threads it creates then (threads born after the attach)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from alems.errors import AlemsError
from alems.experiment.batch import BatchProgress, BatchRunner
from alems.experiment.plan import BatchConfig
from alems.experiment.providers.scripted import ScriptedProvider
from alems.measure import attach
from alems.store import db as store_db
from busy_server import BusyServer
from inproc import alems_inproc

SRC = Path(__file__).resolve().parents[1] / "src"
ATTACHED = "alems: sampling process"


def _task_clock_or_skip() -> None:
    from alems.measure.sampler import Sampler

    try:
        with Sampler(hz=50, sources=["perf"]) as s:
            pass
    except AlemsError as exc:
        pytest.skip(f"no perf counters here: {exc}")
    if s.result.summary["counters"].get("task_clock_ns") is None:
        pytest.skip("no task_clock counter here")


@pytest.fixture
def server():
    srv = BusyServer(hashes=300)
    yield srv
    srv.close()


# `python -m alems` on a kernel without pidfd_open (before 5.3): the exit is polled.
NO_PIDFD = "import os, runpy, sys; del os.pidfd_open; sys.argv[0] = 'alems'; " \
           "runpy.run_module('alems', run_name='__main__')"


def _alems(*args: str, pidfd: bool = True, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    head = ["-m", "alems"] if pidfd else ["-c", NO_PIDFD]
    return subprocess.Popen([sys.executable, *head, *args], stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, env=env, **kw)


def _wait_attached(proc: subprocess.Popen) -> None:
    """Read alems's stderr up to its 'sampling process' line (its counters are open)."""
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(ATTACHED):
            return
    raise AssertionError("alems ended before attaching: " + "".join(seen))


def _error_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# ---------------------------------------------------------------- alems sample --pid

@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polled"])
def test_sample_pid_counts_threads_created_after_attach_until_the_process_exits(
        server, tmp_path, pidfd):
    _task_clock_or_skip()
    out, js = tmp_path / "s.parquet", tmp_path / "s.json"
    proc = _alems("sample", "--pid", str(server.pid), "--hz", "100", "--sources", "perf",
                  "-o", str(out), "--summary-json", str(js), "-q", pidfd=pidfd)
    _wait_attached(proc)
    server.go()                   # two threads born now burn CPU
    server.proc.stdin.close()     # it exits; a zombie until reaped after alems saw it end
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    cpu_ns = server.close() - server.c0_ns   # its CPU time from "go" to its exit
    summary = json.loads(js.read_text())
    assert summary["ended"] == "process exited"
    assert summary["attached_pid"] == server.pid
    assert f"process {server.pid}" in err and "exited during sampling" in err
    ratio = summary["counters"]["task_clock_ns"] / cpu_ns
    assert ratio == pytest.approx(1.0, rel=0.10), (summary["counters"], cpu_ns)
    import pyarrow.parquet as pq

    assert "task_clock_ns" in pq.read_schema(out).names   # the same Parquet as for a command


@pytest.mark.signals
def test_sample_pid_stops_on_ctrl_c_and_keeps_the_samples(server, tmp_path):
    _task_clock_or_skip()
    js = tmp_path / "s.json"
    proc = _alems("sample", "--pid", str(server.pid), "--hz", "100", "--sources", "perf",
                  "--summary-json", str(js), "-q")
    _wait_attached(proc)
    cpu_ns = server.go()
    proc.send_signal(signal.SIGINT)
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 0, err
    summary = json.loads(js.read_text())
    assert summary["ended"] == "interrupted"
    assert summary["counters"]["task_clock_ns"] / cpu_ns == pytest.approx(1.0, rel=0.10)
    assert server.proc.poll() is None   # the process itself was never signalled


def test_sample_pid_duration(server, tmp_path):
    js = tmp_path / "s.json"
    got = alems_inproc("sample", "--pid", str(server.pid), "--duration", "0.2", "--hz", "100",
                       "--summary-json", str(js), "-q")
    assert got.returncode == 0, got.stderr
    summary = json.loads(js.read_text())
    assert summary["ended"] == "duration reached"
    assert summary["duration_s"] >= 0.2 * 0.9
    assert server.proc.poll() is None


@pytest.mark.parametrize("args, expect", [
    (["--pid", "999999999"], "no such process"),
    (["--pid", "SELF"], "this alems process itself"),
    (["--pid", "SERVER", "--", "true"], "either --pid or a command"),
    (["--duration", "1", "--", "true"], "--duration needs --pid"),
    (["--pid", "SERVER", "--duration", "0"], "--duration must be a positive"),
])
def test_sample_pid_bad_input_is_one_line(server, args, expect):
    args = [str(os.getpid()) if a == "SELF" else str(server.pid) if a == "SERVER" else a
            for a in args]
    got = alems_inproc("sample", *args)
    assert got.returncode != 0
    lines = _error_lines(got.stderr)
    assert len(lines) == 1 and lines[0].startswith("alems: error:"), got.stderr
    assert expect in lines[0]


def _inproc_as(uid: int, *args: str) -> subprocess.CompletedProcess:
    """`alems ARGS` in a forked copy of this process that runs as `uid` (modules already
    imported, so no interpreter or source files need to be readable by that user)."""
    # The same command on a pid that does not exist first: it imports what this one needs.
    alems_inproc(*[("999999999" if a == args[-1] else a) for a in args])
    r, w = os.pipe()
    child = os.fork()
    if child == 0:   # pragma: no cover - the child reports through the pipe
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.chdir("/")
            got = alems_inproc(*args)
            os.write(w, json.dumps([got.returncode, got.stderr]).encode())
        except BaseException as exc:  # noqa: BLE001 - told to the parent
            os.write(w, json.dumps([-1, f"child failed: {exc!r}"]).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as fh:
        data = fh.read()
    os.waitpid(child, 0)
    code, err = json.loads(data)
    return subprocess.CompletedProcess(args, code, "", err)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_not_permitted_is_one_line(server):
    """alems as uid 65534 attaching to a root-owned process: refused before sampling."""
    for args in (["sample", "--pid", str(server.pid)],
                 ["batch", "--tasks", "gsm8k_basic", "--providers", "scripted",
                  "--db", "/tmp/alems-never-written.db", "--server-pid", str(server.pid)]):
        got = _inproc_as(65534, *args)
        lines = _error_lines(got.stderr)
        assert got.returncode != 0
        assert len(lines) == 1 and "not permitted" in lines[0], got.stderr
        assert lines[0].startswith("alems: error:")


def test_cpu_time_estimate_covers_the_server_without_a_task_clock(server):
    """No perf source: the estimate's CPU time is this process's schedstat plus the server's
    <pid>/stat (all its threads, those born during the run too)."""
    from alems.measure.sampler import Sampler

    got = {}
    for also in ([server.pid], []):
        s = Sampler(hz=100, sources=["slow"], also_pids=also)
        s.start()
        cpu_ns = server.go()
        res = s.stop()
        assert res.energy_source == "estimate"
        cpu_est_ns = res.summary["energy_j"]["pkg"] / res.summary["estimate_w_per_core"] * 1e9
        got[bool(also)] = cpu_est_ns / cpu_ns
        if also:   # who was counted, and its context switches (its main thread waited)
            assert res.summary["server_processes"] == [
                {"pid": server.pid, "comm": attach.comm_of(server.pid)}]
            assert res.summary["server_process"]["voluntary_ctxt_switches"] > 0
        else:
            assert "server_processes" not in res.summary
    assert got[True] == pytest.approx(1.0, rel=0.10), got
    assert got[False] < 0.5, got   # without it the server's CPU time is missing


# ---------------------------------------------------------------- port -> process

def test_discovery_finds_the_listening_process(server):
    assert attach.listening_pids("127.0.0.1", server.port) == ([server.pid], None)
    found = attach.batch_servers([], f"http://localhost:{server.port}/v1")
    assert [p["pid"] for p in found.processes] == [server.pid]
    assert "listening on localhost" in found.describe()


def test_discovery_none_found_and_remote():
    import socket

    with socket.socket() as s:   # a port nothing listens on (bound, never listening)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        got = attach.batch_servers([], f"http://127.0.0.1:{port}/v1")
    assert got.processes == []
    assert got.reason == f"no listening process found for 127.0.0.1:{port}"
    assert "none" not in got.describe() and "no server process counted" in got.describe()
    remote = attach.batch_servers([], "https://api.groq.com/openai/v1")
    assert remote.processes == [] and "not on this machine" in remote.reason
    assert attach.batch_servers([], None).describe() is None


def _fake_proc(root: Path) -> Path:
    """A proc tree: pid 1234 holds a 127.0.0.1:8080 listener, pid 99 a [::]:11434 one,
    pid 321 a [::ffff:127.0.0.1]:8081 one, pid 55 an established connection on port 8080
    (not a listener)."""
    hdr = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   "
           "uid  timeout inode\n")
    rest = (" 00000000:00000000 00:00000000 00000000     0        0 {} 1 0000000000000000 "
            "100 0 0 10 0\n")
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(
        hdr + "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000"
        "     0        0 4242 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000"
        "     0        0 555 1 0000000000000000 20 4 30 10 -1\n")
    (root / "net" / "tcp6").write_text(
        hdr + "   0: 00000000000000000000000000000000:2CAA 00000000000000000000000000000000:0000"
        " 0A" + rest.format(777) +
        "   1: 0000000000000000FFFF00000100007F:1F91 00000000000000000000000000000000:0000"
        " 0A" + rest.format(888))
    for pid, fd, inode, comm in ((1234, 3, 4242, "llama-server"), (99, 7, 777, "ollama"),
                                 (55, 4, 555, "curl"), (321, 9, 888, "vllm")):
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "comm").write_text(comm + "\n")
        os.symlink(f"socket:[{inode}]", root / str(pid) / "fd" / str(fd))
        os.symlink("/dev/null", root / str(pid) / "fd" / "0")
    return root


def test_discovery_on_a_fake_proc_root(tmp_path, monkeypatch):
    root = _fake_proc(tmp_path / "proc")
    assert attach.listening_pids("127.0.0.1", 8080, str(root)) == ([1234], None)
    assert attach.listening_pids("localhost", 11434, str(root)) == ([99], None)
    assert attach.listening_pids("127.0.0.1", 8081, str(root)) == ([321], None)  # ::ffff:127.0.0.1
    assert attach.listening_pids("127.0.0.1", 9999, str(root)) == \
        ([], "no listening process found for 127.0.0.1:9999")
    monkeypatch.setenv("ALEMS_PROC_ROOT", str(root))   # the configured root, as elsewhere
    assert attach.listening_pids("::1", 11434) == ([99], None)
    assert attach.comm_of(1234) == "llama-server"
    assert attach.loopback_port("http://[::1]:11434/v1") == ("::1", 11434)
    assert attach.loopback_port("http://10.0.0.2:8000/v1") is None


# ---------------------------------------------------------------- the batch

class _Runs(BatchProgress):
    """Each run's row, with the CPU time the server spent during it."""

    def __init__(self):
        self.cpu_ns = 0
        self.rows: list[tuple[dict, int]] = []

    def running(self, key):
        self.cpu_ns = 0

    def finished(self, key, row):
        self.rows.append((row, self.cpu_ns))


def _batch(tmp_path, server, name, **cfg_kw):
    runs = _Runs()

    class ServerBacked(ScriptedProvider):   # the model's work happens in the server
        def generate(self, prompt, settings, *, system=None):
            runs.cpu_ns += server.go()
            return super().generate(prompt, settings, system=system)

    base_url = cfg_kw.pop("base_url", None)
    cfg = BatchConfig(tasks=["gsm8k_basic"], providers=["scripted"], workflows=["linear"],
                      repetitions=1, seed=3, hz=100.0, sources=["perf"],
                      db_path=tmp_path / f"{name}.db", baseline_duration_s=0.02,
                      baseline_reps=1, group_id=f"g-{name}", warm_up=False, **cfg_kw)
    if base_url is not None:   # set by `--base-url` once the OpenAI-compatible provider exists
        cfg.base_url = base_url  # type: ignore[attr-defined]
    log: list[str] = []
    BatchRunner(cfg, provider_factory=lambda n: ServerBacked(delay_s=0.0), log=log.append,
                progress=runs).run()
    conn = sqlite3.connect(tmp_path / f"{name}.db")
    stored = conn.execute("SELECT counted_pids, task_clock_ns, null_reasons FROM runs").fetchall()
    return runs.rows, stored, log


def test_batch_counts_the_server_process(server, tmp_path):
    _task_clock_or_skip()
    comm = attach.comm_of(server.pid)
    expected = [{"pid": server.pid, "comm": comm}]
    for name, kw in (("given", {"server_pids": [server.pid]}),
                     ("found", {"base_url": f"http://127.0.0.1:{server.port}/v1"})):
        rows, stored, log = _batch(tmp_path, server, name, **kw)
        assert any(f"counting server process {server.pid} ({comm})" in m for m in log), log
        (row, cpu_ns), = rows
        assert json.loads(stored[0][0]) == expected
        # the run's task clock = the server's CPU time + A-LEMS's own (small) share
        assert cpu_ns > 0 and row["task_clock_ns"] >= 0.9 * cpu_ns, (name, row, cpu_ns)
    # Control: the same server work, no server counted: the task clock misses it.
    rows, stored, log = _batch(tmp_path, server, "none")
    (row, cpu_ns), = rows
    assert stored[0][0] is None
    assert "no server process" in json.loads(stored[0][2])["counted_pids"]
    assert row["task_clock_ns"] < 0.5 * cpu_ns


def test_batch_bad_server_pid_is_one_line(tmp_path):
    for value, expect in (("999999999", "no such process"), ("abc", "process ids > 0")):
        got = alems_inproc("batch", "--tasks", "gsm8k_basic", "--providers", "scripted",
                           "--db", str(tmp_path / "x.db"), "--server-pid", value)
        lines = _error_lines(got.stderr)
        assert got.returncode != 0
        assert len(lines) == 1 and lines[0].startswith("alems: error:"), got.stderr
        assert expect in lines[0]
        assert not (tmp_path / "x.db").exists()   # nothing measured or stored


def test_schema_5_adds_counted_pids_to_an_older_db(tmp_path):
    path = tmp_path / "old.db"
    conn = store_db.connect(path)
    conn.execute("ALTER TABLE runs DROP COLUMN counted_pids")   # as schema 4 had it
    conn.execute("UPDATE schema_info SET value = '4' WHERE key = 'version'")
    conn.commit()
    conn.close()
    conn = store_db.connect(path)
    assert "counted_pids" in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    assert store_db.schema_version(conn) == store_db.SCHEMA_VERSION


def test_a_runs_row_gets_the_servers_switches_and_who_was_counted():
    from types import SimpleNamespace

    from alems.experiment.execute import count_servers

    server = attach.ServerSet([{"pid": 7, "comm": "llama-server", "start_ticks": 1}], None)
    sampler = SimpleNamespace(also_processes=[{"pid": 7, "comm": "llama-server"}])
    result = SimpleNamespace(summary={"server_process": {"voluntary_ctxt_switches": 10,
                                                         "nonvoluntary_ctxt_switches": 20}})
    row = {"context_switches_voluntary": 3, "context_switches_involuntary": 4}
    reasons = {"counted_pids": "stale"}
    count_servers(row, reasons, sampler, result, server)
    assert (row["context_switches_voluntary"], row["context_switches_involuntary"]) == (13, 24)
    assert json.loads(row["counted_pids"]) == [{"pid": 7, "comm": "llama-server"}]
    assert "counted_pids" not in reasons
    # The server exited before this run: nothing counted, and why.
    row, reasons = {}, {}
    count_servers(row, reasons, SimpleNamespace(also_processes=[]), result, server)
    assert row["counted_pids"] is None and "7 no longer running" in reasons["counted_pids"]
    # None was found at the start: that reason.
    row, reasons = {}, {}
    none = attach.ServerSet([], "no listening process found for 127.0.0.1:8080")
    count_servers(row, reasons, SimpleNamespace(), SimpleNamespace(summary={}), none)
    assert reasons["counted_pids"] == "no listening process found for 127.0.0.1:8080"
