"""Hours-long measurements (issue 12): samples streamed to `<output>.partial` in bounded
memory, converted at the end, recoverable after a kill; incremental columns and summary;
the C ring keeps room for the final record; the 64-bit tick; counters at the slow rate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from alems.measure import _native, stream
from alems.measure._native import RECORD_DTYPE, NativeSampler, ffi
from alems.measure.names import RECOVERED_METADATA_KEY
from alems.measure.columns import ColumnBuilder, build_columns
from alems.measure.sampler import Sampler
from alems.measure.sources.base import Column

import fakehw
from test_cli_sample import alems_argv, alems_env
from waiting import wait_samples, wait_until

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- C core


def test_tick_is_as_wide_as_the_deadline_counter():
    assert ffi.sizeof(ffi.typeof("alems_record").fields[1][1].type) == 8
    assert RECORD_DTYPE.fields["tick"][0] == np.dtype("<u8")


def test_full_ring_drops_the_newest_record_but_never_the_final_one():
    s = NativeSampler([], period_ns=100_000, slow_every=1, ring_capacity=4)
    try:
        s.start()
        wait_until(lambda: s.stats()["dropped"] > 100, "drops")  # a 4-record ring, not drained
        s.stop()
        out = np.zeros(8, dtype=RECORD_DTYPE)
        n = s.drain(out)
        st = s.stats()
    finally:
        s.close()
    assert st["dropped"] > 100
    assert n == 4
    assert out["flags"][n - 1] & _native.REC_FINAL, "the final record was dropped"
    assert out["tick"][0] == 0 and np.all(np.diff(out["tick"][:n].astype(np.int64)) > 0)


# ---------------------------------------------------------------- incremental columns


def _columns():
    return [Column("zone_a_energy_uj", [], "energy", 2.0, 1000, "pkg", "a"),
            Column("zone_b_energy_uj", [], "energy", 1.0, 500, "pkg", "b"),
            Column("instructions", [], "counter"),
            Column("procs_running", [], "gauge"),
            Column("temp", [], "temp", 0.001)]


def test_chunked_columns_equal_the_whole_run_wraps_across_chunks_included():
    rng = np.random.default_rng(3)
    n = 1000
    a = np.cumsum(rng.integers(0, 40, n)) % 1000      # wraps at 1000
    b = np.cumsum(rng.integers(0, 30, n)) % 500
    raw = np.stack([a, b, np.cumsum(rng.integers(0, 9, n)) + 77,
                    rng.integers(0, 4, n), rng.integers(40000, 60000, n)], axis=1)
    t = np.arange(n, dtype=np.int64) * 1000
    whole, units = build_columns(t, raw, _columns(), None)
    builder = ColumnBuilder(_columns(), None)
    cuts = [0, 1, 7, 333, 334, 800, n]
    parts = [builder.add(t[i:j], raw[i:j]) for i, j in zip(cuts, cuts[1:])]
    for name, arr in whole.items():
        np.testing.assert_array_equal(np.concatenate([p[name] for p in parts]), arr)
    assert builder.units == units
    assert builder.schema() == pa.Table.from_pydict(
        {k: pa.array(v) for k, v in whole.items()}).schema
    # the wrap correction really happened (the raw counter fell many times)
    assert whole["pkg_energy_uj"][-1] > 2 * 1000


def test_summary_and_stop_never_read_the_samples(fake_roots, tmp_path, monkeypatch):
    """The summary is kept while the samples stream: stopping a streamed run reads
    nothing back, however long it was."""
    def no_reading(*a, **k):
        raise AssertionError("the samples were read back")

    monkeypatch.setattr(stream, "read_partial", no_reading)
    monkeypatch.setattr(stream, "read_batches", no_reading)
    s = Sampler(500, sources=["slow"], slow_hz=50, **fake_roots)
    s.stream_to(tmp_path / "r.parquet.partial")
    s.start()
    wait_samples(s, 160)   # 160 deadlines of the 500 Hz grid: more than 0.3 s
    r = s.stop()
    assert r.summary["samples"] > 100
    assert r.summary["counters"]["interrupts"] >= 0
    assert r.summary["duration_s"] > 0.3


def test_keep_samples_false_keeps_only_the_summary(fake_roots):
    s = Sampler(500, sources=["slow"], keep_samples=False, **fake_roots)
    s.start()
    wait_samples(s, 60)
    r = s.stop()
    assert r.summary["samples"] > 50
    with pytest.raises(Exception, match="keep_samples=False"):
        r.table


# ---------------------------------------------------------------- the stream


def _read_stream(path) -> pa.Table:
    with pa.OSFile(str(path)) as src:
        reader = ipc.open_stream(src)
        batches = []
        while True:
            try:
                batches.append(reader.read_next_batch())
            except StopIteration:
                break
        return pa.Table.from_batches(batches, schema=reader.schema)


def test_sampler_streams_readable_partial_with_the_final_columns(fake_roots, tmp_path):
    final = tmp_path / "run.parquet"
    partial = stream.partial_path_of(final)
    s = Sampler(1000, sources=["slow"], **fake_roots)
    s.stream_to(partial)
    s.start()
    _wait_rows(partial, 500)          # flushed while the run goes on
    live = _read_stream(partial)
    assert stream.is_live(partial)
    assert live.num_rows >= 500
    r = s.stop()
    assert not stream.is_live(partial)
    r.write_parquet(final)
    assert not partial.exists()
    table = pq.read_table(final)
    assert table.schema.names == live.schema.names
    assert table.num_rows == r.summary["samples"] >= live.num_rows
    assert json.loads(table.schema.metadata[b"summary"])["samples"] == table.num_rows
    assert r.table.num_rows == table.num_rows  # the result now reads the Parquet file


def test_existing_partial_is_never_overwritten(fake_roots, tmp_path):
    partial = tmp_path / "run.parquet.partial"
    partial.write_bytes(b"samples of a killed run")
    s = Sampler(100, sources=["slow"], **fake_roots)
    s.stream_to(partial)
    with pytest.raises(Exception, match="already exists"):
        s.start()
    assert partial.read_bytes() == b"samples of a killed run"


def _wait_rows(partial: Path, rows: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        if partial.exists():
            try:
                got = _read_stream(partial).num_rows
            except (pa.ArrowInvalid, OSError):
                got = 0
            if got >= rows:
                return got
        time.sleep(0.05)
    raise AssertionError(f"{partial}: {got} rows after {timeout} s")


@pytest.fixture
def cli_env(tmp_path):
    sysfs = tmp_path / "sys"
    sysfs.mkdir()
    return alems_env(sysfs)


@pytest.mark.parametrize("how", ["exit", pytest.param("sigterm", marks=pytest.mark.signals),
                                 pytest.param("sigint", marks=pytest.mark.signals)])
def test_cli_partial_while_running_then_parquet_at_a_normal_end(tmp_path, cli_env, how):
    out = tmp_path / "run.parquet"
    partial = tmp_path / "run.parquet.partial"
    done = tmp_path / "done"   # the workload ends when the test says so, not after a time
    workload = ["sh", "-c", f"while [ ! -e {done} ]; do sleep 0.02; done"]
    proc = subprocess.Popen(alems_argv("sample", "--hz", "1000", "-q", "-o", str(out),
                                       "--", *workload),
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = _wait_rows(partial, 200)
        _wait_rows(partial, first + 500)  # flushed again while the run goes on
        assert not out.exists()
        if how == "exit":
            done.touch()
        else:
            proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert out.exists() and not partial.exists(), err
    table = pq.read_table(out)
    assert table.num_rows >= first + 500
    assert "t_ns" in table.column_names and b"summary" in table.schema.metadata


@pytest.mark.signals
def test_cli_kill_9_then_recover(tmp_path, cli_env):
    out = tmp_path / "run.parquet"
    partial = tmp_path / "run.parquet.partial"
    proc = subprocess.Popen(alems_argv("sample", "--hz", "1000", "-q", "-o", str(out),
                                       "--", "sleep", "60"),
                            env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_rows(partial, 1000)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stream_rows = _read_stream(partial).num_rows   # readable after the kill
    assert stream_rows >= 1000 and not out.exists()
    # a new run never overwrites the killed run's samples
    again = subprocess.run(alems_argv("sample", "-o", str(out), "--", "true"),
                           env=cli_env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "--recover" in again.stderr
    rec = subprocess.run(alems_argv("sample", "--recover", str(out)),
                         env=cli_env, capture_output=True, text=True, timeout=60)
    assert rec.returncode == 0, rec.stderr
    assert f"recovered {stream_rows:,} samples" in rec.stderr and " s)" in rec.stderr
    assert out.exists() and not partial.exists()
    table = pq.read_table(out)
    assert table.num_rows == stream_rows
    mark = json.loads(table.schema.metadata[RECOVERED_METADATA_KEY.encode()])
    assert mark["samples"] == stream_rows and mark["duration_s"] > 0.9
    assert table.schema.metadata[b"rate_hz"] == b"1000.0"   # the stream kept the metadata
    none = subprocess.run(alems_argv("sample", "--recover", str(out)),
                          env=cli_env, capture_output=True, text=True, timeout=60)
    assert none.returncode != 0 and "nothing to recover" in none.stderr


# ---------------------------------------------------------------- bounded memory


def _max_rss_kb(argv: list[str], env: dict) -> int:
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, proc.stderr.read()
    return ru.ru_maxrss


def _rss_growth_mb(tmp_path, env, hz: str, short_s: int, long_s: int) -> float:
    def run(secs: int) -> int:
        out = tmp_path / f"r{secs}.parquet"
        kb = _max_rss_kb(alems_argv("sample", "--hz", hz, "-q", "-o", str(out), "--",
                                    "sleep", str(secs)), env)
        # every deadline of the run was sampled or (on a loaded machine) skipped
        summary = json.loads(pq.read_metadata(out).metadata[b"summary"])
        assert summary["samples"] + summary["skipped_deadlines"] >= 0.9 * float(hz) * secs
        assert summary["samples"] >= 0.1 * float(hz) * secs
        return kb
    return (run(long_s) - run(short_s)) / 1024


@pytest.mark.slow
def test_memory_stays_bounded_at_20khz(tmp_path, cli_env):
    """20 kHz for 12 s (240 000 samples) vs 3 s: the old code kept every sample in memory
    (~11 MB/s at this rate, ~100 MB more here)."""
    assert _rss_growth_mb(tmp_path, cli_env, "20000", 3, 12) <= 5


# ---------------------------------------------------------------- slow-rate counters


def test_process_counters_are_read_at_the_slow_rate_by_default(fake_roots):
    # measured energy: with the estimate, its task clock is read at every sample
    tree = fakehw.make_powercap_tree(fake_roots["sysfs_root"], mmio_mirror=False)

    spun_ns = [0]   # CPU time this thread spun during the last run

    def run(**kw):
        with fakehw.EnergyWriter(tree.targets):
            s = Sampler(500, sources=["powercap", "perf"], slow_hz=10, **fake_roots, **kw)
            s.start()
            spin_ns = time.thread_time_ns()
            while s._native.stats()["samples"] < 300:
                pass  # busy: task-clock advances between reads
            spun_ns[0] = time.thread_time_ns() - spin_ns
            return s.stop()

    def change_gaps_ns(result):
        """Times between successive changes of task-clock (the final record, which reads
        every counter, aside)."""
        t = np.asarray(result.table.column("t_ns"))[:-1]
        v = np.asarray(result.table.column("task_clock_ns"))[:-1]
        return np.diff(t[1:][np.diff(v) != 0])

    slow = run()
    assert slow.energy_source == "powercap"
    tc = np.asarray(slow.table.column("task_clock_ns"))
    assert slow.summary["counter_hz"] == 10.0
    # one new value per slow read (+ the first and the final), however long the run took;
    # slow reads fall on every 50th deadline of the 500 Hz grid, 100 ms apart (a record is
    # never more than one 2 ms period late)
    assert len(np.unique(tc)) <= slow.summary["duration_s"] * 10 + 3
    assert (change_gaps_ns(slow) >= 98_000_000).all()
    # the final record reads it: at least the CPU time this thread spun during the run
    assert slow.summary["counters"]["task_clock_ns"] >= 0.9 * spun_ns[0] > 0
    fast = run(counters_full_rate=True)
    assert fast.summary["counter_hz"] == 500.0
    assert (change_gaps_ns(fast) < 50_000_000).any()   # read between two slow reads


# ---------------------------------------------------------------- batch


def test_resumed_batch_discards_the_partial_samples_of_a_killed_run_and_says_so(tmp_path):
    from test_batch import assert_store_consistent, make_runner
    from alems.store import samples as store_samples

    db_path = tmp_path / "data" / "experiments.db"
    dead = stream.partial_path_of(store_samples.samples_path(db_path, "g-test", 1, 99))
    dead.parent.mkdir(parents=True)
    w = stream.PartialWriter(dead, pa.schema([("t_ns", pa.int64())]))
    w.write({"t_ns": np.array([0, 500_000_000, 1_000_000_000], np.int64)})
    w.close()   # the writer is gone: nobody holds the lock any more
    live = stream.partial_path_of(store_samples.samples_path(db_path, "g-test", 1, 98))
    holder = stream.PartialWriter(live, pa.schema([("t_ns", pa.int64())]))  # still writing
    logs: list[str] = []
    runner = make_runner(tmp_path, tasks=["gsm8k_basic"], repetitions=1)
    runner.log = logs.append
    try:
        runner.run()
        assert live.exists(), "a stream another process is writing must stay"
    finally:
        holder.close()
    live.unlink()
    assert not dead.exists()
    said = [m for m in logs if "discarded the partial samples of a killed run" in m]
    assert len(said) == 1 and "3 samples, 1.0 s" in said[0] and "redone" in said[0]
    rows = assert_store_consistent(db_path)
    assert 99 not in {r["run_id"] for r in rows} and len(rows) == 2
