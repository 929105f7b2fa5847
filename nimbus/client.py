"""A client of the nimbus API, for the CLI and the dashboard.

It tries the configured nimbus endpoints (`nimbus.seeds`, else `nimbus.host:nimbus.port`) in
order and follows a standby's answer to the leader. Every failure is a `NimbusError` subclass
(see nimbus.protocol) with a one-line message. Connecting to an endpoint may take
`connect_timeout` seconds (short: a nimbus that does not accept is soon reported); an
answer may take `timeout` (long: a big submission is stored before nimbus answers). Waits,
workers and parallelism are checked before anything is sent.
"""

from __future__ import annotations

import getpass
import http.client
import json
import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from nimbus.protocol import (
    AUTH_HEADER,
    NIMBUS,
    TOPOLOGIES,
    NimbusError,
    NotLeader,
    Unreachable,
    auth_header,
    check_conf_changes,
    check_log_levels,
    check_logger,
    check_parallelism,
    check_wait,
    check_workers,
    error_for,
    topology_path,
)

log = logging.getLogger(__name__)


def seeds_of(config: Mapping[str, Any]) -> list[str]:
    """The nimbus endpoints a client tries, in order."""
    return list(config["nimbus.seeds"]) or [f"{config['nimbus.host']}:{config['nimbus.port']}"]


class NimbusClient:
    """Talks to whichever nimbus leads. `leader_wait` is how long a write keeps retrying while
    the nimbuses answer but none leads yet (a failover in progress)."""

    def __init__(
        self,
        seeds: Sequence[str],
        secret: str | None = None,
        timeout: float = 30.0,
        leader_wait: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
        connect_timeout: float = 3.0,
    ) -> None:
        if not seeds:
            raise NimbusError("no nimbus endpoint configured (nimbus.seeds or nimbus.host)")
        self.seeds = list(seeds)
        self.secret = secret
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.leader_wait = leader_wait
        self._sleep = sleep

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **kwargs: Any) -> NimbusClient:
        return cls(seeds_of(config), config["cluster.secret"], **kwargs)

    # --- the API ------------------------------------------------------------------------------

    def submit(self, blob: bytes, name: str | None = None,
               overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Submit a package (cloudpickle of {"topology": ..., "overrides": {...}})."""
        query: dict[str, str] = {"owner": _user()}
        if name:
            query["name"] = name
        if overrides:
            query["overrides"] = json.dumps(dict(overrides))
        return self._request("POST", f"{TOPOLOGIES}?{urlencode(query)}", blob,
                             content_type="application/octet-stream")

    def list(self) -> list[dict[str, Any]]:
        topologies: list[dict[str, Any]] = self._request("GET", TOPOLOGIES)["topologies"]
        return topologies

    def status(self, name: str) -> dict[str, Any]:
        return self._request("GET", topology_path(name))

    def kill(self, name: str, wait: float | None = None) -> dict[str, Any]:
        return self._action(name, "kill", {"wait": check_wait(wait)})

    def activate(self, name: str) -> dict[str, Any]:
        return self._action(name, "activate", {})

    def deactivate(self, name: str) -> dict[str, Any]:
        return self._action(name, "deactivate", {})

    def rebalance(self, name: str, workers: int | None = None,
                  parallelism: Mapping[str, int] | None = None,
                  wait: float | None = None,
                  conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Change workers, parallelism and/or config keys safe to change while running."""
        body = {"workers": check_workers(workers), "parallelism": check_parallelism(parallelism),
                "wait": check_wait(wait)}
        if conf:
            body["conf"] = check_conf_changes(conf)
        return self._action(name, "rebalance", body)

    def set_log_levels(self, name: str, levels: Mapping[str, str],
                       timeout: float | None = None,
                       reset: Sequence[str] = ()) -> dict[str, Any]:
        """Set loggers' levels in the topology's workers for `timeout` seconds (None: until
        reset) and put `reset`'s loggers back to their own."""
        body = {"levels": check_log_levels(levels), "timeout": check_wait(timeout, "timeout"),
                "reset": [check_logger(n, "reset") for n in reset]}
        return self._action(name, "log-levels", body)

    def nimbus_info(self, endpoint: str | None = None) -> dict[str, Any]:
        """What one nimbus (the first reachable seed, or `endpoint`) says about itself."""
        if endpoint is not None:
            return self._once(endpoint, "GET", NIMBUS, b"", "application/json")
        return self._request("GET", NIMBUS)

    def _action(self, name: str, action: str, args: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", topology_path(name, action), json.dumps(args).encode())

    # --- transport ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: bytes = b"",
                 content_type: str = "application/json") -> Any:
        deadline = time.monotonic() + self.leader_wait
        while True:
            failures: list[str] = []
            standby: NotLeader | None = None
            tried: set[str] = set()
            queue = list(self.seeds)
            while queue:
                endpoint = queue.pop(0)
                if endpoint in tried:
                    continue
                tried.add(endpoint)
                try:
                    return self._once(endpoint, method, path, body, content_type)
                except Unreachable as e:
                    failures.append(str(e))
                except NotLeader as e:
                    standby = e
                    if e.leader and e.leader not in tried:
                        queue.insert(0, e.leader)  # follow the standby to the leader
            if standby is None:
                raise Unreachable(f"cannot reach nimbus: {'; '.join(failures)}")
            if time.monotonic() >= deadline:
                raise standby
            self._sleep(0.2)

    def _once(self, endpoint: str, method: str, path: str, body: bytes,
              content_type: str) -> Any:
        headers = {"Content-Type": content_type}
        if self.secret:
            headers[AUTH_HEADER] = auth_header(self.secret, method, path, body)
        conn = self._connect(endpoint)
        try:
            try:
                conn.request(method, path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except TimeoutError:
                raise Unreachable(f"{endpoint}: connected, but no answer within "
                                  f"{self.timeout:g} s") from None
            except (OSError, http.client.HTTPException) as e:
                raise Unreachable(f"{endpoint}: {_reason(e)}") from None
        finally:
            conn.close()
        try:
            reply = json.loads(data) if data else {}
        except ValueError:
            raise NimbusError(f"nimbus {endpoint} answered {response.status} with something "
                              f"that is not JSON") from None
        if response.status >= 400:
            message = reply.get("error") if isinstance(reply, dict) else None
            leader = reply.get("leader") if isinstance(reply, dict) else None
            raise error_for(response.status, message or f"HTTP {response.status}", leader)
        return reply


    def _connect(self, endpoint: str) -> http.client.HTTPConnection:
        """A connection to `endpoint`, made within `connect_timeout` (Unreachable if not)."""
        host, _, port = endpoint.rpartition(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        try:
            sock = socket.create_connection((host, int(port)), self.connect_timeout)
        except TimeoutError:
            raise Unreachable(f"{endpoint}: no connection within {self.connect_timeout:g} s "
                              "(is nimbus running there, and reachable?)") from None
        except OSError as e:
            raise Unreachable(f"{endpoint}: {_reason(e)}") from None
        sock.settimeout(self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock = sock
        return conn


def _reason(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
