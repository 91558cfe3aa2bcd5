"""Build script: the C sampler core is compiled by cffi (out-of-line API mode).

Task sets and factor tables live in the top-level ``data/`` folder; they are shipped
inside the wheel as the package ``alems._data`` so an installed A-LEMS finds them too.
"""
import sys
import sysconfig
from pathlib import Path

from setuptools import setup


def _check_toolchain() -> None:
    """Fail with one readable line instead of a page of compiler output."""
    import shutil

    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.exists():
        sys.exit(
            f"alems: Python headers not found ({include}); install them, "
            "e.g. `apt-get install python3-dev`, then retry."
        )
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None and shutil.which("cc") is None:
        sys.exit(
            f"alems: no C compiler found ({cc!r}); install one, "
            "e.g. `apt-get install build-essential`, then retry."
        )


if any(a in sys.argv for a in ("bdist_wheel", "build_ext", "develop", "install", "editable_wheel")):
    _check_toolchain()

setup(
    package_dir={"": "src", "alems._data": "data"},
    packages=[
        "alems",
        "alems.cli",
        "alems.measure",
        "alems.measure.sources",
        "alems.experiment",
        "alems.experiment.fleet",
        "alems.experiment.providers",
        "alems.experiment.workflows",
        "alems.catalog",
        "alems.store",
        "alems.analysis",
        "alems.dashboard",
        "alems._data",
    ],
    package_data={
        "alems._data": ["tasks/*.jsonl", "tables/*.csv", "factors/*.csv", "factors/*.md"],
        "alems.store": ["*.sql"],
        "alems.dashboard": ["templates/*.html", "static/*"],
    },
    cffi_modules=["src/alems/measure/_build_native.py:ffibuilder"],
)
