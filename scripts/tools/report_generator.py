#!/usr/bin/env python3
"""The user guide's report generator: `python scripts/tools/report_generator.py --exp-id
latest --output report.pdf` is `alems report` with the same options (.html, .pdf, or a
folder DIR/ for the paper pack)."""

import sys

from _checkout import run

if __name__ == "__main__":
    sys.exit(run("report", "scripts/tools/report_generator.py"))
