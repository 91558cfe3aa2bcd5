"""Issue 24, hangs and odd files (items 7 and the disk-full, .partial, deleted-folder and
unbounded-query classes), through the real command line: every output of `alems sample`
× every odd kind of file is refused in one line before any work; a FIFO planted where
an input or output is meant never hangs; SIGTERM always ends the process."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from _hardening_util import alems, env_for, one_error_line, popen
from conftest import IS_ROOT, IS_ROOT_REASON

sys.path.insert(0, str(Path(__file__).parent))
from fakehw import make_powercap_tree  # noqa: E402

# Generous bounds for a loaded test machine: the spec is "within a second".
EXIT_BOUND_S = 10.0
SIGTERM_BOUND_S = 5.0


def _wait_until(cond, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


def _wchan(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return ""


def _finish(proc: subprocess.Popen, bound_s: float) -> tuple[int, str]:
    """Wait for `proc` at most bound_s; kill it (and fail) if it outlives the bound."""
    try:
        _, err = proc.communicate(timeout=bound_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"alems outlived its bound of {bound_s} s") from None
    return proc.returncode, err


# ---------------------------------------------------------------- odd kinds of file

def _fifo(p: Path) -> Path:
    os.mkfifo(p)
    return p


def _directory(p: Path) -> Path:
    p.mkdir()
    return p


def _socket(p: Path) -> Path:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    _SOCKETS.append(s)
    return p


def _device(p: Path) -> Path:
    if not IS_ROOT:
        pytest.skip(IS_ROOT_REASON)
    os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the numbers of /dev/null
    return p


_SOCKETS: list[socket.socket] = []
ODD_KINDS = {"fifo": (_fifo, "FIFO"), "directory": (_directory, "directory"),
             "socket": (_socket, "socket"), "device": (_device, "device")}


@pytest.fixture(autouse=True)
def _close_sockets():
    yield
    while _SOCKETS:
        _SOCKETS.pop().close()


@pytest.mark.signals
@pytest.mark.parametrize("kind", sorted(ODD_KINDS))
@pytest.mark.parametrize("flag", ["-o", "--summary-json"])
def test_every_sample_output_flag_refuses_every_odd_kind_before_any_work(tmp_path, flag, kind):
    """A FIFO nobody reads (or any non-regular file) given to -o/--summary-json: one line,
    exit 2, before the command runs, nothing created beside it; a process that still runs
    after it started gets SIGTERM and must end within the bound either way."""
    make, word = ODD_KINDS[kind]
    target = make(tmp_path / "out")
    marker = tmp_path / "ran"
    env_for(tmp_path)  # creates its empty-sys folder first
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = popen(tmp_path, "sample", "-q", flag, target, "--", "touch", marker)
    # Started: its /proc entry exists; then either it ended by itself or it is stuck.
    _wait_until(lambda: proc.poll() is not None or _wchan(proc.pid) not in ("", "0"),
                "alems started")
    if proc.poll() is None and _wchan(proc.pid) == "wait_for_partner":
        proc.send_signal(15)  # stuck opening the FIFO (today's bug): must still end
    code, err = _finish(proc, EXIT_BOUND_S)
    if kind == "device" and flag == "--summary-json":
        assert code == 0, err  # a character device is written in place (/dev/null, a tty)
        assert marker.exists()
    else:
        assert code == 2, err
        one_error_line(subprocess.CompletedProcess([], code, "", err), word.lower()
                       if word != "FIFO" else "FIFO")
        assert not marker.exists(), "the command ran although the output was refused"
    after = sorted(p.name for p in tmp_path.iterdir() if p.name != "ran")
    assert after == before, f"files created beside the {kind}: {set(after) - set(before)}"


@pytest.mark.signals
def test_sigterm_ends_sample_stuck_writing_a_fifo_whose_reader_left(tmp_path):
    """The reader is there at the start and leaves: writing the summary would block for
    ever in open(); SIGTERM (no command left to forward it to) must end alems."""
    fifo = _fifo(tmp_path / "s.json")
    reader = threading.Thread(target=lambda: open(fifo, "rb").close())
    reader.start()
    proc = popen(tmp_path, "sample", "-q", "--summary-json", fifo, "--", "true")
    _wait_until(lambda: proc.poll() is not None or _wchan(proc.pid) == "wait_for_partner",
                "alems blocked opening the FIFO")
    reader.join(10)
    assert proc.poll() is None, "alems ended by itself: the FIFO was written"
    proc.send_signal(15)
    code, err = _finish(proc, SIGTERM_BOUND_S)
    assert code == 128 + 15, err
    assert "Traceback" not in err


@pytest.mark.signals
def test_fifo_in_place_of_a_counter_file_never_hangs(tmp_path):
    """sysfs `energy_uj` replaced by a FIFO: the C core and discovery open inputs
    non-blocking and refuse non-regular files; `sample` and `doctor` finish."""
    tree = make_powercap_tree(tmp_path / "sys")
    counter = Path(tree.targets[0].path)
    counter.unlink()
    os.mkfifo(counter)
    env = env_for(tmp_path)
    env["ALEMS_SYSFS_ROOT"] = str(tmp_path / "sys")
    for args in (["sample", "-q", "--", "true"], ["doctor"]):
        proc = subprocess.Popen([sys.executable, "-m", "alems", *args], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        code, err = _finish(proc, 60)
        assert "Traceback" not in err
    assert code == 0
    assert stat.S_ISFIFO(os.lstat(counter).st_mode)


def test_native_probe_refuses_a_fifo_without_blocking(tmp_path):
    from alems.measure._native import ChannelSpec, NativeError
    from alems.measure.sources.base import read_text, try_probe

    fifo = _fifo(tmp_path / "energy_uj")
    assert read_text(str(fifo)) is None  # the Python side: refused, not blocked
    value, err = try_probe(ChannelSpec(kind="text", path=str(fifo)))
    assert value is None and isinstance(err, NativeError) and "not a regular file" in str(err)


def test_dashboard_live_skips_a_fifo_among_the_partial_streams(tmp_path):
    from alems.dashboard.curves import newest_partial

    folder = tmp_path / "group_id=g"
    folder.mkdir()
    _fifo(folder / "run.parquet.partial")
    assert newest_partial(folder) is None


def test_ray_address_that_does_not_answer_fails_fast(tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    srv.close()  # nothing listens there now
    r = alems(tmp_path, "batch", "--ray-address", f"127.0.0.1:{port}", "--tasks",
              "gsm8k_basic", "--providers", "scripted", "--db", tmp_path / "e.db",
              timeout=60)
    assert r.returncode == 1
    one_error_line(r, f"127.0.0.1:{port}", "does not answer")
