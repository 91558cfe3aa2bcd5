"""The C core itself, through alems.measure._native: parsing, ring, slots, errors, layout."""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from alems.measure import _native as n
from alems.measure._alems_native import ffi, lib
from alems.measure._native import ChannelSpec as C
from waiting import wait_until

HEADER = Path(__file__).resolve().parents[1] / "csrc" / "alems_sampler.h"


def test_capacities_come_from_the_header():
    text = HEADER.read_text()
    for name in ("ALEMS_MAX_CHANNELS", "ALEMS_MAX_INPUTS", "ALEMS_ERRMSG_LEN"):
        declared = int(re.search(rf"#define {name} (\d+)", text).group(1))
        assert getattr(lib, name) == declared
    assert n.RECORD_DTYPE.itemsize == ffi.sizeof("alems_record")
    assert n.RECORD_DTYPE["values"].shape == (lib.ALEMS_MAX_CHANNELS,)


def test_probe_parses_each_kind(tmp_path):
    f = tmp_path / "v"
    f.write_text("  -42 rest\n")
    assert n.probe(C("text", str(f))) == -42
    stat = tmp_path / "stat"
    stat.write_text("cpu 1 2 3\nintr 777 1 2\nctxt 99\nprocs_running 4\n")
    assert n.probe(C("keyed", str(stat), key="intr ")) == 777
    assert n.probe(C("keyed", str(stat), key="procs_running ")) == 4
    pidstat = tmp_path / "pidstat"
    # comm with spaces and ')' inside: fields counted after the last ')'
    fields = ["S"] + ["0"] * 10 + ["5", "6", "7", "8"] + ["0"] * 30
    pidstat.write_text("123 (a b) c)) " + " ".join(fields) + "\n")
    assert n.probe(C("pidstat", str(pidstat))) == 5 + 6 + 7 + 8
    msr = tmp_path / "msr"
    with open(msr, "wb") as fh:
        fh.seek(0x611)
        fh.write((0xABCD_0000_1234_5678).to_bytes(8, "little"))
    assert n.probe(C("msr", str(msr), offset=0x611, mask=0xFFFFFFFF)) == 0x12345678
    assert n.probe(C("pidstat", f"/proc/{os.getpid()}/stat")) >= 0


def test_probe_errors_name_the_file(tmp_path):
    with pytest.raises(n.NativeError) as ei:
        n.probe(C("text", str(tmp_path / "missing")))
    assert ei.value.errno == errno.ENOENT and "missing" in ei.value.strerror
    (tmp_path / "empty").write_text("")
    with pytest.raises(n.NativeError) as ei:
        n.probe(C("keyed", str(tmp_path / "empty"), key="ctxt "))
    assert ei.value.errno == errno.ENODATA


def test_create_rejects_bad_arguments(tmp_path):
    f = tmp_path / "v"
    f.write_text("1")
    with pytest.raises(n.NativeError) as ei:
        n.NativeSampler([(C("text", str(f)), 0)], 1_000_000, 1, 1000)  # not a power of 2
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(n.NativeError):
        n.NativeSampler([(C("text", str(f)), lib.ALEMS_MAX_CHANNELS)], 1_000_000, 1, 1024)
    with pytest.raises(n.NativeError):  # one slot fed by a fast and a slow input
        n.NativeSampler([(C("text", str(f)), 0), (C("text", str(f), slow=True), 0)],
                        1_000_000, 1, 1024)


def test_start_fails_with_errno_and_message(tmp_path):
    f = tmp_path / "ok"
    f.write_text("1")
    s = n.NativeSampler([(C("text", str(f)), 0), (C("text", str(tmp_path / "gone")), 1)],
                        1_000_000, 1, 1024)
    with pytest.raises(n.NativeError) as ei:
        s.start()
    assert ei.value.errno == errno.ENOENT and "gone" in ei.value.strerror
    s.close()


def _drain_all(s, cap=4096):
    buf = np.empty(cap, dtype=n.RECORD_DTYPE)
    out = []
    while True:
        k = s.drain(buf)
        out.append(buf[:k].copy())
        if k < cap:
            break
    return np.concatenate(out)


