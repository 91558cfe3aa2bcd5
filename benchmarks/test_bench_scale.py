"""A study that grows to 10⁵ runs stays fast (issue 23).

For each N in $ALEMS_SCALE_N (comma-separated; default 1000,10000) a synthetic study is
built (scale_study.py, cached on disk by N and code version) and each operation runs in a
child process, as a user runs it: wall time, CPU time (os.wait4) and the child's own peak
RSS (VmHWM, written at its exit by hwm/sitecustomize.py). The table at the end gives the
growth exponent log(t₂/t₁)/log(N₂/N₁) between consecutive sizes. Run:

    ALEMS_SCALE_N=1000,10000 PYTHONPATH=$PWD/src python3 -m pytest -q -s -p no:cacheprovider \\
        benchmarks/test_bench_scale.py

($ALEMS_SCALE_OPS="summary,groups list" runs only the operations so named.)
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import scale_study
from benchutil import hwm_mb, record, with_hwm

SIZES = [int(x) for x in os.environ.get("ALEMS_SCALE_N", "1000,10000").split(",") if x]
# Only the operations whose names start with one of these (comma-separated; all if unset).
ONLY = [x for x in os.environ.get("ALEMS_SCALE_OPS", "").split(",") if x]
SRC = str(Path(__file__).resolve().parents[1] / "src")
ALEMS = [sys.executable, "-m", "alems"]

# The dashboard's server-side cost: app start, then the page twice (the second request is
# what every later visitor pays). Prints the two request times.
_PAGE = """
import sys, time
from starlette.testclient import TestClient
from alems.dashboard.app import create_app
import alems.analysis.summary
with TestClient(create_app(sys.argv[1]), base_url="http://127.0.0.1") as c:
    for _ in range(2):
        t = time.perf_counter(); r = c.get(sys.argv[2]); dt = time.perf_counter() - t
        assert r.status_code == 200, (r.status_code, r.text[:300])
        print(f"{dt:.3f}")
"""

# `alems summary --format json` where no summary is kept (a group changed since, or built
# by an older A-LEMS): the build itself, as the command runs it.
_BUILD = """
import sys
from alems.analysis.groups import open_db, resolve_group
from alems.analysis.summary import build_summary
from alems.analysis.stored_summary import to_json
conn = open_db(sys.argv[1])
print(len(to_json(build_summary(conn, sys.argv[1], resolve_group(conn, sys.argv[2])))))
"""

# What a resumed batch does before its first run (experiment/batch.py): the plan, the
# stored runs, orphans and partials, and what is left.
_RESUME = """
import sys, time
t = time.perf_counter()
sys.path.insert(0, sys.argv[3])
import scale_study
from pathlib import Path
from alems.experiment.plan import runs_to_do, shard_runs
from alems.store import db as store_db, sessions, samples
n = int(sys.argv[2]); db = Path(sys.argv[1])
_, keys = scale_study.plan(n)
conn = store_db.connect(db)
with store_db.transaction(conn):
    done = sessions.completed_runs(conn, scale_study.GROUP_ID)
    samples.remove_orphans(db, scale_study.GROUP_ID, done.values())
    samples.discard_dead_partials(db, scale_study.GROUP_ID)
todo = runs_to_do(keys, 1, done)
assert not todo, len(todo)
print(f"{time.perf_counter() - t:.3f}")
"""

# A batch's commit of one run into the study, as experiment/batch.py's store step does it
# (its own IMMEDIATE transaction: next run id, run row, phases, tax row), 200 times on a
# copy of the study; prints ms per run. The Parquet write and the measurement are not in it.
_COMMIT = """
import random, shutil, sys, time
sys.path.insert(0, sys.argv[3])
import scale_study
from alems.experiment.plan import plan_order
from alems.catalog.sustainability import load_factors
from alems.store import db as store_db, runs as store_runs, sessions
db = sys.argv[2]
shutil.copy(sys.argv[1], db)
conn = store_db.connect(db)
factors = load_factors()
keys = plan_order(["probe"], ["local"], ["linear", "agentic", "react"], 67, 1)[:200]
with store_db.transaction(conn):
    sessions.insert_session(conn, group_id="probe", settings={}, command="probe", host={},
                            order=[], seed=1)
    exp_id = sessions.get_or_create_experiment(
        conn, group_id="probe", task_name="probe", provider="local", model=None,
        workflows="linear,agentic,react", repetitions=67, seed=1, temperature=0.0,
        max_tokens=1, country="US")
