"""The one atomic write, and the one temporary-file naming rule of A-LEMS (outputs, samples
files, merges): a crash never leaves half a file under the final name, and a device node,
FIFO or socket is never replaced by a regular file.

`atomic_target(path)` gives the name to write: a temporary file `.<name>.<pid>.tmp` beside
the target (created here, exclusively and never through a link) that is renamed onto it on
success — or, when the target is a character device or a FIFO (`/dev/null`, `/dev/stdout`
on a pipe, a named pipe), the target itself. `safe_replace` is the rename that refuses to
go over anything but a regular file. Temporary files of processes that no longer run are
removed (`remove_stale_tmp`, `remove_dead_tmps`). A final component that is a symlink
planted by another user in a sticky world-writable folder (/tmp) is never followed
(`untrusted_link`: the rule of the kernel's fs.protected_symlinks, applied whether or not
that sysctl is on), so root's outputs cannot be redirected onto root's files. A new file's
mode follows the user's umask like any other program's output.

Checking a user-named output before the work is `alems.outputs`' job (above this module:
the instrument and the store write through here without the command line's rules).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from alems.errors import AlemsError

TMP_SUFFIX = ".tmp"
# The temporary-name decorations around the target's name: "." + name + ".<pid>.tmp".
TMP_EXTRA_CHARS = 1 + 1 + 10 + len(TMP_SUFFIX)
# Written straight to the node instead of through a temporary file + rename.
_DIRECT = (stat.S_ISCHR, stat.S_ISFIFO)


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISFIFO, "a FIFO")):
        if test(mode):
            return name
    return "not a regular file"


def is_direct(mode: int) -> bool:
    """A character device or FIFO: written in place, never replaced."""
    return any(test(mode) for test in _DIRECT)


def writes_directly(path) -> bool:
    """True when `path` (after symlinks) is a character device or FIFO: write it in place."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return any(test(mode) for test in _DIRECT)


def tmp_path_for(path) -> Path:
    """`.<name>.<pid>.tmp` in the target's folder (same file system: rename is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TMP_SUFFIX}")


_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)" + re.escape(TMP_SUFFIX) + "$",
                       re.DOTALL)


def tmp_owner_pid(name: str, target: str | None = None) -> int | None:
    """The pid in a temporary name of `tmp_path_for` (of `target`'s, when given); None when
    `name` is no such name."""
    m = _TMP_NAME.match(name)
    if not m or (target is not None and m.group("target") != target):
        return None
    return int(m.group("pid"))


def untrusted_link(path) -> str | None:
    """Why `path`'s final component must not be followed, or None: it is a symlink in a
    sticky world-writable folder owned neither by us nor by that folder's owner
    (fs.protected_symlinks' rule: another user's link in /tmp)."""
    path = Path(path)
    try:
        link = os.lstat(path)
        if not stat.S_ISLNK(link.st_mode):
            return None
        folder = os.stat(path.parent)          # a bare name's parent is Path(".")
    except OSError:
        return None
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    if shared and link.st_uid not in (os.geteuid(), folder.st_uid):
        return (f"{path} is a symlink owned by another user (uid {link.st_uid}) in the shared "
                f"folder {path.parent}; it is never followed, remove it or choose another name")
    return None


def refuse_untrusted_link(path, what: str, error=AlemsError) -> None:
    why = untrusted_link(path)
    if why:
        raise error(f"{what} {why}")


def umask_mode(base: int = 0o666) -> int:
    """`base` as the user's umask lets a new file have it (0644 under umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def safe_replace(tmp, path) -> None:
    """os.replace, but never over a directory, device, FIFO or socket (nor a symlink to
    one); a symlink to a regular file has its target replaced, the link stays."""
    path = Path(path)
    if path.is_symlink():
        refuse_untrusted_link(path, "cannot write:")
        path = Path(os.path.realpath(path))
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        raise AlemsError(f"cannot write {path}: it is {kind_of(mode)}, which is never replaced")
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def create_tmp(path) -> Path:
    """Create `path`'s temporary file (the one naming rule) exclusively, never through a
    link: whatever another process left at that name is removed first (unlink never
    follows a link). Returns its name, an empty regular file of ours."""
    tmp = tmp_path_for(path)
    for attempt in range(2):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            if attempt:
                raise
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            continue
        os.close(fd)
        return tmp
    raise AssertionError("unreachable")


@contextlib.contextmanager
def atomic_target(path) -> Iterator[Path]:
    """Yield the name to write `path` through (see the module docstring). On success the
    temporary file is fsynced and renamed onto `path`; on any failure it is removed."""
    path = Path(path)
    refuse_untrusted_link(path, "cannot write:")
    if writes_directly(path):
        yield path
        return
    remove_stale_tmp(path)
    tmp = create_tmp(path)
    try:
        yield tmp
        with contextlib.suppress(OSError):  # umask mode, whatever created the file
            os.chmod(tmp, umask_mode())
        with contextlib.suppress(OSError):  # e.g. a library closed it already: best effort
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        safe_replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live process of this pid namespace, asked of the kernel (a proc
    root may be a fake tree or another namespace's)."""
    if pid <= 0:   # kill(0 or -N) addresses process groups, not one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def remove_stale_tmp(path) -> list[Path]:
    """Delete `path`'s temporary files (`tmp_path_for`) whose process is gone (a kill -9
    during a final write). Returns what went."""
    path = Path(path)
    return remove_dead_tmps(path.parent, path.name)


def remove_dead_tmps(folder, target: str | None = None) -> list[Path]:
    """Delete the temporary files in `folder` (of `target`, or of any name) whose process
    is gone; a link or anything but a regular file is left alone. Returns what went."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = tmp_owner_pid(entry.name, target)
        if pid is None or pid == os.getpid() or pid_alive(pid):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EROFS, errno.EACCES, errno.EPERM):
                raise
    return removed


# The name the CLI's writers use: every output goes through the same atomic, device-safe path.
atomic_output = atomic_target


def write_parquet_atomic(table: pa.Table, path) -> int:
    """Write `table` as Parquet through `write_atomic`."""
    return write_atomic(path, lambda fh: pq.write_table(table, fh, compression="zstd"))


def write_atomic(path, write: Callable[[BinaryIO], object]) -> int:
    """`write(fh)` into a temporary file in the same folder (`tmp_path_for`, the one naming rule),
    fsync, rename onto `path`, fsync the folder; remove the temporary on any failure. A
    character device or FIFO target is written in place. Returns the bytes
    written (the file size for a regular file)."""
    path = Path(path)
    with atomic_target(path) as target, open(target, "wb") as fh:
        write(fh)
        fh.flush()
        written = fh.tell() if fh.seekable() else None
        if target != path:
            os.fsync(fh.fileno())
    return written if written is not None else 0
