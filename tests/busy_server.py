"""A stand-in for a local model server, for the `--server-pid` / `alems sample --pid` tests:
a process that listens on a 127.0.0.1 port and, for each line it reads on stdin, creates
two fresh threads that each do a fixed amount of CPU work (as a server's worker threads
would), then prints its own CPU time before and after (every thread, ns). EOF: it exits.

`python busy_server.py HASHES` prints the port first. `BusyServer` runs it from a test."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time

_DATA = b"x" * (1 << 20)


class BusyServer:
    """The script as a child process: `go()` -> the CPU ns its two threads spent."""

    def __init__(self, hashes: int = 60):
        self.proc = subprocess.Popen([sys.executable, __file__, str(hashes)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.port = int(self.proc.stdout.readline())   # listening from here on

    def go(self) -> int:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        self.c0_ns, c1 = map(int, self.proc.stdout.readline().split())
        return c1 - self.c0_ns

    def close(self) -> int | None:
        """Let it exit (EOF on stdin) and reap it; its total CPU time in ns (every thread,
        its exit included: the rusage the kernel reports at the reap), None if reaped."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        if self.proc.returncode is not None:
            return None
        _, status, ru = os.wait4(self.pid, 0)   # blocks until it exits (EOF ends its loop)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return int(round((ru.ru_utime + ru.ru_stime) * 1e9))


def _main(hashes: int) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    print(sock.getsockname()[1], flush=True)

    def burn() -> None:
        for _ in range(hashes):   # sha256 releases the GIL: both threads run
            hashlib.sha256(_DATA).digest()

    for _line in sys.stdin:
        c0 = time.process_time_ns()
        threads = [threading.Thread(target=burn) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(c0, time.process_time_ns(), flush=True)


if __name__ == "__main__":
    _main(int(sys.argv[1]))
