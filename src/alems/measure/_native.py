"""The only module that touches the cffi extension (ffi/lib).

It turns Python channel specs into C `alems_channel` arrays, runs the C sampler and
drains its ring into numpy arrays in bulk (the ring is copied straight into a numpy
buffer obtained with `ffi.from_buffer`; no per-sample Python objects).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np

from alems.measure._alems_native import ffi, lib

MAX_CHANNELS: int = lib.ALEMS_MAX_CHANNELS  # value slots per record
MAX_INPUTS: int = lib.ALEMS_MAX_INPUTS
PATH_LEN: int = lib.ALEMS_PATH_LEN
KEY_LEN: int = lib.ALEMS_KEY_LEN
ERRMSG_LEN: int = lib.ALEMS_ERRMSG_LEN

KINDS = {
    "text": lib.ALEMS_CH_TEXT_FILE,
    "keyed": lib.ALEMS_CH_TEXT_KEYED,
    "msr": lib.ALEMS_CH_MSR,
    "perf": lib.ALEMS_CH_PERF,
    "pidstat": lib.ALEMS_CH_PID_STAT,
}
PERF_INHERIT = lib.ALEMS_PERF_INHERIT
PERF_ENABLE_ON_EXEC = lib.ALEMS_PERF_ENABLE_ON_EXEC
PERF_EXCLUDE_KERNEL = lib.ALEMS_PERF_EXCLUDE_KERNEL
PERF_EXCLUDE_HV = lib.ALEMS_PERF_EXCLUDE_HV
PERF_THREAD = lib.ALEMS_PERF_THREAD
# Test only: the core refuses this counter a place in a perf group (fault injection).
PERF_TEST_NO_JOIN = lib.ALEMS_PERF_TEST_NO_JOIN
# Test only: the core takes the counter's time_running as 0 (never ran: null) or as half
# its time_enabled (multiplexed: scaled x2).
PERF_TEST_NEVER_RAN = lib.ALEMS_PERF_TEST_NEVER_RAN
PERF_TEST_HALF_RUNNING = lib.ALEMS_PERF_TEST_HALF_RUNNING
REC_SLOW = lib.ALEMS_REC_SLOW
REC_FINAL = lib.ALEMS_REC_FINAL

# numpy view of alems_record, laid out from the compiler's own offsets. `nulls`: bit k set
# when slot k has no value on that tick (a perf counter that has not run yet).
RECORD_DTYPE = np.dtype(
    {
        "names": ["t_ns", "tick", "flags", "nulls", "values"],
        "formats": ["<i8", "<u8", "<u4", "<u8", ("<i8", (MAX_CHANNELS,))],
        "offsets": [ffi.offsetof("alems_record", f)
                    for f in ("t_ns", "tick", "flags", "nulls", "values")],
        "itemsize": ffi.sizeof("alems_record"),
    }
)


class NativeError(OSError):
    """A C call failed: errno plus the core's message (names the file/event)."""


@dataclass(frozen=True)
class ChannelSpec:
    """One input for the C core. `path` is the file, or a label for perf events."""

    kind: str
    path: str = ""
    key: str = ""
    slow: bool = False
    offset: int = 0
    mask: int = 0
    perf_type: int = 0
    perf_config: int = 0
    pid: int = -1
    cpu: int = -1
    perf_flags: int = 0

    def fill(self, c, slot: int) -> None:
        path = os.fsencode(self.path)
        key = self.key.encode()
        if len(path) >= PATH_LEN:
            raise NativeError(36, f"path too long for the sampler ({PATH_LEN - 1} bytes max): "
                                  f"{self.path}")
        if len(key) >= KEY_LEN:
            raise NativeError(22, f"key too long: {self.key!r}")
        c.kind = KINDS[self.kind]
        c.slot = slot
        c.slow = 1 if self.slow else 0
        c.pid = self.pid
        c.cpu = self.cpu
        c.perf_type = self.perf_type
        c.perf_config = self.perf_config
        c.perf_flags = self.perf_flags
        c.offset = self.offset
        c.mask = self.mask
        c.path = path
        c.key = key


