"""Nimbus's HTTP/JSON API (stdlib ThreadingHTTPServer). Wire details are in nimbus.protocol.

    GET  /api/v1/nimbus                          this nimbus: id, leader?, leader_address
    GET  /api/v1/topologies                      {"topologies": [summary, ...]}
    GET  /api/v1/topologies/NAME                 status: summary, components, workers, errors
    POST /api/v1/topologies?name=N&owner=U&overrides=JSON
         body: cloudpickle of {"topology": Topology, "overrides": {...}}   -> summary
    POST /api/v1/topologies/NAME/kill            {"wait": secs}          -> summary
    POST /api/v1/topologies/NAME/activate        {}                      -> summary
    POST /api/v1/topologies/NAME/deactivate      {}                      -> summary
    POST /api/v1/topologies/NAME/rebalance       {"workers": n, "parallelism": {c: n},
                                                  "wait": secs}          -> summary

Errors are {"error": "one line"} with 400 (malformed request, invalid topology, action not
allowed), 401 (secret), 404 (unknown topology or path), 405, 409 (duplicate name), 413 (body
over `nimbus.code.max.bytes`), 500 (a bug), 503 (a standby: also "leader": "host:port").
"""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from cluster.config import Config
from cluster.state import StateError
from nimbus.protocol import (
    ACTIONS,
    AUTH_HEADER,
    NIMBUS,
    TOPOLOGIES,
    BadRequest,
    NimbusError,
    NotFound,
    NotLeader,
    SeenStamps,
    TooLarge,
    check_auth,
)

if TYPE_CHECKING:
    from nimbus.daemon import Nimbus

log = logging.getLogger(__name__)

DRAIN_LIMIT = 1 << 30  # read (and drop) an oversized body up to this, so the client sees 413
CHUNK = 1 << 16


class MethodNotAllowed(NimbusError):
    status = 405


class ApiServer(ThreadingHTTPServer):
    """The API server of one nimbus; requests are served on threads, `start()` runs it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, nimbus: Nimbus, config: Config) -> None:
        self.nimbus = nimbus
        self.secret: str | None = config["cluster.secret"]
        self.seen = SeenStamps()  # signatures already used: a replayed request is refused
        self.max_bytes = int(config["nimbus.code.max.bytes"])
        try:
            super().__init__((config["nimbus.host"], int(config["nimbus.port"])), Handler)
        except OSError as e:
            raise StateError(f"nimbus: cannot listen on {config['nimbus.host']}:"
                             f"{config['nimbus.port']}: {e.strerror}") from e
        self.port = int(self.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="nimbus-api", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: ApiServer
    protocol_version = "HTTP/1.1"
    server_version = "squall-nimbus"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("nimbus api: %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        try:
            body = self._read_body()
            check_auth(self.server.secret, self.headers.get(AUTH_HEADER), method, self.path,
                       body, time.time(), self.server.seen)
            status, reply = 200, self._route(method, body)
        except NotLeader as e:
            status, reply = e.status, {"error": str(e), "leader": e.leader}
        except NimbusError as e:
            status, reply = e.status, {"error": str(e)}
        except StateError as e:
            log.warning("nimbus api: %s %s: %s", method, self.path, e)
            status, reply = 503, {"error": f"cluster state unavailable: {e}", "leader": None}
        except Exception as e:  # a bug: answer, log, keep serving
            log.exception("nimbus api: %s %s failed", method, self.path)
            status, reply = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
        self._reply(status, reply)

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            raise BadRequest("bad Content-Length header") from None
        if length < 0:
            self.close_connection = True
            raise BadRequest("bad Content-Length header")
        limit = self.server.max_bytes
        if length > limit:
            self.close_connection = True
            if length <= DRAIN_LIMIT:  # so the client, still sending, can read our answer
                left = length
                while left > 0 and (chunk := self.rfile.read(min(CHUNK, left))):
                    left -= len(chunk)
            raise TooLarge(f"request of {length} bytes is over the limit of {limit} bytes "
                           f"(nimbus.code.max.bytes)")
        return self.rfile.read(length) if length else b""

    def _route(self, method: str, body: bytes) -> Any:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        base = TOPOLOGIES.strip("/").split("/")
        nimbus = self.server.nimbus
        if url.path.rstrip("/") == NIMBUS:
            self._allow(method, "GET")
            return nimbus.info()
        if parts[: len(base)] != base or len(parts) > len(base) + 2:
            raise NotFound(f"no such API path {url.path!r}")
        rest = parts[len(base):]
        if not rest:
            if method == "GET":
                return {"topologies": nimbus.list_topologies()}
            self._allow(method, "POST")
            query = parse_qs(url.query)
            return nimbus.submit(body, _one(query, "name"), _overrides(query),
                                 _one(query, "owner") or "unknown")
        if len(rest) == 1:
            self._allow(method, "GET")
            return nimbus.topology_status(rest[0])
        name, action = rest
        if action not in ACTIONS:
            raise NotFound(f"no such action {action!r}; expected one of {', '.join(ACTIONS)}")
        self._allow(method, "POST")
        args = _json_object(body)
        if action == "kill":
            return nimbus.kill(name, args.get("wait"))
        if action == "activate":
            return nimbus.activate(name)
        if action == "deactivate":
            return nimbus.deactivate(name)
        return nimbus.rebalance(name, args.get("workers"), args.get("parallelism") or {},
                                args.get("wait"))

    def _allow(self, method: str, allowed: str) -> None:
        if method != allowed:
            raise MethodNotAllowed(f"{method} is not allowed on {urlsplit(self.path).path}; "
                                   f"use {allowed}")

    def _reply(self, status: int, reply: Any) -> None:
        data = json.dumps(reply).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            log.debug("nimbus api: client went away before the reply")


def _one(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[-1] if values else None


def _overrides(query: dict[str, list[str]]) -> dict[str, Any]:
    raw = _one(query, "overrides")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise BadRequest(f"overrides: malformed JSON: {e}") from None
    if not isinstance(value, dict):
        raise BadRequest("overrides: expected a JSON object")
    return value


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"malformed JSON body: {e}") from None
    if not isinstance(value, dict):
        raise BadRequest(f"expected a JSON object, got {type(value).__name__}")
    return value
