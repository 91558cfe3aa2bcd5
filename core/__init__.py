"""The user guide's module path, `python -m core.execution.tests.run_experiment …`, from a
checkout of A-LEMS (run in its root folder, which Python puts first on sys.path).

Not a package of A-LEMS: setup.py lists only `alems*` packages, so this folder is never
installed and no top-level `core` is claimed in anyone's site-packages. From an install,
use `python -m alems.run_experiment` or `alems batch` (the same command).
"""
