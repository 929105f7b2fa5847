"""`LocalCluster`: run topologies on this machine without ZooKeeper.

It is the real cluster in one process: a `nimbus.daemon.Nimbus` (without its HTTP API) and a
`supervisor.daemon.Supervisor`, each on its own client of one in-memory cluster state
(`cluster.memstore`), each run by a background thread. So local mode, `complete_topology` and
every local test go through the production scheduler, lifecycle, liveness and supervisor:
the same placement, versions, heartbeat handling, crash back-off and worker stopping. What is
local is only the glue: the supervisor offers ports as topologies need them (a topology's
workers get free ports when it is submitted, and give them back when it is killed), and the
calls below wait for what they started to be done.

No worker outlives the cluster: `shutdown()` (also run by `with`, at interpreter exit and on
SIGTERM handled by the caller) stops them, and a worker whose parent disappears (the caller
was killed with -9) notices within a second and exits on its own (`--parent-pid`).

Workers write their logs (their own records, their components' `print()` and tracebacks)
under `logs_dir` (cluster.logfiles' layout), which `squall local` streams to the terminal.
The cluster's directory is removed at shutdown, except `logs_dir` when `keep_logs` is set
or the `with` block ended with an exception: a failed run keeps its logs, and says where.

The daemons are imported when a cluster is made: they sit above this package, which only
names the class (`from topology import LocalCluster`).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from topology.builder import validate
from topology.errors import SquallError, TopologyError
from topology.model import Topology

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
START_TIMEOUT = 10.0  # for the in-process nimbus to lead (it is the only candidate)
SETTLE_TIMEOUT = 30.0  # for a killed topology's workers to be stopped
POLL = 0.01


class LocalCluster:
    """Runs topologies in local worker processes; use as a context manager."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        from cluster.config import Config
        from cluster.memstore import MemoryBackend, MemoryClusterState
        from nimbus.daemon import Nimbus
        from supervisor.daemon import Supervisor

        self.conf = Config.from_mapping(dict(config or {}))
        self.dir = tempfile.mkdtemp(prefix="squall-local-")
        self.logs_dir = os.path.join(self.dir, "logs")
        self.keep_logs = False  # shutdown() leaves logs_dir in place
        # The daemons' config: a secret for code signing and worker traffic even when the
        # user gave none (a random one per cluster), and loopback for the workers.
        internal = self.conf.with_overrides({
            "cluster.secret": self.conf["cluster.secret"] or secrets.token_hex(16),
            "supervisor.host": HOST,
        })
        backend = MemoryBackend()
        self.state = MemoryClusterState(backend)  # what the dashboard and status() read
        self.supervisor_id = f"local-{os.getpid()}"
        self._lock = threading.RLock()
        self._ports: dict[str, list[int]] = {}  # topology id -> the ports offered for it
        self._ids: dict[str, str] = {}  # name -> id of the topologies submitted here
        self._closed = False
        self._supervisor = Supervisor(
            internal, kill_workers=True, state_factory=lambda _c: MemoryClusterState(backend),
            home=self.dir, supervisor_id=self.supervisor_id, slots=[],
            parent_pid=os.getpid(), worker_sys_path=sys.path, hostname=HOST, upload_every=0,
            serve_logs=False)
        self._nimbus = Nimbus(internal, state_factory=lambda _c: MemoryClusterState(backend),
                              api=False)
        self._threads: list[threading.Thread] = []
        try:
            self._supervisor.start()
            self._spawn_thread(self._supervisor.run, "squall-local-supervisor")
            self._nimbus.start()
            self._spawn_thread(self._nimbus.run, "squall-local-nimbus")
            self._wait(lambda: self._nimbus.leading, START_TIMEOUT, "the local nimbus to lead")
        except BaseException:
            self.shutdown()
            raise
        atexit.register(self.shutdown)
        log.info("local cluster: started in %s", self.dir)

    def _spawn_thread(self, target: Any, name: str) -> None:
        # Daemon threads: they must still run while atexit's shutdown() stops the workers.
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------ user API

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and issubclass(exc_type, Exception) and not self.keep_logs:
            self.keep_logs = True
            if os.path.isdir(self.logs_dir):
                log.warning("local cluster: failed with %s; worker logs kept in %s",
                            exc_type.__name__, self.logs_dir)
        self.shutdown()

    def submit(self, topology: Topology, name: str | None = None,
               config: Mapping[str, Any] | None = None) -> str:
        """Start `topology` (under `name` if given); returns its topology id."""
        from cluster.meta import current_user
        from nimbus.protocol import BadRequest
        from nimbus.submission import demand
        from worker.launcher import free_ports

        if not isinstance(topology, Topology):
            raise TopologyError(f"submit() takes a built Topology, not {type(topology).__name__}")
        if name is not None and name != topology.name:
            topology = Topology(name, topology.components, topology.config)
        problems = validate(topology)
        if problems:
            raise TopologyError(f"topology {topology.name!r}: " + "; ".join(problems))
        with self._lock:
            self._check_open()
            if self._find(topology.name) is not None:
                raise SquallError(f"topology {topology.name!r} is already running")
            try:
                reply = self._nimbus.submit_topology(topology, None, dict(config or {}),
                                                     current_user())
            except BadRequest as e:
                raise TopologyError(str(e)) from None
            tid = str(reply["id"])
            self._ids[topology.name] = tid
            meta = self.state.topology(tid) or {}
            # The topology's own slots, then the round that assigns them.
            self._ports[tid] = free_ports(demand(meta).target_workers(), HOST)
            self._offer_ports()
            self._nimbus.tick()
        log.info("local cluster: submitted %s on ports %s", tid, self._ports[tid])
        return tid

    def kill(self, name: str, wait: float = 0.0) -> None:
        """Deactivate, wait `wait` seconds for in-flight tuples, then stop the workers."""
        tid = self._get(name)["id"]
        with self._lock:
            self._nimbus.kill(name, wait)
        if wait > 0:
            time.sleep(wait)  # the documented grace period, not synchronisation
            self._nimbus.tick()  # the deadline is over: removed now, not at the next round
        self._wait(lambda: self.state.topology(tid) is None, wait + SETTLE_TIMEOUT,
                   f"{name!r} to be removed")
        mark = self._supervisor.mark()
        self._wait(lambda: self._supervisor.settled(tid, mark), SETTLE_TIMEOUT,
                   f"the workers of {name!r} to stop")
        with self._lock:
            self._ports.pop(tid, None)
            if self._ids.get(name) == tid:
                del self._ids[name]
            self._offer_ports()
        log.info("local cluster: killed %s", tid)

    def activate(self, name: str) -> None:
        self._get(name)
        self._nimbus.activate(name)

    def deactivate(self, name: str) -> None:
        self._get(name)
        self._nimbus.deactivate(name)

    def set_log_levels(self, name: str, levels: Mapping[str, str],
                       timeout: float | None = None, reset: Sequence[str] = ()) -> None:
        """Set loggers' levels ({logger: "DEBUG", ...}; "ROOT" is the root logger) in the
        topology's workers for `timeout` seconds (None: until reset), and put the loggers
        in `reset` back to their own levels, as `squall set-log-level` does on a cluster."""
        self._get(name)
        self._nimbus.set_log_levels(name, levels, timeout, list(reset))

    def topologies(self) -> list[str]:
        return sorted(str(m.get("name")) for m in self.state.topologies().values())

    def status(self, name: str) -> dict[str, Any]:
        """The topology's state and its workers' latest heartbeats (copies)."""
        meta = self._get(name)
        tid = meta["id"]
        workers = self._assigned_workers(tid)
        heartbeats = self.state.worker_heartbeats(tid)
        errors = [e for es in self.state.errors(tid).values() for e in es]
        return {
            "id": tid,
            "name": meta["name"],
            "status": meta["status"],
            "workers": {port: heartbeats[key] for key, port in workers.items()
                        if key in heartbeats},
            "num_workers": len(workers),
            "restarts": self._supervisor.workers.restarts[tid],
            "errors": sorted(errors, key=lambda e: e.get("time") or 0),
            "uptime": time.time() - float(meta.get("submitted", time.time())),
        }

    def worker_pids(self, name: str) -> dict[int, int]:
        tid = self._get(name)["id"]
        mine = set(self._supervisor.workers.ports_of(tid))
        return {port: pid for port, pid in self._supervisor.worker_pids().items()
                if port in mine}

    def wait_running(self, name: str, timeout: float = 30.0) -> None:
        """Block until every worker of `name` runs its current assignment."""
        from cluster.assignment import worker_version

        tid = self._get(name)["id"]

        def running() -> bool:
            assignment = self.state.assignment(tid)
            if not assignment or not assignment.get("workers"):
                return False
            version = worker_version(assignment)
            heartbeats = self.state.worker_heartbeats(tid)
            return all(heartbeats.get(key, {}).get("version") == version
                       for key in self._assigned_workers(tid))

        try:
            self._wait(running, timeout, f"{name!r} to run")
        except TimeoutError:
            raise TimeoutError(f"topology {name!r}: workers not running after {timeout:g} s "
                               f"(logs in {self.logs_dir})") from None

    def request_dumps(self, name: str, timeout: float = 10.0) -> dict[int, dict[str, Any]]:
        """Ask every worker for what it captured (testing mode) and wait for the answers."""
        return self._supervisor.request_dumps(self._get(name)["id"], timeout)

    def flush(self, name: str) -> None:
        """Tell the topology's workers that the input is over: every windowed bolt fires
        what its windows hold, as at a final watermark (complete_topology does this once
        the mocked input is consumed). Returns once the message is on its way."""
        self._supervisor.flush(self._get(name)["id"])

    def shutdown(self) -> None:
        """Stop every topology's workers and the cluster. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._nimbus.request_stop()
        self._supervisor.stop(kill_workers=True)  # its loop stops every worker, then returns
        for thread in self._threads:
            thread.join(timeout=SETTLE_TIMEOUT)
        self._nimbus.close()
        self.state.close()
        self._remove_dir()
        atexit.unregister(self.shutdown)
        log.info("local cluster: stopped")

    def _remove_dir(self) -> None:
        if not self.keep_logs or not os.path.isdir(self.logs_dir):
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        for entry in os.scandir(self.dir):
            if entry.path == self.logs_dir:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass

    # ---------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise SquallError("this LocalCluster has been shut down")

    def _find(self, name: str) -> dict[str, Any] | None:
        tid = self._ids.get(name)
        meta = self.state.topology(tid) if tid is not None else None
        if meta is not None:
            return meta
        for meta in self.state.topologies().values():  # e.g. removed and resubmitted
            if meta.get("name") == name:
                return meta
        return None

    def _get(self, name: str) -> dict[str, Any]:
        meta = self._find(name)
        if meta is None:
            raise SquallError(f"no topology named {name!r} is running")
        return meta

    def _assigned_workers(self, tid: str) -> dict[str, int]:
        """Worker key "host:port" -> port, for the topology's current assignment."""
        workers = (self.state.assignment(tid) or {}).get("workers") or []
        return {f"{w['host']}:{w['port']}": int(w["port"]) for w in workers}

    def _offer_ports(self) -> None:
        self._supervisor.set_slots(sorted(p for ports in self._ports.values() for p in ports))

    @staticmethod
    def _wait(ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"local cluster: timed out waiting for {what}")
            time.sleep(POLL)
