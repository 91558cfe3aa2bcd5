"""Waiting for a condition instead of sleeping a fixed time: a test that needs time to pass
polls for what it needs (samples taken, a file written, a clock instant reached) with a
generous deadline, so a loaded machine makes it slower, never red."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

DEADLINE_S = 60.0   # far beyond any idle-machine need: only a hang reaches it


def wait_until(condition: Callable[[], T], what: str, timeout_s: float = DEADLINE_S,
               poll_s: float = 0.005) -> T:
    """condition()'s first truthy value; AssertionError naming `what` after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(poll_s)


def wait_past(t_ns: int) -> None:
    """Return once CLOCK_MONOTONIC (the sampler's clock) has passed t_ns."""
    wait_until(lambda: time.monotonic_ns() > t_ns, f"the clock to pass {t_ns}")


def wait_samples(sampler, n: int) -> None:
    """Return once a running alems Sampler's C core has taken n samples."""
    wait_until(lambda: sampler._native.stats()["samples"] >= n, f"{n} samples")
