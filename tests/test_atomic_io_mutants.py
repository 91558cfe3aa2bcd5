"""Exact rules of `alems.atomic_io` that mutation testing found unguarded (docs/TESTING.md):
the temporary file (created private and exclusive, never through a link, what another
process left there replaced), the write's durability order (data flushed before each fsync,
the folder fsynced last, nothing fsynced on a FIFO), the other-user-link rule of a sticky
shared folder, stale temporaries' errors, and the pid probe's edges. Called directly, not
through `python -m alems` (mutmut's trampolines cannot follow a subprocess)."""

from __future__ import annotations

import errno
import os
import signal
import stat
from pathlib import Path

import pytest

from alems import atomic_io
from alems.errors import AlemsError, UsageError

OTHER_UID, THIRD_UID = 54321, 54322        # uids of no one on the test machine

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown of a link to another uid")


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_create_tmp_is_a_private_empty_file_and_replaces_what_was_left(tmp_path, umask022):
    target = tmp_path / "out.json"
    tmp = atomic_io.create_tmp(target)
    st = os.lstat(tmp)
    assert tmp == atomic_io.tmp_path_for(target)
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0 and stat.S_IMODE(st.st_mode) == 0o600
    tmp.write_text("left by a crash")
    os.chmod(tmp, 0o644)
    again = atomic_io.create_tmp(target)
    assert again == tmp and os.lstat(tmp).st_size == 0
    assert stat.S_IMODE(os.lstat(tmp).st_mode) == 0o600          # a new file, not the old one
    tmp.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("keep")
    os.symlink(elsewhere, tmp)                                    # a link at the name
    atomic_io.create_tmp(target)
    assert not tmp.is_symlink() and stat.S_ISREG(os.lstat(tmp).st_mode)
    assert elsewhere.read_text() == "keep"


def test_create_tmp_when_the_name_comes_and_goes(tmp_path, monkeypatch):
    """EEXIST then the file is gone before unlink: the second try creates it; EEXIST twice
    (someone keeps re-creating it) is raised, never looped on."""
    real_open, calls = os.open, []

    def exists_once(path, flags, mode=0o777):
        calls.append(path)
        if len(calls) == 1:
            raise FileExistsError(errno.EEXIST, "planted", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", exists_once)
    tmp = atomic_io.create_tmp(tmp_path / "a")
    assert calls == [tmp, tmp] and tmp.is_file()

    def always_exists(path, flags, mode=0o777):
        calls.append(path)
        raise FileExistsError(errno.EEXIST, "planted", str(path))

    calls.clear()
    monkeypatch.setattr(os, "open", always_exists)
    with pytest.raises(FileExistsError):
        atomic_io.create_tmp(tmp_path / "b")
    assert len(calls) == 2


def _record_fsyncs(monkeypatch):
    """os.fsync, recording (kind, size on disk as the fd sees it) of each call."""
    real, seen = os.fsync, []

    def fsync(fd):
        st = os.fstat(fd)
        seen.append(("dir" if stat.S_ISDIR(st.st_mode) else "file", st.st_size))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_write_atomic_flushes_fsyncs_then_renames_and_fsyncs_the_folder(tmp_path, monkeypatch,
                                                                        umask022):
    seen = _record_fsyncs(monkeypatch)
    target = tmp_path / "out.bin"
    assert atomic_io.write_atomic(target, lambda fh: fh.write(b"abcde")) == 5
    assert target.read_bytes() == b"abcde"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644       # the umask's mode, not 0600
    # the writer's fsync sees the flushed data, then the temporary's, then the folder's
    assert seen[:2] == [("file", 5), ("file", 5)] and seen[2][0] == "dir" and len(seen) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_write_atomic_relative_target_fsyncs_the_working_folder(tmp_path, monkeypatch):
    seen = _record_fsyncs(monkeypatch)
    monkeypatch.chdir(tmp_path)
    assert atomic_io.write_atomic("rel.bin", lambda fh: fh.write(b"x")) == 1
    assert (tmp_path / "rel.bin").read_bytes() == b"x" and seen[-1][0] == "dir"


def test_write_atomic_into_a_fifo_writes_in_place_without_fsync(tmp_path, monkeypatch):
    seen = _record_fsyncs(monkeypatch)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)     # keeps a reader: open never blocks
    try:
        assert atomic_io.write_atomic(fifo, lambda fh: fh.write(b"through")) == 0
        assert os.read(reader, 100) == b"through"
    finally:
        os.close(reader)
    assert seen == [] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_write_atomic_failure_removes_the_temporary_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(fh):
        fh.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_io.write_atomic(target, fail)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == [
        "out.bin"]


