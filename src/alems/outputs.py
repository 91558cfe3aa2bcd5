"""Where a command writes its files: one rule for every output (`sample -o/--summary-json`,
`export`, `report`).

Checked before any work: the parent folder must already exist (never created silently),
be a folder and be writable; the target must not be a folder (or, for a dataset folder,
must be new or empty). A failure is one `alems: error:` line, exit 2, and nothing is
created. Files are written under a temporary name, then renamed; their mode follows the
user's umask like any other program's output (mkstemp's 0600 would not).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from alems.errors import UsageError


def check_output_path(path: str | Path, flag: str, *, folder: bool = False) -> Path:
    """Fail now, with one line and exit 2, if `path` cannot be written; return it absolute.

    `folder=True`: `path` is a dataset folder to create (new, or existing and empty)."""
    path = Path(path).expanduser()
    shown = path.absolute()
    if folder:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UsageError(f"{flag} {shown} exists and is not an empty directory; give a "
                             "new or empty one")
    elif path.is_dir():
        raise UsageError(f"{flag} {shown} is a directory; give a file name")
    parent = shown.parent
    if not parent.is_dir():
        why = "is not a directory" if parent.exists() else "does not exist"
        raise UsageError(f"cannot write {flag} {shown}: {parent} {why} (create it first, "
                         "or choose another path)")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as exc:
        raise UsageError(f"cannot write {flag} {shown}: {exc.strerror or exc}; choose a "
                         "writable location") from None
    os.close(fd)
    os.unlink(probe)
    return shown


def umask_mode(base: int = 0o666) -> int:
    """`base` as the user's umask lets a new file have it (0644 under umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def temp_path(path: Path) -> Path:
    """A temporary name beside `path` (same folder: the final rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def finish_file(tmp: Path, path: Path) -> None:
    """Give `tmp` the umask's mode and rename it onto `path`."""
    os.chmod(tmp, umask_mode())
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_output(path: str | Path):
    """Yield a temporary path beside `path`; on success it becomes `path` (umask mode),
    on failure it is removed."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        finish_file(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
