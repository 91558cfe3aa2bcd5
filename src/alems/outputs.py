"""Output files: one rule for every output (`sample -o/--summary-json`, `export`, `report`),
written safely even as root.

`check_output_path(path, what)` is called before any work: it refuses, in one line and exit
2, a target that is a directory, a block device, a socket, a name too long for the file
system, a missing (never created silently) or unwritable folder; for a dataset folder
(`folder=True`) one that exists and is not empty. `atomic_target(path)` then gives the
name to write: a temporary file `.<name>.<pid>.tmp` beside the target (created here,
exclusively and never through a link) that is renamed onto it on success — or, when the
target is a character device or a FIFO (`/dev/null`, `/dev/stdout` on a pipe,
a named pipe), the target itself, so a device node is never replaced by a regular file.
`safe_replace` is the rename that refuses to go over anything but a regular file.
Temporary files of processes that no longer run are removed (`remove_stale_tmp`). A new
file's mode follows the user's umask like any other program's output.

`tmp_path_for`/`tmp_owner_pid` are the one temporary-file naming rule of A-LEMS (outputs,
samples files, merges). A final component that is a symlink planted by another user in a
sticky world-writable folder (/tmp) is never followed (`untrusted_link`: the rule of the
kernel's fs.protected_symlinks, applied whether or not that sysctl is on), so root's
outputs cannot be redirected onto root's files.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import stat
from pathlib import Path
from collections.abc import Iterator

from alems.errors import AlemsError, UsageError

TMP_SUFFIX = ".tmp"
# The temporary-name decorations around the target's name: "." + name + ".<pid>.tmp".
_TMP_EXTRA_CHARS = 1 + 1 + 10 + len(TMP_SUFFIX)
# Written straight to the node instead of through a temporary file + rename.
_DIRECT = (stat.S_ISCHR, stat.S_ISFIFO)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISFIFO, "a FIFO")):
        if test(mode):
            return name
    return "not a regular file"


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
        folder = os.stat(path.parent if str(path.parent) else ".")
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
        if any(test(st.st_mode) for test in _DIRECT):
            return path  # written in place, never replaced
        raise UsageError(f"{what} {path} is {_kind(st.st_mode)}; give a regular file name")
    _check_folder(path.parent, path, what)
    try:
        name_max = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    if len(os.fsencode(name)) + _TMP_EXTRA_CHARS > name_max:
        raise UsageError(f"{what}: the file name is {len(os.fsencode(name))} bytes long; "
                         f"this file system allows {name_max - _TMP_EXTRA_CHARS} here")
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


def umask_mode(base: int = 0o666) -> int:
    """`base` as the user's umask lets a new file have it (0644 under umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


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
        raise AlemsError(f"cannot write {path}: it is {_kind(mode)}, which is never replaced")
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
    _fsync_dir(path.parent if str(path.parent) else Path("."))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def remove_stale_tmp(path) -> list[Path]:
    """Delete `path`'s temporary files (`tmp_path_for`) whose process is gone (a kill -9
    during a final write). Returns what went."""
    path = Path(path)
    return remove_dead_tmps(path.parent if str(path.parent) else Path("."), path.name)


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
