"""Loaded by every Python child of test_bench_scale.py (this folder is put first on its
PYTHONPATH): at exit, the process's own peak RSS (VmHWM of /proc/self/status) goes to the
file $ALEMS_BENCH_HWM names. ru_maxrss from wait4 cannot give it: Linux carries the
parent's peak into a child across fork and exec, so a child of the (large) benchmark
process never reads below the benchmark's own size."""

import atexit
import os


def _write_hwm() -> None:
    path = os.environ.get("ALEMS_BENCH_HWM")
    if not path:
        return
    with open("/proc/self/status", encoding="ascii") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))
    with open(path, "w", encoding="ascii") as out:
        out.write(str(kb))


atexit.register(_write_hwm)
