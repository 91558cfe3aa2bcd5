"""The C core's blind spots found by mutation testing (docs/TESTING.md): the ring's
consumer copy when the records it drains wrap around the end of the ring, and the
scaling of a multiplexed perf counter (time running < time enabled)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest

from alems.measure import _native as n
from alems.measure._native import ChannelSpec as C
from waiting import wait_until

CSRC = Path(__file__).resolve().parents[1] / "csrc"
RING = 8
BLANK = np.iinfo(np.uint64).max     # the tick of a record the drain never wrote


def _drain(s, max_records: int) -> np.ndarray:
    # A sentinel in every byte: records the drain did not write read as tick 2**64-1.
    buf = np.frombuffer(b"\xff" * (max_records * n.RECORD_DTYPE.itemsize),
                        dtype=n.RECORD_DTYPE).copy()
    k = s.drain(buf)
    return buf[:k].copy()


def test_drain_after_the_ring_wrapped_returns_every_record_in_order(tmp_path):
    """Fill an 8-record ring, drain 5, let it fill again (its newest records now lie at
    the ring's start), drain all: the 7 records come out in tick order, whole — the
    copy from the ring's end and the one from its start."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("1234567\n")
    b.write_text("-42\n")
    s = n.NativeSampler([(C("text", str(a)), 0), (C("text", str(b)), 1)], 1_000_000, 1, RING)
    s.start()
    try:
        wait_until(lambda: s.stats()["dropped"] > 0, "a full ring", poll_s=0.001)
        first = _drain(s, 5)
        assert len(first) == 5
        dropped = s.stats()["dropped"]
        wait_until(lambda: s.stats()["dropped"] > dropped, "the ring full again", poll_s=0.001)
        second = _drain(s, 64)      # tail at 5: 3 records at the end, 4 at the start
        assert len(second) == RING - 1
    finally:
        s.stop()
    rest = _drain(s, 64)
    st = s.stats()
    s.close()
    recs = np.concatenate([first, second, rest])
    ticks = recs["tick"].astype(np.int64)
    assert (recs["tick"] != BLANK).all(), ticks
    assert (np.diff(ticks) > 0).all(), ticks            # in order, none repeated
    assert ticks[0] < 16 and ticks[-1] < 10 ** 9
    assert (np.diff(recs["t_ns"].astype(np.int64)) > 0).all()
    assert (recs["values"][:, 0] == 1234567).all() and (recs["values"][:, 1] == -42).all()
    assert recs["flags"][-1] & n.REC_FINAL and not (recs["flags"][:-1] & n.REC_FINAL).any()
    assert len(recs) + st["dropped"] == st["samples"]


def test_drain_wraps_at_every_offset(tmp_path):
    """Drains of 3 from an 8-record ring start at every offset (3 and 8 are coprime), so
    half of them straddle the ring's end; every drained record is a later tick than the
    one before (a stalled sampler may skip ticks, never repeat one)."""
    f = tmp_path / "v"
    f.write_text("7\n")
    s = n.NativeSampler([(C("text", str(f)), 0)], 1_000_000, 1, RING)
    s.start()
    got = []
    try:
        for _ in range(2 * RING):
            before = s.stats()["dropped"]
            wait_until(lambda b=before: s.stats()["dropped"] > b, "a full ring", poll_s=0.001)
            got.append(_drain(s, 3))
    finally:
        s.stop()
    s.close()
    for chunk in got:
        assert len(chunk) == 3
        assert (chunk["tick"] != BLANK).all(), chunk["tick"]
        assert (np.diff(chunk["tick"].astype(np.int64)) > 0).all(), chunk["tick"]
        assert (chunk["values"][:, 0] == 7).all()
    ticks = np.concatenate(got)["tick"].astype(np.int64)
    assert (np.diff(ticks) > 0).all()


# ------------------------------------------------------------------ perf multiplexing

@pytest.fixture(scope="module")
def perf_core(tmp_path_factory):
    """The C core's perf read and scaling, compiled with a two-line shim that reads one
    (value, time enabled, time running) triple from any fd: a pipe stands in for the
    perf counter, so the kernel's multiplexing can be faked exactly."""
    cffi = pytest.importorskip("cffi")
    ffi = cffi.FFI()
    ffi.cdef("int64_t scale_triple(uint64_t val, uint64_t enabled, uint64_t running, int *rc);"
             "int64_t read_perf_fd(int fd, int *rc);")
    srcs = sorted(str(p) for p in CSRC.glob("*.c"))
    ffi.set_source("_alems_perf_probe", """
#include "internal.h"
int64_t scale_triple(uint64_t val, uint64_t enabled, uint64_t running, int *rc)
{
    alems_channel ch;
    memset(&ch, 0, sizeof ch);
    ch.kind = ALEMS_CH_PERF;
    int64_t v = -1;
    *rc = perf_value(&ch, val, enabled, running, &v);
    return v;
}
int64_t read_perf_fd(int fd, int *rc)
{
    alems_channel ch;
    memset(&ch, 0, sizeof ch);
    ch.kind = ALEMS_CH_PERF;
    int64_t v = -1;
    *rc = read_input(&ch, fd, NULL, &v);
    return v;
}
""", sources=srcs, include_dirs=[str(CSRC)], extra_compile_args=["-O0", "-pthread"],
                   extra_link_args=["-pthread"])
    out = tmp_path_factory.mktemp("perfprobe")
    cwd = os.getcwd()
    try:
        os.chdir(out)       # cffi writes its intermediate files into the cwd
        so = ffi.compile(tmpdir=str(out))
    finally:
        os.chdir(cwd)
    import importlib.util

    spec = importlib.util.spec_from_file_location("_alems_perf_probe", so)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _read_triple(core, value, enabled, running):
    r, w = os.pipe()
    try:
        os.write(w, struct.pack("=QQQ", value, enabled, running))
        rc = core.ffi.new("int *")
        v = core.lib.read_perf_fd(r, rc)
        return rc[0], v
    finally:
        os.close(r)
        os.close(w)


NO_VALUE = 1     # READ_NO_VALUE (csrc/internal.h): enabled but never scheduled -> NULL


@pytest.mark.parametrize("value, enabled, running, want", [
    (1000, 200, 100, (0, 2000)),             # ran half the time: scaled up twice
    (999, 300, 100, (0, 2997)),
    (1000, 200, 200, (0, 1000)),             # never multiplexed: as read
    (1000, 100, 200, (0, 1000)),             # running > enabled (rounding): never scaled down
    (1000, 200, 0, (NO_VALUE, -1)),          # enabled, never ran: no value, not 0
    (0, 0, 0, (0, 0)),                       # not enabled yet: counted nothing
    (2 ** 40, 3 * 10 ** 12, 10 ** 12, (0, 3 * 2 ** 40)),   # the product needs 128 bits
])
def test_multiplexed_counter_is_scaled_to_the_enabled_time(perf_core, value, enabled,
                                                           running, want):
    rc = perf_core.ffi.new("int *")
    got = perf_core.lib.scale_triple(value, enabled, running, rc)
    assert (rc[0], got) == want
    assert _read_triple(perf_core, value, enabled, running) == want


def test_short_perf_read_is_an_error(perf_core):
    r, w = os.pipe()
    os.write(w, struct.pack("=QQ", 5, 6))
    os.close(w)
    rc = perf_core.ffi.new("int *")
    perf_core.lib.read_perf_fd(r, rc)
    os.close(r)
    assert rc[0] < 0
