"""The dashboard's HTTP server (on cluster.http's shared server): static page, REST API, metrics.

    GET  /                                       the page (static/index.html, app.js, style.css)
    GET  /api/v1/cluster/summary                 ui.api.cluster_summary
    GET  /api/v1/cluster/configuration           this server's config, without the secret
    GET  /api/v1/nimbus/summary                  ui.api.nimbus_summary
    GET  /api/v1/supervisor/summary              ui.api.supervisor_summary
    GET  /api/v1/topology/summary                ui.api.topology_summary
    GET  /api/v1/history/summary                 ui.api.history_summary
    GET  /api/v1/topology/ID?window=&sys=        ui.api.topology_page
    GET  /api/v1/topology-workers/ID             ui.api.topology_workers
    GET  /api/v1/topology/ID/component/C?window= ui.components.component_page
    GET  /api/v1/topology/ID/metrics?window=&sys= ui.components.topology_metrics
    GET  /api/v1/topology/ID/visualization?window=&sys= ui.components.visualization
    GET  /api/v1/topology/ID/live                graph with rates and throughput (Squall's own)
    POST /api/v1/topology/ID/activate|deactivate
    POST /api/v1/topology/ID/kill[/WAIT]         WAIT seconds, default topology.message.timeout
    POST /api/v1/topology/ID/rebalance[/WAIT]    {"rebalanceOptions": {"numWorkers": n,
                                                  "executors": {"component": n}}}
    GET  /api/v1/topology/ID/logconfig           loggers' levels set (ui.logconfig)
    POST /api/v1/topology/ID/logconfig           {"namedLoggerLevels": {logger:
                                                  {"target_level": L, "timeout": secs}}}
    GET  /metrics                                Prometheus text format

Windows are Storm's: "600" and ":all-time" as the workers report them, "10800" and "86400"
kept by this server (ui.stats). Supervisors are judged alive or lost on this server's own
clock by whether their heartbeat record changes (nimbus.liveness's rule and timeout,
`nimbus.supervisor.timeout.secs`).

POSTs need the cluster secret (header `X-Squall-Secret`, checked before the body is read, or
form field `secret`; compared in constant time; 401 when missing, 403 when wrong, 403 when no
secret is configured at all) and are refused (403) when the browser says they come from
another site (Origin, Referer or Sec-Fetch-Site). The page sends the secret in the header,
which a cross-site form cannot set. Errors are JSON {"error", "errorMessage"} (cluster.http's
one shape) with a 4xx status for anything the client got wrong; nothing a client sends makes
a 500. Connections, timeouts and body sizes are bounded by cluster.http (`ui.*` keys).
"""

from __future__ import annotations

import hmac
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cluster.http import HttpError, Limits, Request, Response, Route, Router, Server
from cluster.records import WINDOW_10M, component_figures
from cluster.state import ClusterState, StateError
from nimbus.liveness import Liveness
from nimbus.protocol import BadRequest, loads_finite
from topology.builder import MAX_PARALLELISM, MAX_WORKERS
from ui import api, components, logconfig, metrics
from ui.actions import Actions
from ui.api import ApiError, NotFound, View
from ui.history import History, live_view
from ui.stats import LongWindows

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
TOPOLOGY = "/api/v1/topology/{id}"


