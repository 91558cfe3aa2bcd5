"""The C core's parts call each other one way only (csrc/internal.h lists them): each
file compiled on its own, its defined and undefined symbols (nm) give which part calls
into which, and that graph has no cycle."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CSRC = Path(__file__).resolve().parents[1] / "csrc"


def _symbols(obj: Path, *flags: str) -> set[str]:
    out = subprocess.run(["nm", *flags, str(obj)], check=True, capture_output=True,
                         text=True).stdout
    return {line.split()[-1] for line in out.splitlines() if line.strip()}


def _calls(tmp_path) -> dict[str, set[str]]:
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc and shutil.which("nm"), "a C compiler and nm build the C core; install them"
    defined, undefined = {}, {}
    for src in sorted(CSRC.glob("*.c")):
        obj = tmp_path / (src.stem + ".o")
        subprocess.run([cc, "-c", "-O0", f"-I{CSRC}", str(src), "-o", str(obj)], check=True)
        defined[src.name] = _symbols(obj, "--defined-only", "--extern-only")
        undefined[src.name] = _symbols(obj, "--undefined-only")
    return {a: {b for b in defined if b != a and undefined[a] & defined[b]} for a in defined}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}   # 1 on the current path, 2 done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [node])
                if found:
                    return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_the_c_core_parts_form_no_cycle(tmp_path):
    graph = _calls(tmp_path)
    assert "inputs.c" in graph and "perf_group.c" in graph
    assert _cycle(graph) is None, f"C parts call each other in a cycle: {_cycle(graph)}"
    assert graph["inputs.c"] == set()   # the bottom: one input opened, read and parsed
