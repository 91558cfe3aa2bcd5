"""pytest set-up for the benchmarks: import paths, and the figures table printed at the
end of the run (the helpers themselves live in benchutil.py)."""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
for _p in (_HERE.parent / "src", _HERE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import benchutil  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    if not benchutil.FIGURES:
        return
    terminalreporter.section("A-LEMS sampler figures")
    width = max(len(n) for n, _ in benchutil.FIGURES)
    for name, value in benchutil.FIGURES:
        terminalreporter.write_line(f"{name.ljust(width)}  {value}")
