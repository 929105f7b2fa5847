"""The supervisor's ZooKeeper side: one thread that reads what is wanted and writes heartbeats.

Keeping every ZooKeeper call on this thread means the supervisor's main loop (worker
processes and the control channel) never waits on ZooKeeper: a worker killed while
ZooKeeper is slow or away is still restarted at once, from the last assignments read.

The thread wakes on a `ClusterState.watch` notification, on a heartbeat or error to write, and
every `supervisor.monitor.freq.secs` as a safety net. Each refresh reads the assignments that
name this supervisor, fetches the code not yet cached in `{home}/code`, and publishes the
result as a new generation of `wanted()` (calling `on_change`, which wakes the main loop).

A topology with `topology.requirements` (read from its record's conf, once per code version)
runs in a virtual environment built for that set (supervisor.venvs, on a thread of its own):
its ports are published without a runtime until the environment is ready, and a failed
install is reported once as the topology's error ("__supervisor").

Code runs only if nimbus signed it with the cluster secret (cluster.codesign): a package that
is unsigned or signed with another secret is refused, reported as the topology's error
("__supervisor") and not fetched again for that code version. What is cached is the verified
package, under a name of bounded length whatever the topology id. A package that ships its
code directory (cluster.resources: a topology with shell components) has it unpacked once,
after the signature is verified, into `{name}.resources` next to the cached file, which then
names that directory instead of holding the archive; the worker runs its shell components
there. Both go when the code is no longer used.

The assignment message a worker gets also carries the loggers' levels set by `squall
set-log-level` (nimbus puts them in the stored assignment, bumping its version).

Writes are isolated: one record that cannot be stored (too large) is dropped with a warning,
and the others are still written; problems with one topology's assignment are logged once.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cluster.codesign import CodeSignatureError, verify_code
from cluster.resources import ResourcesError, open_envelope, unpack, wrap
from cluster.state import ClusterState, RecordError
from supervisor.venvs import Environments
from supervisor.wants import PortWant, Runtime, wanted_ports

log = logging.getLogger(__name__)

MAX_QUEUED_ERRORS = 200
ERROR_COMPONENT = "__supervisor"  # where the supervisor's problems with a topology are reported
READABLE_NAME_CHARS = 60


def code_file_name(topology_id: str, code_version: str) -> str:
    """The cache file of one code version: the id's readable start and a hash of both, so
    the name stays short (file systems refuse names over 255 bytes) and unique."""
    digest = hashlib.sha256(f"{topology_id}\0{code_version}".encode()).hexdigest()[:16]
    return f"{quote(topology_id, safe='')[:READABLE_NAME_CHARS]}-{digest}.pkl"


def resources_dir(code_path: Path) -> Path:
    """Where the code directory shipped with the code cached at `code_path` is unpacked."""
    return code_path.with_name(f"{code_path.stem}.resources")


def with_log_levels(message: dict[str, Any], assignment: Any) -> dict[str, Any]:
    """The assignment message for a worker with the loggers' levels its stored assignment
    carries (`squall set-log-level`; the worker's parent thread applies them)."""
    levels = assignment.get("log_levels") if isinstance(assignment, dict) else None
    if not isinstance(levels, dict) or not levels:
        return message
    return {**message, "assignment": {**message["assignment"], "log_levels": levels}}


class StateSync:
    """Reads the wanted workers from, and writes heartbeats and errors to, the state."""

    def __init__(self, state: ClusterState, supervisor_id: str, slots: list[int],
                 code_dir: str, refresh_every: float, heartbeat_every: float,
                 secret: str | None, on_change: Callable[[], None] = lambda: None,
                 venv_dir: str | None = None) -> None:
        self.state = state
        self.id = supervisor_id
        self.slots = list(slots)
        self.code_dir = Path(code_dir)
        self.code_dir.mkdir(parents=True, exist_ok=True)
        self.refresh_every = refresh_every
        self.heartbeat_every = heartbeat_every
        self.secret = secret
        self.on_change = on_change
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._refresh_due = True
        self._wanted: dict[int, PortWant] | None = None
        self._generation = 0
        self._begun = 0  # refreshes begun; `_done` is the last one whose result is published
        self._done = 0
        self._beats: dict[str, tuple[str, dict[str, Any]]] = {}  # worker key -> latest unsent
        self._last_upload: dict[str, float] = {}
        self._versions: dict[str, Any] = {}  # worker key -> version of its last upload
        self._errors: list[tuple[str, str, dict[str, Any]]] = []
        self._own_beat: dict[str, Any] | None = None  # the supervisor's heartbeat to write
        self._refused: dict[tuple[str, str], str] = {}  # (topology, code version) -> why
        self._problems: dict[str, str] = {}  # topology -> its assignment's problem, logged
        self._requirements: dict[tuple[str, str], object] = {}  # (topology, code) -> its list
        self.envs = Environments(Path(venv_dir or self.code_dir.parent / "venvs"), self.id,
                                 self.poke, self._environment_failed)
        self._thread = threading.Thread(target=self._run, name="supervisor-zk", daemon=True)

    # --- the main loop's side (thread-safe, never blocks on ZooKeeper) ------------------------

    def start(self) -> None:
        self.state.watch(self.poke)
        self._thread.start()

    def poke(self) -> None:
        """Re-read the assignments soon (a watch callback: only sets flags)."""
        self._refresh_due = True
        self._wake.set()

    def set_slots(self, slots: list[int]) -> None:
        """Offer other ports (local mode adds a topology's slots as it is submitted)."""
        self.slots = list(slots)
        self.poke()

    def mark(self) -> int:
        """A mark for `refreshed_since`: a refresh begun after this call reads the state as
        it is now (one is asked for)."""
        with self._lock:
            mark = self._begun
        self.poke()
        return mark

    def refreshed_since(self, mark: int) -> bool:
        """Whether what `wanted()` returns comes from a refresh begun after `mark()`."""
        with self._lock:
            return self._done > mark

    def wanted(self) -> tuple[int, dict[int, PortWant] | None]:
        """(generation, port -> want); None until the assignments were first read."""
        with self._lock:
            return self._generation, self._wanted

    def offer_beat(self, beat: dict[str, Any]) -> None:
        """Have the supervisor's own heartbeat written (the latest offered wins)."""
        with self._lock:
            self._own_beat = beat
        self._wake.set()

    def offer_heartbeat(self, topology_id: str, worker_key: str, hb: dict[str, Any]) -> None:
        """Queue a worker's heartbeat (only the latest per worker is written, at most every
        `heartbeat_every`, but at once when it runs a new version) and its errors."""
        errors = [(topology_id, str(e.get("component", "?")), e)
                  for e in hb.get("errors") or () if isinstance(e, dict)]
        with self._lock:
            self._beats[worker_key] = (topology_id, hb)
            self._errors.extend(errors)
            del self._errors[:-MAX_QUEUED_ERRORS]
            due = self._due(worker_key, hb)
        if errors or due <= time.monotonic():
            self._wake.set()

    def _due(self, worker_key: str, hb: dict[str, Any]) -> float:
        """When a worker's heartbeat is to be written (caller holds the lock)."""
        if hb.get("version") != self._versions.get(worker_key, ()):
            return -math.inf  # news: what it runs changed (wait_running, submit --wait)
        return self._last_upload.get(worker_key, -math.inf) + self.heartbeat_every

    def offer_errors(self, topology_id: str, errors: list[dict[str, Any]]) -> None:
        """Queue errors alone (from a worker being replaced, whose heartbeat is not used)."""
        with self._lock:
            self._errors += [(topology_id, str(e.get("component", "?")), e)
                             for e in errors if isinstance(e, dict)]
            del self._errors[:-MAX_QUEUED_ERRORS]
        self._wake.set()

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self.envs.close()
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
                self._write_own_beat()
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
            if self._errors or self._own_beat is not None:
                return 0.0
            return min((self._due(key, hb) for key, (_, hb) in self._beats.items()),
                       default=math.inf)

    def _write_own_beat(self) -> None:
        with self._lock:
            beat, self._own_beat = self._own_beat, None
        if beat is not None:
            self.state.supervisor_heartbeat(self.id, beat)

    def _refresh(self) -> None:
        with self._lock:
            self._begun += 1
            index = self._begun
        assignments = {tid: a for tid, a in self.state.assignments().items()
                       if self._names_me(a)}
        problems: dict[str, str] = {}
        wants = wanted_ports(self.id, self.slots, assignments, problems)
        self._log_problems(problems)
        paths: dict[tuple[str, str], str | None] = {}
        runtimes: dict[tuple[str, str], Runtime | None] = {}
        for want in wants.values():
            key = (want.topology_id, want.code_version)
            if key not in paths:
                paths[key] = self._fetch_code(*key)
                runtimes[key] = self._runtime(*key)
        wants = {port: replace(w, code_path=paths[key], runtime=runtimes[key],
                               message=with_log_levels(w.message, assignments[w.topology_id]))
                 for port, w in wants.items()
                 for key in [(w.topology_id, w.code_version)]}
        with self._lock:
            changed = wants != self._wanted
            if changed:
                self._wanted = wants
                self._generation += 1
            self._done = index
        if changed:
            self.on_change()
        self._remove_unused_code({p for p in paths.values() if p})
        self._refused = {k: v for k, v in self._refused.items() if k[0] in assignments}
        self._requirements = {k: v for k, v in self._requirements.items() if k in paths}

    def _log_problems(self, problems: dict[str, str]) -> None:
        for tid, problem in problems.items():
            if self._problems.get(tid) != problem:
                log.warning("supervisor %s: topology %s: %s", self.id, tid, problem)
        self._problems = problems

    def _names_me(self, assignment: dict[str, Any]) -> bool:
        workers = assignment.get("workers")
        return isinstance(workers, list) and any(
            isinstance(w, dict) and w.get("supervisor") == self.id for w in workers)

    def _fetch_code(self, topology_id: str, code_version: str) -> str | None:
        path = self.code_dir / code_file_name(topology_id, code_version)
        if path.exists():
            return str(path)
        if (topology_id, code_version) in self._refused:
            return None
        signed = self.state.get_code(topology_id)
        if signed is None:
            log.info("supervisor %s: code of %s is not available yet", self.id, topology_id)
            return None
        try:
            blob = verify_code(signed, self.secret, f"code of topology {topology_id}")
        except CodeSignatureError as e:
            self._refuse(topology_id, code_version, str(e))
            return None
        try:
            blob = self._unpack_resources(path, blob)
        except ResourcesError as e:
            self._refuse(topology_id, code_version, f"code of topology {topology_id}: {e}")
            return None
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)  # atomic: a worker never reads half a package
        log.info("supervisor %s: fetched code of %s (version %r, %d bytes)", self.id,
                 topology_id, code_version, len(blob))
        return str(path)

    def _unpack_resources(self, path: Path, blob: bytes) -> bytes:
        """A verified package to cache at `path`: as it is, or, when it ships a code
        directory, with that unpacked next to it (ResourcesError: it must not be) and named
        in its place. The cached file is written after: where it exists, so does the
        directory."""
        envelope = open_envelope(blob)
        if envelope is None or envelope.get("resources") is None:
            return blob
        target = resources_dir(path)
        shutil.rmtree(target, ignore_errors=True)  # what an interrupted attempt left
        unpack(envelope["resources"], target)
        log.info("supervisor %s: unpacked the code directory of %s into %s", self.id,
                 path.name, target)
        return wrap(envelope["code"], code_dir=os.path.abspath(target))

    def _runtime(self, topology_id: str, code_version: str) -> Runtime | None:
        """What the topology's workers run with (None: not ready); its requirements are
        read from its record once per code version."""
        key = (topology_id, code_version)
        if key not in self._requirements:
            meta = self.state.topology(topology_id)
            if meta is None:
                return None  # being removed: its assignment goes next
            conf = meta.get("conf")
            self._requirements[key] = (conf.get("topology.requirements") or []
                                       if isinstance(conf, dict) else [])
        return self.envs.runtime(topology_id, self._requirements[key])

    def _environment_failed(self, topology_id: str, message: str, detail: str) -> None:
        """(The environments' thread.) Its environment cannot be built: say so, once."""
        self.offer_errors(topology_id, [{
            "component": ERROR_COMPONENT, "task": -1, "time": time.time(), "host": None,
            "port": None, "error": f"supervisor {self.id}: {message}", "traceback": detail}])

    def _refuse(self, topology_id: str, code_version: str, why: str) -> None:
        """Never run it, never fetch it again (for this version), and say so where the
        topology's errors are shown."""
        self._refused[(topology_id, code_version)] = why
        log.error("supervisor %s: %s", self.id, why)
        self.offer_errors(topology_id, [{
            "component": ERROR_COMPONENT, "task": -1, "time": time.time(), "host": None,
            "port": None, "error": f"supervisor {self.id}: {why}"}])

    def _remove_unused_code(self, keep: set[str]) -> None:
        for path in self.code_dir.glob("*.pkl"):
            if str(path) not in keep:
                log.info("supervisor %s: removing unused code %s", self.id, path.name)
                path.unlink(missing_ok=True)
        for directory in self.code_dir.glob("*.resources"):
            if str(directory.with_suffix(".pkl")) not in keep:
                log.info("supervisor %s: removing unused code directory %s", self.id,
                         directory.name)
                shutil.rmtree(directory, ignore_errors=True)

    def _upload(self, now: float) -> None:
        with self._lock:
            errors, self._errors = self._errors, []
            due = {key: beat for key, beat in self._beats.items()
                   if self._due(key, beat[1]) <= now}
            for key, (_, hb) in due.items():
                del self._beats[key]
                self._last_upload[key] = now
                self._versions[key] = hb.get("version")
        for i, (topology_id, component, error) in enumerate(errors):
            try:
                self.state.report_error(topology_id, component, error)
            except RecordError as e:  # this one can never be stored: drop it, keep the rest
                log.warning("supervisor %s: dropped an error of %s: %s", self.id,
                            topology_id, e)
            except Exception:
                with self._lock:  # not lost: written on the next attempt
                    self._errors[:0] = errors[i:]
                raise
        for key, (topology_id, hb) in due.items():
            try:
                self.state.worker_heartbeat(topology_id, key, hb)
            except RecordError as e:
                log.warning("supervisor %s: dropped the heartbeat of %s %s: %s", self.id,
                            topology_id, key, e)
        with self._lock:
            stale = [k for k, t in self._last_upload.items()
                     if k not in self._beats and now - t > 60 * self.heartbeat_every]
            for key in stale:
                del self._last_upload[key]
                self._versions.pop(key, None)
