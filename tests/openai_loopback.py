"""A loopback HTTP server speaking enough of the OpenAI chat-completions API
(POST /v1/chat/completions, GET /v1/models) for the real openai SDK, scriptable per request.

    with OpenAILoopback([rate_limited("1"), ok("4")]) as server:
        provider = OpenAICompatProvider(base_url=server.base_url, model="m", ...)

Replies are consumed in order, one per chat request; when the script is empty `default`
answers (or a function of the request body, `respond`). Every chat request is recorded in
`server.requests` (path, lower-cased headers, JSON body). Binds 127.0.0.1 on a random
port, serves each request on its own thread, and stops itself after `lifetime_s`.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from loopback_http import LoopbackHTTP

_ids = itertools.count(1)


@dataclass
class Reply:
    status: int = 200
    text: str | None = "Hello from the loopback server."
    prompt_tokens: int = 12
    completion_tokens: int = 7
    tool_calls: list[dict] | None = None     # [{"id", "type", "function": {name, arguments}}]
    finish_reason: str = "stop"
    refusal: str | None = None
    message: str = ""                        # error message (status != 200)
    headers: dict[str, str] = field(default_factory=dict)
    model: str | None = None                 # None: echo the request's model


def ok(text: str = "Hello from the loopback server.", prompt_tokens: int = 12,
       completion_tokens: int = 7, model: str | None = None) -> Reply:
    return Reply(200, text, prompt_tokens, completion_tokens, model=model)


def calls(*uses: tuple[str, dict | str], text: str | None = None) -> Reply:
    """Tool calls: (name, arguments) pairs; a str argument is sent as is (maybe not JSON)."""
    tool_calls = [{"id": f"call_loop_{next(_ids)}", "type": "function",
                   "function": {"name": name,
                                "arguments": a if isinstance(a, str) else json.dumps(a)}}
                  for name, a in uses]
    return Reply(200, text, 40, 20, tool_calls=tool_calls, finish_reason="tool_calls")


def refusal(text: str = "I can't help with that.") -> Reply:
    return Reply(200, None, 10, 3, refusal=text)


def rate_limited(retry_after: str | None = "1") -> Reply:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    return Reply(429, message="Rate limit reached", headers=headers)


def server_error() -> Reply:
    return Reply(500, message="Internal server error")


def planner(body) -> Reply:
    """A model that plans one calculator call, then answers 403 (a `respond` function)."""
    if body.get("tool_choice") == "auto":
        return calls(("calculator", {"expression": "24 * 17 - 5"}))
    return ok("There are 403 bottles.\nAnswer: 403", 50, 8)


class OpenAILoopback(LoopbackHTTP):
    def __init__(self, script=(), *, default: Reply | None = None, respond=None,
                 models: tuple[str, ...] = ("loopback-model",), lifetime_s: float = 120.0):
        self._script: deque[Reply] = deque(script)
        self.default = default or ok()
        self.respond = respond            # body -> Reply, used when the script is empty
        self.models = list(models)
        self.requests: list[dict] = []
        self.model_lists = 0              # GET /models served
        self._lock = threading.Lock()
        self._lifetime_s = lifetime_s
        self._httpd: ThreadingHTTPServer | None = None
        self._timer: threading.Timer | None = None

    def push(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def _next_reply(self, record: dict) -> Reply:
        with self._lock:
            self.requests.append(record)
            if self._script:
                return self._script.popleft()
        return self.respond(record["body"]) if self.respond else self.default

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> OpenAILoopback:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: dict, headers: dict[str, str]) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.split("?")[0] != "/v1/models":
                    self._send(404, _error("not found"), {})
                    return
                with server._lock:
                    server.model_lists += 1
                self._send(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "loopback"}
                    for m in server.models]}, {})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = None
                if self.path.split("?")[0] != "/v1/chat/completions":
                    self._send(404, _error(f"no route {self.path}"), {})
                    return
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = server._next_reply({"path": self.path, "headers": headers,
                                            "body": body})
                if reply.status != 200:
                    self._send(reply.status, _error(reply.message), reply.headers)
                    return
                message = {"role": "assistant", "content": reply.text,
                           "refusal": reply.refusal}
                if reply.tool_calls:
                    message["tool_calls"] = reply.tool_calls
                self._send(200, {
                    "id": f"chatcmpl-loop-{next(_ids)}", "object": "chat.completion",
                    "created": 0, "model": reply.model or (body or {}).get("model", "x"),
                    "choices": [{"index": 0, "message": message,
                                 "finish_reason": reply.finish_reason}],
                    "usage": {"prompt_tokens": reply.prompt_tokens,
                              "completion_tokens": reply.completion_tokens,
                              "total_tokens": reply.prompt_tokens + reply.completion_tokens},
                }, reply.headers)

        return self._serve(Handler)


def bearer(headers: dict[str, str]) -> str | None:
    auth = headers.get("authorization", "")
    return auth[len("Bearer "):] if auth.startswith("Bearer ") else None


def _error(message: str) -> dict:
    return {"error": {"message": message, "type": "loopback_error", "code": None}}
