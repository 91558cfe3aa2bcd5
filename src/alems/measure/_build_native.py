"""cffi build script (out-of-line API mode) for the C sampler core in csrc/.

The cdef is derived from csrc/alems_sampler.h at build time, every capacity left as `...`
for the compiler to fill in: the header is the one source of truth.
"""
import os
import re
from pathlib import Path

from cffi import FFI

# setuptools rejects absolute source paths, so name them relative to where the build runs.
_CSRC = os.path.relpath(Path(__file__).resolve().parents[3] / "csrc")
# The C core's parts (csrc/internal.h says what each holds).
_SOURCES = ("alems_sampler.c", "inputs.c", "perf_group.c", "timer_loop.c")

def cdef_from_header(header_text: str) -> str:
    """The cdef, derived from the header so that nothing is declared twice: every
    `#define` becomes `...` (the compiler supplies the value), array sizes become `[...]`
    and each struct is left open (`...;`) so the compiler checks its layout."""
    text = re.sub(r"/\*.*?\*/", "", header_text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    for line in text.splitlines():
        stripped = line.strip()
        m = re.match(r"#define\s+(ALEMS_[A-Z0-9_]+)\s+\S", stripped)
        if m:
            out.append(f"#define {m.group(1)} ...")
        elif stripped.startswith("#"):
            continue  # include guard, includes
        elif re.match(r"}\s*\w+\s*;", stripped) and out and out[-1].strip() != "...;":
            out += ["    ...;", line]
        else:
            out.append(re.sub(r"\[\s*ALEMS_[A-Z0-9_]+\s*\]", "[...]", line))
    return "\n".join(out)


CDEF = cdef_from_header((Path(__file__).resolve().parents[3] / "csrc" / "alems_sampler.h")
                        .read_text(encoding="utf-8"))

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "alems.measure._alems_native",
    '#include "alems_sampler.h"',
    sources=[os.path.join(_CSRC, f) for f in _SOURCES],
    include_dirs=[_CSRC],
    # Every warning is an error: the core must build clean (the cffi glue included).
    extra_compile_args=["-O2", "-pthread", "-std=gnu11", "-Wall", "-Wextra", "-Werror"],
    extra_link_args=["-pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