def _errstr(buf) -> str:
    return ffi.string(buf).decode(errors="replace")


def now_ns() -> int:
    """CLOCK_MONOTONIC in ns, the clock of every sample (same as time.monotonic_ns)."""
    return int(lib.alems_now_ns())


def probe(spec: ChannelSpec) -> int:
    """Open, read once and close one input; return its raw value or raise NativeError."""
    c = ffi.new("alems_channel *")
    spec.fill(c, 0)
    value = ffi.new("int64_t *")
    err = ffi.new("char[]", ERRMSG_LEN)
    rc = lib.alems_probe(c, value, err, ERRMSG_LEN)
    if rc < 0:
        raise NativeError(-rc, _errstr(err) or os.strerror(-rc))
    return int(value[0])


class NativeSampler:
    """One C sampler: inputs[i] = (spec, slot). Not thread-safe except drain/stats."""

    def __init__(self, inputs: list[tuple[ChannelSpec, int]], period_ns: int, slow_every: int,
                 ring_capacity: int, late_threshold_ns: int = 0, rt_priority: int = 0):
        if len(inputs) > MAX_INPUTS:
            raise NativeError(7, f"{len(inputs)} inputs exceed the core's {MAX_INPUTS}")
        arr = ffi.new("alems_channel[]", max(1, len(inputs)))
        for i, (spec, slot) in enumerate(inputs):
            spec.fill(arr[i], slot)
        out = ffi.new("alems_sampler **")
        err = ffi.new("char[]", ERRMSG_LEN)
        rc = lib.alems_create(out, arr, len(inputs), int(period_ns), int(slow_every),
                              int(ring_capacity), int(late_threshold_ns), err, ERRMSG_LEN)
        if rc < 0:
            raise NativeError(-rc, _errstr(err) or os.strerror(-rc))
        self._s = out[0]
        self.ring_capacity = ring_capacity
        self.note = ""  # set by start(): e.g. perf counters the kernel would not group
        if rt_priority:
            lib.alems_set_rt_priority(self._s, int(rt_priority))

    def start(self) -> None:
        """Open every input and start sampling. perf counters of one target are read as
        one group (one read per tick); `note` names the first counter the kernel would not
        group (read on its own instead), else ""."""
        err = ffi.new("char[]", ERRMSG_LEN)
        rc = lib.alems_start(self._s, err, ERRMSG_LEN)
        if rc < 0:
            raise NativeError(-rc, _errstr(err) or os.strerror(-rc))
        self.note = _errstr(err)

    def stop(self) -> None:
        if self._s is not None:
            lib.alems_stop(self._s)

    def drain(self, out: np.ndarray) -> int:
        """Copy as many records as fit into `out` (RECORD_DTYPE); return the count."""
        if out.dtype != RECORD_DTYPE or not out.flags.c_contiguous:
            raise ValueError("drain needs a contiguous RECORD_DTYPE array")
        buf = ffi.from_buffer("alems_record[]", out, require_writable=True)
        return int(lib.alems_drain(self._s, buf, len(out)))

    def stats(self) -> dict:
        st = ffi.new("alems_stats *")
        lib.alems_get_stats(self._s, st)
        return {f: int(getattr(st, f)) for f in (
            "samples", "late", "max_lateness_ns", "dropped", "skipped", "slow_reads",
            "read_ns_total", "thread_cpu_ns", "error_errno", "error_input", "running",
            "rt_errno", "thread_tid")}

    @property
    def thread_tid(self) -> int:
        """Kernel thread id of the C sampling thread (0 before start)."""
        return self.stats()["thread_tid"]

    def close(self) -> None:
        if self._s is not None:
            lib.alems_destroy(self._s)
            self._s = None

    def __del__(self):  # last resort; Sampler.stop closes explicitly
        with contextlib.suppress(Exception):
            self.close()
