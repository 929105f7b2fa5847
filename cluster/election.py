"""Nimbus leader election over ZooKeeper: ephemeral-sequential nodes, the lowest one leads.

Written by hand rather than with kazoo's Election recipe because nimbus needs to hear about
losing leadership (session expiry) and to run again afterwards without blocking a thread in
the recipe's `run()`.
"""

from __future__ import annotations

import logging
import threading

from kazoo.client import KazooState
from kazoo.exceptions import KazooException

from cluster.paths import LEADER_PREFIX, Paths
from cluster.state import Callback, StateError
from cluster.zkraw import RawZk

log = logging.getLogger(__name__)

POLL_SECS = 1.0  # safety net: the children watch wakes the thread at once


def election_order(nodes: list[str]) -> list[str]:
    """Election nodes sorted by their sequence number (the lowest leads)."""
    return sorted((n for n in nodes if n.startswith(LEADER_PREFIX)), key=lambda n: n[-10:])


class Candidate:
    """One nimbus in the election: an ephemeral-sequential node; the lowest one leads.

    Leadership is lost when the session expires (kazoo LOST), not on a mere disconnection
    (SUSPENDED): while the session lives, its node, and so the leadership, stays.

    Its own thread keeps the node alive across session losses and calls on_elected/on_lost on
    every change of leadership; kazoo's thread only wakes it.
    """

    def __init__(
        self, zk: RawZk, paths: Paths, nimbus_id: str, on_elected: Callback, on_lost: Callback
    ) -> None:
        self._zk = zk
        self._paths = paths
        self._id = nimbus_id
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._node: str | None = None
        self._leading = False
        self._lost_session = False
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"election-{nimbus_id}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def on_state(self, state: str) -> None:
        if state == KazooState.LOST:
            self._lost_session = True
        self._wake.set()

    def _notify(self, _event: object = None) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        if self._node is not None and self._zk.client.connected:
            try:
                self._zk.delete(self._node)
            except StateError:
                log.warning("election %s: could not withdraw", self._id, exc_info=True)

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        log.info("election %s: %s leadership", self._id, "gained" if leading else "lost")
        try:
            (self._on_elected if leading else self._on_lost)()
        except Exception:
            log.exception("election %s: callback raised", self._id)

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self._lost_session:  # the session, and with it our node, is gone
                self._lost_session = False
                self._node = None
                self._set_leading(False)
            if self._zk.client.state == KazooState.CONNECTED:
                try:
                    self._step()
                except (StateError, KazooException):
                    log.warning("election %s: step failed, retrying", self._id, exc_info=True)
            self._wake.wait(POLL_SECS)
            self._wake.clear()

    def _step(self) -> None:
        directory = self._paths.leader()
        client = self._zk.client
        if self._node is None or client.exists(self._node) is None:
            self._node = self._zk.create_sequential(
                self._paths.leader_candidate(), self._id.encode(), ephemeral=True
            )
        nodes = election_order(client.get_children(directory, watch=self._notify))
        mine = self._node.rpartition("/")[2]
        if mine not in nodes:
            self._node = None  # vanished between create and list: make a new one next time
            self._wake.set()
            return
        self._set_leading(nodes[0] == mine)
