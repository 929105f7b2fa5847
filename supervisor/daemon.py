"""The supervisor daemon: runs the workers its slots are assigned, and keeps them running.

    start()  take the home directory, re-adopt live workers, bind the control channel,
             register in ZooKeeper, start the ZooKeeper thread (supervisor.sync)
    run()    until stop(): serve worker heartbeats on the control channel and, every
             POLL_SECS or as soon as the assignments change, compare the workers with what
             is wanted (supervisor.classify) and act on the difference
    stop()   only sets flags (safe in a signal handler); run() then shuts down, leaving the
             workers running unless asked to kill them

The home directory `{local.dir}/supervisor-{host}-{first port}` holds everything a restart
needs: the supervisor id, the worker records (supervisor.procs), the code cache, the worker
logs and the control socket. Workers outlive the supervisor, and a restarted supervisor takes
them over (same pids), so restarting a supervisor never interrupts or duplicates a worker.

Without `cluster.secret` workers use DEV_SECRET, a fixed, public key: like Storm without
authentication, such a cluster has no security at all (anyone who can reach a worker's port
can inject tuples). Every supervisor must use the same key for a topology's workers to
accept each other, which rules out a per-supervisor random one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil
import zmq

from cluster.config import require_secret_off_loopback
from cluster.state import ClusterState, open_state
from supervisor.classify import LocalWorker, classify
from supervisor.procs import WorkerProcess, WorkerRecords, adopt, spawned, stop_all
from supervisor.sync import StateSync
from supervisor.wants import PortWant
from topology.errors import SquallError
from worker.control import ControlServer
from worker.launcher import QUICK_EXIT_SECS, free_ports, restart_delay, spawn_worker
from worker.wire import secret_key

log = logging.getLogger(__name__)

DEV_SECRET = "squall-insecure-development-secret"
POLL_SECS = 0.2  # how often worker processes are checked: a dead one is restarted this fast
CONTROL_PATH_MAX = 100  # longest ipc socket path we use (the OS limit is about 107)


class SupervisorError(SquallError):
    """The supervisor cannot start: its home is taken, or the cluster state is unreachable."""


def supervisor_home(config: Mapping[str, Any]) -> str:
    """The supervisor's home: stable for one host and set of slots, so a restart finds it."""
    first = config["supervisor.slots.ports"][0]
    return os.path.join(config["local.dir"], f"supervisor-{config['supervisor.host']}-{first}")


def worker_secret(config: Mapping[str, Any]) -> str:
    """The key workers sign their traffic with: the cluster secret, or the public DEV_SECRET."""
    return str(config["cluster.secret"] or DEV_SECRET)


@dataclass
class Running:
    """A worker on one port, as this supervisor observes it (times on our monotonic clock)."""

    proc: WorkerProcess
    started_at: float
    last_heartbeat: float | None = None

    def observed(self) -> LocalWorker:
        r = self.proc.record
        return LocalWorker(r.pid, self.proc.alive(), r.topology_id, r.tasks, self.started_at,
                           self.last_heartbeat, r.code_version)


