"""Every output flag against every kind of thing at its path (issue 24, item 4, and the
"every output kind" class): another user's symlink planted in a sticky folder, a FIFO, a
character device, a block device, a directory, a read-only file, a read-only folder.

Whatever is there: no traceback; a refusal is one `alems: error:` line; nothing is
written through another user's link (its root-owned target keeps its bytes), a device or
FIFO stays what it is, and no temporary file is left behind. The kernel's own guard
(fs.protected_symlinks) is switched off for these tests, so A-LEMS's is what is tested.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from alems.atomic_io import write_atomic
from alems.errors import AlemsError
from alems.measure.stream import PartialWriter, partial_path_of
from alems.atomic_io import tmp_owner_pid, tmp_path_for
from alems.store.locks import SessionLock, lock_path

from _hardening_util import alems, argv, env_for
from analysis_fixture import build_fixture_db
from conftest import unprivileged_prefix

SECRET = b"root's own file: must keep these bytes\n"


def _nobody() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' to plant links as")
    return pw.pw_uid, pw.pw_gid


@pytest.fixture
def unprotected_symlinks():
    """fs.protected_symlinks=0 for the test (the kernel would otherwise refuse to follow
    the planted link itself), the old value back afterwards."""
    if os.geteuid() != 0:
        pytest.skip("planting another user's link needs root")
    knob = Path("/proc/sys/fs/protected_symlinks")
    try:
        old = knob.read_text().strip()
        if old != "0":
            knob.write_text("0")
    except OSError as exc:
        pytest.skip(f"cannot set fs.protected_symlinks=0 here ({exc.strerror or exc})")
    yield
    if old != "0":
        knob.write_text(old)


@pytest.fixture
def shared(tmp_path, unprotected_symlinks) -> Path:
    """A mode-1777 folder (like /tmp) and a root-owned file outside it."""
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)
    (tmp_path / "victim").write_bytes(SECRET)
    return folder


def plant(link: Path, target: Path) -> Path:
    uid, gid = _nobody()
    os.symlink(target, link)
    os.lchown(link, uid, gid)
    return link


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    """Temporary or probe files (or anything new) left in `folder`."""
    return sorted(n for n in os.listdir(folder) if n not in keep
                  and (tmp_owner_pid(n) is not None or n.endswith((".probe", ".partial"))))


def check_outcome(proc, *, ok_allowed: bool, needle: str | None = None) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        assert ok_allowed, f"should have been refused: {proc.stderr}"
        return
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode in (1, 2) and len(lines) == 1, proc.stderr
    assert lines[0].startswith("alems: error:"), lines[0]
    if needle:
        assert needle in lines[0], lines[0]


# ---------------------------------------------------------------- the matrix

@pytest.fixture(scope="module")
def export_db(tmp_path_factory) -> Path:
    return build_fixture_db(tmp_path_factory.mktemp("outs") / "experiments.db",
                            tasks=("gsm8k_basic",), reps=2)


def write_partial(final: Path) -> None:
    """A killed run's samples stream for `final` (what --recover turns into Parquet)."""
    w = PartialWriter(partial_path_of(final), pa.schema([("t_ns", pa.int64()),
                                                         ("w", pa.float64())]))
    w.write({"t_ns": np.arange(1, 11, dtype=np.int64) * 10_000_000,
             "w": np.linspace(1.0, 2.0, 10)})
    w.close()


FLAGS = {
    "sample -o": lambda out, db: ["sample", "-q", "--hz", "100", "-o", out, "--", "true"],
    "sample --summary-json": lambda out, db: ["sample", "-q", "--hz", "100",
                                              "--summary-json", out, "--", "true"],
    "sample --recover": lambda out, db: ["sample", "--recover", out],
    "export --output": lambda out, db: ["export", "--db", db, "-o", out],
    "export --samples --output": lambda out, db: ["export", "--db", db, "--samples", "-o", out],
    "report --output": lambda out, db: ["report", "--db", db, "-o", out],
}
SUFFIX = {"sample -o": ".parquet", "sample --summary-json": ".json",
          "sample --recover": ".parquet", "export --output": ".csv",
          "export --samples --output": ".dataset", "report --output": ".html"}