class UiServer(Server):
    """Serves the dashboard for `state`; `start()` runs it and its sampler on threads.
    `config` (the resolved config, as a dict) gives the `ui.*` limits and
    `nimbus.supervisor.timeout.secs`, and is shown, without the secret, at
    /api/v1/cluster/configuration. `clock` is the wall clock (uptimes, windows), `monotonic`
    the one supervisors are judged by."""

    software = "squall-ui"
    headers = MappingProxyType({"X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"})

    def __init__(self, state: ClusterState, actions: Actions, host: str, port: int,
                 secret: str | None, mode: str = "cluster",
                 config: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time,
                 sample_secs: float = SAMPLE_SECS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.state = state
        self.actions = actions
        self.secret = secret
        self.mode = mode
        self.config = {k: v for k, v in (config or {}).items() if k != "cluster.secret"}
        self.clock = clock
        self.monotonic = monotonic
        self.sample_secs = sample_secs
        self.history = History()
        self.windows = LongWindows()
        timeout = float(self.config.get("nimbus.supervisor.timeout.secs", 5))
        # Only the supervisor part of nimbus's liveness rules is used here.
        self.liveness = Liveness(timeout, timeout, timeout, blind_after=2 * sample_secs + 5.0)
        self._judging = threading.Lock()
        self._lost: dict[str, float] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, name="ui-sampler", daemon=True)
        super().__init__((host, port), self._router(), Limits.from_config(config, "ui", MAX_BODY),
                         "ui")

    def _router(self) -> Router:
        r = Router()
        for path, name in STATIC.items():
            r.add("GET", path, partial(_static, name), auth=False)
        r.add("GET", "/metrics", lambda req: Response(
            200, metrics.render(self.view(judge=True)).encode(), metrics.CONTENT_TYPE))
        summaries: dict[str, Callable[[View], Any]] = {
            "/api/v1/cluster/summary": api.cluster_summary,
            "/api/v1/cluster/configuration": lambda view: self.config,
            "/api/v1/nimbus/summary": api.nimbus_summary,
            "/api/v1/supervisor/summary": api.supervisor_summary,
            "/api/v1/topology/summary": api.topology_summary,
            "/api/v1/history/summary": api.history_summary,
        }
        for path, fn in summaries.items():
            r.add("GET", path, partial(self._summary, fn))
        r.add("GET", TOPOLOGY, lambda req: api.topology_page(
            self.view(), req.params["id"], req.query.get("window"), _sys(req)))
        r.add("GET", "/api/v1/topology-workers/{id}",
              lambda req: api.topology_workers(self.view(), req.params["id"]))
        r.add("GET", f"{TOPOLOGY}/component/{{component}}", lambda req: components.component_page(
            self.view(), req.params["id"], req.params["component"], req.query.get("window")))
        r.add("GET", f"{TOPOLOGY}/metrics", lambda req: components.topology_metrics(
            self.view(), req.params["id"], req.query.get("window"), _sys(req)))
        r.add("GET", f"{TOPOLOGY}/visualization", lambda req: components.visualization(
            self.view(), req.params["id"], req.query.get("window"), _sys(req)))
        r.add("GET", f"{TOPOLOGY}/live", self._live)
        r.add("GET", f"{TOPOLOGY}/logconfig", lambda req: logconfig.log_config(
            self._meta(req.params["id"]), self.clock()))
        r.add("POST", f"{TOPOLOGY}/logconfig", self._log_config)
        for action in ("activate", "deactivate", "kill", "rebalance"):
            def act(req: Request, action: str = action) -> Any:
                return self._action(req, action)

            r.add("POST", f"{TOPOLOGY}/{action}", act)
            if action in ("kill", "rebalance"):
                r.add("POST", f"{TOPOLOGY}/{action}/{{wait}}", act)
        return r

    @property
    def url(self) -> str:
        host = str(self.server_address[0])
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    def start(self) -> UiServer:  # type: ignore[override]
        super().start()
        self._sampler.start()
        log.info("ui: serving on %s", self.url)
        return self

    def close(self) -> None:
        self._stop.set()
        self.stop()
        if self._sampler.is_alive():
            self._sampler.join(timeout=5)

    def sample_once(self) -> None:
        ids = list(self.state.topologies())
        for tid in ids:
            beats = list(self.state.worker_heartbeats(tid).values())
            now = self.clock()
            self.history.add(tid, now, beats)
            self.windows.add(tid, now, beats)
        self.history.keep_only(ids)
        self.windows.keep_only(ids)
        self.judge_supervisors()

    def judge_supervisors(self) -> dict[str, float]:
        """Look at the supervisors' heartbeat records now; the lost ones, with how long they
        have been silent (on this server's monotonic clock)."""
        registered, beats = self.state.supervisors(), self.state.supervisor_heartbeats()
        with self._judging:
            now = self.monotonic()
            self.liveness.begin(now)
            self._lost = dict(self.liveness.supervisors(registered, beats, now).lost)
            return self._lost

    def view(self, judge: bool = False) -> View:
        """What a request reads: the state now, with this server's own observations."""
        lost = self.judge_supervisors() if judge else self._lost
        return View(self.state, self.clock(), self.windows, lost, self.mode)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except Exception:  # the state may be unreachable for a while: keep sampling
                self.liveness.blind()  # what it could not see is nobody's silence
                log.warning("ui: sampling the cluster state failed", exc_info=True)
            self._stop.wait(self.sample_secs)

    # --- the shared server's hooks ------------------------------------------------------------

    def authenticate(self, request: Request, route: Route) -> None:
        """Before the body: same site, a secret configured, and the header's secret if given
        (the form field's is checked in after_body)."""
        if request.method != "POST":
            return
        _check_origin(request.headers)
        if not self.secret:
            raise HttpError(403, "dashboard actions are disabled: no cluster.secret is set")
        given = request.headers.get(SECRET_HEADER)
        if given:
            self._check_secret(given)
            request.auth = True

    def after_body(self, request: Request, route: Route) -> None:
        if request.method != "POST":
            return
        form = _form(request)  # a malformed body is refused even with the header's secret
        if not request.auth:
            given = form.get("secret")
            if not given or not isinstance(given, str):
                raise HttpError(401, f"this action needs the cluster secret ({SECRET_HEADER} "
                                     "header or form field 'secret')")
            self._check_secret(given)

    def _check_secret(self, given: str) -> None:
        if not hmac.compare_digest(given.encode(), (self.secret or "").encode()):
            raise HttpError(403, "wrong cluster secret")

    def translate(self, error: Exception) -> HttpError | None:
        if isinstance(error, (ApiError, BadRequest)):
            return HttpError(error.status, str(error))
        if isinstance(error, StateError):
            return HttpError(503, f"cluster state unavailable: {error}")
        return None

    # --- GET handlers -------------------------------------------------------------------------

    def _summary(self, fn: Callable[[View], Any], request: Request) -> Any:
        return fn(self.view(judge=True))

    def _live(self, request: Request) -> Any:
        tid = request.params["id"]
        meta = self.state.topology(tid)
        if meta is None:
            raise NotFound(f"no topology with id {tid!r}")
        beats = self.state.worker_heartbeats(tid).values()
        capacities = {cid: f.capacity for cid, f in component_figures(beats, WINDOW_10M).items()}
        return live_view(meta, self.history, capacities)

    def _meta(self, tid: str) -> dict[str, Any]:
        meta = self.state.topology(tid)
        if meta is None:
            raise NotFound(f"no topology with id {tid!r}")
        return meta

    # --- POST actions -------------------------------------------------------------------------

    def _log_config(self, request: Request) -> Any:
        tid = request.params["id"]
        name = str(self._meta(tid).get("name"))
        for levels, timeout, reset in logconfig.parse_log_config(_form(request)):
            self.actions.set_log_levels(name, levels, timeout, reset)
        log.info("ui: log levels of %s (%s) from %s", name, tid, request.client)
        return logconfig.log_config(self._meta(tid), self.clock())

    def _action(self, request: Request, action: str) -> Any:
        tid = request.params["id"]
        wait = _wait_arg(request.params.get("wait"))
        meta = self.state.topology(tid)
        if meta is None:
            raise NotFound(f"no topology with id {tid!r}")
        name = str(meta.get("name"))
        if wait is None and action in ("kill", "rebalance"):
            wait = float((meta.get("conf") or {}).get("topology.message.timeout.secs", 30))
        if action == "kill":
            self.actions.kill(name, wait)
        elif action == "activate":
            self.actions.activate(name)
        elif action == "deactivate":
            self.actions.deactivate(name)
        else:
            workers, parallelism = rebalance_options(_form(request), meta.get("components") or {})
            self.actions.rebalance(name, workers, parallelism, wait)
        log.info("ui: %s %s (%s) from %s", action, name, tid, request.client)
        return {"topologyOperation": action, "topologyId": tid, "status": "success"}


