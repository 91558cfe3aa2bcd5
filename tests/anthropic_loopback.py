"""A loopback HTTP server that speaks enough of the Anthropic Messages API
(POST /v1/messages) for the real anthropic SDK, scriptable per request.

    with LoopbackServer([rate_limited(retry_after="1"), ok("4")]) as server:
        provider = CloudProvider(api_key="test", base_url=server.url, ...)

A reply may carry tool_use blocks (`tool_use(...)`, `calls(...)`) and any stop_reason
(`refusal()`), so the native tool-use loop can be driven through the real SDK.
Replies are consumed in order, one per request; when the script is empty the `default`
reply answers. Every request is recorded in `server.requests` (path, lower-cased headers, JSON body).
The server binds 127.0.0.1 on a random port, serves each request on its own thread, and
stops itself after `lifetime_s` even if a test forgets to.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopback_http import LoopbackHTTP


@dataclass
class Reply:
    status: int = 200
    text: str = "Hello from the loopback server."
    input_tokens: int = 12
    output_tokens: int = 7
    error_type: str | None = None
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    blocks: list[dict] | None = None     # content blocks; None: one text block of `text`
    stop_reason: str = "end_turn"


def ok(text: str = "Hello from the loopback server.", input_tokens: int = 12, output_tokens: int = 7) -> Reply:
    return Reply(200, text, input_tokens, output_tokens)


def calls(*uses: tuple[str, dict], text: str = "", input_tokens: int = 40, output_tokens: int = 20) -> Reply:
    """A reply asking for tool calls: (name, input) pairs, optionally after some text."""
    blocks = [{"type": "text", "text": text}] if text else []
    blocks += [{"type": "tool_use", "id": f"toolu_loopback_{next(_ids)}", "name": name, "input": inp}
               for name, inp in uses]
    return Reply(200, text, input_tokens, output_tokens, blocks=blocks, stop_reason="tool_use")


def tool_use(name: str, inp: dict, text: str = "") -> Reply:
    return calls((name, inp), text=text)


def refusal(text: str = "") -> Reply:
    """The model declines: stop_reason 'refusal', maybe with no text at all."""
    blocks = [{"type": "text", "text": text}] if text else []
    return Reply(200, text, 10, 1, blocks=blocks, stop_reason="refusal")


def rate_limited(retry_after: str | None = "1") -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Reply(429, error_type="rate_limit_error", message="Number of requests has exceeded your rate limit", headers=headers)


def server_error() -> Reply:
    return Reply(500, error_type="api_error", message="Internal server error")


def overloaded() -> Reply:
    return Reply(529, error_type="overloaded_error", message="Overloaded")


def auth_error() -> Reply:
    return Reply(401, error_type="authentication_error", message="invalid x-api-key")


_ids = itertools.count(1)


class LoopbackServer(LoopbackHTTP):
    def __init__(self, script=(), *, default: Reply | None = None, lifetime_s: float = 60.0):
        self._script: deque[Reply] = deque(script)
        self.default = default or ok()
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._lifetime_s = lifetime_s
        self._httpd: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None

    # -- scripting ---------------------------------------------------------------
    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def _next_reply(self, record: dict) -> Reply:
        with self._lock:
            self.requests.append(record)
            return self._script.popleft() if self._script else self.default

    # -- lifecycle ---------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def _send_json(self, status: int, payload: dict, headers: dict[str, str]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.send_header("request-id", f"req_loopback_{next(_ids)}")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                if self.path.split("?")[0] != "/v1/messages":
                    self._send_json(404, _error_body("not_found_error", f"no route {self.path}"), {})
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                record = {"path": self.path, "headers": headers, "body": body}
                reply = server._next_reply(record)
                if reply.status != 200:
                    self._send_json(reply.status, _error_body(reply.error_type or "api_error", reply.message), reply.headers)
                    return
                payload = {
                    "id": f"msg_loopback_{next(_ids)}",
                    "type": "message",
                    "role": "assistant",
                    "content": reply.blocks if reply.blocks is not None
                    else [{"type": "text", "text": reply.text}],
                    "model": (body or {}).get("model", "claude-loopback"),
                    "stop_reason": reply.stop_reason,
                    "stop_sequence": None,
                    "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
                }
                self._send_json(200, payload, reply.headers)

        return self._serve(Handler)


def sent_api_key(headers: dict[str, str]) -> str | None:
    """The key a request carried: x-api-key, or a bearer token (newer SDKs send that)."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else None


def _error_body(error_type: str, message: str) -> dict:
    return {"type": "error", "error": {"type": error_type, "message": message}}
