"""Other running processes in the measurement: a process the sampler attaches to
(`alems sample --pid`, `alems batch --server-pid`), checked before anything is measured,
and a local model server found from the port its base URL names.

Discovery (`listening_pids`): the LISTEN sockets on the port in <proc root>/net/tcp and
net/tcp6 (their inodes), then every <proc root>/<pid>/fd/* that links to `socket:[inode]`.
Every read goes through the configured proc root (ALEMS_PROC_ROOT), so a fake tree tests it.
"""

from __future__ import annotations

import errno
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from alems import config
from alems.atomic_io import pid_alive
from alems.errors import AlemsError

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_TCP_LISTEN = "0A"   # st column of /proc/net/tcp: TCP_LISTEN
# Local addresses (as /proc/net/tcp{,6} print them) that accept a loopback connection:
# 127.0.0.1, 0.0.0.0, ::1, ::, ::ffff:127.0.0.1, ::ffff:0.0.0.0.
_LOOPBACK_ADDRS = {"0100007F", "00000000", "00000000000000000000000001000000",
                   "00000000000000000000000000000000", "0000000000000000FFFF00000100007F",
                   "0000000000000000FFFF000000000000"}


def _proc(proc_root: str | None) -> Path:
    return Path(proc_root or config.proc_root())


def comm_of(pid: int, proc_root: str | None = None) -> str | None:
    """The process's name (<proc root>/<pid>/comm), None when it is gone."""
    try:
        return (_proc(proc_root) / str(pid) / "comm").read_text().strip() or None
    except OSError:
        return None


def start_ticks(pid: int, proc_root: str | None = None) -> int | None:
    """Field 22 of <pid>/stat (start time since boot, clock ticks): tells a reused pid
    from the process first seen under it. None when gone or unreadable."""
    try:
        text = (_proc(proc_root) / str(pid) / "stat").read_text()
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def has_exited(pid: int) -> bool:
    """Whether `pid` has ended: gone, or a zombie its parent has not reaped yet (kill(pid, 0)
    still succeeds on a zombie, so the kernel's answer alone would wait for the reaping)."""
    if not pid_alive(pid):
        return True
    try:
        text = (_proc(None) / str(pid) / "stat").read_text()
        return text[text.rindex(")") + 2:][:1] in ("Z", "X")
    except (OSError, ValueError):
        return not pid_alive(pid)


def _owner_uid(pid: int, proc_root: str | None) -> int | None:
    try:
        return (_proc(proc_root) / str(pid)).stat().st_uid
    except OSError:
        return None


def check_attachable(pid: int, proc_root: str | None = None, *, flag: str = "--pid") -> dict:
    """{pid, comm, start_ticks} of a running process this user may measure; else one clear
    AlemsError (no such process, this alems process itself, not permitted)."""
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise AlemsError(f"{flag} takes a process id > 0 (got {pid!r})")
    if pid == os.getpid():
        raise AlemsError(f"{flag} {pid} is this alems process itself; give another process")
    gone = (f"{flag} {pid}: no such process; give the pid of a running process "
            "(e.g. `pgrep -f NAME`)")
    if not (_proc(proc_root) / str(pid)).is_dir():
        raise AlemsError(gone)
    try:
        os.kill(pid, 0)   # the kernel's own answer: exists, and may we act on it
    except ProcessLookupError:
        raise AlemsError(gone) from None
    except PermissionError:
        uid = _owner_uid(pid, proc_root)
        raise AlemsError(f"{flag} {pid} ({comm_of(pid, proc_root) or '?'}): not permitted "
                         f"to measure it (owned by uid {uid}, alems runs as uid "
                         f"{os.geteuid()}); run alems as its owner or as root") from None
    _check_perf_permitted(pid, proc_root, flag)
    return {"pid": pid, "comm": comm_of(pid, proc_root), "start_ticks": start_ticks(pid, proc_root)}


def _check_perf_permitted(pid: int, proc_root: str | None, flag: str) -> None:
    """A task-clock counter on the process opens (user space only will do); a permission
    refusal is an error (its CPU time would silently not be counted). A machine without
    perf counters at all is fine: the CPU-time figures then come from /proc."""
    from alems.measure._native import PERF_EXCLUDE_HV, PERF_EXCLUDE_KERNEL, ChannelSpec
    from alems.measure.sources.base import perm_denied, try_probe
    from alems.measure.sources.perf import SOFTWARE

    ptype, cfg = SOFTWARE["task_clock_ns"]
    exc = None
    for flags in (0, PERF_EXCLUDE_KERNEL | PERF_EXCLUDE_HV):
        _, exc = try_probe(ChannelSpec("perf", f"task_clock_ns/pid{pid}", perf_type=ptype,
                                       perf_config=cfg, pid=pid, cpu=-1, perf_flags=flags))
        if exc is None or not perm_denied(exc):
            break
    if exc is not None and perm_denied(exc):
        raise AlemsError(f"{flag} {pid} ({comm_of(pid, proc_root) or '?'}): not permitted to "
                         f"count its perf counters ({exc.strerror}); run as root, or lower "
                         "kernel.perf_event_paranoid / the ptrace scope for your user")
    if exc is not None and exc.errno == errno.ESRCH:
        raise AlemsError(f"{flag} {pid}: no such process (it exited); give the pid of a "
                         "running process")


# ---------------------------------------------------------------- port -> process