def _shared(tmp_path, mode, owner=0):
    folder = tmp_path / f"f{mode:o}-{owner}"
    folder.mkdir()
    os.chmod(folder, mode)
    os.chown(folder, owner, owner)
    return folder


def _link(folder, uid, name="out.json"):
    link = folder / name
    os.symlink(folder.parent / "victim", link)
    os.lchown(link, uid, uid)
    return link


@as_root
def test_untrusted_link_is_another_users_link_in_a_sticky_world_writable_folder(tmp_path):
    shared = _shared(tmp_path, 0o1777)
    link = _link(shared, OTHER_UID)
    why = (f"{link} is a symlink owned by another user (uid {OTHER_UID}) in the shared folder "
           f"{shared}; it is never followed, remove it or choose another name")
    assert atomic_io.untrusted_link(link) == why
    assert atomic_io.untrusted_link(_link(shared, 0, "mine.json")) is None      # our own
    plain = shared / "plain.json"
    plain.write_text("")
    os.chown(plain, OTHER_UID, OTHER_UID)
    assert atomic_io.untrusted_link(plain) is None                           # not a link
    assert atomic_io.untrusted_link(shared / "missing.json") is None
    with pytest.raises(UsageError) as ei:
        atomic_io.refuse_untrusted_link(link, "--output", UsageError)
    assert str(ei.value) == f"--output {why}"
    with pytest.raises(AlemsError) as ei:
        atomic_io.refuse_untrusted_link(link, "cannot write:")
    assert str(ei.value) == f"cannot write: {why}"
    atomic_io.refuse_untrusted_link(plain, "cannot write:")                 # no error


@as_root
def test_untrusted_link_needs_both_sticky_and_world_writable_and_spares_the_owner(tmp_path,
                                                                                 monkeypatch):
    for mode in (0o1755, 0o0777, 0o0755):
        assert atomic_io.untrusted_link(_link(_shared(tmp_path, mode), OTHER_UID)) is None
    owned = _shared(tmp_path, 0o1777, owner=OTHER_UID)
    assert atomic_io.untrusted_link(_link(owned, OTHER_UID)) is None          # folder's owner
    assert atomic_io.untrusted_link(_link(owned, 0, "ours.json")) is None      # ours
    third = _link(owned, THIRD_UID, "third.json")
    assert f"(uid {THIRD_UID})" in atomic_io.untrusted_link(third)
    monkeypatch.chdir(owned)                                # a bare name: the working folder
    assert f"(uid {THIRD_UID}) in the shared folder ." in atomic_io.untrusted_link("third.json")


@as_root
def test_safe_replace_and_atomic_target_refuse_another_users_link(tmp_path):
    shared = _shared(tmp_path, 0o1777)
    victim = tmp_path / "victim"
    victim.write_text("root's file")
    link = _link(shared, OTHER_UID)
    src = tmp_path / "src"
    src.write_text("new")
    with pytest.raises(AlemsError, match=r"^cannot write: .* owned by another user"):
        atomic_io.safe_replace(src, link)
    with pytest.raises(AlemsError, match=r"^cannot write: .* owned by another user"), \
            atomic_io.atomic_target(link):
        pass
    assert victim.read_text() == "root's file" and src.read_text() == "new"
    assert link.is_symlink()