# --- request parsing helpers ------------------------------------------------------------------


def _sys(request: Request) -> bool:
    sys = request.query.get("sys", "false").lower()
    if sys not in ("true", "false", "1", "0"):
        raise HttpError(400, f"sys must be true or false, got {request.query['sys']!r}")
    return sys in ("true", "1")


def _static(name: str, request: Request) -> Response:
    path = STATIC_DIR / name
    try:
        data = path.read_bytes()
    except OSError:
        raise HttpError(404, f"static file {name} is missing") from None
    headers = {"Cache-Control": "no-cache"}
    if name.endswith(".html"):
        headers["Content-Security-Policy"] = CSP
    return Response(200, data, CONTENT_TYPES[path.suffix], headers)


def _check_origin(headers: Any) -> None:
    """Refuse what a browser says comes from another site (CSRF)."""
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise HttpError(403, f"cross-site request refused (Sec-Fetch-Site: {site})")
    host = headers.get("Host")
    for header in ("Origin", "Referer"):
        value = headers.get(header)
        if value is None:
            continue
        src = urlsplit(value)
        if src.scheme not in ("http", "https") or not host or src.netloc != host:
            raise HttpError(403, f"cross-site request refused ({header}: {value})")
        return


def _form(request: Request) -> dict[str, Any]:
    """The request body as a dict (JSON object or urlencoded form; empty is {})."""
    raw = request.body
    if not raw.strip():
        return {}
    kind = request.headers.get_content_type()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, f"malformed {kind} body (not UTF-8)") from None
    if kind == "application/x-www-form-urlencoded":
        try:
            return {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True,
                                                  max_num_fields=50).items()}
        except ValueError:
            raise HttpError(400, f"malformed {kind} body") from None
    if kind not in ("application/json", "text/plain"):
        raise HttpError(415, f"unsupported body type {kind!r}; send JSON or a form")
    data = loads_finite(text)
    if not isinstance(data, dict):
        raise HttpError(400, "the JSON body must be an object")
    return data


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


