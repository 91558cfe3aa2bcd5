"""Which threads of this process are the workload's, and which are the instrument's.

Perf counters of this process are opened on every thread that exists when the sampler
starts (`inherit` follows only threads created later, by a counted thread: a model's worker
pool made by an earlier run would be missed), never on the instrument's own threads. The
sampler therefore creates its threads from a short-lived launcher thread that is itself
registered as instrument: a thread created by an uncounted thread inherits no counter.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from alems import config

T = TypeVar("T")

_lock = threading.Lock()
_instrument: set[int] = set()


def register(tids: Iterable[int]) -> None:
    """Mark threads of this process as the instrument's (never counted as workload)."""
    with _lock:
        _instrument.update(int(t) for t in tids if t)


def unregister(tids: Iterable[int]) -> None:
    with _lock:
        _instrument.difference_update(int(t) for t in tids if t)


def instrument_tids() -> frozenset[int]:
    with _lock:
        return frozenset(_instrument)


def workload_tids(pid: int | None = None, proc_root: str | None = None) -> list[int]:
    """Thread ids of process `pid` (None: this one) now, minus the instrument's own
    (for this process); [] when the proc root (default: the configured one) lists none."""
    target = os.getpid() if pid is None else int(pid)
    try:
        tids = sorted(int(t) for t in os.listdir(Path(proc_root or config.proc_root())
                                                 / str(target) / "task"))
    except OSError:
        return []
    if target == os.getpid():
        skip = instrument_tids()
        tids = [t for t in tids if t not in skip]
    return tids


def run_outside_workload(fn: Callable[[], T]) -> T:
    """fn() in a fresh instrument thread (see the module docstring); its result or its
    exception comes back to the caller."""
    out: dict = {}

    def body() -> None:
        me = threading.get_native_id()
        register([me])
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            out["error"] = exc
        finally:
            unregister([me])

    t = threading.Thread(target=body, name="alems-launcher", daemon=True)
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["value"]
