"""Issue 12's targets, measured on this machine:

- at the floor: whole-process CPU of `alems sample --hz 1000` ÷ that of a bare C
  `clock_nanosleep(TIMER_ABSTIME)` loop at 1000 Hz (benchmarks/bare_timer.c, built here),
  the two run side by side (same seconds, same load), CPU from every thread's
  /proc/<pid>/task/<tid>/schedstat over a window after start-up; ≤ 1.3 is the target;
- bounded memory: peak RSS (the child's own VmHWM, benchutil.with_hwm) of `alems sample -o`
  for a long run minus a short one
  (1 kHz 60 s vs 10 s, and 20 kHz 180 s vs 10 s = 3.6 M samples); ≤ 5 MB.

Inputs: the static fake powercap tree (4 energy files, read at 1 kHz), this machine's perf
software counters of the command and /proc/stat (read at the slow rate, 10 Hz).
ALEMS_BENCH_FLOOR_REPS (default 5) side-by-side pairs; ALEMS_BENCH_STRICT=1 asserts the
targets, else they are reported PASS/MISS.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from benchutil import (REPO, cpu_pct_side_by_side, fake_rapl_env, hwm_mb, median_pct, record,
                       with_hwm)

HZ = 1000
WARMUP_S, WINDOW_S = 3.0, 6.0  # the commands last long enough for start-up + window
REPS = int(os.environ.get("ALEMS_BENCH_FLOOR_REPS", "5"))
STRICT = os.environ.get("ALEMS_BENCH_STRICT") == "1"
TARGET_RATIO = 1.3
TARGET_RSS_MB = 5.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return fake_rapl_env(tmp_path_factory.mktemp("floor"))


@pytest.fixture(scope="module")
def bare_timer(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build benchmarks/bare_timer.c")
    exe = tmp_path_factory.mktemp("bare") / "bare_timer"
    subprocess.run([cc, "-O2", str(REPO / "benchmarks" / "bare_timer.c"), "-o", str(exe)],
                   check=True)
    return str(exe)


def test_sampler_cpu_vs_bare_timer_loop(env, bare_timer, tmp_path):
    if not Path("/proc/self/schedstat").exists():
        pytest.skip("no /proc/<pid>/schedstat on this kernel")
    secs = str(2 * WARMUP_S + WINDOW_S + 1)
    ratios, alems_pct, bare_pct, rates, dropped = [], [], [], [], 0
    for i in range(REPS):
        summary = tmp_path / f"s{i}.json"
        a = subprocess.Popen([sys.executable, "-m", "alems", "sample", "--hz", str(HZ), "-q",
                              "-o", str(tmp_path / f"r{i}.parquet"), "--summary-json",
                              str(summary), "--", "sleep", secs], env=env)
        b = subprocess.Popen([bare_timer, str(HZ), secs])
        # The window starts once sampling has (the stream has its first batch): under
        # load the interpreter's start-up can last longer than the warm-up.
        partial = tmp_path / f"r{i}.parquet.partial"
        while not (partial.exists() and partial.stat().st_size > 4096) and a.poll() is None:
            time.sleep(0.05)
        pa_, pb = cpu_pct_side_by_side(a.pid, b.pid, WINDOW_S)
        assert a.wait() == 0 and b.wait() == 0
        alems_pct.append(pa_)
        bare_pct.append(pb)
        ratios.append(pa_ / pb)
        s = json.loads(summary.read_text())
        rates.append(s["samples"] / (s["duration_s"] * HZ + 1))
        dropped += s["dropped_samples"]
    ratio = statistics.median(ratios)
    record("floor: `alems sample` whole process, % of a core (median)", median_pct(alems_pct))
    record("floor: bare clock_nanosleep loop, % of a core (median)", median_pct(bare_pct))
    record("floor: ratio alems ÷ bare, median of side-by-side pairs",
           f"{ratio:.3f} (pairs {', '.join(f'{r:.2f}' for r in ratios)})  "
           f"[target ≤ {TARGET_RATIO}: {'PASS' if ratio <= TARGET_RATIO else 'MISS'}]")
    record("floor: samples kept, worst run; dropped (all runs)",
           f"{100 * min(rates):.3f} % [target ≥ 99.9 %: "
           f"{'PASS' if min(rates) >= 0.999 else 'MISS'}]; {dropped}")
    assert dropped == 0
    assert min(rates) >= 0.99 and ratio < 2.5  # sanity; the targets under STRICT
    if STRICT:
        assert ratio <= TARGET_RATIO and min(rates) >= 0.999


def _max_rss_mb(env, out: Path, hz: int, secs: int) -> tuple[float, float]:
    """(peak RSS MB, share of the hz × secs samples kept) of one `alems sample -o` run."""
    hwm = out.with_suffix(".hwm")
    subprocess.run([sys.executable, "-m", "alems", "sample", "--hz", str(hz), "-q",
                    "-o", str(out), "--", "sleep", str(secs)], env=with_hwm(env, hwm),
                   check=True)
    kept = pq.read_metadata(out).num_rows / (hz * secs)
    assert kept >= 0.5   # the file holds the run; the share kept is reported beside the figure
    return hwm_mb(hwm), kept


@pytest.mark.parametrize("hz,short_s,long_s", [(1000, 10, 60), (20000, 10, 180)])
def test_memory_bounded_long_vs_short(env, tmp_path, hz, short_s, long_s):
    short, kept_short = _max_rss_mb(env, tmp_path / "short.parquet", hz, short_s)
    long, kept_long = _max_rss_mb(env, tmp_path / "long.parquet", hz, long_s)
    record(f"memory: peak RSS {hz} Hz, {long_s} s vs {short_s} s",
           f"{long:.1f} MB vs {short:.1f} MB: +{long - short:.2f} MB "
           f"({hz * long_s:,} samples; kept {kept_long:.1%} / {kept_short:.1%})  "
           f"[target ≤ {TARGET_RSS_MB} MB: "
           f"{'PASS' if long - short <= TARGET_RSS_MB else 'MISS'}]")
    assert long - short <= TARGET_RSS_MB