def _count(value: Any, what: str, most: int) -> int:
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise HttpError(400, f"{what} must be an integer from 1 to {most}, got {value!r}")
    return value


def rebalance_options(body: Mapping[str, Any], components: Mapping[str, Any]
                      ) -> tuple[int | None, dict[str, int]]:
    """(workers, {component: parallelism}) from Storm's {"rebalanceOptions": {...}} body."""
    options = body.get("rebalanceOptions", {})
    if isinstance(options, str):
        options = loads_finite(options, "rebalanceOptions")
    if not isinstance(options, dict):
        raise HttpError(400, "rebalanceOptions must be an object")
    workers = options.get("numWorkers")
    workers = None if workers in (None, "") else _count(workers, "numWorkers", MAX_WORKERS)
    executors = options.get("executors") or {}
    if not isinstance(executors, dict):
        raise HttpError(400, "rebalanceOptions.executors must be an object")
    parallelism = {}
    for cid, n in executors.items():
        if cid not in components:
            raise HttpError(400, f"rebalance: no component {cid!r}")
        parallelism[cid] = _count(n, f"executors of {cid!r}", MAX_PARALLELISM)
    if workers is None and not parallelism:
        raise HttpError(400, "rebalance: give numWorkers and/or executors")
    return workers, parallelism