t = time.perf_counter()
for key in keys:
    rng = random.Random(str(key))
    with store_db.transaction(conn):
        store_runs.next_run_id(conn)
        row = scale_study._run_row(rng, key, exp_id, 1, 0, factors)
        rid = store_runs.insert_run(conn, row)
        store_runs.insert_phases(conn, rid, scale_study._phases(
            rng, key.workflow, 0, row["duration_ns"], row["pkg_energy_uj"]))
        store_runs.insert_tax_if_paired(conn, exp_id, key.rep)
print(f"{(time.perf_counter() - t) / len(keys) * 1e3:.2f}")
"""

# A run's samples file as a batch writes it at the end of the run (store.samples
# .write_samples: 60 s at 1 kHz, 3 domains, phases and run identity in its metadata), 20
# times; prints ms per run (the other part of a run's fixed cost beside the commit).
_PARQUET = """
import sys, tempfile, time
from pathlib import Path
from alems.measure.replay import synthetic_table
from alems.store import samples
table = synthetic_table(duration_s=60.0, hz=1000.0, power_w={"pkg": 20.0, "core": 14.0,
                        "dram": 2.0})
phases = [{"seq": 1, "name": "planning", "kind": "planning", "start_ns": 0,
           "end_ns": 10**10, "energy_uj": 1.0}]
out = Path(tempfile.mkdtemp())
t = time.perf_counter()
for i in range(20):
    samples.write_samples(out / f"run-{i}.parquet", table, phases=phases,
                          run={"group_id": "probe", "exp_id": 1, "run_id": i})
print(f"{(time.perf_counter() - t) / 20 * 1e3:.2f}")
"""

# Mean package power per phase kind over every sampled run's samples (`alems query` over
# energy_samples, DuckDB). The study's sample files start their clock at 0 and its phases at
# the run's t_start_ns, so a sample is placed by its time since the run's first sample.
SAMPLES_SQL = """
WITH s AS (SELECT run_id, t_ns - MIN(t_ns) OVER (PARTITION BY run_id) AS dt_ns, pkg_power_w
           FROM energy_samples)
SELECT p.kind, COUNT(DISTINCT s.run_id) AS runs, COUNT(*) AS samples,
       AVG(s.pkg_power_w) AS mean_pkg_w
FROM s JOIN runs r ON r.run_id = s.run_id JOIN phases p ON p.run_id = s.run_id
 AND s.dt_ns >= p.start_ns - r.t_start_ns AND s.dt_ns < p.end_ns - r.t_start_ns
GROUP BY p.kind ORDER BY p.kind
"""

# (operation, target seconds, target peak MB) at N = 10⁵ (issue 23's table)
TARGETS = {"summary text": (5, 500), "summary json": (5, 500),
           "summary json, built (none kept)": (5, 500),
           "dashboard group page (1st)": (2, None), "dashboard group page (2nd)": (2, None),
           "groups list (1 000 batches), 1st": (1, None),
           "groups list (1 000 batches), 2nd": (1, None), "report html": (60, None),
           "report pdf": (None, None),
           "export parquet": (None, 300), "export csv": (None, 300),
           "merge 16 shards": (60, None), "resume decision": (2, None),
           "commit per run (ms)": (50, None), "samples file per run (ms)": (50, None),
           "energy_samples: power per phase kind": (10, None)}


def _child(argv: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """Run argv; (wall s, CPU s, peak RSS MB, stdout). Fails on a non-zero exit. CPU time
    (user + system) is reported beside wall time: on a shared 2-core machine the wall
    time also counts waiting for the CPU. The peak is the child's own (benchutil.with_hwm)."""
    hwm = cwd / "hwm.kb"
    env = with_hwm(dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get(
        "PYTHONPATH", "")), hwm)
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        text, errs = out.read().decode(), err.read().decode()
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{errs[-2000:]}"
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, hwm_mb(hwm), text


