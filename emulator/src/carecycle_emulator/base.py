"""API-neutral building blocks for local HTTP API emulators (standard library only).

A vendor emulator subclasses :class:`EmulatorBase` and supplies:

* :meth:`EmulatorBase.build_routes` - the vendor's routes on a :class:`Router`;
* :meth:`EmulatorBase.authenticate` - returns the credential used as the rate-limit key, or raises :class:`ApiError`;
* the vendor's error bodies (:meth:`~EmulatorBase.rate_limited_response`, :meth:`~EmulatorBase.fault_response`,
  :meth:`~EmulatorBase.not_found_response`, :meth:`~EmulatorBase.bad_json_response`);
* optionally :meth:`~EmulatorBase.describe_request` (extra request-log fields), :meth:`~EmulatorBase.build_admin_routes`
  (vendor admin routes under ``/_emulator/``), :meth:`~EmulatorBase.reset_state` and
  :meth:`~EmulatorBase.extra_counts`.

The base provides the threaded JSON server with start/stop/port plumbing, the request pipeline
(latency -> authentication -> per-key sliding-window rate limit -> fault injection -> handler), the request log,
seeded fault injection, and the generic admin routes (``POST /_emulator/reset``, ``POST /_emulator/config``,
``GET /_emulator/counts``, ``GET /_emulator/requests``, ``GET /_emulator/health``). Admin routes need no credential and
are never rate limited, faulted or logged.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

ADMIN_PREFIX = "/_emulator/"
log = logging.getLogger(__name__)
FAULT_KINDS = ("503", "500", "drop")


class ApiError(Exception):
    """Raised by handlers to answer with ``status`` and a JSON ``body``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class DropConnection(Exception):
    """Raised to close the client's socket without sending any response."""


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)
    credential: str | None = None
    principal: Any = None
    _json: Any = field(default=None, repr=False)
    _json_parsed: bool = field(default=False, repr=False)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body parsed as JSON; raises ``ValueError`` when it is not JSON."""
        if not self._json_parsed:
            self._json = json.loads(self.body.decode("utf-8")) if self.body else None
            self._json_parsed = True
        return self._json


@dataclass
class Response:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Response | dict | list]


class Router:
    """Maps (method, path pattern) to handlers. Patterns use ``{name}`` for one path segment."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern.rstrip("/")) + "/?$"
        self._routes.append((method.upper(), re.compile(regex), handler))

    def match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str]]:
        for route_method, regex, handler in self._routes:
            m = regex.match(path)
            if m and route_method == method:
                return handler, m.groupdict()
        return None, {}