class Supervisor:
    """One supervisor daemon; `start()`, then `run()` until `stop()` (see module doc)."""

    def __init__(self, config: Mapping[str, Any], kill_workers: bool = False,
                 state_factory: Callable[[Mapping[str, Any]], ClusterState] = open_state) -> None:
        self.config = config
        self.host: str = config["supervisor.host"]
        self.slots: list[int] = list(config["supervisor.slots.ports"])
        self.home = Path(supervisor_home(config))
        self.kill_workers = kill_workers
        self.worker_timeout = float(config["supervisor.worker.timeout.secs"])
        self.start_timeout = float(config["supervisor.worker.start.timeout.secs"])
        self.stop_timeout = float(config["supervisor.worker.stop.timeout.secs"])
        self._secret = worker_secret(config)
        self._state_factory = state_factory
        self.id = ""
        self.workers: dict[int, Running] = {}
        self.stopping: dict[int, tuple[WorkerProcess, float]] = {}  # port -> (proc, kill at)
        self.restarts = 0
        self._stop_requested = False
        self._quick_exits: dict[int, int] = {}
        self._not_before: dict[int, float] = {}
        self._generation = -1
        self._lock_file: IO[str] | None = None
        self._records: WorkerRecords | None = None
        self._server: ControlServer | None = None
        self._state: ClusterState | None = None
        self._sync: StateSync | None = None

    # --- lifetime ------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the home, adopt live workers, bind the control channel, register."""
        require_secret_off_loopback(self.config, "supervisor.host", "supervisor")
        self.home.mkdir(parents=True, exist_ok=True)
        self._lock_home()
        try:
            self.id = self._load_id()
            self._records = WorkerRecords(str(self.home / "workers"))
            self._adopt(time.monotonic())
            self._server = self._bind_control()
            self._state = self._state_factory(self.config)
            self._state.register_supervisor(self.id, {
                "host": self.host, "ports": self.slots, "started": time.time(),
                "hostname": socket.gethostname(), "pid": os.getpid(),
            })
            self._sync = StateSync(self._state, self.id, self.slots, str(self.home / "code"),
                                   float(self.config["supervisor.monitor.freq.secs"]),
                                   float(self.config["worker.heartbeat.frequency.secs"]))
            self._sync.start()
        except BaseException:
            self._close()
            raise
        if not self.config["cluster.secret"]:
            log.warning("supervisor %s: no cluster.secret: workers use the public development "
                        "key, so this cluster has no security", self.id)
        log.info("supervisor %s: started on %s with slots %s (home %s, control %s, %d worker(s) "
                 "adopted)", self.id, self.host, self.slots, self.home, self._server.endpoint,
                 len(self.workers))

    def stop(self, kill_workers: bool | None = None) -> None:
        """Ask `run()` to return. Only sets flags: safe from a signal handler or a thread."""
        if kill_workers is not None:
            self.kill_workers = kill_workers
        self._stop_requested = True

    def run(self) -> None:
        """Serve the workers until `stop()`; then shut down (see module doc)."""
        assert self._server is not None and self._sync is not None, "start() first"
        next_check = 0.0
        try:
            while not self._stop_requested:
                wait_ms = max(0, min(50, int((next_check - time.monotonic()) * 1000)))
                messages = self._server.poll(wait_ms)
                now = time.monotonic()
                generation, wanted = self._sync.wanted()
                for worker, message in messages:
                    self._on_message(worker, message, wanted, now)
                if now >= next_check or generation != self._generation:
                    next_check = now + POLL_SECS
                    self._generation = generation
                    self._check(now, wanted)
        finally:
            self._shutdown()

    def worker_pids(self) -> dict[int, int]:
        """Port -> pid of every worker this supervisor runs now."""
        return {port: r.proc.pid for port, r in self.workers.items()}

    @property
    def control_endpoint(self) -> str:
        return self._server.endpoint if self._server is not None else ""

    # --- start-up pieces ------------------------------------------------------------------------

    def _lock_home(self) -> None:
        f = open(self.home / "lock", "a+")  # noqa: SIM115 - held open: the lock lives with it
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise SupervisorError(f"supervisor home {self.home} is in use by another "
                                  "supervisor") from None
        self._lock_file = f

    def _load_id(self) -> str:
        path = self.home / "id"
        try:
            text = path.read_text().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        new = str(uuid.uuid4())
        tmp = self.home / ".id.tmp"
        tmp.write_text(new + "\n")
        os.replace(tmp, path)
        return new

    def _adopt(self, now: float) -> None:
        assert self._records is not None
        adopted = adopt(self._records)
        foreign = [p for port, p in adopted.items() if port not in self.slots]
        if foreign:
            log.warning("supervisor %s: stopping %d worker(s) on ports that are no longer my "
                        "slots", self.id, len(foreign))
            stop_all(foreign, self.stop_timeout)
            for proc in foreign:
                self._records.remove(proc.record.port)
        # A fresh grace period: an adopted worker must heartbeat within the start timeout.
        self.workers = {port: Running(p, now) for port, p in adopted.items() if port in self.slots}
        self._stop_orphans()

    def _stop_orphans(self) -> None:
        """Stop workers of this home that have no record (we died between spawn and record)."""
        known = {r.proc.pid for r in self.workers.values()}
        marker = str(self.home / "code") + os.sep
        orphans = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if (proc.pid not in known and "worker" in cmdline and "--code" in cmdline
                    and any(arg.startswith(marker) for arg in cmdline)):
                orphans.append(proc)
        for proc in orphans:
            log.warning("supervisor %s: stopping unrecorded worker pid %d", self.id, proc.pid)
            try:
                proc.terminate()
            except psutil.Error:
                pass
        _, lingering = psutil.wait_procs(orphans, timeout=self.stop_timeout)
        for proc in lingering:
            try:
                proc.kill()
            except psutil.Error:
                pass

    def _bind_control(self) -> ControlServer:
        key = secret_key(self._secret)
        path = self.home / "control.sock"
        if len(str(path)) < CONTROL_PATH_MAX:
            server = ControlServer(f"ipc://{path}", key)
        else:  # too long for a unix socket: a loopback port, kept stable across restarts
            port_file = self.home / "control.port"
            try:
                port = int(port_file.read_text())
                server = ControlServer(f"tcp://127.0.0.1:{port}", key)
            except (OSError, ValueError, zmq.ZMQError):
                port = free_ports(1)[0]
                server = ControlServer(f"tcp://127.0.0.1:{port}", key)
                port_file.write_text(str(port))
        # A restarted worker reconnects with its predecessor's identity ("host:port"); let the
        # newest connection win instead of being refused until the old one times out.
        server.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
        return server

    # --- the loop ------------------------------------------------------------------------------

    def _on_message(self, worker: str, message: dict[str, Any],
                    wanted: dict[int, PortWant] | None, now: float) -> None:
        if message.get("type") != "heartbeat":
            return
        running = self.workers.get(message.get("port"))  # type: ignore[arg-type]
        if running is None:
            return
        record = running.proc.record
        if message.get("pid") != record.pid or message.get("topology_id") != record.topology_id:
            return  # a worker being replaced, still talking: not the one on this port now
        running.last_heartbeat = now
        want = wanted.get(record.port) if wanted is not None else None
        if (want is not None and message.get("version") != want.version
                and want.topology_id == record.topology_id
                and want.work.tasks == record.tasks
                and want.code_version == record.code_version):
            assert self._server is not None
            self._server.send(worker, want.message)
        assert self._sync is not None
        self._sync.offer_heartbeat(record.topology_id, f"{self.host}:{record.port}", message)

    def _check(self, now: float, wanted: dict[int, PortWant] | None) -> None:
        self._reap_stopping(now)
        if wanted is None:
            return  # assignments not read yet: change nothing, above all kill nothing
        running = {port: r.observed() for port, r in self.workers.items()}
        actions = classify({port: w.work for port, w in wanted.items()}, running, now,
                           self.worker_timeout, self.start_timeout)
        for port in actions.kill:
            log.info("supervisor %s: %s; stopping it", self.id, actions.reasons[port])
            self._begin_stop(port, now)
        for port in actions.start:
            running_now = self.workers.get(port)
            if running_now is not None:  # dead: not in kill, so still listed
                log.warning("supervisor %s: %s, exit code %s; restarting it", self.id,
                            actions.reasons[port], running_now.proc.exit_code())
                self._forget_dead(port, now)
            self._start(port, wanted[port], now)

    def _start(self, port: int, want: PortWant, now: float) -> None:
        if port in self.stopping or want.code_path is None or now < self._not_before.get(port, 0):
            return  # the old worker still holds the port, the code is not here, or backing off
        assert self._server is not None and self._records is not None
        popen = spawn_worker(
            topology_id=want.topology_id, host=self.host, port=port,
            control=self._server.endpoint, code_path=want.code_path, secret=self._secret,
            log_path=str(self.home / "logs" / f"worker-{port}.log"),
        )
        try:
            proc = spawned(port, popen, want.topology_id, want.work.tasks, want.code_version)
        except psutil.Error:  # died at once; the next check finds no worker and starts again
            popen.poll()
            log.warning("supervisor %s: worker %d exited immediately", self.id, port)
            self._note_quick_exit(port, now)
            return
        self._records.save(proc.record)
        self.workers[port] = Running(proc, now)
        log.info("supervisor %s: started worker %s:%d (pid %d) for tasks %s of %s", self.id,
                 self.host, port, proc.pid, list(want.work.tasks), want.topology_id)

    def _begin_stop(self, port: int, now: float) -> None:
        running = self.workers.pop(port)
        if not running.proc.alive():
            self._finish_stop(port, running.proc)
            return
        running.proc.signal(signal.SIGTERM)
        self.stopping[port] = (running.proc, now + self.stop_timeout)

    def _reap_stopping(self, now: float) -> None:
        for port, (proc, kill_at) in list(self.stopping.items()):
            if not proc.alive():
                del self.stopping[port]
                self._finish_stop(port, proc)
            elif now >= kill_at:
                log.warning("supervisor %s: worker %d (pid %d) ignored SIGTERM for %g s; "
                            "killing it", self.id, port, proc.pid, self.stop_timeout)
                proc.signal(signal.SIGKILL)
                self.stopping[port] = (proc, float("inf"))

    def _finish_stop(self, port: int, proc: WorkerProcess) -> None:
        assert self._records is not None
        proc.reap()
        self._records.remove(port)
        log.info("supervisor %s: worker %d (pid %d) stopped", self.id, port, proc.pid)

    def _forget_dead(self, port: int, now: float) -> None:
        assert self._records is not None
        running = self.workers.pop(port)
        running.proc.reap()
        self._records.remove(port)
        self.restarts += 1
        if now - running.started_at < QUICK_EXIT_SECS:
            self._note_quick_exit(port, now)
        else:
            self._quick_exits.pop(port, None)

    def _note_quick_exit(self, port: int, now: float) -> None:
        """Restart at once the first time, then back off: a crashing worker must not spin."""
        n = self._quick_exits[port] = self._quick_exits.get(port, 0) + 1
        self._not_before[port] = now + restart_delay(n)

    # --- shutdown ------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        stopping = [proc for proc, _ in self.stopping.values()]
        if self.kill_workers:
            log.info("supervisor %s: stopping %d worker(s)", self.id, len(self.workers))
            stopping += [r.proc for r in self.workers.values()]
            self.workers.clear()
        stop_all(stopping, self.stop_timeout)  # those being stopped are finished either way
        if self._records is not None:
            for proc in stopping:
                self._records.remove(proc.record.port)
        self.stopping.clear()
        self._close()
        log.info("supervisor %s: stopped (%d worker(s) left running)", self.id,
                 len(self.workers))

    def _close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        if self._state is not None:
            self._state.close()  # ends the session: the registration goes at once
            self._state = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None
