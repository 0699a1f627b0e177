"""A scriptable hostile HTTP server on loopback, for the adversarial suite (not part of the emulator).

A test queues what the next requests get (:class:`Reply`, :class:`Redirect`, :class:`DropMidBody`,
:class:`Trickle`, :class:`Forward`, :class:`ForwardThenReply`, :class:`ForwardThenDrop`, :class:`ForwardThenStall`);
once the queue is empty every request gets the server's ``default`` action (forward to an upstream emulator when one
is given, else a 500).
Every request is recorded with its headers and body (and, when forwarded, the upstream's status), so a test can
assert what reached the server, e.g. that no redirect target ever saw the API key.

.. code-block:: python

    with HostileServer(upstream=emulator.url) as server:
        server.queue(Reply(200, {}), Redirect(307, "http://127.0.0.2:9/steal"))
        ...
        assert all("x-api-key" not in r.headers for r in other.requests)
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """Answer ``status`` with ``body`` (a dict/list/None is sent as JSON, ``str``/``bytes`` as is)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Redirect:
    """Answer a 3xx pointing at ``location``."""

    status: int
    location: str


@dataclass
class DropMidBody:
    """Announce ``Content-Length`` of the full body, send only ``sent`` bytes of it, then close the connection."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"succeeded": 1, "failed": 0, "errors": []})
    sent: int = 5


@dataclass
class Trickle:
    """Send a 200 JSON body one byte every ``every_s`` seconds (a server that never quite times out).

    ``written`` counts the bytes of the body sent so far (until the client hangs up or the body is complete).
    """

    body: Any = field(default_factory=lambda: {"items": [], "nextPage": None})
    every_s: float = 0.2
    written: int = field(default=0, init=False)


@dataclass
class Forward:
    """Send the request on to ``upstream`` (default: the server's upstream) and relay its answer."""

    upstream: str | None = None


@dataclass
class ForwardThenReply:
    """Send the request on to the upstream (which acts on it), discard its answer and answer ``reply`` instead.

    An upstream that did the work but whose answer the client never sees: e.g. leads stored, answer ``{}``.
    """

    reply: Reply
    upstream: str | None = None


@dataclass
class ForwardThenDrop:
    """Send the request on to the upstream (which acts on it), then relay only ``sent`` bytes of its answer
    (announcing the full ``Content-Length``) and close the connection: the work is done, the answer lost."""

    sent: int = 5
    upstream: str | None = None


@dataclass
class ForwardThenStall:
    """Send the request on to the upstream (which acts on it), then hold the answer back for ``stall_s`` seconds
    before relaying it: a client with a shorter timeout gives up on a request careCycle has already carried out."""

    stall_s: float = 5.0
    upstream: str | None = None


Action = Reply | Redirect | DropMidBody | Trickle | Forward | ForwardThenReply | ForwardThenDrop | ForwardThenStall


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: the status the upstream answered when the request was forwarded (``None``: not forwarded)
    upstream_status: int | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Script = Callable[[Recorded], Action | None]


def _encode(body: Any) -> tuple[bytes, str]:
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain"
    return json.dumps(body).encode(), "application/json"


class HostileServer:
    """A loopback HTTP server whose answers a test scripts.

    :param upstream: base URL to forward to by default (e.g. an emulator's ``url``).
    :param script: called for every request after the queue is empty; returns the action (``None``: default).
    """

    def __init__(self, upstream: str | None = None, script: Script | None = None) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.script = script
        self.requests: list[Recorded] = []
        self._queue: deque[Action] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="hostile-server", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def queue(self, *actions: Action) -> None:
        """Answer the next requests with ``actions``, in order."""
        with self._lock:
            self._queue.extend(actions)

    def start(self) -> HostileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_action(self, request: Recorded) -> Action:
        with self._lock:
            self.requests.append(request)
            if self._queue:
                return self._queue.popleft()
        action = self.script(request) if self.script else None
        if action is not None:
            return action
        return Forward() if self.upstream else Reply(500, {"message": "hostile server: nothing scripted"})

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return None

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                action = server._next_action(request)
                if isinstance(action, Forward):
                    status, headers, data = self._forward(action.upstream or server.upstream, request)
                    self._relay(status, headers, data)
                elif isinstance(action, ForwardThenReply):
                    self._forward(action.upstream or server.upstream, request)
                    self._reply(action.reply)
                elif isinstance(action, ForwardThenStall):
                    status, headers, data = self._forward(action.upstream or server.upstream, request)
                    time.sleep(action.stall_s)
                    try:
                        self._relay(status, headers, data)
                    except OSError:  # the client gave up
                        self.close_connection = True
                elif isinstance(action, ForwardThenDrop):
                    status, headers, data = self._forward(action.upstream or server.upstream, request)
                    self._relay(status, headers, data, sent=action.sent)
                elif isinstance(action, Redirect):
                    self.send_response(action.status)
                    self.send_header("Location", action.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif isinstance(action, DropMidBody):
                    data, kind = _encode(action.body)
                    self.send_response(action.status)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: action.sent])
                    self.wfile.flush()
                    self.close_connection = True
                elif isinstance(action, Trickle):
                    data, kind = _encode(action.body)
                    self.send_response(200)
                    self.send_header("Content-Type", kind)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    try:
                        for byte in data:
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            action.written += 1
                            time.sleep(action.every_s)
                    except OSError:
                        pass
                    self.close_connection = True
                else:
                    self._reply(action)

            def _reply(self, action: Reply) -> None:
                data, kind = _encode(action.body) if action.body is not None else (b"", "application/json")
                self.send_response(action.status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                for name, value in action.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _forward(self, upstream: str | None, request: Recorded) -> tuple[int, list[tuple[str, str]], bytes]:
                if not upstream:
                    raise RuntimeError("Forward with no upstream")
                host_port = upstream.split("://", 1)[1]
                conn = http.client.HTTPConnection(host_port, timeout=30)
                headers = {k: v for k, v in request.headers.items() if k not in ("host", "connection")}
                try:
                    conn.request(request.method, request.path, body=request.body or None, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                request.upstream_status = answer.status
                return answer.status, answer.getheaders(), data

            def _relay(self, status: int, headers: list[tuple[str, str]], data: bytes, sent: int | None = None) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data if sent is None else data[:sent])
                if sent is not None:
                    self.wfile.flush()
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        return Handler