def test_safe_replace_names_the_real_target_of_a_link_to_a_folder(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    link = tmp_path / "out.json"
    os.symlink(folder, link)
    src = tmp_path / "src"
    src.write_text("x")
    with pytest.raises(AlemsError) as ei:
        atomic_io.safe_replace(src, link)
    assert str(ei.value) == f"cannot write {folder}: it is a directory, which is never replaced"
    atomic_io.safe_replace(src, tmp_path / "new.json")                      # nothing there yet
    assert (tmp_path / "new.json").read_text() == "x" and not src.exists()


def test_pid_alive_only_asks_and_never_signals(monkeypatch, tmp_path):
    got = []
    old = signal.signal(signal.SIGHUP, lambda sig, frame: got.append(sig))
    try:
        assert atomic_io.pid_alive(os.getpid()) is True
    finally:
        signal.signal(signal.SIGHUP, old)
    assert got == []                               # signal 0: existence and permission only
    atomic_io._fsync_dir(tmp_path / "missing")     # best effort: an unopenable folder is no error


def test_pid_alive_edges(monkeypatch):
    assert atomic_io.pid_alive(1) is True          # init of this namespace
    assert atomic_io.pid_alive(0) is False         # kill(0) is our own process group
    assert atomic_io.pid_alive(-1) is False        # kill(-1) is every process

    def refuse(pid, sig):
        raise PermissionError(errno.EPERM, "not ours")

    monkeypatch.setattr(os, "kill", refuse)
    assert atomic_io.pid_alive(1234) is True       # another user's live process

    def bad(pid, sig):
        raise ValueError("no such pid value")

    monkeypatch.setattr(os, "kill", bad)
    assert atomic_io.pid_alive(1234) is False


def test_dead_temporaries_of_any_name_and_unremovable_ones(tmp_path, monkeypatch):
    dead = 2 ** 22 + 1                              # above pid_max: never alive
    a, b = tmp_path / f".a.json.{dead}.tmp", tmp_path / f".b.parquet.{dead}.tmp"
    live = tmp_path / f".c.json.{os.getpid()}.tmp"
    for p in (a, b, live):
        p.write_text("")
    assert atomic_io.remove_dead_tmps(tmp_path / "missing") == []
    assert sorted(atomic_io.remove_dead_tmps(tmp_path)) == [a, b]
    assert live.exists() and not a.exists() and not b.exists()
    a.write_text("")
    monkeypatch.chdir(tmp_path)
    assert atomic_io.remove_stale_tmp("a.json") == [Path(a.name)]    # a bare name: the cwd
    assert not a.exists()
    real_unlink = os.unlink
    for code in (errno.ENOENT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO):
        b.write_text("")

        def unlink(path, *args, code=code, **kw):
            raise OSError(code, os.strerror(code), str(path))

        monkeypatch.setattr(os, "unlink", unlink)
        if code == errno.EIO:                      # not a "cannot remove it here": raised
            with pytest.raises(OSError) as ei:
                atomic_io.remove_dead_tmps(tmp_path, "b.parquet")
            assert ei.value.errno == errno.EIO
        else:
            assert atomic_io.remove_dead_tmps(tmp_path, "b.parquet") == []
        monkeypatch.setattr(os, "unlink", real_unlink)
        assert b.exists()


def test_write_parquet_atomic_writes_a_zstd_table_and_returns_its_size(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"t_ns": pa.array([1, 2, 3], pa.int64()), "energy_uj": [0.5, 1.5, 2.5]})
    target = tmp_path / "s.parquet"
    assert atomic_io.write_parquet_atomic(table, target) == target.stat().st_size > 0
    assert pq.read_table(target).equals(table)
    meta = pq.ParquetFile(target).metadata.row_group(0).column(0)
    assert meta.compression == "ZSTD"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.parquet"]
