"""What the loopback API servers of the tests share: serving a handler class on an
ephemeral 127.0.0.1 port in a thread, a lifetime after which the server stops itself (a
test that hangs never leaves a server behind), and start/stop as a context manager."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer


class LoopbackHTTP:
    _lifetime_s: float = 60.0
    _httpd: ThreadingHTTPServer | None = None
    _timer: threading.Timer | None = None

    def start(self):
        raise NotImplementedError   # builds its Handler, then returns self._serve(Handler)

    def _serve(self, handler):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        self._timer = threading.Timer(self._lifetime_s, self.stop)
        self._timer.daemon = True
        self._timer.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if self._timer is not None and threading.current_thread() is not self._timer:
            self._timer.cancel()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
