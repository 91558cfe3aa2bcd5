"""Phase marks from any process: a FIFO that a measured command writes lines to.

`alems sample -- CMD` makes a FIFO in a private temporary folder (0700) and names it in
CMD's environment (MARK_ENV). Anything CMD starts — a shell script's `alems mark NAME`,
Python's `alems.mark("name")`, a Node or Go agent writing a line — puts a phase boundary
on the samples' clock. One line is one mark (a FIFO write of at most PIPE_BUF bytes is
atomic, so lines from concurrent writers never interleave):

    NAME                 stamped when alems reads it
    T_NS<TAB>NAME        stamped by the sender: CLOCK_MONOTONIC ns, the samples' clock
    !lost<TAB>K          the sender could not deliver K marks (the FIFO was full)
    {"name": …, "kind": …, "start_ns": …, "end_ns": …, "detail": {…}}
                         a whole phase (an OpenTelemetry span from alems.otel)

An empty NAME ends the current marked phase (`alems mark --end`). Names lose tabs and
newlines and are cut to MAX_NAME_BYTES. Marks are ordered by time stamp, so marks from
threads and children land in order whatever order the reads see.

A flood cannot stall the sampler: the sampler is a C thread that never reads the FIFO; a
reader thread drains it into the run's PhaseRecorder, which is bounded (dropped marks are
counted); Python senders never block (a full FIFO counts the mark lost and reports it
with the next line that gets through, or at exit).

This module stays light (no numpy, no pyarrow): `alems.mark` imports it in every process.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import os
import select
import shutil
import tempfile
import threading
import time

from alems import config

MAX_NAME_BYTES = 200
LOST_TAG = "!lost"
_READ_BYTES = 1 << 16
_PIPE_BYTES = 1 << 20  # asked of F_SETPIPE_SZ (Linux caps it at fs.pipe-max-size)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_MAX_LINE_BYTES = 4096  # PIPE_BUF: a longer "line" was not written by a mark sender
_EXIT_FLUSH_S = 1.0  # how long a sender's exit waits to report its lost marks


# ---------------------------------------------------------------- the line format

def clean_name(name: str) -> str:
    """Tabs and newlines become spaces; at most MAX_NAME_BYTES of UTF-8."""
    text = str(name).replace("\t", " ").replace("\n", " ").replace("\r", " ")
    raw = text.encode("utf-8")[:MAX_NAME_BYTES]
    return raw.decode("utf-8", errors="ignore").strip()


def mark_line(name: str, t_ns: int) -> bytes:
    return f"{int(t_ns)}\t{clean_name(name)}\n".encode()


def span_line(name: str, kind: str, start_ns: int, end_ns: int, detail: dict) -> bytes | None:
    """A whole phase (an OpenTelemetry span, alems.otel) as one JSON line that fits one
    atomic write: the detail is cut down (long values, then all but the ids) to fit;
    None if even that does not."""
    head = {"name": clean_name(name), "kind": clean_name(kind), "start_ns": int(start_ns),
            "end_ns": int(end_ns)}
    ids = {k: v for k, v in detail.items() if k.endswith("_id")}
    short = {k: (v[:MAX_NAME_BYTES] if isinstance(v, str) else v) for k, v in detail.items()}
    for d in (detail, short, ids, {}):
        data = (json.dumps({**head, "detail": d}, default=str) + "\n").encode()
        if len(data) <= _MAX_LINE_BYTES:
            return data
    return None


def _span_of(text: str) -> dict | None:
    try:
        obj = json.loads(text)
        name, kind = clean_name(obj["name"]), clean_name(obj["kind"])
        start_ns, end_ns = int(obj["start_ns"]), int(obj["end_ns"])
        detail = dict(obj.get("detail") or {})
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if not name or end_ns < start_ns:
        return None
    return {"name": name, "kind": kind, "start_ns": start_ns, "end_ns": end_ns,
            "detail": detail}


def parse_line(line: bytes, received_ns: int) -> tuple[str, int, str | int | dict | None]:
    """('mark', t_ns, name), ('lost', t_ns, count) or ('span', t_ns, phase dict; None
    if malformed) for one line (no newline)."""
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    if text.startswith("{"):
        return "span", received_ns, _span_of(text)
    head, sep, rest = text.partition("\t")
    if sep and head == LOST_TAG and rest.strip().isdigit():
        return "lost", received_ns, int(rest.strip())
    if sep and head.isdigit():
        return "mark", int(head), clean_name(rest)
    return "mark", received_ns, clean_name(text)


# ---------------------------------------------------------------- the receiving end

class MarkChannel:
    """The FIFO and the thread that drains it into `recorder` (a PhaseRecorder).
    Use as a context manager, or open() / close(); `env` is what the command needs."""

    def __init__(self, recorder) -> None:
        self.recorder = recorder
        self.path: str | None = None
        self._dir: str | None = None
        self._fds: list[int] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def env(self) -> dict[str, str]:
        return {config.MARK_ENV: self.path} if self.path else {}

    def open(self) -> MarkChannel:
        self._dir = tempfile.mkdtemp(prefix="alems-marks-")  # 0700: only this user
        self.path = os.path.join(self._dir, "marks")
        os.mkfifo(self.path, 0o600)
        rfd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._fds.append(rfd)
        # Held open for writing too, so the FIFO never reads as closed between writers.
        self._fds.append(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
        with contextlib.suppress(OSError):
            fcntl.fcntl(rfd, _F_SETPIPE_SZ, _PIPE_BYTES)
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._fds += [wake_r, wake_w]
        self._thread = threading.Thread(target=self._loop, args=(rfd, wake_r),
                                        name="alems-marks", daemon=True)
        self._thread.start()
        return self

    def _loop(self, rfd: int, wake_r: int) -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([rfd, wake_r], [], [])
            stopping = wake_r in ready
            # At most what the FIFO holds, then select again: a writer that never stops
            # cannot keep this loop (or close()) from seeing the wake-up.
            for _ in range(_PIPE_BYTES // _READ_BYTES + 1):
                try:
                    chunk = os.read(rfd, _READ_BYTES)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                pending = self._take(pending + chunk)
            if stopping:
                return

    def _take(self, data: bytes) -> bytes:
        """Record the complete lines of `data`; return the unfinished tail."""
        *lines, tail = data.split(b"\n")
        now = time.monotonic_ns()
        rec = self.recorder
        for line in lines:
            if not line:
                continue
            kind, t_ns, value = parse_line(line, now)
            if kind == "lost":
                rec.count_lost(int(value))  # type: ignore[arg-type]
            elif kind == "span":
                if not isinstance(value, dict):  # malformed: not a phase, counted
                    rec.count_dropped(1)
                    continue
                rec.add(value["name"], value["kind"], value["start_ns"], value["end_ns"],
                        value["detail"])
            else:
                rec.mark(str(value), t_ns)
        if len(tail) > _MAX_LINE_BYTES:  # no sender writes this; drop it, count it
            rec.count_dropped(1)
            return b""
        return tail

    def close(self) -> None:
        """Read what is left, stop the thread, remove the FIFO and its folder."""
        if self._thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._fds[3], b"x")
            self._thread.join()
            self._thread = None
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir, self.path = None, None

    def __enter__(self) -> MarkChannel:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- the sending end

class _Sender:
    """This process's end of the FIFO named in its environment (reopened after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid = 0
        self._path: str | None = None
        self.lost = 0

    def _fd_for(self, path: str) -> int | None:
        if self._fd is not None and (self._pid != os.getpid() or self._path != path):
            if self._pid == os.getpid():
                with contextlib.suppress(OSError):
                    os.close(self._fd)
            self._fd, self.lost = None, 0  # a forked child starts its own count
        if self._fd is None:
            try:
                self._fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:  # no reader (the run is over) or no FIFO: nothing to mark
                return None
            self._pid, self._path = os.getpid(), path
        return self._fd

    def send(self, line: bytes, path: str, wait_s: float = 0.0) -> bool:
        """Write one mark line (with any lost count before it); False if not delivered."""
        with self._lock:
            fd = self._fd_for(path)
            if fd is None:
                return False
            data = (f"{LOST_TAG}\t{self.lost}\n".encode() if self.lost else b"") + line
            if _write_all_or_nothing(fd, data, wait_s):
                self.lost = 0
                return True
            if line:
                if not self.lost:  # report it at exit if no later line carries it
                    atexit.register(self.flush_lost)
                self.lost += 1
            return False

    def flush_lost(self) -> None:
        """At exit: report marks this process could not deliver (waits at most 1 s).
        (Registered with atexit only once a mark was lost: nothing is installed before.)"""
        path = config.mark_fifo()
        if self.lost and path and self._pid == os.getpid():
            self.send(b"", path, _EXIT_FLUSH_S)


