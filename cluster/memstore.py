"""In-process cluster state for local mode and unit tests.

A `MemoryBackend` plays the ZooKeeper server: shared dicts behind one lock. Each
`MemoryClusterState` is one client "session" on it; what a client registers (supervisors,
nimbuses, election candidacy) disappears when it closes, as ephemeral nodes do. Several clients
may share one backend, so a local cluster can run nimbus and supervisors on separate clients.
Every value goes through JSON on the way in and out, exactly like the ZooKeeper store.
"""

from __future__ import annotations

import itertools
import json
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.paths import MAX_ERRORS, MAX_VALUE_BYTES
from cluster.state import Callback, ClusterState, RecordError, StateError

log = logging.getLogger(__name__)


def _dump(value: dict[str, Any], what: str = "value") -> str:
    try:
        data = json.dumps(value)
    except (TypeError, ValueError) as e:
        raise RecordError(f"cluster state: {what} is not JSON-serialisable: {e}") from e
    if len(data) > MAX_VALUE_BYTES:  # the ZooKeeper store's limit: behave the same
        raise RecordError(f"cluster state: {what} is {len(data)} bytes, over the "
                         f"{MAX_VALUE_BYTES} bytes a record may hold")
    return data


def _load(data: str, what: str) -> dict[str, Any] | None:
    """A stored object, or None (logged) when it is not one."""
    value = json.loads(data)
    if not isinstance(value, dict):
        log.warning("memstate: skipping %s: not a JSON object", what)
        return None
    return value


def _load_all(table: dict[str, str], what: str) -> dict[str, dict[str, Any]]:
    out = {}
    for key, data in table.items():
        value = _load(data, f"{what} {key!r}")
        if value is not None:
            out[key] = value
    return out


@dataclass
class _Candidate:
    client: MemoryClusterState
    nimbus_id: str
    on_elected: Callback
    on_lost: Callback


