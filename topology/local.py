"""`LocalCluster`: run topologies on this machine without ZooKeeper.

The same worker processes and ZeroMQ transport as a real cluster; only the cluster state
(assignments, heartbeats, errors) lives in this process. The cluster talks to its workers
over the same control channel a supervisor uses, from one background thread.

No worker outlives the cluster: `shutdown()` (also run by `with`, at interpreter exit and
on SIGTERM handled by the caller) stops them, and a worker whose parent disappears (the
caller was killed with -9) notices within a second and exits on its own.
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
from collections.abc import Mapping
from typing import Any

import cloudpickle

from topology.builder import validate
from topology.errors import SquallError, TopologyError
from topology.model import Topology
from topology.placement import distribute_tasks

log = logging.getLogger(__name__)

STOP_GRACE_SECS = 5.0


class LocalTopology:
    """What the local cluster knows of one running topology."""

    def __init__(self, topology_id: str, topology: Topology, conf: dict[str, Any]) -> None:
        self.id = topology_id
        self.name = topology.name
        self.topology = topology
        self.conf = conf
        self.assignment: dict[str, Any] = {}
        self.workers: dict[int, Any] = {}  # port -> Popen
        self.heartbeats: dict[int, dict[str, Any]] = {}
        self.errors: list[dict[str, Any]] = []
        self.dumps: dict[int, dict[str, Any]] = {}
        self.restarts = 0
        self.started_at: dict[int, float] = {}  # port -> when its worker was started
        self.quick_exits: dict[int, int] = {}  # port -> deaths in a row soon after start
        self.not_before: dict[int, float] = {}  # port -> earliest restart (crash back-off)
        self.code_path = ""
        self.started = time.time()


class LocalCluster:
    """Runs topologies in local worker processes; use as a context manager."""

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        from cluster.config import Config
        from cluster.memstore import MemoryClusterState
        from worker.control import ControlServer
        from worker.wire import secret_key

        self.conf = Config.from_mapping(dict(config or {}))
        # The same records nimbus and supervisors keep in ZooKeeper, in memory: what the
        # dashboard and `status` read in local mode.
        self.state = MemoryClusterState()
        self.supervisor_id = f"local-{os.getpid()}"
        self.host = "127.0.0.1"
        self.dir = tempfile.mkdtemp(prefix="squall-local-")
        self._secret = self.conf.get("cluster.secret") or secrets.token_hex(16)
        self._server = ControlServer(f"ipc://{self.dir}/control.sock", secret_key(self._secret))
        self._lock = threading.RLock()
        self._outgoing: list[tuple[str, dict[str, Any]]] = []
        self._topologies: dict[str, LocalTopology] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="squall-local", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)
        log.info("local cluster: started in %s", self.dir)

    # ------------------------------------------------------------ user API

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def submit(self, topology: Topology, name: str | None = None,
               config: Mapping[str, Any] | None = None) -> str:
        """Start `topology` (under `name` if given); returns its topology id."""
        if not isinstance(topology, Topology):
            raise TopologyError(f"submit() takes a built Topology, not {type(topology).__name__}")
        if name is not None and name != topology.name:
            topology = Topology(name, topology.components, topology.config)
        problems = validate(topology)
        if problems:
            raise TopologyError(f"topology {topology.name!r}: " + "; ".join(problems))
        with self._lock:
            self._check_open()
            if topology.name in self._topologies:
                raise SquallError(f"topology {topology.name!r} is already running")
            conf = self.conf.with_overrides({**topology.config, **dict(config or {})}).to_dict()
            topology_id = f"{topology.name}-{int(time.time())}-{secrets.token_hex(3)}"
            local = LocalTopology(topology_id, topology, conf)
            self._assign(local)
            local.code_path = os.path.join(self.dir, f"{topology_id}.code")
            with open(local.code_path, "wb") as f:
                cloudpickle.dump({"topology": topology, "conf": conf}, f)
            self._topologies[topology.name] = local
            self._publish(local)
            for port in sorted(local.workers):
                self._spawn(local, port)
        log.info("local cluster: submitted %s with %d workers", topology_id, len(local.workers))
        return topology_id

    def kill(self, name: str, wait: float = 0.0) -> None:
        """Deactivate, wait `wait` seconds for in-flight tuples, then stop the workers."""
        local = self._get(name)
        if wait > 0:
            self.deactivate(name)
            time.sleep(wait)  # the documented grace period, not synchronisation
        with self._lock:
            self._topologies.pop(name, None)
            meta = self.state.topology(local.id) or {}
            self.state.set_topology(local.id, {**meta, "status": "KILLED"})
        self._stop_workers(local)
        with self._lock:
            self.state.remove_topology(local.id)
            self._register_supervisor()
        if local.code_path and os.path.exists(local.code_path):
            os.unlink(local.code_path)
        log.info("local cluster: killed %s", local.id)

    def activate(self, name: str) -> None:
        self._set_active(name, True)

    def deactivate(self, name: str) -> None:
        self._set_active(name, False)

    def topologies(self) -> list[str]:
        with self._lock:
            return sorted(self._topologies)

    def status(self, name: str) -> dict[str, Any]:
        """The topology's state and its workers' latest heartbeats (copies)."""
        local = self._get(name)
        with self._lock:
            return {
                "id": local.id,
                "name": local.name,
                "status": "ACTIVE" if local.assignment.get("active") else "INACTIVE",
                "workers": {port: dict(hb) for port, hb in local.heartbeats.items()},
                "num_workers": len(local.workers),
                "restarts": local.restarts,
                "errors": list(local.errors),
                "uptime": time.time() - local.started,
            }

    def worker_pids(self, name: str) -> dict[int, int]:
        local = self._get(name)
        with self._lock:
            return {port: proc.pid for port, proc in local.workers.items()}

    def wait_running(self, name: str, timeout: float = 30.0) -> None:
        """Block until every worker of `name` runs its assignment."""
        local = self._get(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                version = local.assignment["version"]
                ready = all(
                    local.heartbeats.get(port, {}).get("version") == version
                    for port in local.workers
                )
            if ready:
                return
            time.sleep(0.02)
        raise TimeoutError(f"topology {name!r}: workers not running after {timeout:g} s "
                           f"(logs in {self.dir}/logs)")

    def shutdown(self) -> None:
        """Stop every topology and the cluster. Safe to call twice."""
        if self._closed:
            return
        for name in self.topologies():
            try:
                self.kill(name)
            except SquallError:
                pass
        self._closed = True
        self._thread.join(timeout=5)
        self._server.close()
        self.state.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        atexit.unregister(self.shutdown)
        log.info("local cluster: stopped")

    # ---------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise SquallError("this LocalCluster has been shut down")

    def _get(self, name: str) -> LocalTopology:
        with self._lock:
            local = self._topologies.get(name)
        if local is None:
            raise SquallError(f"no topology named {name!r} is running")
        return local

    def _assign(self, local: LocalTopology) -> None:
        from worker.launcher import free_ports

        tasks = local.topology.component_tasks(local.conf)
        workers = [w for w in distribute_tasks(tasks, local.topology.num_workers(local.conf)) if w]
        ports = free_ports(len(workers), self.host)
        locations = {str(t): [self.host, port]
                     for port, ts in zip(ports, workers, strict=True) for t in ts}
        local.assignment = {"version": 1, "topology_id": local.id, "active": True,
                            "tasks": locations}
        local.workers = {port: None for port in ports}

    def _publish(self, local: LocalTopology) -> None:
        """Write the topology's record and assignment to the in-memory cluster state."""
        from cluster.meta import ACTIVE, INACTIVE, topology_meta

        a = local.assignment
        status = ACTIVE if a["active"] else INACTIVE
        self.state.set_topology(local.id, topology_meta(local.id, local.topology, local.conf,
                                                        status, submitted=local.started))
        workers: dict[int, list[int]] = {}
        for task, (_, port) in a["tasks"].items():
            workers.setdefault(port, []).append(int(task))
        self.state.set_assignment(local.id, {
            "topology_id": local.id, "version": a["version"],
            "workers": [{"supervisor": self.supervisor_id, "host": self.host, "port": port,
                         "tasks": sorted(tasks)} for port, tasks in sorted(workers.items())],
        })
        self._register_supervisor()

    def _register_supervisor(self) -> None:
        ports = sorted(p for t in self._topologies.values() for p in t.workers)
        self.state.register_supervisor(self.supervisor_id, {
            "host": self.host, "ports": ports, "hostname": self.host, "pid": os.getpid(),
            "local": True,
        })

    def _spawn(self, local: LocalTopology, port: int) -> None:
        from worker.launcher import spawn_worker

        local.started_at[port] = time.monotonic()
        local.workers[port] = spawn_worker(
            topology_id=local.id, host=self.host, port=port, control=self._server.endpoint,
            code_path=local.code_path, secret=self._secret,
            log_path=os.path.join(self.dir, "logs", f"worker-{port}.log"),
            parent_pid=os.getpid(), sys_path=sys.path,
        )

    def _set_active(self, name: str, active: bool) -> None:
        local = self._get(name)
        with self._lock:
            a = local.assignment
            local.assignment = {**a, "active": active, "version": a["version"] + 1}
            self._publish(local)
            for port in local.workers:
                self._outgoing.append((f"{self.host}:{port}",
                                       {"type": "assignment", "assignment": local.assignment}))

    def request_dumps(self, name: str, timeout: float = 10.0) -> dict[int, dict[str, Any]]:
        """Ask every worker for what it captured (testing mode) and wait for the answers."""
        local = self._get(name)
        with self._lock:
            local.dumps = {}
            for port in local.workers:
                self._outgoing.append((f"{self.host}:{port}", {"type": "dump"}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(local.dumps) == len(local.workers):
                    return dict(local.dumps)
            time.sleep(0.01)
        raise TimeoutError(f"topology {name!r}: workers did not answer a dump request")

    def _stop_workers(self, local: LocalTopology) -> None:
        procs = [p for p in local.workers.values() if p is not None]
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + STOP_GRACE_SECS
        for proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except Exception:
                log.warning("local cluster: worker %d did not stop; killing it", proc.pid)
                proc.kill()
                proc.wait()

    def _serve(self) -> None:
        """The control thread: heartbeats in, assignments out, dead workers restarted."""
        next_check = 0.0
        while not self._closed:
            try:
                messages = self._server.poll(10)
                with self._lock:
                    for worker, message in messages:
                        self._handle(worker, message)
                    outgoing, self._outgoing = self._outgoing, []
                for worker, message in outgoing:
                    self._server.send(worker, message)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 0.2
                    self._restart_dead()
            except Exception:  # keep serving: one bad message must not orphan the workers
                log.exception("local cluster: control thread error")

    def _handle(self, worker: str, message: dict[str, Any]) -> None:
        local = next((t for t in self._topologies.values()
                      if t.id == message.get("topology_id")), None)
        port = int(worker.rsplit(":", 1)[1])
        if message.get("type") == "dump":
            for t in self._topologies.values():
                if port in t.workers:
                    t.dumps[port] = message
            return
        if message.get("type") != "heartbeat" or local is None or port not in local.workers:
            return
        local.heartbeats[port] = message
        local.errors.extend(message.get("errors", ()))
        del local.errors[:-100]
        self.state.worker_heartbeat(local.id, worker, message)
        for error in message.get("errors", ()):
            self.state.report_error(local.id, error["component"], error)
        if message.get("version") != local.assignment["version"]:
            self._outgoing.append((worker, {"type": "assignment",
                                            "assignment": local.assignment}))

    def _restart_dead(self) -> None:
        from worker.launcher import QUICK_EXIT_SECS, restart_delay

        now = time.monotonic()
        with self._lock:
            for local in self._topologies.values():
                for port, proc in local.workers.items():
                    if proc is None or proc.poll() is None:
                        continue
                    if port not in local.not_before:  # just noticed: plan the restart
                        young = now - local.started_at.get(port, now) < QUICK_EXIT_SECS
                        n = local.quick_exits.get(port, 0) + 1 if young else 1
                        local.quick_exits[port] = n
                        local.not_before[port] = now + restart_delay(n)
                        log.warning("local cluster: worker %s:%d of %s exited with %s; "
                                    "restarting it in %.1f s", self.host, port, local.id,
                                    proc.returncode, local.not_before[port] - now)
                    if now >= local.not_before[port]:
                        del local.not_before[port]
                        local.restarts += 1
                        local.heartbeats.pop(port, None)
                        self._spawn(local, port)