def _ops(study: Path, n: int, work: Path):
    db = study / "study" / "study.db"
    g = ["--db", str(db), "--group-id", scale_study.GROUP_ID]
    shards = sorted((study / "shards").glob("shard-*/shard.db"))
    yield "summary text", [*ALEMS, "summary", *g]
    yield "summary json", [*ALEMS, "summary", *g, "--format", "json"]
    yield "summary json, built (none kept)", [sys.executable, "-c", _BUILD, str(db),
                                              scale_study.GROUP_ID]
    yield "dashboard group page", [sys.executable, "-c", _PAGE, str(db),
                                   f"/group/{scale_study.GROUP_ID}"]
    if n == SIZES[0]:   # the same 1 000 batches at every N: measured once
        yield "groups list (1 000 batches)", [sys.executable, "-c", _PAGE,
                                              str(study / "groups" / "groups.db"), "/"]
    yield "report html", [*ALEMS, "report", *g, "-o", str(work / "r.html")]
    yield "report pdf", [*ALEMS, "report", *g, "-o", str(work / "r.pdf")]
    yield "export parquet", [*ALEMS, "export", *g, "-o", str(work / "runs.parquet")]
    yield "export csv", [*ALEMS, "export", *g, "-o", str(work / "runs.csv")]
    yield "merge 16 shards", [*ALEMS, "merge", str(work / "merged" / "m.db"),
                              *map(str, shards)]
    yield "resume decision", [sys.executable, "-c", _RESUME, str(db), str(n),
                              str(Path(__file__).parent)]
    if n == SIZES[0]:   # independent of N: measured once
        yield "samples file per run (ms)", [sys.executable, "-c", _PARQUET]
    yield "energy_samples: power per phase kind", [*ALEMS, "query", "--db", str(db),
                                                   "--format", "csv", SAMPLES_SQL]
    yield "commit per run (ms)", [sys.executable, "-c", _COMMIT, str(db),
                                  str(work / "commit.db"), str(Path(__file__).parent)]


# (operation, N) -> (seconds, CPU seconds of the child, peak RSS MB). Seconds are the
# child's wall time, except for the dashboard pages and the resume decision: the time the
# child itself measured around the request / the decision (no interpreter start-up).
RESULTS: dict[tuple[str, int], tuple[float, float, float]] = {}


@pytest.mark.parametrize("n", SIZES)
def test_scale(n, benchmark):
    t0 = time.perf_counter()
    study = scale_study.build(n)
    record(f"scale N={n}: study ready", f"{time.perf_counter() - t0:.1f} s "
           f"({(study / 'build.txt').read_text().strip()})")
    work = Path(tempfile.mkdtemp(prefix="alems-scale-"))
    try:
        def run_all():
            for name, argv in _ops(study, n, work):
                if ONLY and not any(name.startswith(x) for x in ONLY):
                    continue
                wall, cpu, rss, text = _child(argv, work)
                inner = [float(x) for x in text.split()] if name in IN_CHILD else []
                if name == "dashboard group page":
                    RESULTS[(name + " (1st)", n)] = (inner[0], cpu, rss)
                    RESULTS[(name + " (2nd)", n)] = (inner[1], cpu, rss)
                elif name.startswith("groups list"):
                    RESULTS[(name + ", 1st", n)] = (inner[0], cpu, rss)
                    RESULTS[(name + ", 2nd", n)] = (inner[1], cpu, rss)
                else:
                    RESULTS[(name, n)] = (inner[0] if inner else wall, cpu, rss)
                record(f"scale N={n}: {name}", f"wall {wall:.2f} s, CPU {cpu:.2f} s, "
                       f"peak {rss:.0f} MB" + (f", measured inside {inner}" if inner else ""))
        benchmark.pedantic(run_all, rounds=1, iterations=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _table()


IN_CHILD = ("dashboard group page", "groups list (1 000 batches)", "resume decision",
            "commit per run (ms)", "samples file per run (ms)")


def _table() -> None:
    """operation × N: seconds, CPU s, peak MB, growth exponent of seconds since the last N."""
    sizes = sorted({n for _, n in RESULTS})
    print("\n  operation | " + " | ".join(f"N={n}: s / CPU s / MB (exp)" for n in sizes))
    for name in TARGETS:
        cells, prev = [], None
        for n in sizes:
            if (name, n) not in RESULTS:
                cells.append("–")
                continue
            t, cpu, rss = RESULTS[(name, n)]
            growth = ""
            if prev is not None and prev[1] > 0 and t > 0:
                growth = f" ({math.log(t / prev[1]) / math.log(n / prev[0]):.2f})"
            cells.append(f"{t:.2f} / {cpu:.2f} / {rss:.0f}{growth}")
            prev = (n, t)
        print(f"  {name} | " + " | ".join(cells), flush=True)
