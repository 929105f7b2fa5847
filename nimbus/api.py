"""Nimbus's HTTP/JSON API, on the shared server of cluster.http. Wire details are in
nimbus.protocol.

    GET  /api/v1/nimbus                          this nimbus: id, leader?, leader_address
    GET  /api/v1/topologies                      {"topologies": [summary, ...]}
    GET  /api/v1/topologies/NAME                 status: summary, components, workers, errors
    POST /api/v1/topologies?name=N&owner=U&overrides=JSON
         body: cloudpickle of {"topology": Topology, "overrides": {...}}   -> summary
    POST /api/v1/topologies/NAME/kill            {"wait": secs}          -> summary
    POST /api/v1/topologies/NAME/activate        {}                      -> summary
    POST /api/v1/topologies/NAME/deactivate      {}                      -> summary
    POST /api/v1/topologies/NAME/rebalance       {"workers": n, "parallelism": {c: n},
                                                  "conf": {key: value}, "wait": secs}
                                                                         -> summary
    POST /api/v1/topologies/NAME/log-levels      {"levels": {logger: level}, "timeout": secs,
                                                  "reset": [logger]}     -> summary, log_levels

Errors are JSON {"error": "one line", "errorMessage": the same} with 400 (malformed request,
invalid topology or name, a non-finite number, action not allowed), 401 (secret), 404
(unknown topology or path), 405, 408 (request too slow), 409 (duplicate name), 411 (a
Transfer-Encoding), 413 (a package over `nimbus.code.max.bytes`, any other body over 64 KiB),
500 (a bug), 503 (a standby: also "leader": "host:port"; or too many connections).

The signature is checked on the request line and headers, before the body is read (see
nimbus.protocol); its stamp is claimed in the cluster state, so a replay is refused by every
nimbus, also after a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cluster.config import Config
from cluster.http import HttpError, Limits, Request, Route, Router, Server
from cluster.state import StateError
from nimbus.protocol import (
    AUTH_HEADER,
    MAX_LOGGERS,
    NIMBUS,
    NONCE_TTL_SECS,
    TOPOLOGIES,
    BadRequest,
    NimbusError,
    NotFound,
    NotLeader,
    check_auth,
    check_body,
    check_conf_changes,
    check_log_levels,
    check_logger,
    check_parallelism,
    check_wait,
    check_workers,
    loads_finite,
)
from topology.builder import name_problem

if TYPE_CHECKING:
    from nimbus.daemon import Nimbus

log = logging.getLogger(__name__)

ACTION_BODY_BYTES = 64 * 1024


class ApiServer(Server):
    """The API server of one nimbus; `start()` serves it on threads, `stop()` ends it."""

    software = "squall-nimbus"

    def __init__(self, nimbus: Nimbus, config: Config) -> None:
        self.nimbus = nimbus
        self.secret: str | None = config["cluster.secret"]
        router = Router()
        router.add("GET", NIMBUS, lambda r: nimbus.info())
        router.add("GET", TOPOLOGIES, lambda r: {"topologies": nimbus.list_topologies()})
        router.add("POST", TOPOLOGIES, self._submit, max_body=int(config["nimbus.code.max.bytes"]),
                   limit_name="nimbus.code.max.bytes")
        router.add("GET", f"{TOPOLOGIES}/{{name}}",
                   lambda r: _by_name(nimbus.topology_status, r.params["name"]))
        router.add("POST", f"{TOPOLOGIES}/{{name}}/kill", self._kill)
        router.add("POST", f"{TOPOLOGIES}/{{name}}/activate",
                   lambda r: _by_name(nimbus.activate, r.params["name"]))
        router.add("POST", f"{TOPOLOGIES}/{{name}}/deactivate",
                   lambda r: _by_name(nimbus.deactivate, r.params["name"]))
        router.add("POST", f"{TOPOLOGIES}/{{name}}/rebalance", self._rebalance)
        router.add("POST", f"{TOPOLOGIES}/{{name}}/log-levels", self._log_levels)
        limits = Limits.from_config(config, "nimbus.api", ACTION_BODY_BYTES)
        try:
            super().__init__((config["nimbus.host"], int(config["nimbus.port"])), router, limits,
                             f"nimbus {nimbus.id} api")
        except OSError as e:
            raise StateError(f"nimbus: cannot listen on {config['nimbus.host']}:"
                             f"{config['nimbus.port']}: {e.strerror}") from e

    # --- the server's hooks ---------------------------------------------------------------------

    def authenticate(self, request: Request, route: Route) -> None:
        request.auth = check_auth(self.secret, request.headers.get(AUTH_HEADER), request.method,
                                  request.target, time.time(), self._claim)

    def after_body(self, request: Request, route: Route) -> None:
        check_body(request.auth, request.body)

    def _claim(self, stamp: str, when: float) -> bool:
        state = self.nimbus.state
        if state is None:
            raise StateError(f"{self.name}: not started")
        return state.claim_nonce(stamp, when, NONCE_TTL_SECS)

    def translate(self, error: Exception) -> HttpError | None:
        if isinstance(error, NotLeader):
            return HttpError(error.status, str(error), extra={"leader": error.leader})
        if isinstance(error, NimbusError):
            return HttpError(error.status, str(error))
        if isinstance(error, StateError):
            log.warning("%s: %s", self.name, error)
            return HttpError(503, f"cluster state unavailable: {error}", extra={"leader": None})
        return None

    # --- the routes -----------------------------------------------------------------------------

    def _submit(self, request: Request) -> Any:
        name = request.query.get("name") or None
        if name is not None and (problem := name_problem(name)) is not None:
            raise BadRequest(problem)
        overrides = {}
        if request.query.get("overrides"):
            overrides = loads_finite(request.query["overrides"], "overrides")
            if not isinstance(overrides, dict):
                raise BadRequest("overrides: expected a JSON object")
        return self.nimbus.submit(request.body, name, overrides,
                                  request.query.get("owner") or "unknown")

    def _kill(self, request: Request) -> Any:
        args = _json_object(request.body)
        wait = check_wait(args.get("wait"))
        return _by_name(lambda name: self.nimbus.kill(name, wait), request.params["name"])

    def _rebalance(self, request: Request) -> Any:
        args = _json_object(request.body)
        workers = check_workers(args.get("workers"))
        parallelism = check_parallelism(args.get("parallelism"))
        conf = check_conf_changes(args.get("conf"))
        wait = check_wait(args.get("wait"))
        return _by_name(lambda name: self.nimbus.rebalance(name, workers, parallelism, wait,
                                                           conf),
                        request.params["name"])


    def _log_levels(self, request: Request) -> Any:
        args = _json_object(request.body)
        levels = check_log_levels(args.get("levels"))
        timeout = check_wait(args.get("timeout"), "timeout")
        reset = args.get("reset") or []
        if not isinstance(reset, list) or len(reset) > MAX_LOGGERS:
            raise BadRequest(f"reset must be a list of at most {MAX_LOGGERS} logger names, "
                             f"got {reset!r}")
        names = [check_logger(n, "reset") for n in reset]
        return _by_name(lambda name: self.nimbus.set_log_levels(name, levels, timeout, names),
                        request.params["name"])


def _by_name(action: Callable[[str], Any], name: str) -> Any:
    """`action(name)`; an unknown name that is not even valid is a 400 naming it. (A valid
    lookup of an invalid name still works: a topology admitted before names were bounded
    can be killed.)"""
    try:
        return action(name)
    except NotFound:
        problem = name_problem(name)
        if problem is not None:
            raise BadRequest(problem) from None
        raise


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    value = loads_finite(body)
    if not isinstance(value, dict):
        raise BadRequest(f"expected a JSON object, got {type(value).__name__}")
    return value