class RequestLog:
    """Thread-safe, bounded log of API requests (dicts)."""

    def __init__(self, maxlen: int = 200_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.total = 0
        self.rate_limited = 0
        self.faults = 0

    def append(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._entries.append(entry)
            self.total += 1
            if entry.get("rate_limited"):
                self.rate_limited += 1
            if entry.get("fault"):
                self.faults += 1

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.total = self.rate_limited = self.faults = 0


class SlidingWindowRateLimiter:
    """Per-key sliding window: at most ``limit`` accepted requests in any ``window_s`` seconds.

    Rejected requests do not consume quota. ``limit <= 0`` disables limiting.
    """

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = int(limit)
        self.window_s = float(window_s)
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def configure(self, limit: int | None = None, window_s: float | None = None) -> None:
        with self._lock:
            if limit is not None:
                self.limit = int(limit)
            if window_s is not None:
                self.window_s = float(window_s)

    def hit(self, key: str) -> int | None:
        """Record one request for ``key``; return ``None`` if accepted, else whole seconds until a slot frees."""
        with self._lock:
            if self.limit <= 0:
                return None
            now = self._clock()
            hits = self._hits.setdefault(key, deque())
            cutoff = now - self.window_s
            while hits and hits[0] <= cutoff:
                hits.popleft()
            if len(hits) < self.limit:
                hits.append(now)
                return None
            wait = hits[0] + self.window_s - now
            return max(1, math.ceil(wait))

    def clear(self) -> None:
        with self._lock:
            self._hits.clear()


class FaultInjector:
    """Seeded random fault picker: ``pick()`` returns ``None`` or one of ``kinds``."""

    def __init__(self, rate: float = 0.0, kinds: Iterable[str] = FAULT_KINDS, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self.configure(rate, kinds)
        self.reseed(seed)

    def configure(self, rate: float | None = None, kinds: Iterable[str] | None = None) -> None:
        with self._lock:
            if rate is not None:
                if not 0.0 <= float(rate) <= 1.0:
                    raise ValueError(f"fault_rate must be within 0..1, got {rate}")
                self.rate = float(rate)
            if kinds is not None:
                kinds = tuple(kinds)
                unknown = set(kinds) - set(FAULT_KINDS)
                if unknown or not kinds:
                    raise ValueError(f"fault_kinds must be a non-empty subset of {FAULT_KINDS}, got {kinds}")
                self.kinds = kinds

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(f"faults:{seed}")

    def pick(self) -> str | None:
        with self._lock:
            if self.rate <= 0.0:
                return None
            if self._rng.random() < self.rate:
                return self._rng.choice(self.kinds)
            return None


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def server_activate(self) -> None:
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Close kept-alive client connections, so nothing is served after stop()."""
        with self.sockets_lock:
            sockets = list(self.open_sockets)
            self.open_sockets.clear()
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "EmulatorHTTP/1.0"
    timeout = 30  # idle keep-alive connections are closed after this
    emulator: EmulatorBase  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(
            method=self.command,
            path=split.path or "/",
            query=dict(parse_qsl(split.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = self.emulator.handle(request)
        except DropConnection:
            self.close_connection = True
            try:
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        payload = b"" if response.body is None else json.dumps(response.body, separators=(",", ":")).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch


_Emulator = TypeVar("_Emulator", bound="EmulatorBase")


class EmulatorBase:
    """A threaded local JSON API server with auth, rate limiting, fault injection and a request log."""

    #: request-log key carrying the last four characters of the credential
    credential_log_field = "credential_suffix"

    def __init__(
        self,
        *,
        rate_limit: int = 60,
        rate_window_s: float = 60.0,
        latency_ms: float = 0,
        fault_rate: float = 0.0,
        fault_kinds: Iterable[str] = FAULT_KINDS,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.seed = int(seed)
        self.latency_ms = float(latency_ms)
        self.rate_limiter = SlidingWindowRateLimiter(rate_limit, rate_window_s)
        self.faults = FaultInjector(fault_rate, fault_kinds, seed)
        self.log = RequestLog()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.router = Router()
        self.admin_router = Router()
        self.build_routes(self.router)
        self._build_base_admin_routes(self.admin_router)
        self.build_admin_routes(self.admin_router)

    # -- hooks for subclasses -------------------------------------------------------------------------------

    def build_routes(self, router: Router) -> None:
        """Register the vendor API's routes."""

    def build_admin_routes(self, router: Router) -> None:
        """Register vendor-specific admin routes (paths start with ``/_emulator/``)."""

    def authenticate(self, request: Request) -> str:
        """Return the credential (rate-limit key) or raise :class:`ApiError`. Default: no auth."""
        return "anonymous"

    def rate_limited_response(self, retry_after: int) -> Response:
        return Response(429, {"message": "Rate limit exceeded", "retryAfter": retry_after})

    def fault_response(self, kind: str) -> Response:
        return Response(int(kind), {"message": f"Injected fault {kind}"})

    def not_found_response(self, request: Request) -> Response:
        return Response(404, {"message": f"Route {request.method} {request.path} not found"})

    def internal_error_response(self, request: Request) -> Response:
        """Answer for an unexpected exception in a handler (an emulator bug): a 500, so clients never hang."""
        log.exception("Emulator handler failed for %s %s", request.method, request.path)
        return self.fault_response("500")

    def bad_json_response(self, request: Request) -> Response:
        return Response(400, {"message": "Request body is not valid JSON"})

    def describe_request(self, request: Request) -> dict[str, Any]:
        """Extra fields for this request's log entry (computed before auth, so faulted requests carry them)."""
        return {}

    def reset_state(self, **kwargs: Any) -> None:
        """Wipe and reseed the vendor data."""

    def extra_counts(self) -> dict[str, int]:
        return {}

    def configure_extra(self, kwargs: dict[str, Any]) -> None:
        """Apply vendor-specific runtime settings; raise ``TypeError`` for unknown ones."""
        if kwargs:
            raise TypeError(f"Unknown emulator settings: {sorted(kwargs)}")

    def on_start(self) -> None:
        """Called after the server listens."""

    def on_stop(self) -> None:
        """Called before the server stops."""

    # -- lifecycle ----------------------------------------------------------------------------------------

    def start(self: _Emulator) -> _Emulator:
        if self._server is not None:
            return self
        handler = type("BoundHandler", (_RequestHandler,), {"emulator": self})
        self._server = _Server((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"{type(self).__name__}-http"
        )
        self._thread.daemon = True
        self._thread.start()
        self.on_start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self.on_stop()
        self._server.shutdown()
        self._server.server_close()
        self._server.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("The emulator is not running; call start() first.")
        host = self.host if self.host not in ("0.0.0.0", "") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    def __enter__(self: _Emulator) -> _Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- runtime control -----------------------------------------------------------------------------------

    def configure(self, **kwargs: Any) -> None:
        """Change settings at runtime: rate_limit, rate_window_s, latency_ms, fault_rate, fault_kinds, ..."""
        self.rate_limiter.configure(kwargs.pop("rate_limit", None), kwargs.pop("rate_window_s", None))
        self.faults.configure(kwargs.pop("fault_rate", None), kwargs.pop("fault_kinds", None))
        if "latency_ms" in kwargs:
            self.latency_ms = float(kwargs.pop("latency_ms"))
        self.configure_extra(kwargs)

    def settings(self) -> dict[str, Any]:
        return {
            "rate_limit": self.rate_limiter.limit,
            "rate_window_s": self.rate_limiter.window_s,
            "latency_ms": self.latency_ms,
            "fault_rate": self.faults.rate,
            "fault_kinds": list(self.faults.kinds),
        }

    def reset(self, **kwargs: Any) -> None:
        """Wipe and reseed the data; also clears the request log and rate windows, and reseeds faults."""
        if "seed" in kwargs and kwargs["seed"] is not None:
            self.seed = int(kwargs["seed"])
        self.reset_state(**kwargs)
        self.log.clear()
        self.rate_limiter.clear()
        self.faults.reseed(self.seed)

    def request_log(self) -> list[dict[str, Any]]:
        return self.log.entries()

    def counts(self) -> dict[str, int]:
        out = dict(self.extra_counts())
        out.update({"requests": self.log.total, "rate_limited": self.log.rate_limited, "faults": self.log.faults})
        return out

    # -- request pipeline ----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path.startswith(ADMIN_PREFIX):
            return self._handle_admin(request)
        entry: dict[str, Any] = {
            "ts": utc_now_iso(),
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "status": None,
            self.credential_log_field: None,
            "fault": None,
            "rate_limited": False,
        }
        try:
            entry.update(self.describe_request(request))
        except Exception:  # never let logging break a request
            pass
        try:
            if self.latency_ms > 0:
                time.sleep(self.latency_ms / 1000.0)
            response = self._pipeline(request, entry)
        except DropConnection:
            entry["status"] = None
            self.log.append(entry)
            raise
        entry["status"] = response.status
        self.log.append(entry)
        return response

    def _pipeline(self, request: Request, entry: dict[str, Any]) -> Response:
        try:
            credential = self.authenticate(request)
        except ApiError as err:
            return Response(err.status, err.body)
        request.credential = credential
        entry[self.credential_log_field] = credential[-4:] if credential else None
        retry_after = self.rate_limiter.hit(credential)
        if retry_after is not None:
            entry["rate_limited"] = True
            return self.rate_limited_response(retry_after)
        fault = self.faults.pick()
        if fault is not None:
            entry["fault"] = fault
            if fault == "drop":
                raise DropConnection()
            return self.fault_response(fault)
        handler, params = self.router.match(request.method, request.path)
        if handler is None:
            return self.not_found_response(request)
        request.path_params = params
        return self._call(handler, request)

    def _call(self, handler: Handler, request: Request) -> Response:
        try:
            result = handler(request)
        except ApiError as err:
            return Response(err.status, err.body)
        except ValueError:
            # body that is not JSON (json.loads raised inside the handler)
            if request.method in ("POST", "PUT", "PATCH") and not _is_json(request.body):
                return self.bad_json_response(request)
            if request.path.startswith(ADMIN_PREFIX):
                raise
            return self.internal_error_response(request)
        except Exception:
            if request.path.startswith(ADMIN_PREFIX):
                raise
            return self.internal_error_response(request)
        return result if isinstance(result, Response) else Response(200, result)

    # -- admin API -----------------------------------------------------------------------------------------

    def _handle_admin(self, request: Request) -> Response:
        handler, params = self.admin_router.match(request.method, request.path)
        if handler is None:
            return Response(404, {"message": f"Unknown admin route {request.method} {request.path}"})
        request.path_params = params
        try:
            return self._call(handler, request)
        except (TypeError, ValueError, KeyError) as err:
            return Response(400, {"message": str(err)})
        except Exception as err:
            log.exception("Emulator admin route failed: %s %s", request.method, request.path)
            return Response(500, {"message": repr(err)})

    @staticmethod
    def admin_body(request: Request) -> dict[str, Any]:
        body = request.json() if request.body else {}
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ValueError("Admin request body must be a JSON object")
        return body

    def _build_base_admin_routes(self, router: Router) -> None:
        def reset(req: Request) -> Response:
            self.reset(**self.admin_body(req))
            return Response(200, {"ok": True, "counts": self.counts()})

        def config(req: Request) -> Response:
            self.configure(**self.admin_body(req))
            return Response(200, {"ok": True, "settings": self.settings()})

        router.add("GET", "/_emulator/health", lambda req: {"ok": True})
        router.add("POST", "/_emulator/reset", reset)
        router.add("POST", "/_emulator/config", config)
        router.add("GET", "/_emulator/config", lambda req: self.settings())
        router.add("GET", "/_emulator/counts", lambda req: self.counts())
        router.add("GET", "/_emulator/requests", lambda req: self.request_log())


def _is_json(body: bytes) -> bool:
    try:
        json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return False
    return True