def _drain(fifo: Path) -> threading.Thread:
    """A reader for the FIFO, so a writer to it never blocks (no reader: issue 24 item 7)."""
    def read():
        with open(fifo, "rb") as fh:
            while fh.read(65536):
                pass
    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t


def _release(fifo: Path, reader: threading.Thread) -> None:
    if reader.is_alive():   # the command never opened it: let the reader see an end
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    reader.join(10)
    assert not reader.is_alive()


def _mknod(path: Path, kind: int, major: int, minor: int) -> Path:
    try:
        os.mknod(path, kind | 0o666, os.makedev(major, minor))
    except OSError as exc:
        pytest.skip(f"cannot make a device node here ({exc.strerror})")
    return path


KINDS = ["planted-link", "fifo", "char-device", "block-device", "directory",
         "read-only-file", "read-only-folder"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flag", list(FLAGS))
def test_every_output_flag_against_every_kind_of_path(tmp_path, shared, export_db, flag, kind):
    folder = shared if kind == "planted-link" else tmp_path / "out"
    folder.mkdir(exist_ok=True)
    out = folder / f"result{SUFFIX[flag]}"
    prefix, reader, ok_allowed, needle = (), None, False, None
    if kind == "planted-link":
        plant(out, tmp_path / "victim")
        needle = "symlink"
    elif kind == "fifo":
        os.mkfifo(out)
        reader, ok_allowed = _drain(out), True
    elif kind == "char-device":
        _mknod(out, stat.S_IFCHR, 1, 3)                    # a /dev/null of our own
        ok_allowed = True
    elif kind == "block-device":
        _mknod(out, stat.S_IFBLK, 7, 255)                  # a loop device nobody uses
        needle = "block device"
    elif kind == "directory":
        out.mkdir()
        (out / "keep").write_bytes(SECRET)
        needle = "directory"
    elif kind == "read-only-file":
        out.write_bytes(SECRET)
        os.chmod(out, 0o444)
        ok_allowed = True                                  # replaced by rename, like `mv`
    if flag == "sample --recover":
        write_partial(out)
    if SUFFIX[flag] == ".dataset" and kind != "planted-link":
        needle = None      # a dataset folder: "exists and is not an empty directory"
    if kind == "read-only-folder":
        prefix = unprivileged_prefix()
        if prefix is None:
            pytest.skip("cannot drop the power to write a read-only folder")
        os.chmod(folder, 0o555)
    before = set(os.listdir(folder))
    mode_before = os.lstat(out).st_mode if os.path.lexists(out) else None
    try:
        proc = subprocess.run([*prefix, *argv(*FLAGS[flag](out, export_db))], cwd=tmp_path,
                              env=env_for(tmp_path), capture_output=True, text=True,
                              timeout=120)
    finally:
        if reader is not None:
            _release(out, reader)
        os.chmod(folder, 0o1777 if kind == "planted-link" else 0o755)
    check_outcome(proc, ok_allowed=ok_allowed, needle=needle)
    assert (tmp_path / "victim").read_bytes() == SECRET
    if mode_before is not None and not stat.S_ISREG(mode_before):
        assert stat.S_IFMT(os.lstat(out).st_mode) == stat.S_IFMT(mode_before), \
            "a link, device, FIFO or directory is never replaced"
    if kind == "directory":
        assert sorted(os.listdir(out)) == ["keep"]
    assert leftovers(folder, before) == []


# ---------------------------------------------------------------- at write time

def test_a_link_planted_after_the_checks_is_not_written_through(shared, tmp_path):
    """The write itself refuses, not only the early check (a link planted meanwhile)."""
    out = plant(shared / "late.parquet", tmp_path / "victim")
    with pytest.raises(AlemsError, match="symlink owned by another user"):
        write_atomic(out, lambda fh: fh.write(b"samples"))
    assert (tmp_path / "victim").read_bytes() == SECRET
    assert os.path.islink(out) and leftovers(shared, {"late.parquet"}) == []


def test_a_link_planted_while_writing_is_not_replaced_through(shared, tmp_path):
    """Planted after the temporary file was opened: the final rename still refuses."""
    out = shared / "racy.parquet"

    def write(fh):
        plant(out, tmp_path / "victim")
        fh.write(b"samples")

    with pytest.raises(AlemsError, match="symlink owned by another user"):
        write_atomic(out, write)
    assert (tmp_path / "victim").read_bytes() == SECRET
    assert leftovers(shared, {"racy.parquet"}) == []


def test_a_planted_link_to_a_device_is_not_written_in_place(shared):
    """A device is written in place (never replaced), but not through another's link."""
    out = plant(shared / "dev.parquet", Path("/dev/null"))
    with pytest.raises(AlemsError, match="symlink owned by another user"):
        write_atomic(out, lambda fh: fh.write(b"samples"))


def test_a_link_planted_at_the_temporary_name_is_never_followed(shared, tmp_path):
    out = shared / "run.parquet"
    plant(tmp_path_for(out), tmp_path / "victim")     # the name this process will use
    write_atomic(out, lambda fh: fh.write(b"samples"))
    assert out.read_bytes() == b"samples" and not out.is_symlink()
    assert (tmp_path / "victim").read_bytes() == SECRET


def test_own_links_and_root_links_are_still_followed(tmp_path, unprotected_symlinks):
    """Only another user's link in a sticky folder is refused: `-o latest.parquet` as a
    link of one's own (or of the folder's owner) still writes its target."""
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o1777)
    target = tmp_path / "mine.parquet"
    target.write_bytes(b"old")
    os.symlink(target, folder / "latest.parquet")
    write_atomic(folder / "latest.parquet", lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new" and (folder / "latest.parquet").is_symlink()


def test_a_planted_session_lock_link_is_refused_and_its_target_kept(shared, tmp_path):
    db = shared / "experiments.db"
    plant(lock_path(db, "g-1"), tmp_path / "victim")
    with pytest.raises(AlemsError, match="symlink"):
        SessionLock(db, "g-1").acquire()
    assert (tmp_path / "victim").read_bytes() == SECRET


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_a_session_lock_that_is_no_regular_file_is_refused(tmp_path, kind):
    db = tmp_path / "experiments.db"
    path = lock_path(db, "g-1")
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    with pytest.raises(AlemsError, match="cannot lock session g-1"):
        SessionLock(db, "g-1").acquire()


def test_a_batch_with_a_planted_lock_is_one_line(shared, tmp_path):
    db = shared / "experiments.db"
    plant(lock_path(db, "g-planted"), tmp_path / "victim")
    proc = alems(tmp_path, "batch", "--tasks", "gsm8k_basic", "--repetitions", "1",
                 "--providers", "scripted", "--db", db, "--group-id", "g-planted",
                 "--hz", "200", "--baseline-duration", "0.02", "--baseline-reps", "1")
    check_outcome(proc, ok_allowed=False, needle="symlink")
    assert (tmp_path / "victim").read_bytes() == SECRET


def test_a_batch_database_through_a_planted_link_is_refused(shared, tmp_path):
    db = plant(shared / "experiments.db", tmp_path / "victim")
    proc = alems(tmp_path, "batch", "--tasks", "gsm8k_basic", "--repetitions", "1",
                 "--providers", "scripted", "--db", db, "--hz", "200",
                 "--baseline-duration", "0.02", "--baseline-reps", "1")
    check_outcome(proc, ok_allowed=False, needle="symlink")
    assert (tmp_path / "victim").read_bytes() == SECRET


def test_merge_output_through_a_planted_link_is_refused(shared, tmp_path, export_db):
    out = plant(shared / "all.db", tmp_path / "victim")
    proc = alems(tmp_path, "merge", out, export_db)
    check_outcome(proc, ok_allowed=False, needle="symlink")
    assert (tmp_path / "victim").read_bytes() == SECRET
