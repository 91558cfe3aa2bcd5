#!/usr/bin/env python3
"""The user guide's archiver: `python scripts/tools/experiment_archiver.py --group-id latest
--format csv --output results.csv` is `alems export` with the same options (csv, parquet,
json, xlsx; `--samples` for the full-rate samples)."""

import sys

from _checkout import run

if __name__ == "__main__":
    sys.exit(run("export", "scripts/tools/experiment_archiver.py"))