def test_slots_sum_and_slow_inputs_carry_forward(tmp_path):
    a, b, slow = tmp_path / "a", tmp_path / "b", tmp_path / "slow"
    a.write_text("10\n")
    b.write_text("32\n")
    slow.write_text("000100\n")
    inputs = [(C("text", str(a)), 0), (C("text", str(b)), 0), (C("text", str(slow), slow=True), 1)]
    s = n.NativeSampler(inputs, 2_000_000, 10, 1024)  # 500 Hz, slow every 10th tick
    s.start()
    wait_until(lambda: s.stats()["slow_reads"] >= 3, "three slow reads")
    fd = os.open(slow, os.O_WRONLY)
    os.pwrite(fd, b"000200\n", 0)
    os.close(fd)
    after = s.stats()["slow_reads"]
    wait_until(lambda: s.stats()["slow_reads"] >= after + 3, "three slow reads after the write")
    s.stop()
    recs = _drain_all(s)
    st = s.stats()
    s.close()
    assert (recs["values"][:, 0] == 42).all()
    vals = recs["values"][:, 1]
    assert set(vals) == {100, 200}
    is_slow = (recs["flags"] & n.REC_SLOW) != 0
    changes = np.nonzero(np.diff(vals))[0] + 1
    assert len(changes) == 1 and is_slow[changes[0]]  # changed only on a slow read
    assert recs["flags"][-1] & n.REC_FINAL
    ticks = recs["tick"].astype(int)
    assert (recs["flags"][:-1][ticks[:-1] % 10 == 0] & n.REC_SLOW).all()
    assert st["samples"] == len(recs) and st["dropped"] == 0
    assert st["slow_reads"] >= is_slow.sum()   # every slow tick read the slow input
    assert (np.diff(recs["t_ns"]) > 0).all()


def test_ring_full_counts_drops(tmp_path):
    f = tmp_path / "v"
    f.write_text("1")
    s = n.NativeSampler([(C("text", str(f)), 0)], 1_000_000, 1, 8)
    s.start()
    wait_until(lambda: s.stats()["samples"] >= 100, "100 ticks")  # into an 8-record ring
    s.stop()
    recs = _drain_all(s)
    st = s.stats()
    s.close()
    assert len(recs) == 8
    assert st["dropped"] == st["samples"] - 8 > 50


def test_read_error_is_sticky_and_value_carried(tmp_path):
    f = tmp_path / "v"
    f.write_text("5\n")
    g = tmp_path / "w"
    g.write_text("7\n")
    s = n.NativeSampler([(C("text", str(g)), 0), (C("text", str(f)), 1)], 1_000_000, 1, 1024)
    s.start()
    wait_until(lambda: s.stats()["samples"] >= 5, "five samples")
    os.truncate(f, 0)  # now unparsable: ENODATA
    st = wait_until(lambda: (lambda st: st if st["error_errno"] else None)(s.stats()),
                    "the read error")
    s.stop()
    recs = _drain_all(s)
    s.close()
    assert st["running"] == 1
    assert st["error_errno"] == errno.ENODATA and st["error_input"] == 1
    assert (recs["values"][:, 1] == 5).all()


def test_rate_and_timestamps_at_1khz(tmp_path):
    """Every record lies in its own 1 ms slot of the 1 kHz deadline grid (a late thread
    skips whole periods, never bursts and never drifts), and the deadlines passed are all
    either sampled or counted as skipped: true at any load, where the achieved rate is not."""
    f = tmp_path / "v"
    f.write_text("1")
    period = 1_000_000
    s = n.NativeSampler([(C("text", str(f)), 0)], period, 1, 4096)
    t0 = n.now_ns()
    s.start()
    wait_until(lambda: s.stats()["samples"] >= 500, "500 samples")
    s.stop()
    recs = _drain_all(s)
    st = s.stats()
    s.close()
    assert abs(n.now_ns() - time.monotonic_ns()) < 5_000_000  # same clock as Python
    assert recs["t_ns"][0] >= t0
    assert recs["flags"][-1] & n.REC_FINAL
    ticks, t = recs["tick"][:-1].astype(np.int64), recs["t_ns"][:-1].astype(np.int64)
    assert ticks[0] == 0 and (np.diff(ticks) >= 1).all() and (np.diff(t) > 0).all()
    offset = t - ticks * period            # the grid's origin + each record's lateness
    assert offset.max() - offset.min() < period
    assert st["samples"] == len(recs) and st["dropped"] == 0
    assert st["samples"] - 1 + st["skipped"] == ticks[-1] + 1   # the final record aside
    assert st["thread_cpu_ns"] > 0


