"""The dashboard's actions on topologies, behind one small protocol.

Storm's API names topologies by id in its paths; the actions take the topology's NAME (what
nimbus and `LocalCluster` key on) and the server maps id -> name through the topology record.
`LocalActions` drives a `LocalCluster` in this process; `NimbusActions` goes to the leader
nimbus through `nimbus.client.NimbusClient`. Both raise `ui.api.ApiError` with an HTTP status.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from topology.errors import SquallError
from ui.api import ApiError

if TYPE_CHECKING:
    from nimbus.client import NimbusClient
    from topology.local import LocalCluster

log = logging.getLogger(__name__)


class Actions(Protocol):
    def kill(self, name: str, wait: float | None) -> None: ...

    def activate(self, name: str) -> None: ...

    def deactivate(self, name: str) -> None: ...

    def rebalance(self, name: str, workers: int | None, parallelism: Mapping[str, int],
                  wait: float | None) -> None: ...

    def set_log_levels(self, name: str, levels: Mapping[str, str], timeout: float | None,
                       reset: list[str]) -> None: ...


class Unavailable(ApiError):
    status = 502


class LocalActions:
    """Actions on a `LocalCluster`. A kill with a wait returns at once (as Storm's does): the
    spouts are deactivated now and the topology removed after `wait` seconds."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def kill(self, name: str, wait: float | None) -> None:
        if not wait:
            self._call(self.cluster.kill, name)
            return
        self._call(self.cluster.deactivate, name)
        threading.Thread(target=self._kill_later, args=(name, wait), daemon=True,
                         name=f"ui-kill-{name}").start()

    def _kill_later(self, name: str, wait: float) -> None:
        import time

        time.sleep(wait)  # the documented grace period, not synchronisation
        try:
            self.cluster.kill(name)
        except SquallError as e:
            log.warning("ui: kill %s after %g s: %s", name, wait, e)

    def activate(self, name: str) -> None:
        self._call(self.cluster.activate, name)

    def deactivate(self, name: str) -> None:
        self._call(self.cluster.deactivate, name)

    def rebalance(self, name: str, workers: int | None, parallelism: Mapping[str, int],
                  wait: float | None) -> None:
        raise ApiError("rebalance is not available in local mode")

    def set_log_levels(self, name: str, levels: Mapping[str, str], timeout: float | None,
                       reset: list[str]) -> None:
        try:
            self.cluster.set_log_levels(name, levels, timeout, reset)
        except SquallError as e:
            raise ApiError(str(e)) from e

    @staticmethod
    def _call(fn: Any, name: str) -> None:
        try:
            fn(name)
        except SquallError as e:
            raise ApiError(str(e)) from e


class NimbusActions:
    """Actions sent to the leader nimbus; nimbus's 4xx answers keep their status, failures to
    reach it become 502."""

    def __init__(self, client: NimbusClient) -> None:
        self.client = client

    def kill(self, name: str, wait: float | None) -> None:
        self._call(self.client.kill, name, wait)

    def activate(self, name: str) -> None:
        self._call(self.client.activate, name)

    def deactivate(self, name: str) -> None:
        self._call(self.client.deactivate, name)

    def rebalance(self, name: str, workers: int | None, parallelism: Mapping[str, int],
                  wait: float | None) -> None:
        self._call(self.client.rebalance, name, workers, dict(parallelism), wait)

    def set_log_levels(self, name: str, levels: Mapping[str, str], timeout: float | None,
                       reset: list[str]) -> None:
        self._call(self.client.set_log_levels, name, dict(levels), timeout, reset)

    @staticmethod
    def _call(fn: Any, *args: Any) -> None:
        from nimbus.protocol import NimbusError

        try:
            fn(*args)
        except NimbusError as e:
            error = ApiError(f"nimbus: {e}")
            error.status = e.status if 400 <= e.status < 500 and e.status != 401 else 502
            raise error from e
