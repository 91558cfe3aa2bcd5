"""Output files: one rule for every output (`sample -o/--summary-json`, `export`, `report`),
written safely even as root.

`check_output_path(path, what)` is called before any work: it refuses, in one line and exit
2, a target that is a directory, a block device, a socket, a planted link in a shared
folder, a name too long for the file system, a missing (never created silently) or
unwritable folder; for a dataset folder (`folder=True`) one that exists and is not empty.
The file is then written through `alems.atomic_io.atomic_target` (a temporary file renamed
into place; a character device or FIFO written in place, never replaced).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from pathlib import Path

from alems.atomic_io import (TMP_EXTRA_CHARS, is_direct, kind_of, refuse_untrusted_link,
                             tmp_path_for)
from alems.errors import AlemsError, UsageError


def check_output_path(path, what: str = "--output", *, folder: bool = False) -> Path:
    """Refuse now (UsageError: one line, exit 2) what could not be written after the work;
    return the path made absolute. `folder=True`: `path` is a dataset folder to create
    (new, or existing and empty)."""
    path = Path(path).expanduser().absolute()
    name = path.name
    refuse_untrusted_link(path, what, UsageError)
    if folder:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"{what} {path} exists and is not an empty directory; give a "
                             "new or empty one")
        _check_folder(path.parent, path, what)
        return path
    if not name or name in (".", ".."):
        raise UsageError(f"{what} {path}: give a file name")
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        st = None  # the folder checks below say what is wrong
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:  # a too-long name: the length check says so
            raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISFIFO(st.st_mode):
            _hold_fifo_reader(path, what)
        if is_direct(st.st_mode):
            return path  # written in place, never replaced
        raise UsageError(f"{what} {path} is {kind_of(st.st_mode)}; give a regular file name")
    _check_folder(path.parent, path, what)
    try:
        name_max = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(name)) + TMP_EXTRA_CHARS > name_max:
        raise UsageError(f"{what}: the file name is {len(os.fsencode(name))} bytes long; "
                         f"this file system allows {name_max - TMP_EXTRA_CHARS} here")
    return path


# Write ends of output FIFOs opened by check_output_path, kept open until the process
# exits: closing them would hand the reader an early end of file.
_HELD_FIFO_FDS: list[int] = []


def _hold_fifo_reader(path: Path, what: str) -> None:
    """A FIFO output needs a reader now: without one, writing it later would block for
    ever (and the open ignores everything but SIGKILL). The non-blocking open says so at
    once (ENXIO) instead."""
    try:
        _HELD_FIFO_FDS.append(os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC))
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise UsageError(f"{what} {path} is a FIFO that nobody reads; start its reader "
                             "first, or give a regular file name") from None
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None


def _check_folder(parent: Path, path: Path, what: str) -> None:
    """The folder must already exist (it is never created silently) and be writable."""
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        raise UsageError(f"cannot write {what} {path}: {parent} {why} (create it first, "
                         "or choose another path)")
    probe = tmp_path_for(parent / path.name[:200])   # the one temporary-name rule
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}; choose a "
                         "writable location") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def same_file(a, b) -> bool:
    """Whether two output names point at the same file (also through links)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(os.path.realpath(a)) == os.path.abspath(os.path.realpath(b))


def check_free_space(path, need_bytes: int, *, what: str = "--output") -> None:
    """Refuse when the file system of `path` has less than `need_bytes` free."""
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # no answer: the write itself will say
    if free < need_bytes:
        raise AlemsError(f"{what} {path}: only {free / 1e6:.1f} MB free on its file system, "
                         f"about {need_bytes / 1e6:.1f} MB are needed; free space or choose "
                         "another location")