_STALL_CHILD = """
import json, sys, time
import numpy as np
from alems.measure._native import RECORD_DTYPE, NativeSampler, ChannelSpec
s = NativeSampler([(ChannelSpec("text", sys.argv[1]), 0)], 1_000_000, 1, 1 << 16)
s.start()
while s.stats()["samples"] < 50:   # the sampling loop is under way
    time.sleep(0.005)
print("started", flush=True)
sys.stdin.readline()          # the test says when to stop (after SIGCONT) ...
after = s.stats()["samples"]
while s.stats()["samples"] < after + 5:   # ... once the loop has woken and seen the stall
    time.sleep(0.005)
s.stop()
st = s.stats()
recs = np.empty(1 << 16, dtype=RECORD_DTYPE)
n = s.drain(recs)
st["ticks"] = recs["tick"][:n - 1].tolist()   # the final record aside
st["t_ns"] = recs["t_ns"][:n - 1].tolist()
print(json.dumps(st), flush=True)
s.close()
"""


@pytest.mark.signals
def test_missed_deadlines_are_skipped_not_bursted(tmp_path):
    """A stalled sampler (SIGSTOP for >= 100 ms) skips the missed ticks and counts them."""
    import json
    import signal
    import subprocess
    import sys

    f = tmp_path / "v"
    f.write_text("1")
    proc = subprocess.Popen([sys.executable, "-c", _STALL_CHILD, str(f)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "started"
    os.kill(proc.pid, signal.SIGSTOP)
    stopped_at = time.monotonic()
    wait_until(lambda: time.monotonic() - stopped_at >= 0.1, "100 ms stopped", poll_s=0.01)
    os.kill(proc.pid, signal.SIGCONT)
    proc.stdin.write("stop\n")
    proc.stdin.flush()
    st = json.loads(proc.stdout.readline())
    proc.wait()
    assert st["dropped"] == 0
    assert st["skipped"] >= 80  # ~100 one-ms deadlines passed while stopped
    assert st["max_lateness_ns"] >= 80_000_000 and st["late"] >= 1
    ticks, t = np.asarray(st["ticks"]), np.asarray(st["t_ns"])
    # every deadline was either sampled or skipped ...
    assert st["samples"] - 1 + st["skipped"] == ticks[-1] + 1
    # ... and each sample lies in its own slot of the grid: no burst of catch-up samples
    offset = t - ticks * 1_000_000
    assert offset.max() - offset.min() < 1_000_000


# ------------------------------------------------------------------ perf groups

_SW = {"task_clock": 1, "page_faults": 2, "context_switches": 3, "cpu_migrations": 4}
_BUSY = "import time\nt=time.process_time()\nwhile time.process_time()-t<{s}: pass\n"


def _sw(pid, flags=n.PERF_INHERIT, slow=False, names=tuple(_SW)):
    return [C("perf", f"sw:{k}", perf_type=1, perf_config=_SW[k], pid=pid, cpu=-1,
              perf_flags=flags, slow=slow) for k in names]


def _sampler_thread_tids() -> set[str]:
    """This process's C sampler threads (the core names them alems-sampler)."""
    out = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            if Path(f"/proc/self/task/{tid}/comm").read_text().strip() == "alems-sampler":
                out.add(tid)
        except OSError:
            pass
    return out


def test_grouped_counters_match_counters_read_alone():
    """The four software counters of a busy child read as one perf group give the values
    the same counters give when each is opened and read on its own (the pre-group path:
    a counter with a target of its own is never grouped)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _BUSY.format(s=0.3)])
    grouped = _sw(proc.pid)
    alone = (_sw(proc.pid, n.PERF_INHERIT | n.PERF_EXCLUDE_HV, names=["task_clock"])
             + _sw(proc.pid, n.PERF_INHERIT | n.PERF_EXCLUDE_HV, slow=True, names=["page_faults"]))
    s = n.NativeSampler([(spec, i) for i, spec in enumerate(grouped + alone)], 1_000_000, 1,
                        1 << 12)
    s.start()
    note = s.note
    _, status, ru = os.wait4(proc.pid, 0)
    s.stop()
    recs = _drain_all(s)
    st = s.stats()
    s.close()
    assert status == 0 and note == "" and st["error_errno"] == 0
    tc, pf, cs, mig, tc_alone, pf_alone = (int(v) for v in recs["values"][-1, :6])
    cpu_ns = (ru.ru_utime + ru.ru_stime) * 1e9
    assert 0.28e9 <= tc <= cpu_ns + 20e6  # ≈ the child's CPU time (opened just after spawn)
    assert abs(tc - tc_alone) <= max(0.02 * tc, 5e6)
    assert pf > 100 and abs(pf - pf_alone) <= max(0.05 * pf, 20)
    assert cs >= 0 and mig >= 0
    assert (np.diff(recs["values"][:, 0]) >= 0).all()  # cumulative, never goes back


def test_one_read_per_perf_group(tmp_path):
    """Kernel-side count (strace on the sampler thread): a group of four counters costs
    one read() per tick, like the one energy file costs one pread()."""
    import shutil
    import signal
    import subprocess

    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    f = tmp_path / "energy_uj"
    f.write_text("1\n")
    # 2 groups: 4 counters (flags A) + 2 counters (flags B); one text file.
    inputs = (_sw(os.getpid()) + _sw(os.getpid(), n.PERF_INHERIT | n.PERF_EXCLUDE_HV,
                                     names=["task_clock", "page_faults"])
              + [C("text", str(f))])
    s = n.NativeSampler([(spec, i) for i, spec in enumerate(inputs)], 1_000_000, 1, 1 << 14)
    try:
        before = _sampler_thread_tids()  # other tests' samplers may still be alive
        s.start()
        new = _sampler_thread_tids() - before
        assert len(new) == 1
        tid = new.pop()
        for _attempt in range(2):  # a slow strace start-up may miss the first window
            tr = subprocess.Popen(["strace", "-qq", "-c", "-e", "trace=read,pread64", "-p", tid],
                                  stderr=subprocess.PIPE, text=True)
            first = s.stats()["samples"]   # ticks while strace is (or is getting) attached
            wait_until(lambda: s.stats()["samples"] >= first + 800, "800 traced ticks")
            tr.send_signal(signal.SIGINT)
            out = tr.communicate(timeout=10)[1]
            calls = {m.group(2): int(m.group(1)) for m in re.finditer(
                r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", out, re.M)}
            if calls.get("pread64", 0) >= 100:
                break
    finally:
        s.stop()
        s.close()
    if "pread64" not in calls:
        pytest.skip(f"strace could not trace the sampler thread: {out.strip()[:200]}")
    assert calls["pread64"] >= 100
    assert abs(calls.get("read", 0) - 2 * calls["pread64"]) <= 4  # 2 reads per tick, not 6


def test_a_counter_that_cannot_open_still_fails_start_by_name():
    """Grouping keeps the contract: a bad counter, leader or member, fails start with its
    name (no half-built group left behind; the sampler can be closed)."""
    bad = C("perf", "sw:bogus", perf_type=1, perf_config=999, pid=os.getpid(), cpu=-1,
            perf_flags=n.PERF_INHERIT)
    for order in ([bad] + _sw(os.getpid()), _sw(os.getpid())[:2] + [bad]):
        s = n.NativeSampler([(spec, i) for i, spec in enumerate(order)], 1_000_000, 1, 1024)
        with pytest.raises(n.NativeError) as ei:
            s.start()
        assert "sw:bogus" in ei.value.strerror
        s.close()


def test_a_counter_refused_by_its_group_is_read_alone_and_start_says_so():
    """Fault injection (ALEMS_PERF_TEST_NO_JOIN, test only): the members cannot join their
    leader's group, so each is read on its own; start() succeeds and its note names the
    first refused counter (the note used to be dropped on success)."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _BUSY.format(s=0.3)])
    refused = _sw(proc.pid, n.PERF_INHERIT | n.PERF_TEST_NO_JOIN)
    s = n.NativeSampler([(spec, i) for i, spec in enumerate(refused)], 1_000_000, 1, 1 << 12)
    s.start()
    note = s.note
    _, status, ru = os.wait4(proc.pid, 0)
    s.stop()
    recs = _drain_all(s)
    st = s.stats()
    s.close()
    assert status == 0 and st["error_errno"] == 0
    assert "perf counter sw:page_faults" in note and "could not join its group" in note
    assert "read on its own" in note and f"pid={proc.pid}" in note
    tc, pf = (int(v) for v in recs["values"][-1, :2])
    cpu_ns = (ru.ru_utime + ru.ru_stime) * 1e9
    assert 0.28e9 <= tc <= cpu_ns + 20e6  # the leader, alone in its group, still counts
    assert pf > 100  # and so does a member read on its own


def test_start_publishes_the_sampling_threads_tid():
    """thread_tid is the C thread's kernel id (named alems-sampler) as soon as start()
    returns: callers exclude it when counting the workload's threads."""
    before = _sampler_thread_tids()
    s = n.NativeSampler([(C("pidstat", f"/proc/{os.getpid()}/stat"), 0)], 1_000_000, 1, 1024)
    assert s.thread_tid == 0
    s.start()
    try:
        assert {str(s.thread_tid)} == _sampler_thread_tids() - before
    finally:
        s.stop()
        s.close()
