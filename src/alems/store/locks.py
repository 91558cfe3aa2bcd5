"""One batch process per session: a lock file beside the index.

`<db dir>/.<db name>.<group_id>.lock` holds an exclusive `flock` for as long as a batch
works the session, and says who holds it (JSON: pid, host, started_at). The kernel drops
the lock when the process ends in any way (kill -9 too), so a file whose lock can be taken
belongs to a dead process: it is taken over, and the caller says so. A second batch on a
live session gets `SessionLocked` naming the holder. `holder_alive` lets `alems status`
tell a running batch from one that died without closing its session.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

from alems.flock import held_elsewhere
from alems.errors import AlemsError


class SessionLocked(AlemsError):
    """Another live process works this session."""


def lock_path(db_path, group_id: str) -> Path:
    db_path = Path(os.path.abspath(db_path))
    return db_path.with_name(f".{db_path.name}.{group_id}.lock")


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"since {holder.get('started_at', '?')}")


class SessionLock:
    """`acquire()` or raise SessionLocked; `release()` removes the file. `taken_over`: the
    holder record of a dead process whose lock was taken (None if there was none)."""

    def __init__(self, db_path, group_id: str):
        self.path = lock_path(db_path, group_id)
        self.group_id = group_id
        self.fd: int | None = None
        self.taken_over: dict | None = None

    def acquire(self) -> SessionLock:
        for attempt in range(10):  # retried when the file was replaced while we opened it
            try:  # never through a link, never blocking on a FIFO planted there
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK,
                             0o644)
            except OSError as exc:
                why = ("it is a symlink, which is never followed; remove it"
                       if exc.errno == errno.ELOOP or os.path.islink(self.path) else
                       f"{exc.strerror or exc}; the database folder must be writable")
                raise AlemsError(f"cannot lock session {self.group_id}: cannot create "
                                 f"{self.path}: {why}") from None
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise AlemsError(f"cannot lock session {self.group_id}: {self.path} is not a "
                                 "regular file; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                if not holder.get("pid") and attempt < 9:  # a reader's brief shared lock
                    time.sleep(0.05)
                    continue
                raise SessionLocked(
                    f"session {self.group_id} is being run by another batch ({_describe(holder)}); "
                    "wait for it to finish, stop it, or pass --new-session") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous holder removed the file meanwhile
                os.close(fd)
                continue
            old = _read_holder(fd)
            self.taken_over = old if old.get("pid") else None
            record = {"pid": os.getpid(), "host": socket.gethostname(),
                      "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(record).encode(), 0)
            except OSError as exc:  # a full disk: nothing was run yet, say so and stop
                os.close(fd)
                raise AlemsError(f"cannot lock session {self.group_id}: cannot write "
                                 f"{self.path}: {exc.strerror or exc}; free space in the "
                                 "database folder") from None
            self.fd = fd
            return self
        raise AlemsError(f"cannot lock session {self.group_id}: {self.path} keeps changing")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None

    def describe_taken_over(self) -> str | None:
        if not self.taken_over:
            return None
        return (f"took over the lock of session {self.group_id} from a process that is gone "
                f"({_describe(self.taken_over)})")


def holder_alive(db_path, group_id: str) -> bool | None:
    """True: a live process holds the session's lock; False: nobody does (the batch that
    ran it is gone); None: cannot tell (no lock file — a batch of an A-LEMS without session
    locks, or on another machine — or an unreadable one)."""
    return held_elsewhere(lock_path(db_path, group_id), probe_exclusive=False)