def _write_all_or_nothing(fd: int, data: bytes, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.write(fd, data)  # <= PIPE_BUF: all of it or EAGAIN, never a part
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            select.select([], [fd], [], left)
        except OSError as exc:  # EPIPE: the reader is gone
            if exc.errno in (errno.EPIPE, errno.EBADF):
                return False
            raise


_SENDER = _Sender()


def _fresh_sender_in_child() -> None:
    """After a fork: a new sender (the parent's lock may have been held by another thread;
    its lost count is the parent's to report)."""
    global _SENDER
    _SENDER = _Sender()


os.register_at_fork(after_in_child=_fresh_sender_in_child)


def send_span(name: str, kind: str, start_ns: int, end_ns: int,
              detail: dict) -> bool | None:
    """A whole phase through the FIFO named in the environment (as send_mark)."""
    path = config.mark_fifo()
    if not path:
        return None
    line = span_line(name, kind, start_ns, end_ns, detail)
    if line is None:
        return False
    return _SENDER.send(line, path)


def send_mark(name: str, t_ns: int | None = None, wait_s: float = 0.0) -> bool | None:
    """Mark through the FIFO named in the environment: None when there is none (not
    measured), else whether the mark was delivered."""
    path = config.mark_fifo()
    if not path:
        return None
    stamp = time.monotonic_ns() if t_ns is None else int(t_ns)
    return _SENDER.send(mark_line(name, stamp), path, wait_s)