def loopback_port(base_url: str) -> tuple[str, int] | None:
    """(host, port) of a base URL on this machine (127.0.0.1, localhost, ::1); None for
    any other host. The port defaults to the scheme's (80, 443)."""
    parts = urlsplit(base_url if "//" in base_url else f"http://{base_url}")
    host = (parts.hostname or "").lower()
    if host not in LOOPBACK_HOSTS:
        return None
    try:
        port = parts.port
    except ValueError:
        raise AlemsError(f"base URL {base_url!r} has a bad port; e.g. "
                         "http://127.0.0.1:8080/v1") from None
    return host, port or (443 if parts.scheme == "https" else 80)


def listening_inodes(port: int, proc_root: str | None = None) -> set[int]:
    """Inodes of the TCP sockets listening on `port` at an address loopback reaches."""
    found: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (_proc(proc_root) / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != _TCP_LISTEN:
                continue
            addr, _, hexport = cols[1].partition(":")
            try:
                if int(hexport, 16) == port and addr.upper() in _LOOPBACK_ADDRS:
                    found.add(int(cols[9]))
            except ValueError:
                continue
    return found


@dataclass
class Owners:
    pids: list[int] = field(default_factory=list)
    unreadable: int = 0      # processes whose open files we may not list


def socket_owners(inodes: set[int], proc_root: str | None = None) -> Owners:
    """Processes with one of these sockets open (<proc root>/<pid>/fd/* -> socket:[inode])."""
    want = {f"socket:[{i}]" for i in inodes}
    out = Owners()
    if not want:
        return out
    root = _proc(proc_root)
    try:
        entries = [e for e in os.listdir(root) if e.isdigit()]
    except OSError:
        return out
    for entry in entries:
        fd_dir = root / entry / "fd"
        try:
            fds = os.listdir(fd_dir)
        except PermissionError:
            out.unreadable += 1
            continue
        except OSError:
            continue   # exited meanwhile, or a kernel thread
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) in want:
                    out.pids.append(int(entry))
                    break
            except OSError:
                continue
    out.pids.sort()
    return out


def listening_pids(host: str, port: int,
                   proc_root: str | None = None) -> tuple[list[int], str | None]:
    """The processes listening on loopback `port`, or ([], why none was found)."""
    where = f"{host}:{port}"
    inodes = listening_inodes(port, proc_root)
    if not inodes:
        return [], f"no listening process found for {where}"
    owners = socket_owners(inodes, proc_root)
    if owners.pids:
        return owners.pids, None
    if owners.unreadable:
        return [], (f"a socket listens on {where}, but its process was not found: not "
                    f"permitted to list the open files of {owners.unreadable} process(es) "
                    "(run as root or as the server's owner, or give --server-pid)")
    return [], f"a socket listens on {where}, but no process holds it (exited meanwhile?)"


# ---------------------------------------------------------------- the batch's servers

@dataclass
class ServerSet:
    """The server processes a batch counts beside its own process tree, or why none."""

    processes: list[dict] = field(default_factory=list)   # {pid, comm, start_ticks}
    reason: str | None = None
    how: str = ""

    def live(self, proc_root: str | None = None) -> list[dict]:
        """Those still running as the same process (a reused pid is not them)."""
        return [p for p in self.processes if start_ticks(p["pid"], proc_root) is not None
                and start_ticks(p["pid"], proc_root) == p["start_ticks"]]

    def describe(self) -> str | None:
        """The batch-start line; None when nothing concerns a server."""
        if self.processes:
            listed = ", ".join(f"{p['pid']} ({p['comm'] or '?'})" for p in self.processes)
            return (f"counting server process {listed}, {self.how}, in every run's perf "
                    "counters and CPU time")
        return None if self.reason is None else (
            f"no server process counted: {self.reason}; the counters cover A-LEMS's own "
            "process tree only")


def counted_json(processes: list[dict]) -> str:
    """runs.counted_pids: [{"pid": N, "comm": NAME}, …]."""
    return json.dumps([{"pid": p["pid"], "comm": p.get("comm")} for p in processes])


def batch_servers(server_pids, base_url: str | None, *, fleet: bool = False,
                  proc_root: str | None = None) -> ServerSet:
    """--server-pid as given (each checked: one AlemsError for a bad one), else the process
    listening on a loopback --base-url's port; a remote or absent URL counts none."""
    pids = list(dict.fromkeys(int(p) for p in server_pids or ()))
    if pids and fleet:
        raise AlemsError("--server-pid names a process on this machine; it cannot be "
                         "combined with --ray-address (runs go to other nodes)")
    if pids:
        procs = [check_attachable(p, proc_root, flag="--server-pid") for p in pids]
        return ServerSet(procs, None, "given by --server-pid")
    if not base_url:
        return ServerSet([], None)
    local = loopback_port(base_url)
    if local is None:
        host = urlsplit(base_url).hostname or base_url
        return ServerSet([], f"the endpoint {host} is not on this machine (its energy is "
                             "not measured here)")
    if fleet:
        return ServerSet([], "runs go to Ray nodes; a server on this machine is not theirs")
    found, why = listening_pids(*local, proc_root=proc_root)
    procs = []
    for pid in found:
        if pid == os.getpid():
            continue
        try:
            procs.append(check_attachable(pid, proc_root, flag="server"))
        except AlemsError as exc:
            why = str(exc)
    if procs:
        return ServerSet(procs, None, f"found listening on {local[0]}:{local[1]}")
    return ServerSet([], why or f"no listening process found for {local[0]}:{local[1]}")
