"""Cluster state in ZooKeeper, over kazoo.

Two layers: `cluster.zkraw.RawZk` is the raw layer (retried, idempotent get/put/delete/children
on bytes, with the cluster's ACL), and `ZkClusterState` the domain layer on top, whose paths
all come from `cluster.paths`. One background thread per client ("zkstate") re-creates this client's
ephemeral nodes after a session loss and runs `watch` callbacks; kazoo's own event thread only
ever sets an Event, so no listener blocks it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from cluster.election import Candidate, election_order
from cluster.paths import CODE_CHUNK_BYTES, MANIFEST, MAX_ERRORS, Paths, decode
from cluster.state import Callback, ClusterState, RecordError, StateError
from cluster.zkraw import RawZk

log = logging.getLogger(__name__)

NONCE_PRUNE_EVERY = 256  # claims between two sweeps of expired nonces
POLL_SECS = 1.0  # safety net: watches wake the thread at once, this catches anything missed


def _dumps(value: dict[str, Any]) -> bytes:
    try:
        return json.dumps(value).encode()
    except (TypeError, ValueError) as e:
        raise RecordError(f"cluster state: value is not JSON-serialisable: {e}") from e


def _object(data: bytes | None) -> dict[str, Any] | None:
    """A stored JSON object; None when absent. ValueError when it is something else."""
    if data is None:
        return None
    value = json.loads(data.decode())
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


class ZkClusterState(ClusterState):
    """Cluster state kept in ZooKeeper under `zookeeper.root`."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.paths = Paths(config["zookeeper.root"])
        self._zk = RawZk(config)
        self._lock = threading.Lock()
        self._ephemerals: dict[str, bytes] = {}  # path -> data, re-created after session loss
        self._callbacks: list[Callback] = []
        self._fingerprint: object = None
        self._candidate: Candidate | None = None
        self._closed = threading.Event()
        self._wake = threading.Event()
        self._claims = 0
        self._bad: set[tuple[str, int]] = set()  # (path, hash of value) already warned about
        self._zk.client.add_listener(self._on_state)
        try:
            self._zk.client.start(timeout=float(config["zookeeper.connect.timeout.secs"]))
        except KazooTimeoutError as e:
            self._zk.client.close()
            raise StateError(f"zookeeper {self._zk.hosts}: cannot connect: {e}") from e
        try:
            for path in [self.paths.root, *self.paths.watched()]:
                self._zk.ensure(path)
            if self._zk.acl is not None:
                self._zk.secure_tree(self.paths.root)
        except StateError:
            self._zk.client.stop()
            self._zk.client.close()
            raise
        self._thread = threading.Thread(target=self._run, name="zkstate", daemon=True)
        self._thread.start()

    @property
    def client(self) -> KazooClient:
        """The underlying kazoo client (for tests and diagnostics)."""
        return self._zk.client

    # --- the background thread ----------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        # Runs on kazoo's event thread: only flag, never block.
        log.info("zkstate: connection %s", state)
        self._wake.set()

    def _notify(self, _event: object = None) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(POLL_SECS)
            self._wake.clear()
            if self._closed.is_set() or self._zk.client.state != KazooState.CONNECTED:
                continue
            try:
                self._restore_ephemerals()
                self._check_watched()
            except (StateError, KazooException):
                log.warning("zkstate: sync failed, retrying", exc_info=True)

    def _restore_ephemerals(self) -> None:
        with self._lock:
            wanted = dict(self._ephemerals)
        session = self._zk.client.client_id[0] if self._zk.client.client_id else None
        for path, data in wanted.items():
            stat = self._zk.client.exists(path)
            if stat is None or stat.ephemeralOwner != session:
                log.info("zkstate: re-registering %s", path)
                self._zk.put_ephemeral(path, data)

    def _check_watched(self) -> None:
        if not self._callbacks:
            return
        client = self._zk.client
        seen = []
        for directory in self.paths.watched():
            for child in sorted(client.get_children(directory, watch=self._notify)):
                stat = client.exists(f"{directory}/{child}", watch=self._notify)
                if stat is not None:
                    seen.append((directory, child, stat.czxid, stat.mzxid))
        if seen != self._fingerprint:
            self._fingerprint = seen
            for cb in list(self._callbacks):
                try:
                    cb()
                except Exception:  # a listener's bug must not stop the thread
                    log.exception("zkstate: watch callback %r raised", cb)

    # --- daemons ------------------------------------------------------------------------------

    def _register(self, path: str, info: dict[str, Any]) -> None:
        data = _dumps(info)
        with self._lock:
            self._ephemerals[path] = data
        self._zk.put_ephemeral(path, data)

    def _read(self, path: str) -> dict[str, Any] | None:
        """The object at `path`; None when absent or not a JSON object (warned once)."""
        data = self._zk.get(path)
        try:
            return _object(data)
        except ValueError as e:
            key = (path, hash(data))
            if key not in self._bad:
                self._bad.add(key)
                log.warning("zkstate: skipping %s: %s", path, e)
            return None

    def _read_dir(self, directory: str) -> dict[str, dict[str, Any]]:
        """Every child that holds an object (one that was removed meanwhile, or holds
        something else, is left out: one bad record must not hide the others)."""
        out = {}
        for child in self._zk.children(directory):
            value = self._read(f"{directory}/{child}")
            if value is not None:
                out[decode(child)] = value
        return out

    def register_supervisor(self, sup_id: str, info: dict[str, Any]) -> None:
        self._register(self.paths.supervisor(sup_id), info)

    def supervisors(self) -> dict[str, dict[str, Any]]:
        return self._read_dir(self.paths.supervisors())

    def supervisor_heartbeat(self, sup_id: str, beat: dict[str, Any]) -> None:
        self._zk.put(self.paths.supervisor_heartbeat(sup_id), _dumps(beat))

    def supervisor_heartbeats(self) -> dict[str, dict[str, Any]]:
        return self._read_dir(self.paths.supervisor_heartbeats())

    def remove_supervisor_heartbeat(self, sup_id: str) -> None:
        self._zk.delete(self.paths.supervisor_heartbeat(sup_id))

    def register_nimbus(self, nimbus_id: str, info: dict[str, Any]) -> None:
        self._register(self.paths.nimbus(nimbus_id), info)

    def nimbuses(self) -> dict[str, dict[str, Any]]:
        return self._read_dir(self.paths.nimbuses())

    def run_for_leader(self, nimbus_id: str, on_elected: Callback, on_lost: Callback) -> None:
        if self._candidate is not None:
            raise StateError(f"nimbus {nimbus_id}: already running for leader")
        self._candidate = Candidate(self._zk, self.paths, nimbus_id, on_elected, on_lost)
        self._zk.client.add_listener(self._candidate.on_state)
        self._candidate.start()

    def leader(self) -> str | None:
        nodes = election_order(self._zk.children(self.paths.leader()))
        for node in nodes:
            data = self._zk.get(f"{self.paths.leader()}/{node}")
            if data is not None:
                return data.decode()
        return None

    # --- topologies ---------------------------------------------------------------------------

    def set_topology(self, topology_id: str, meta: dict[str, Any]) -> None:
        self._zk.put(self.paths.topology(topology_id), _dumps(meta))

    def topology(self, topology_id: str) -> dict[str, Any] | None:
        return self._read(self.paths.topology(topology_id))

    def topologies(self) -> dict[str, dict[str, Any]]:
        return self._read_dir(self.paths.topologies())

    def orphaned_records(self) -> set[str]:
        p = self.paths
        known = set(self._zk.children(p.topologies()))
        found = set(self._zk.children(p.heartbeats_root()))
        found |= set(self._zk.children(p.errors_root()))
        return {decode(node) for node in found - known}

    def remove_topology(self, topology_id: str) -> None:
        p = self.paths
        self._zk.delete(p.assignment(topology_id))
        for path in (p.code(topology_id), p.heartbeats(topology_id), p.errors(topology_id)):
            self._zk.delete(path, recursive=True)
        self._zk.delete(p.topology(topology_id))  # last: a half-removed topology is still seen

    def put_code(self, topology_id: str, blob: bytes) -> None:
        # Manifest out first and back in last: a reader never takes a half-written package.
        p = self.paths
        self._zk.delete(p.code_manifest(topology_id))
        chunks = [blob[i : i + CODE_CHUNK_BYTES] for i in range(0, len(blob), CODE_CHUNK_BYTES)]
        for i, chunk in enumerate(chunks):
            self._zk.put(p.code_chunk(topology_id, i), chunk)
        for child in self._zk.children(p.code(topology_id)):  # leftovers of a larger package
            if child != MANIFEST and int(child.rpartition("-")[2]) >= len(chunks):
                self._zk.delete(f"{p.code(topology_id)}/{child}")
        manifest = {
            "chunks": len(chunks),
            "size": len(blob),
            "sha256": hashlib.sha256(blob).hexdigest(),
        }
        self._zk.put(p.code_manifest(topology_id), _dumps(manifest))

    def get_code(self, topology_id: str) -> bytes | None:
        p = self.paths
        manifest = self._read(p.code_manifest(topology_id))
        if manifest is None:
            return None
        try:
            chunks, size, digest = int(manifest["chunks"]), manifest["size"], manifest["sha256"]
        except (KeyError, TypeError, ValueError):
            log.warning("zkstate: code of %s has a malformed manifest", topology_id)
            return None
        parts = [self._zk.get(p.code_chunk(topology_id, i)) for i in range(min(chunks, 4096))]
        blob = b"".join(part or b"" for part in parts)
        if len(blob) != size or hashlib.sha256(blob).hexdigest() != digest:
            log.warning("zkstate: code of %s is being rewritten; not ready", topology_id)
            return None
        return blob

    # --- assignments --------------------------------------------------------------------------

    def set_assignment(self, topology_id: str, assignment: dict[str, Any]) -> None:
        self._zk.put(self.paths.assignment(topology_id), _dumps(assignment))

    def assignment(self, topology_id: str) -> dict[str, Any] | None:
        return self._read(self.paths.assignment(topology_id))

    def assignments(self) -> dict[str, dict[str, Any]]:
        return self._read_dir(self.paths.assignments())

    def remove_assignment(self, topology_id: str) -> None:
        self._zk.delete(self.paths.assignment(topology_id))

    # --- heartbeats and errors ----------------------------------------------------------------

    def worker_heartbeat(self, topology_id: str, worker_key: str, hb: dict[str, Any]) -> None:
        self._zk.put(self.paths.heartbeat(topology_id, worker_key), _dumps(hb))

    def worker_heartbeats(self, topology_id: str) -> dict[str, dict[str, Any]]:
        return self._read_dir(self.paths.heartbeats(topology_id))

    def remove_worker_heartbeat(self, topology_id: str, worker_key: str) -> None:
        self._zk.delete(self.paths.heartbeat(topology_id, worker_key))

    def report_error(self, topology_id: str, component: str, error: dict[str, Any]) -> None:
        self._zk.create_sequential(self.paths.error_node(topology_id, component), _dumps(error))
        directory = self.paths.component_errors(topology_id, component)
        nodes = sorted(self._zk.children(directory))  # same prefix: sorts by sequence number
        for node in nodes[:-MAX_ERRORS]:
            self._zk.delete(f"{directory}/{node}")

    def errors(
        self, topology_id: str, component: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        directory = self.paths.errors(topology_id)
        if component is not None:
            components = [self.paths.component_errors(topology_id, component)]
        else:
            components = [f"{directory}/{c}" for c in self._zk.children(directory)]
        out: dict[str, list[dict[str, Any]]] = {}
        for comp_dir in components:
            read = [self._read(f"{comp_dir}/{n}") for n in sorted(self._zk.children(comp_dir))]
            values = [v for v in read if v is not None]
            if values:
                out[decode(comp_dir.rpartition("/")[2])] = values
        return out

    # --- request nonces ------------------------------------------------------------------------

    def claim_nonce(self, nonce: str, now: float, ttl: float) -> bool:
        path = self.paths.nonce(nonce)
        data = _dumps({"time": now})
        self._claims += 1
        if self._claims % NONCE_PRUNE_EVERY == 0:
            self._prune_nonces(now, ttl)
        if self._zk.create(path, data):
            return True
        old = self._read(path)
        if old is not None and now - float(old.get("time", now)) <= ttl:
            return False
        self._zk.put(path, data)  # an expired claim left by a sweep not yet run
        return True

    def _prune_nonces(self, now: float, ttl: float) -> None:
        directory = self.paths.nonces()
        for child in self._zk.children(directory):
            old = self._read(f"{directory}/{child}")
            if old is not None and now - float(old.get("time", now)) > ttl:
                self._zk.delete(f"{directory}/{child}")

    # --- notification and lifetime ------------------------------------------------------------

    def watch(self, callback: Callback) -> None:
        self._callbacks.append(callback)
        self._fingerprint = None  # makes the thread call every callback once, soon
        self._wake.set()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake.set()
        if self._candidate is not None:
            self._candidate.stop()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        try:
            self._zk.client.stop()  # ends the session: ephemeral nodes go at once
        finally:
            self._zk.client.close()
