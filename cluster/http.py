"""The small HTTP/1.1 server under nimbus's API and the dashboard (over stdlib http.server).

- Routing: `Router.add("POST", "/api/v1/topologies/{name}/kill", fn)`; no matching path is
  404, a path matched only with other methods 405 (with `Allow`). Segments are percent-decoded
  one by one ("%2F" stays inside its segment).
- One error shape: JSON `{"error": message, "errorMessage": message, ...extra}` ("error" is
  what nimbus's client reads, with "leader" on a standby's 503; "errorMessage" is Storm UI's
  name). Handlers raise `HttpError`, or the server's `translate()` maps its own exceptions;
  anything else is logged and answered 500.
- Bounded before anyone knows who the client is: at most `max_connections` connections (more
  are answered 503 and closed by the accepting thread); a connection silent for `idle_secs` is
  closed; a request's line and headers must arrive within `request_secs` of their first byte
  and fit in MAX_HEAD_BYTES; `Transfer-Encoding` is refused (411), so a proxy and this server
  always agree where a request ends.
- Bodies: `authenticate()` sees the line and headers first; then the Content-Length is held
  to the route's limit (413); only then is the body read, within `request_secs` plus a second
  per MIN_BODY_RATE bytes. A body left unread by an error is drained (discarded, bounded) so
  a client still sending can read the answer; `Expect: 100-continue` is honoured only after
  `authenticate()`.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cluster.config import KEYS
from topology.errors import SquallError

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # the request line and headers
MIN_BODY_RATE = 256 * 1024  # bytes/s a client must sustain while sending a body
DRAIN_LIMIT = 1 << 30  # an unread body up to this is drained so the client sees our answer
CHUNK = 1 << 16
BUSY_WARN_SECS = 10.0  # at most one "too many connections" warning this often


class HttpError(SquallError):
    """An answer other than 200: its status, one-line message, headers and extra JSON fields."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


@dataclass(frozen=True)
class Limits:
    """What one connection may cost the server; see the module doc."""

    idle_secs: float = 10.0
    request_secs: float = 30.0
    max_connections: int = 64
    max_body: int = 64 * 1024  # the default for routes that set none

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, prefix: str,
                    max_body: int = 64 * 1024) -> Limits:
        """From `<prefix>.idle.timeout.secs`, `.request.timeout.secs`, `.max.connections`
        (registry defaults for keys `config` lacks)."""
        def get(name: str) -> Any:
            key = f"{prefix}.{name}"
            return (config or {}).get(key, KEYS[key].default)

        return cls(float(get("idle.timeout.secs")), float(get("request.timeout.secs")),
                   int(get("max.connections")), max_body)


@dataclass
class Request:
    """One request as a route handler sees it. `target` is the request target exactly as
    sent (query included); `params` the route's {placeholders}; `query` the last value of
    each query parameter; `auth` whatever `authenticate()` left for `after_body()`."""

    method: str
    target: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    headers: Any  # email.message.Message
    client: str
    body: bytes = b""
    auth: Any = None


@dataclass
class Response:
    """A non-JSON answer (a page, a script, metrics text)."""

    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Any]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: tuple[str, ...]
    handler: Handler
    max_body: int | None = None  # None: the server's Limits.max_body
    limit_name: str = ""  # the config key behind max_body, named in a 413
    auth: bool = True  # whether the server's authenticate() applies


class Router:
    """Routes by method and path; `{name}` in a pattern matches one non-empty segment."""

    def __init__(self) -> None:
        self._routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, **options: Any) -> None:
        self._routes.append(Route(method, split_path(pattern), handler, **options))

    def match(self, method: str, parts: tuple[str, ...]) -> tuple[Route, dict[str, str]]:
        allowed: list[str] = []
        for route in self._routes:
            params = _match(route.pattern, parts)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed.append(route.method)
        shown = "/" + "/".join(parts)
        if allowed:
            methods = ", ".join(sorted(set(allowed)))
            raise HttpError(405, f"{method} is not allowed on {shown}; use {methods}",
                            {"Allow": methods})
        raise HttpError(404, f"no such path {shown!r}")