@dataclass
class MemoryBackend:
    """The shared state of every client; all fields are guarded by `lock`."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    supervisors: dict[str, tuple[int, str]] = field(default_factory=dict)  # id -> (owner, json)
    supervisor_beats: dict[str, str] = field(default_factory=dict)
    nimbuses: dict[str, tuple[int, str]] = field(default_factory=dict)
    topologies: dict[str, str] = field(default_factory=dict)
    assignments: dict[str, str] = field(default_factory=dict)
    code: dict[str, bytes] = field(default_factory=dict)
    heartbeats: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: dict[str, dict[str, deque[str]]] = field(default_factory=dict)
    nonces: dict[str, float] = field(default_factory=dict)  # nonce -> when claimed
    candidates: list[_Candidate] = field(default_factory=list)
    clients: list[MemoryClusterState] = field(default_factory=list)
    sessions: itertools.count[int] = field(default_factory=itertools.count)

    def changed(self) -> None:
        """Tell every client that watched state changed. Caller holds the lock."""
        for client in self.clients:
            client._post_watch()


class MemoryClusterState(ClusterState):
    """One client of a `MemoryBackend` (a fresh private backend when none is given)."""

    def __init__(self, backend: MemoryBackend | None = None) -> None:
        self.backend = backend if backend is not None else MemoryBackend()
        self._callbacks: list[Callback] = []
        self._events: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._watch_pending = False
        self._closed = False
        self._thread: threading.Thread | None = None
        with self.backend.lock:
            self._session = next(self.backend.sessions)
            self.backend.clients.append(self)

    # --- background notifications: never run callbacks on the writer's thread ------------------

    def _post(self, fn: Callable[[], None]) -> None:
        if self._closed:
            return
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"memstate-{self._session}", daemon=True
            )
            self._thread.start()
        self._events.put(fn)

    def _post_watch(self) -> None:
        if self._callbacks and not self._watch_pending:
            self._watch_pending = True
            self._post(self._fire_watches)

    def _fire_watches(self) -> None:
        self._watch_pending = False
        for cb in list(self._callbacks):
            _safe_call(cb, "watch callback")

    def _run(self) -> None:
        while True:
            fn = self._events.get()
            if fn is None:
                return
            fn()

    # --- daemons ------------------------------------------------------------------------------

    def register_supervisor(self, sup_id: str, info: dict[str, Any]) -> None:
        data = _dump(info, f"supervisor {sup_id!r}")
        with self.backend.lock:
            self._check_open()
            self.backend.supervisors[sup_id] = (self._session, data)
            self.backend.changed()

    def supervisors(self) -> dict[str, dict[str, Any]]:
        with self.backend.lock:
            table = {k: v for k, (_, v) in self.backend.supervisors.items()}
        return _load_all(table, "supervisor")

    def supervisor_heartbeat(self, sup_id: str, beat: dict[str, Any]) -> None:
        data = _dump(beat, f"heartbeat of supervisor {sup_id!r}")
        with self.backend.lock:
            self.backend.supervisor_beats[sup_id] = data

    def supervisor_heartbeats(self) -> dict[str, dict[str, Any]]:
        with self.backend.lock:
            table = dict(self.backend.supervisor_beats)
        return _load_all(table, "supervisor heartbeat")

    def remove_supervisor_heartbeat(self, sup_id: str) -> None:
        with self.backend.lock:
            self.backend.supervisor_beats.pop(sup_id, None)

    def register_nimbus(self, nimbus_id: str, info: dict[str, Any]) -> None:
        data = _dump(info, f"nimbus {nimbus_id!r}")
        with self.backend.lock:
            self._check_open()
            self.backend.nimbuses[nimbus_id] = (self._session, data)

    def nimbuses(self) -> dict[str, dict[str, Any]]:
        with self.backend.lock:
            table = {k: v for k, (_, v) in self.backend.nimbuses.items()}
        return _load_all(table, "nimbus")

    def run_for_leader(self, nimbus_id: str, on_elected: Callback, on_lost: Callback) -> None:
        with self.backend.lock:
            self._check_open()
            cands = self.backend.candidates
            if any(c.client is self for c in cands):
                raise StateError(f"nimbus {nimbus_id}: already running for leader")
            cands.append(_Candidate(self, nimbus_id, on_elected, on_lost))
            if cands[0].client is self:
                self._post(lambda: _safe_call(on_elected, "on_elected"))

    def leader(self) -> str | None:
        with self.backend.lock:
            cands = self.backend.candidates
            return cands[0].nimbus_id if cands else None

    # --- topologies ---------------------------------------------------------------------------

    def set_topology(self, topology_id: str, meta: dict[str, Any]) -> None:
        data = _dump(meta, f"record of topology {topology_id!r}")
        with self.backend.lock:
            self.backend.topologies[topology_id] = data
            self.backend.changed()

    def topology(self, topology_id: str) -> dict[str, Any] | None:
        with self.backend.lock:
            data = self.backend.topologies.get(topology_id)
        return None if data is None else _load(data, f"topology {topology_id!r}")

    def topologies(self) -> dict[str, dict[str, Any]]:
        with self.backend.lock:
            table = dict(self.backend.topologies)
        return _load_all(table, "topology")

    def orphaned_records(self) -> set[str]:
        b = self.backend
        with b.lock:
            return (set(b.heartbeats) | set(b.errors)) - set(b.topologies)

    def remove_topology(self, topology_id: str) -> None:
        b = self.backend
        with b.lock:
            for table in (b.topologies, b.assignments, b.code, b.heartbeats, b.errors):
                table.pop(topology_id, None)
            b.changed()

    def put_code(self, topology_id: str, blob: bytes) -> None:
        with self.backend.lock:
            self.backend.code[topology_id] = bytes(blob)

    def get_code(self, topology_id: str) -> bytes | None:
        with self.backend.lock:
            return self.backend.code.get(topology_id)

    # --- assignments --------------------------------------------------------------------------

    def set_assignment(self, topology_id: str, assignment: dict[str, Any]) -> None:
        data = _dump(assignment, f"assignment of {topology_id!r}")
        with self.backend.lock:
            self.backend.assignments[topology_id] = data
            self.backend.changed()

    def assignment(self, topology_id: str) -> dict[str, Any] | None:
        with self.backend.lock:
            data = self.backend.assignments.get(topology_id)
        return None if data is None else _load(data, f"assignment {topology_id!r}")

    def assignments(self) -> dict[str, dict[str, Any]]:
        with self.backend.lock:
            table = dict(self.backend.assignments)
        return _load_all(table, "assignment")

    def remove_assignment(self, topology_id: str) -> None:
        with self.backend.lock:
            if self.backend.assignments.pop(topology_id, None) is not None:
                self.backend.changed()

    # --- heartbeats and errors ----------------------------------------------------------------

    def worker_heartbeat(self, topology_id: str, worker_key: str, hb: dict[str, Any]) -> None:
        data = _dump(hb, f"heartbeat of {topology_id!r} worker {worker_key}")
        with self.backend.lock:
            self.backend.heartbeats.setdefault(topology_id, {})[worker_key] = data

    def worker_heartbeats(self, topology_id: str) -> dict[str, dict[str, Any]]:
        with self.backend.lock:
            beats = dict(self.backend.heartbeats.get(topology_id, {}))
        return _load_all(beats, f"heartbeat of {topology_id!r} worker")

    def remove_worker_heartbeat(self, topology_id: str, worker_key: str) -> None:
        with self.backend.lock:
            self.backend.heartbeats.get(topology_id, {}).pop(worker_key, None)

    def report_error(self, topology_id: str, component: str, error: dict[str, Any]) -> None:
        data = _dump(error, f"error of {topology_id!r} component {component!r}")
        with self.backend.lock:
            per_topology = self.backend.errors.setdefault(topology_id, {})
            per_topology.setdefault(component, deque(maxlen=MAX_ERRORS)).append(data)

    def errors(
        self, topology_id: str, component: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        with self.backend.lock:
            per_topology = self.backend.errors.get(topology_id, {})
            wanted = [component] if component is not None else list(per_topology)
            return {
                c: [json.loads(e) for e in per_topology[c]] for c in wanted if c in per_topology
            }

    # --- request nonces ------------------------------------------------------------------------

    def claim_nonce(self, nonce: str, now: float, ttl: float) -> bool:
        with self.backend.lock:
            nonces = self.backend.nonces
            if len(nonces) > 1000:
                for old in [n for n, t in nonces.items() if now - t > ttl]:
                    del nonces[old]
            claimed = nonces.get(nonce)
            if claimed is not None and now - claimed <= ttl:
                return False
            nonces[nonce] = now
            return True

    # --- notification and lifetime ------------------------------------------------------------

    def watch(self, callback: Callback) -> None:
        with self.backend.lock:
            self._check_open()
            self._callbacks.append(callback)
            self._post_watch()

    def close(self) -> None:
        b = self.backend
        with b.lock:
            if self._closed:
                return
            for table in (b.supervisors, b.nimbuses):
                for key in [k for k, (owner, _) in table.items() if owner == self._session]:
                    del table[key]
            was_leader = bool(b.candidates) and b.candidates[0].client is self
            b.candidates[:] = [c for c in b.candidates if c.client is not self]
            if was_leader and b.candidates:
                new = b.candidates[0]
                new.client._post(lambda: _safe_call(new.on_elected, "on_elected"))
            b.clients.remove(self)
            self._closed = True
            b.changed()
        self._events.put(None)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _check_open(self) -> None:
        if self._closed:
            raise StateError("cluster state: client is closed")


def _safe_call(fn: Callback, what: str) -> None:
    try:
        fn()
    except Exception:  # a listener's bug must not kill the notifier thread
        log.exception("memstate: %s %r raised", what, fn)
