"""The dashboard's HTTP server (stdlib ThreadingHTTPServer): static page, REST API, metrics.

    GET  /                                       the page (static/index.html, app.js, style.css)
    GET  /api/v1/cluster/summary                 ui.api.cluster_summary
    GET  /api/v1/cluster/configuration           this server's config, without the secret
    GET  /api/v1/nimbus/summary                  ui.api.nimbus_summary
    GET  /api/v1/supervisor/summary              ui.api.supervisor_summary
    GET  /api/v1/topology/summary                ui.api.topology_summary
    GET  /api/v1/topology/ID?window=&sys=        ui.api.topology_page
    GET  /api/v1/topology/ID/component/C?window= ui.api.component_page
    GET  /api/v1/topology/ID/live                graph with rates and throughput (Squall's own)
    POST /api/v1/topology/ID/activate|deactivate
    POST /api/v1/topology/ID/kill[/WAIT]         WAIT seconds, default topology.message.timeout
    POST /api/v1/topology/ID/rebalance[/WAIT]    {"rebalanceOptions": {"numWorkers": n,
                                                  "executors": {"component": n}}}
    GET  /metrics                                Prometheus text format

POSTs need the cluster secret (header `X-Squall-Secret`, or form field `secret`; compared in
constant time; 401 when missing, 403 when wrong, 403 when no secret is configured at all) and
are refused (403) when the browser says they come from another site (Origin, Referer or
Sec-Fetch-Site). The page sends the secret in the header, which a cross-site form cannot
set. Errors are JSON {"error", "errorMessage"} with a 4xx status for anything the client got
wrong; nothing a client sends makes a 500.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cluster.state import ClusterState, StateError
from ui import api, metrics
from ui.actions import Actions
from ui.api import ApiError, NotFound
from ui.history import History, live_view
from ui.stats import WINDOW_10M, component_figures

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATIC = {"/": "index.html", "/index.html": "index.html", "/app.js": "app.js",
          "/style.css": "style.css", "/favicon.svg": "favicon.svg"}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECRET_HEADER = "X-Squall-Secret"
MAX_BODY = 64 * 1024
MAX_WAIT_SECS = 24 * 3600
SAMPLE_SECS = 2.0
PREFIX = ("api", "v1")


class HttpError(ApiError):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


class UiServer(ThreadingHTTPServer):
    """Serves the dashboard for `state`; `start()` runs it and its sampler on threads."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, state: ClusterState, actions: Actions, host: str, port: int,
                 secret: str | None, mode: str = "cluster",
                 config: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time,
                 sample_secs: float = SAMPLE_SECS) -> None:
        super().__init__((host, port), Handler)
        self.state = state
        self.actions = actions
        self.secret = secret
        self.mode = mode
        self.config = {k: v for k, v in (config or {}).items() if k != "cluster.secret"}
        self.clock = clock
        self.sample_secs = sample_secs
        self.history = History()
        self._stop = threading.Event()
        self._background: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def start(self) -> UiServer:
        for target, name in ((self.serve_forever, "ui-http"), (self._sample, "ui-sampler")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._background.append(thread)
        log.info("ui: serving on %s", self.url)
        return self

    def close(self) -> None:
        self._stop.set()
        if self._background:
            self.shutdown()
        for thread in self._background:
            thread.join(timeout=5)
        self.server_close()

    def sample_once(self) -> None:
        ids = list(self.state.topologies())
        for tid in ids:
            self.history.add(tid, self.clock(), self.state.worker_heartbeats(tid).values())
        self.history.keep_only(ids)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # the state may be unreachable for a while: keep sampling
                log.warning("ui: sampling the cluster state failed", exc_info=True)
            self._stop.wait(self.sample_secs)


# --- request parsing helpers ------------------------------------------------------------------


def _wait_arg(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        wait = float(text)
    except ValueError:
        raise HttpError(400, f"wait time must be a number of seconds, got {text!r}") from None
    if not math.isfinite(wait) or not 0 <= wait <= MAX_WAIT_SECS:
        raise HttpError(400, f"wait time must be between 0 and {MAX_WAIT_SECS} s, got {text!r}")
    return wait


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10000:
        raise HttpError(400, f"{what} must be an integer between 1 and 10000, got {value!r}")
    return value


def rebalance_options(body: dict[str, Any], components: dict[str, Any]) -> tuple[int | None,
                                                                                  dict[str, int]]:
    """(workers, {component: parallelism}) from Storm's {"rebalanceOptions": {...}} body."""
    options = body.get("rebalanceOptions", {})
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            raise HttpError(400, "rebalanceOptions is not valid JSON") from None
    if not isinstance(options, dict):
        raise HttpError(400, "rebalanceOptions must be an object")
    workers = options.get("numWorkers")
    workers = None if workers in (None, "") else _positive_int(workers, "numWorkers")
    executors = options.get("executors") or {}
    if not isinstance(executors, dict):
        raise HttpError(400, "rebalanceOptions.executors must be an object")
    parallelism = {}
    for cid, n in executors.items():
        if cid not in components:
            raise HttpError(400, f"rebalance: no component {cid!r}")
        parallelism[cid] = _positive_int(n, f"executors of {cid!r}")
    if workers is None and not parallelism:
        raise HttpError(400, "rebalance: give numWorkers and/or executors")
    return workers, parallelism


class Handler(BaseHTTPRequestHandler):
    server: UiServer
    protocol_version = "HTTP/1.1"
    server_version = "squall-ui"
    sys_version = ""

    # --- dispatch -----------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _not_allowed(self) -> None:
        self._dispatch(self.command)

    do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _dispatch(self, method: str) -> None:
        try:
            self._route(method)
        except HttpError as e:
            self._send_error(e.status, str(e), e.headers)
        except ApiError as e:
            self._send_error(e.status, str(e))
        except StateError as e:
            self._send_error(503, f"cluster state unavailable: {e}")
        except Exception:
            log.exception("ui: %s %s failed", method, self.path)
            self._send_error(500, "internal error (see the ui's log)")

    def _route(self, method: str) -> None:
        if not self.path.startswith("/"):
            raise HttpError(400, "malformed request target")
        url = urlsplit(self.path)
        try:
            query = parse_qs(url.query, keep_blank_values=True, max_num_fields=20,
                             errors="strict")
        except (ValueError, UnicodeDecodeError):
            raise HttpError(400, "malformed query string") from None
        args = {k: v[-1] for k, v in query.items()}
        if url.path in STATIC:
            return self._only(method, "GET", lambda: self._static(STATIC[url.path]))
        if url.path == "/metrics":
            return self._only(method, "GET", self._metrics)
        try:
            parts = [unquote(p, errors="strict") for p in url.path.split("/")[1:]]
        except UnicodeDecodeError:
            raise HttpError(400, "malformed path (bad percent-encoding)") from None
        if tuple(parts[:2]) != PREFIX or len(parts) < 4:
            raise HttpError(404, f"no such path: {url.path}")
        rest = parts[2:]
        now = self.server.clock()
        state = self.server.state
        simple = {
            ("cluster", "summary"): lambda: api.cluster_summary(state, now, self.server.mode),
            ("cluster", "configuration"): lambda: self.server.config,
            ("nimbus", "summary"): lambda: api.nimbus_summary(state, now),
            ("supervisor", "summary"): lambda: api.supervisor_summary(state, now),
            ("topology", "summary"): lambda: api.topology_summary(state, now),
        }
        key = (rest[0], rest[1])
        if len(rest) == 2 and key in simple:
            return self._only(method, "GET", lambda: self._send_json(200, simple[key]()))
        if rest[0] != "topology":
            raise HttpError(404, f"no such path: {url.path}")
        self._topology_route(method, rest[1], rest[2:], args, now)

    def _topology_route(self, method: str, tid: str, rest: list[str], args: dict[str, str],
                        now: float) -> None:
        state = self.server.state
        if not rest:
            sys = args.get("sys", "false").lower()
            if sys not in ("true", "false", "1", "0"):
                raise HttpError(400, f"sys must be true or false, got {args['sys']!r}")
            return self._only(method, "GET", lambda: self._send_json(200, api.topology_page(
                state, tid, now, args.get("window"), sys in ("true", "1"))))
        if len(rest) == 2 and rest[0] == "component":
            return self._only(method, "GET", lambda: self._send_json(200, api.component_page(
                state, tid, rest[1], now, args.get("window"))))
        if rest == ["live"]:
            return self._only(method, "GET", lambda: self._live(tid))
        action = rest[0]
        if (action in ("activate", "deactivate") and len(rest) == 1) or (
                action in ("kill", "rebalance") and len(rest) <= 2):
            wait = rest[1] if len(rest) == 2 else None
            return self._only(method, "POST", lambda: self._action(tid, action, wait))
        raise HttpError(404, f"no such path: {self.path.split('?')[0]}")

    def _only(self, method: str, allowed: str, handler: Callable[[], Any]) -> None:
        if method != allowed:
            raise HttpError(405, f"{method} is not allowed here; use {allowed}",
                            {"Allow": allowed})
        handler()

    # --- GET handlers -------------------------------------------------------------------------

    def _static(self, name: str) -> None:
        path = STATIC_DIR / name
        try:
            data = path.read_bytes()
        except OSError:
            raise HttpError(404, f"static file {name} is missing") from None
        headers = {"Cache-Control": "no-cache"}
        if name.endswith(".html"):
            headers["Content-Security-Policy"] = CSP
        self._send(200, data, CONTENT_TYPES[path.suffix], headers)

    def _metrics(self) -> None:
        text = metrics.render(self.server.state, self.server.clock())
        self._send(200, text.encode(), metrics.CONTENT_TYPE)

    def _live(self, tid: str) -> None:
        state = self.server.state
        meta = state.topology(tid)
        if meta is None:
            raise NotFound(f"no topology with id {tid!r}")
        beats = state.worker_heartbeats(tid).values()
        capacities = {cid: f.capacity for cid, f in component_figures(beats, WINDOW_10M).items()}
        self._send_json(200, live_view(meta, self.server.history, capacities))

    # --- POST actions -------------------------------------------------------------------------

    def _action(self, tid: str, action: str, wait_text: str | None) -> None:
        self._check_origin()
        body = self._read_form()
        self._check_secret(body)
        wait = _wait_arg(wait_text)
        meta = self.server.state.topology(tid)
        if meta is None:
            raise NotFound(f"no topology with id {tid!r}")
        name = str(meta.get("name"))
        if wait is None and action in ("kill", "rebalance"):
            wait = float((meta.get("conf") or {}).get("topology.message.timeout.secs", 30))
        actions = self.server.actions
        if action == "kill":
            actions.kill(name, wait)
        elif action == "activate":
            actions.activate(name)
        elif action == "deactivate":
            actions.deactivate(name)
        else:
            workers, parallelism = rebalance_options(body, meta.get("components") or {})
            actions.rebalance(name, workers, parallelism, wait)
        log.info("ui: %s %s (%s) from %s", action, name, tid, self.client_address[0])
        self._send_json(200, {"topologyOperation": action, "topologyId": tid,
                              "status": "success"})

    def _check_origin(self) -> None:
        """Refuse what a browser says comes from another site (CSRF)."""
        site = self.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise HttpError(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
        host = self.headers.get("Host")
        for header in ("Origin", "Referer"):
            value = self.headers.get(header)
            if value is None:
                continue
            src = urlsplit(value)
            if src.scheme not in ("http", "https") or not host or src.netloc != host:
                raise HttpError(403, f"cross-site request refused ({header}: {value})")
            return

    def _check_secret(self, body: dict[str, Any]) -> None:
        secret = self.server.secret
        if not secret:
            raise HttpError(403, "dashboard actions are disabled: no cluster.secret is set")
        given = self.headers.get(SECRET_HEADER) or body.get("secret")
        if not given or not isinstance(given, str):
            raise HttpError(401, f"this action needs the cluster secret ({SECRET_HEADER} "
                                 "header or form field 'secret')")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise HttpError(403, "wrong cluster secret")

    def _read_form(self) -> dict[str, Any]:
        """The request body as a dict (JSON object or urlencoded form; empty is {})."""
        if self.headers.get("Transfer-Encoding"):
            raise HttpError(411, "send the body with a Content-Length")
        length = self.headers.get("Content-Length", "0").strip()
        if not length.isdigit():
            raise HttpError(400, f"bad Content-Length {length!r}")
        if int(length) > MAX_BODY:
            raise HttpError(413, f"request body over {MAX_BODY} bytes")
        raw = self.rfile.read(int(length)) if int(length) else b""
        if not raw.strip():
            return {}
        kind = self.headers.get_content_type()
        try:
            text = raw.decode("utf-8")
            if kind == "application/x-www-form-urlencoded":
                return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True,
                                                      max_num_fields=50).items()}
            if kind in ("application/json", "text/plain"):
                data = json.loads(text)
            else:
                raise HttpError(415, f"unsupported body type {kind!r}; send JSON or a form")
        except (UnicodeDecodeError, ValueError):
            raise HttpError(400, f"malformed {kind} body") from None
        if not isinstance(data, dict):
            raise HttpError(400, "the JSON body must be an object")
        return data

    # --- responses ----------------------------------------------------------------------------

    def _send_json(self, status: int, data: Any) -> None:
        body = json.dumps(data, allow_nan=False, default=str).encode()
        self._send(status, body, "application/json", {"Cache-Control": "no-store"})

    def _send_error(self, status: int, message: str,
                    headers: dict[str, str] | None = None) -> None:
        self.close_connection = True  # the body may be unread: do not reuse the connection
        from http import HTTPStatus

        title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        body = json.dumps({"error": title, "errorMessage": message}).encode()
        self._send(status, body, "application/json",
                   {"Cache-Control": "no-store", "Connection": "close", **(headers or {})})

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """The stdlib's own refusals (bad request line, unknown method), as JSON."""
        status = 405 if code == 501 else code  # an unknown method is the client's mistake
        if self.request_version == "HTTP/0.9":  # garbage: still answer with a status line
            self.request_version = "HTTP/1.0"
        self._send_error(status, message or explain or "bad request")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("ui: %s " + format, self.address_string(), *args)
