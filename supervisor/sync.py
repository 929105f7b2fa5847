"""The supervisor's ZooKeeper side: one thread that reads what is wanted and writes heartbeats.

Keeping every ZooKeeper call on this thread means the supervisor's main loop (worker
processes and the control channel) never waits on ZooKeeper: a worker killed while
ZooKeeper is slow or away is still restarted at once, from the last assignments read.

The thread wakes on a `ClusterState.watch` notification, on a new heartbeat or error to
write, and every `supervisor.monitor.freq.secs` as a safety net. Each refresh reads the
assignments that name this supervisor and their topologies' status, fetches code not yet
cached in `{home}/code`, and publishes the result as a new generation of `wanted()`.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cluster.state import ClusterState
from supervisor.wants import PortWant, wanted_ports

log = logging.getLogger(__name__)

MAX_QUEUED_ERRORS = 200


def code_file_name(topology_id: str, code_version: str) -> str:
    return f"{quote(topology_id, safe='')}-{quote(code_version, safe='')}.pkl"


class StateSync:
    """Reads the wanted workers from, and writes worker heartbeats and errors to, the state."""

    def __init__(self, state: ClusterState, supervisor_id: str, slots: list[int],
                 code_dir: str, refresh_every: float, heartbeat_every: float) -> None:
        self.state = state
        self.id = supervisor_id
        self.slots = list(slots)
        self.code_dir = Path(code_dir)
        self.code_dir.mkdir(parents=True, exist_ok=True)
        self.refresh_every = refresh_every
        self.heartbeat_every = heartbeat_every
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._refresh_due = True
        self._wanted: dict[int, PortWant] | None = None
        self._generation = 0
        self._beats: dict[str, tuple[str, dict[str, Any]]] = {}  # worker key -> latest unsent
        self._last_upload: dict[str, float] = {}
        self._errors: list[tuple[str, str, dict[str, Any]]] = []
        self._thread = threading.Thread(target=self._run, name="supervisor-zk", daemon=True)

    # --- the main loop's side (thread-safe, never blocks on ZooKeeper) ------------------------

    def start(self) -> None:
        self.state.watch(self.poke)
        self._thread.start()

    def poke(self) -> None:
        """Re-read the assignments soon (a watch callback: only sets flags)."""
        self._refresh_due = True
        self._wake.set()

    def wanted(self) -> tuple[int, dict[int, PortWant] | None]:
        """(generation, port -> want); None until the assignments were first read."""
        with self._lock:
            return self._generation, self._wanted

    def offer_heartbeat(self, topology_id: str, worker_key: str, hb: dict[str, Any]) -> None:
        """Queue a worker's heartbeat (only the latest per worker is written) and its errors."""
        errors = [(topology_id, str(e.get("component", "?")), e)
                  for e in hb.get("errors") or () if isinstance(e, dict)]
        with self._lock:
            self._beats[worker_key] = (topology_id, hb)
            self._errors.extend(errors)
            del self._errors[:-MAX_QUEUED_ERRORS]
            due = self._last_upload.get(worker_key, -math.inf) + self.heartbeat_every
        if errors or due <= time.monotonic():
            self._wake.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    # --- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        next_refresh = 0.0
        while not self._closed.is_set():
            now = time.monotonic()
            self._wake.wait(max(0.0, min(next_refresh, self._next_upload()) - now))
            self._wake.clear()
            if self._closed.is_set():
                return
            now = time.monotonic()
            try:
                if self._refresh_due or now >= next_refresh:
                    self._refresh_due = False
                    next_refresh = now + self.refresh_every
                    self._refresh()
                self._upload(time.monotonic())
            except Exception:  # ZooKeeper away or a bad value: keep the last view, try again
                log.warning("supervisor %s: cluster state sync failed; retrying", self.id,
                            exc_info=True)
                next_refresh = min(next_refresh, time.monotonic() + 1.0)

    def _next_upload(self) -> float:
        with self._lock:
            if self._errors:
                return 0.0
            return min((self._last_upload.get(key, -math.inf) + self.heartbeat_every
                        for key in self._beats), default=math.inf)

    def _refresh(self) -> None:
        assignments = {tid: a for tid, a in self.state.assignments().items()
                       if self._names_me(a)}
        statuses = {}
        for tid in assignments:
            meta = self.state.topology(tid)
            statuses[tid] = str(meta.get("status", "INACTIVE")) if meta else "INACTIVE"
        wants = wanted_ports(self.id, self.slots, assignments, statuses)
        paths: dict[tuple[str, str], str | None] = {}
        for want in wants.values():
            key = (want.topology_id, want.code_version)
            if key not in paths:
                paths[key] = self._fetch_code(*key)
        wants = {port: replace(w, code_path=paths[(w.topology_id, w.code_version)])
                 for port, w in wants.items()}
        with self._lock:
            if wants != self._wanted:
                self._wanted = wants
                self._generation += 1
        self._remove_unused_code({p for p in paths.values() if p})

    def _names_me(self, assignment: dict[str, Any]) -> bool:
        workers = assignment.get("workers")
        return isinstance(workers, list) and any(
            isinstance(w, dict) and w.get("supervisor") == self.id for w in workers)

    def _fetch_code(self, topology_id: str, code_version: str) -> str | None:
        path = self.code_dir / code_file_name(topology_id, code_version)
        if path.exists():
            return str(path)
        blob = self.state.get_code(topology_id)
        if blob is None:
            log.info("supervisor %s: code of %s is not available yet", self.id, topology_id)
            return None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)  # atomic: a worker never reads half a package
        log.info("supervisor %s: fetched code of %s (version %r, %d bytes)", self.id,
                 topology_id, code_version, len(blob))
        return str(path)

    def _remove_unused_code(self, keep: set[str]) -> None:
        for path in self.code_dir.glob("*.pkl"):
            if str(path) not in keep:
                log.info("supervisor %s: removing unused code %s", self.id, path.name)
                path.unlink(missing_ok=True)

    def _upload(self, now: float) -> None:
        with self._lock:
            errors, self._errors = self._errors, []
            due = {key: beat for key, beat in self._beats.items()
                   if self._last_upload.get(key, -math.inf) + self.heartbeat_every <= now}
            for key in due:
                del self._beats[key]
                self._last_upload[key] = now
        for i, (topology_id, component, error) in enumerate(errors):
            try:
                self.state.report_error(topology_id, component, error)
            except Exception:
                with self._lock:  # not lost: written on the next attempt
                    self._errors[:0] = errors[i:]
                raise
        for key, (topology_id, hb) in due.items():
            self.state.worker_heartbeat(topology_id, key, hb)
