"""Who may read the dashboard: the Host-header check, the token gate, the login's attempt
limit and the rule for where a redirect may go.

- Without a token the server answers only requests addressed to a loopback name
  (127.0.0.1, localhost, [::1], any port) or to the host it was started on: a page on
  another site that rebinds its DNS name to 127.0.0.1 gets 400, never the results.
- With a token every page but the login form needs it (cookie, or `?token=` once).
  A token is at least MIN_TOKEN_CHARS characters. Each client may get it wrong
  FREE_ATTEMPTS times; after that it waits 2, 4, 8 … seconds (at most LOCKOUT_MAX_S)
  between tries and gets 429 meanwhile.
- A redirect goes only to a path on this server (`local_path`).
"""

from __future__ import annotations

import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from urllib.parse import urlencode

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from alems.errors import UsageError

TOKEN_COOKIE = "alems_token"
MIN_TOKEN_CHARS = 16
FREE_ATTEMPTS = 5
LOCKOUT_MAX_S = 300.0
MAX_TRACKED_CLIENTS = 4096   # memory bound: beyond it the entries whose wait ended go first
OPEN_PATHS = ("/login", "/favicon.ico")
OPEN_PREFIX = "/static/"   # the page's own CSS and JS: no results in them
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def check_token(token: str | None) -> None:
    """Refuse a guessable token (UsageError, one line)."""
    if token is None:
        return
    if len(token) < MIN_TOKEN_CHARS or not token.strip():
        raise UsageError(f"--token is {len(token)} character(s); give at least "
                         f"{MIN_TOKEN_CHARS} (e.g. the output of `python3 -c 'import secrets; "
                         "print(secrets.token_urlsafe(24))'`)")


def host_name(header: str) -> str:
    """`Host:` value -> the name without port and brackets, lower case ('' if malformed)."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        return header[1:end] if end > 0 else ""
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def is_loopback_name(name: str) -> bool:
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def local_path(target: str | None) -> str:
    """`target` if it is a path on this server, else "/": never `//host`, `/\\host`, a
    scheme, or a control character (which could split the Location header)."""
    if not target or not target.startswith("/") or any(ord(c) < 32 for c in target):
        return "/"
    if target[1:2] in ("/", "\\"):
        return "/"
    return target


class Attempts:
    """Wrong tokens per client: FREE_ATTEMPTS free, then an exponential wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._failed: dict[str, tuple[int, float]] = {}   # client -> (failures, locked until)

    def wait_s(self, client: str) -> float:
        """Seconds `client` must still wait before its next try (0: it may try now)."""
        with self._lock:
            _, until = self._failed.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, client: str) -> None:
        with self._lock:
            if client not in self._failed and len(self._failed) >= MAX_TRACKED_CLIENTS:
                self._forget_one()
            n, _ = self._failed.get(client, (0, 0.0))
            n += 1
            wait = 0.0 if n < FREE_ATTEMPTS else min(2.0 ** (n - FREE_ATTEMPTS + 1), LOCKOUT_MAX_S)
            self._failed[client] = (n, self.clock() + wait)

    def _forget_one(self) -> None:
        """Drop the client whose wait ends first (an ended one, if any)."""
        oldest = min(self._failed, key=lambda c: self._failed[c][1])
        del self._failed[oldest]

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failed.pop(client, None)


def client_of(request) -> str:
    return request.client.host if request.client else "?"


def too_many(wait_s: float) -> Response:
    return PlainTextResponse(f"too many wrong tokens; try again in {wait_s:.0f} s",
                             status_code=429, headers={"Retry-After": str(int(wait_s) + 1)})


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison; no or an empty token never matches."""
    if not given:
        return False
    return secrets.compare_digest(given.encode(), token.encode())


def set_token_cookie(resp: Response, token: str) -> None:
    resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")


class AccessGate(BaseHTTPMiddleware):
    """The Host check (no token) and the token gate (see the module docstring)."""

    def __init__(self, app, token: str | None, host: str, attempts: Attempts):
        super().__init__(app)
        self.token = token
        self.host = host_name(host)
        self.attempts = attempts

    async def dispatch(self, request, call_next):
        if not self.token:
            name = host_name(request.headers.get("host", ""))
            if not (is_loopback_name(name) or (name and name == self.host)):
                return PlainTextResponse(
                    "this dashboard answers only to 127.0.0.1, localhost or [::1] (the Host "
                    "header names another site); start it with --token to serve other names",
                    status_code=400)
            return await call_next(request)
        path = request.url.path
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIX):
            return await call_next(request)
        client = client_of(request)
        if self.attempts.wait_s(client) > 0:
            return too_many(self.attempts.wait_s(client))
        given = request.query_params.get("token")
        if given is not None:
            if not token_matches(given, self.token):
                self.attempts.failed(client)
            else:
                self.attempts.succeeded(client)
                rest = {k: v for k, v in request.query_params.items() if k != "token"}
                target = local_path(path) + (f"?{urlencode(rest)}" if rest else "")
                resp = RedirectResponse(target, status_code=303)
                set_token_cookie(resp, self.token)
                return resp
        cookie = request.cookies.get(TOKEN_COOKIE)
        if token_matches(cookie, self.token):
            return await call_next(request)
        if cookie:
            self.attempts.failed(client)
        if path.startswith("/api/"):
            return JSONResponse({"error": "token required"}, status_code=401)
        nxt = local_path(path) + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': nxt})}", status_code=303)
