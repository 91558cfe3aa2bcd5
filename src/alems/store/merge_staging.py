"""Where `alems merge` writes its sample files: never where an input's files live, and all
or nothing. The files are written into a staging folder of the merge's own beside the
output's samples folder (same file system), and moved into place with a link that never
replaces an existing file just before the database commits; a failure removes exactly
what the merge created (files placed, folders made, the staging folder)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from pathlib import Path

from alems.errors import AlemsError, UsageError
from alems.atomic_io import pid_alive, tmp_owner_pid, tmp_path_for
from alems.store import samples as store_samples


class Staging:
    """The merge's sample files: written under `<out dir>/.samples.<pid>.tmp/` (the one
    temporary-name rule; same file system), published by `publish()` with a no-clobber
    link, removed by `abandon()` — only what this merge created, input files never."""

    def __init__(self, out_path: Path):
        self.root = store_samples.samples_root(out_path)
        self.dir = tmp_path_for(self.root)
        self.staged: list[tuple[Path, Path]] = []   # (staged file, its final name)
        self.published: list[Path] = []
        self.made_dirs: list[Path] = []
        _remove_dead_staging(self.root.parent)

    def path_for(self, dest: Path) -> Path:
        """The staged name of final file `dest`; the staging folder made on first use."""
        if not self.dir.exists():
            self.dir.mkdir()
        staged = self.dir / dest.relative_to(self.root)
        staged.parent.mkdir(parents=True, exist_ok=True)
        self.staged.append((staged, dest))
        return staged

    def _mkdirs(self, folder: Path) -> None:
        missing = []
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        for d in reversed(missing):
            d.mkdir()
            self.made_dirs.append(d)

    def publish(self) -> None:
        """Each staged file to its final name; one already there (another database's file
        in a shared folder, or a killed batch's orphan) is never replaced: refused."""
        for staged, dest in self.staged:
            self._mkdirs(dest.parent)
            try:
                os.link(staged, dest)                 # fails if dest exists: no clobber
            except FileExistsError:
                raise AlemsError(f"cannot write {dest}: a file is already there (not a run "
                                 "of the output database); remove it or merge into another "
                                 "folder; nothing merged") from None
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
                    raise
                if os.path.lexists(dest):             # no hard links here: check, then rename
                    raise AlemsError(f"cannot write {dest}: a file is already there; "
                                     "nothing merged") from None
                os.rename(staged, dest)
            self.published.append(dest)

    def done(self) -> None:
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def abandon(self) -> None:
        for f in self.published:
            with contextlib.suppress(OSError):
                f.unlink()
        for d in reversed(self.made_dirs):
            with contextlib.suppress(OSError):
                d.rmdir()
        self.done()


def _remove_dead_staging(folder: Path) -> None:
    """Staging folders of merges that were killed (their process is gone)."""
    name = store_samples.SAMPLES_DIRNAME
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            pid = tmp_owner_pid(entry.name, name)
            if pid is not None and pid != os.getpid() and not pid_alive(pid) \
                    and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)


def refuse_shared_samples(out_path: Path, paths: list[Path]) -> None:
    """The output's samples folder must not be an input's: it would write among them."""
    out_root = os.path.realpath(store_samples.samples_root(out_path))
    for p in paths:
        root = os.path.realpath(store_samples.samples_root(p))
        if root == out_root:
            raise UsageError(f"{out_path} and the input {p} would share the samples folder "
                             f"{store_samples.samples_root(out_path)}: the merge would write "
                             "among that input's files; put the output in another folder "
                             "(e.g. merged/experiments.db)")
