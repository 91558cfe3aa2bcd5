"""Whether another process holds a file's flock: how a batch's session lock and a run's
samples stream tell a live writer from one that died (the kernel drops the lock of a
process that is gone, `kill -9` included)."""

from __future__ import annotations

import fcntl
import os


def held_elsewhere(path, *, probe_exclusive: bool = True) -> bool | None:
    """True while another process holds an flock on `path`; False when nobody does; None
    when the file is missing or unreadable. The probe takes and at once drops a
    non-blocking lock (exclusive, or shared where concurrent probes must not collide)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO: no wait
    except OSError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if probe_exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # closing drops a lock the probe took
    return False
