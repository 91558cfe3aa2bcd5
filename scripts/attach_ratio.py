"""How well `alems sample --pid` covers a running process: the task clock it reports
over the process's own CPU time (every thread, from the start of its work to its exit).

    PYTHONPATH=src python3 scripts/attach_ratio.py [HASHES] [RUNS]

The process is tests/busy_server.py: attached first, then it creates two threads that
each hash HASHES MiB, then exits; alems ends on its exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from busy_server import BusyServer  # noqa: E402


def main(hashes: int = 1000, runs: int = 3) -> None:
    for i in range(runs):
        srv = BusyServer(hashes)
        fd, js = tempfile.mkstemp(suffix=".json")
        os.close(fd)
        proc = subprocess.Popen([sys.executable, "-m", "alems", "sample", "--pid", str(srv.pid),
                                 "--summary-json", js, "-q"], stderr=subprocess.PIPE, text=True)
        for line in proc.stderr:
            if line.startswith("alems: sampling process"):
                break
        srv.go()
        cpu_ns = srv.close() - srv.c0_ns
        proc.stderr.read()
        proc.wait()
        summary = json.loads(Path(js).read_text())
        os.unlink(js)
        tc = summary["counters"]["task_clock_ns"]
        print(f"run {i + 1}: process CPU {cpu_ns / 1e9:.3f} s, task_clock {tc / 1e9:.3f} s, "
              f"ratio {tc / cpu_ns:.4f} ({summary['ended']})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