def _match(pattern: tuple[str, ...], parts: tuple[str, ...]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params = {}
    for want, got in zip(pattern, parts, strict=True):
        if want.startswith("{") and want.endswith("}"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def split_path(path: str) -> tuple[str, ...]:
    """"/a/b%2Fc/" -> ("a", "b/c"): segments, percent-decoded one by one; "/" -> ()."""
    if not path.startswith("/"):
        raise HttpError(400, "malformed request target")
    parts = path[1:].split("/")
    if parts and parts[-1] == "":
        parts.pop()
    try:
        return tuple(unquote(p, errors="strict") for p in parts)
    except UnicodeDecodeError:
        raise HttpError(400, "malformed path (bad percent-encoding)") from None


def error_body(message: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return {"error": message, "errorMessage": message, **(extra or {})}


def json_bytes(data: Any) -> bytes:
    return json.dumps(data, allow_nan=False, default=str).encode()


# --- the server ---------------------------------------------------------------------------------


class Server(ThreadingHTTPServer):
    """Serves `router` on `address` within `limits`, one thread per connection.

    Subclasses override `authenticate()` (runs before the body is read), `after_body()` and
    `translate()` (their exceptions as HttpError), and may set `software` and `headers`.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    software = "squall"
    headers: Mapping[str, str] = MappingProxyType({})  # sent with every answer

    def __init__(self, address: tuple[str, int], router: Router, limits: Limits,
                 name: str) -> None:
        self.router = router
        self.limits = limits
        self.name = name
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._last_busy_warning = 0.0
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"{self.name}-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()

    # --- hooks --------------------------------------------------------------------------------

    def authenticate(self, request: Request, route: Route) -> None:
        """Raise HttpError unless the request line and headers may proceed to the body."""

    def after_body(self, request: Request, route: Route) -> None:
        """Raise HttpError unless the body read matches what was authenticated."""

    def translate(self, error: Exception) -> HttpError | None:
        """The answer for an exception a handler raised, or None for a 500."""
        return None

    # --- connections --------------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self._refuse_busy(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _refuse_busy(self, request: socket.socket, client_address: Any) -> None:
        now = time.monotonic()
        if now - self._last_busy_warning >= BUSY_WARN_SECS:
            self._last_busy_warning = now
            log.warning("%s: %d connections open (the most allowed): refusing %s", self.name,
                        self.limits.max_connections, client_address[0])
        body = json_bytes(error_body(f"{self.name}: too many connections; retry later"))
        head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
        try:
            request.setblocking(False)  # never wait on this client in the accepting thread
            request.send(head.encode() + body)
        except OSError:
            pass
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: connection from %s failed", self.name, client_address, exc_info=True)


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose reads wait at most `idle` seconds each and fail once
    the current request's deadline has passed; it counts the bytes of a request's head and
    reports EOF past MAX_HEAD_BYTES (`head_overflow`)."""

    def __init__(self, sock: socket.socket, limits: Limits) -> None:
        self.sock = sock
        self.limits = limits
        self.new_request()

    def new_request(self) -> None:
        """Wait (up to `idle`) for the next request; its deadline starts at its first byte."""
        self.deadline: float | None = None
        self.in_head = True
        self.head_bytes = 0
        self.head_overflow = False

    def start_body(self, length: int) -> None:
        self.in_head = False
        start = self.deadline if self.deadline is not None else time.monotonic()
        self.deadline = start + self.limits.request_secs + length / MIN_BODY_RATE

    def start_drain(self) -> None:
        self.in_head = False
        self.deadline = time.monotonic() + self.limits.request_secs

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.in_head and self.head_bytes >= MAX_HEAD_BYTES:
            self.head_overflow = True
            return 0
        timeout = self.limits.idle_secs
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request was not received in time")
            timeout = min(timeout, left)
        self.sock.settimeout(timeout)
        n = self.sock.recv_into(buffer)
        if n and self.deadline is None:
            self.deadline = time.monotonic() + self.limits.request_secs
        if self.in_head:
            self.head_bytes += n
        return n


class _Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # the plain makefile(): reads go through the deadline reader
        self._reader = _DeadlineReader(self.connection, self.server.limits)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        self._reader.new_request()
        self._unread = 0  # body bytes still on the socket
        self._expect_continue = False
        super().handle_one_request()

    def handle_expect_100(self) -> bool:
        self._expect_continue = True  # answered in _read_body, once authenticated
        return True

    def version_string(self) -> str:
        return self.server.software

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: %s %s", self.server.name, self.address_string(), format % args)

    def _dispatch(self) -> None:
        try:
            self._answer(self._serve())
        except HttpError as e:
            self._answer_error(e)
        except Exception as e:  # a handler failed: its server may know what it means
            error = self.server.translate(e)
            if error is None:
                log.exception("%s: %s %s failed", self.server.name, self.command, self.path)
                error = HttpError(500, f"internal error: {type(e).__name__}: {e}")
            self._answer_error(error)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _serve(self) -> Any:
        if self._reader.head_overflow:
            raise HttpError(431, f"request line and headers over {MAX_HEAD_BYTES} bytes")
        if "Transfer-Encoding" in self.headers:
            raise HttpError(411, "Transfer-Encoding is not accepted: send the body with a "
                                 "Content-Length")
        self._unread = self._content_length()
        url = urlsplit(self.path)
        route, params = self.server.router.match(self.command, split_path(url.path))
        request = Request(self.command, self.path, url.path, params, _query(url.query),
                          self.headers, self.client_address[0])
        if route.auth:
            self.server.authenticate(request, route)
        limit = self.server.limits.max_body if route.max_body is None else route.max_body
        if self._unread > limit:
            named = f" ({route.limit_name})" if route.limit_name else ""
            raise HttpError(413, f"request of {self._unread} bytes is over the limit of "
                                 f"{limit} bytes{named}")
        request.body = self._read_body()
        if route.auth:
            self.server.after_body(request, route)
        return route.handler(request)

    def _content_length(self) -> int:
        values = self.headers.get_all("Content-Length") or []
        if len(set(values)) > 1:
            raise HttpError(400, "conflicting Content-Length headers")
        text = values[0].strip() if values else "0"
        if not text.isdigit() or len(text) > 18:
            raise HttpError(400, f"bad Content-Length header {text[:40]!r}")
        return int(text)

    def _read_body(self) -> bytes:
        length, self._unread = self._unread, 0
        if not length:
            return b""
        if self._expect_continue:
            self.send_response_only(100)
            self.end_headers()
        self._reader.start_body(length)
        try:
            data = self.rfile.read(length)
        except TimeoutError:
            log.info("%s: %s sent its request body too slowly: dropped", self.server.name,
                     self.client_address[0])
            raise HttpError(408, "request body not received in time") from None
        except OSError as e:  # the client went away: the answer will not reach it either
            raise HttpError(400, f"request body not received: {e}") from None
        if len(data) < length:
            raise HttpError(400, f"request body ended after {len(data)} of {length} bytes")
        return data

    def _drain(self) -> None:
        """Discard the unread body (bounded) so that the client can read our answer."""
        left, self._unread = self._unread, 0
        if not left or left > DRAIN_LIMIT or self._expect_continue:
            return  # an Expect: 100-continue client sends no body unless told to
        self._reader.start_drain()
        try:
            while left > 0 and (chunk := self.rfile.read(min(CHUNK, left))):
                left -= len(chunk)
        except OSError:  # timed out or gone: the answer is sent anyway, then we close
            pass

    # --- answers ------------------------------------------------------------------------------

    def _answer(self, result: Any) -> None:
        if isinstance(result, Response):
            self._send(result.status, result.body, result.content_type, result.headers)
        else:
            self._send(200, json_bytes(result), "application/json", {})

    def _answer_error(self, error: HttpError) -> None:
        self._drain()
        self.close_connection = True  # what follows on this connection is not trusted
        self._send(error.status, json_bytes(error_body(str(error), error.extra)),
                   "application/json", error.headers)

    def _send(self, status: int, body: bytes, content_type: str,
              headers: Mapping[str, str]) -> None:
        try:
            self.connection.settimeout(self.server.limits.idle_secs)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                         **self.server.headers, **headers}.items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:
            self.close_connection = True
            log.debug("%s: %s went away before the answer", self.server.name,
                      self.client_address[0])

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The stdlib's own refusals (bad request line, unknown method, long headers)."""
        status = 405 if code == 501 else code  # an unknown method is the client's mistake
        if self.request_version == "HTTP/0.9":  # garbage: still answer with a status line
            self.request_version = "HTTP/1.0"
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        self._answer_error(HttpError(status, message or explain or phrase or "bad request"))


def _query(text: str) -> dict[str, str]:
    try:
        query = parse_qs(text, keep_blank_values=True, max_num_fields=50, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise HttpError(400, "malformed query string") from None
    return {k: v[-1] for k, v in query.items()}
