"""`python -m core.execution.tests.run_experiment …` (the user guide's spelling, from a
checkout): exactly `python -m alems.run_experiment …`, i.e. `alems batch`, run from this
checkout's own sources (src/ first on sys.path, so an installed copy never shadows them)."""

import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parents[3] / "src"
if (_SRC / "alems" / "__init__.py").is_file():
    sys.path.insert(0, str(_SRC))

from alems.run_experiment import app  # noqa: E402
from alems.cli._common import run_app  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_app(app, None, prog_name="python -m core.execution.tests.run_experiment"))
