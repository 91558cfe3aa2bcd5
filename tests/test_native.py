"""The C core itself, through alems._native: parsing, ring, slots, errors, layout."""

from __future__ import annotations

import errno
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from alems import _native as n
from alems._alems_native import ffi, lib
from alems._native import ChannelSpec as C

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
    time.sleep(0.1)
    fd = os.open(slow, os.O_WRONLY)
    os.pwrite(fd, b"000200\n", 0)
    os.close(fd)
    time.sleep(0.15)
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
    assert st["slow_reads"] >= len(recs) // 10
    assert (np.diff(recs["t_ns"]) > 0).all()


def test_ring_full_counts_drops(tmp_path):
    f = tmp_path / "v"
    f.write_text("1")
    s = n.NativeSampler([(C("text", str(f)), 0)], 1_000_000, 1, 8)
    s.start()
    time.sleep(0.1)  # ~100 ticks into an 8-record ring, nobody draining
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
    time.sleep(0.03)
    os.truncate(f, 0)  # now unparsable: ENODATA
    time.sleep(0.03)
    st = s.stats()
    s.stop()
    recs = _drain_all(s)
    s.close()
    assert st["running"] == 1
    assert st["error_errno"] == errno.ENODATA and st["error_input"] == 1
    assert (recs["values"][:, 1] == 5).all()


def test_rate_and_timestamps_at_1khz(tmp_path):
    f = tmp_path / "v"
    f.write_text("1")
    s = n.NativeSampler([(C("text", str(f)), 0)], 1_000_000, 1, 4096)
    t0 = n.now_ns()
    s.start()
    time.sleep(0.5)
    s.stop()
    recs = _drain_all(s)
    st = s.stats()
    s.close()
    assert abs(n.now_ns() - time.monotonic_ns()) < 5_000_000  # same clock as Python
    assert recs["t_ns"][0] >= t0
    span = (recs["t_ns"][-1] - recs["t_ns"][0]) / 1e9
    assert (len(recs) - 1) / span >= 950
    assert st["thread_cpu_ns"] > 0


_STALL_CHILD = """
import json, os, sys, time
from alems._native import NativeSampler, ChannelSpec
s = NativeSampler([(ChannelSpec("text", sys.argv[1]), 0)], 1_000_000, 1, 1 << 12)
s.start()
print("started", flush=True)
time.sleep(0.6)
s.stop()
print(json.dumps(s.stats()), flush=True)
s.close()
"""


def test_missed_deadlines_are_skipped_not_bursted(tmp_path):
    """A stalled sampler (SIGSTOP for 100 ms) skips the missed ticks and counts them."""
    import json
    import signal
    import subprocess
    import sys

    f = tmp_path / "v"
    f.write_text("1")
    proc = subprocess.Popen([sys.executable, "-c", _STALL_CHILD, str(f)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGSTOP)
    time.sleep(0.1)
    os.kill(proc.pid, signal.SIGCONT)
    st = json.loads(proc.stdout.readline())
    proc.wait()
    assert st["skipped"] >= 80  # ~100 one-ms deadlines passed while stopped
    assert st["max_lateness_ns"] >= 80_000_000 and st["late"] >= 1
    assert st["samples"] + st["skipped"] >= 590  # every deadline either sampled or skipped
    assert st["samples"] <= 540  # no burst of catch-up samples
