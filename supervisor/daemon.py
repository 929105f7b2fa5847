"""The supervisor daemon: runs the workers its slots are assigned, and keeps them running.

    start()  take the home directory (supervisor.home), re-adopt live workers, bind the
             control channel, start the log server (supervisor.logviewer), register in
             ZooKeeper with its port ("logviewer_port"), start the ZooKeeper thread
             (supervisor.sync)
    run()    until stop(): answer worker heartbeats on the control channel, write its own
             heartbeat every `supervisor.heartbeat.frequency.secs`, and, every POLL_SECS or as
             soon as the assignments change, compare the workers with what is wanted
             (supervisor.classify) and act on the difference (supervisor.workers)
    stop()   only sets flags (safe in a signal handler); run() then shuts down, leaving the
             workers running unless asked to kill them

The home directory `{local.dir}/supervisor-{host}-{first port}` holds everything a restart
needs: the supervisor id, the worker records (supervisor.procs), the code cache, the worker
logs (`logs/`, laid out by cluster.logfiles; a topology's are removed a week after its last
write here) and the control socket. Topologies' virtual environments (supervisor.venvs) are
cached in `{local.dir}/venvs`, shared by the supervisors of the host. Workers outlive the
supervisor, and a restarted supervisor takes them over (same pids), so restarting a
supervisor never interrupts or duplicates a worker.

Every heartbeat of a worker we run is answered: with its assignment when the worker runs an
older version, else with `{"type": "supervised"}`, which every worker that keeps its work
also gets unasked once per supervisor heartbeat. A worker that stops hearing from its
supervisor (stopped, killed, its host lost) pauses its spouts after half of
`nimbus.supervisor.timeout.secs`, when nimbus may start moving its work, and exits after
`worker.orphan.timeout.secs` unless a (restarted) supervisor adopts it first; so the same spout
task never runs in two places.

Without `cluster.secret` workers use DEV_SECRET, a fixed, public key: like Storm without
authentication, such a cluster has no security at all (anyone who can reach a worker's port
can inject tuples). Every supervisor must use the same key for a topology's workers to
accept each other, which rules out a per-supervisor random one.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import zmq

from cluster import logsink
from cluster.config import require_secret_off_loopback
from cluster.logfiles import remove_old_logs
from cluster.state import ClusterState, open_state
from supervisor.control import Broadcasts, DumpRequests, Waker
from supervisor.home import SupervisorError, bind_control, load_id, lock_home
from supervisor.logviewer import LogViewer
from supervisor.procs import WorkerRecords
from supervisor.sync import StateSync
from supervisor.wants import SUPERVISED, PortWant, answer
from supervisor.workers import Launch, Timeouts, WorkerSet
from topology.errors import SquallError
from worker.control import ControlServer

log = logging.getLogger(__name__)

DEV_SECRET = "squall-insecure-development-secret"
POLL_SECS = 0.2  # how often worker processes are checked: a dead one is restarted this fast
REAP_SECS = 0.02  # how often a worker being stopped is looked at: its port is free this soon
LOG_CLEANUP_SECS = 3600.0  # how often logs of topologies long gone are looked for
LOG_KEEP_SECS = 7 * 24 * 3600.0  # a topology's logs stay this long after their last write

__all__ = ["DEV_SECRET", "Supervisor", "SupervisorError", "supervisor_home", "worker_secret"]


def supervisor_home(config: Mapping[str, Any]) -> str:
    """The supervisor's home: stable for one host and set of slots, so a restart finds it."""
    first = config["supervisor.slots.ports"][0]
    return os.path.join(config["local.dir"], f"supervisor-{config['supervisor.host']}-{first}")


def worker_secret(config: Mapping[str, Any]) -> str:
    """The key workers sign their traffic with: the cluster secret, or the public DEV_SECRET."""
    return str(config["cluster.secret"] or DEV_SECRET)


LOG_MAX_BYTES_KEY = "supervisor.worker.log.max.bytes"
LOG_BACKUPS_KEY = "supervisor.worker.log.backups"


def log_rotation(config: Mapping[str, Any]) -> tuple[int, int]:
    """(max bytes, backups) of each worker's log (cluster.logsink)."""
    def get(key: str, default: int) -> int:
        try:
            return int(config[key])
        except (KeyError, TypeError, ValueError):
            return default
    return get(LOG_MAX_BYTES_KEY, logsink.MAX_BYTES), get(LOG_BACKUPS_KEY, logsink.BACKUPS)


class Supervisor:
    """One supervisor daemon; `start()`, then `run()` until `stop()` (see module doc).

    The keyword-only arguments are for `LocalCluster`, which runs one in process: its own
    `home`, `supervisor_id` and `hostname` (shown by the dashboard), slots given later
    (`set_slots`), workers that exit with this process (`parent_pid`) and import the
    caller's modules (`worker_sys_path`), and every worker heartbeat written as it comes
    (`upload_every=0`; a cluster writes one per worker per `worker.heartbeat.frequency.secs`
    at most, whatever rate a topology gives its workers, to spare ZooKeeper).
    """

    def __init__(self, config: Mapping[str, Any], kill_workers: bool = False,
                 state_factory: Callable[[Mapping[str, Any]], ClusterState] = open_state, *,
                 home: str | None = None, supervisor_id: str | None = None,
                 slots: Sequence[int] | None = None, parent_pid: int | None = None,
                 worker_sys_path: Sequence[str] = (), hostname: str | None = None,
                 upload_every: float | None = None, serve_logs: bool = True,
                 worker_log_rotation: tuple[int, int] | None = None) -> None:
        self.config = config
        self.host: str = config["supervisor.host"]
        self.slots: list[int] = list(config["supervisor.slots.ports"] if slots is None
                                     else slots)
        if slots is None and not self.slots:
            raise SupervisorError("supervisor: supervisor.slots.ports is empty: a supervisor "
                                  "needs at least one worker slot (e.g. [6700, 6701])")
        self.home = Path(home if home is not None else supervisor_home(config))
        self.kill_workers = kill_workers
        self.beat_every = float(config["supervisor.heartbeat.frequency.secs"])
        self._secret = worker_secret(config)
        self._state_factory = state_factory
        self._given_id = supervisor_id
        self._parent_pid = parent_pid
        self._sys_path = list(worker_sys_path)
        self._log_rotation = worker_log_rotation or log_rotation(config)
        self.hostname = hostname or socket.gethostname()
        self.upload_every = (float(config["worker.heartbeat.frequency.secs"])
                             if upload_every is None else upload_every)
        self.id = ""
        self.started = time.time()
        self.workers = WorkerSet("", WorkerRecords(str(self.home / "workers")), Timeouts(
            float(config["supervisor.worker.timeout.secs"]),
            float(config["supervisor.worker.start.timeout.secs"]),
            float(config["supervisor.worker.stop.timeout.secs"])))
        self.dumps = DumpRequests()
        self.broadcasts = Broadcasts()
        self._stop_requested = False
        self._generation = -1
        self._checked = -1  # the last generation of wants acted on
        self._beats = 0
        self._lock_file: IO[str] | None = None
        self._server: ControlServer | None = None
        self._waker: Waker | None = None
        self._state: ClusterState | None = None
        self._sync: StateSync | None = None
        self._serve_logs = serve_logs
        self._logviewer: LogViewer | None = None
        self._next_log_cleanup = 0.0

    # --- lifetime ------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the home, adopt live workers, bind the control channel, register."""
        require_secret_off_loopback(self.config, "supervisor.host", "supervisor")
        known_home = (self.home / "id").exists()
        self.home.mkdir(parents=True, exist_ok=True)
        self._lock_file = lock_home(self.home)
        try:
            self.id = self._given_id or load_id(self.home)
            self.workers.id = self.id
            self.workers.adopt(self.slots, self.home, time.monotonic(),
                               look_for_strays=known_home)
            self._server = bind_control(self.home, self._secret)
            self._start_logviewer()
            self._waker = Waker()
            self.workers.launch = Launch(self.host, self._server.endpoint, self._secret,
                                         self.home / "logs", self._parent_pid, self._sys_path,
                                         *self._log_rotation)
            self._state = self._state_factory(self.config)
            self._state.register_supervisor(self.id, self._info())
            self._state.supervisor_heartbeat(self.id, self._beat())
            self._sync = StateSync(self._state, self.id, self.slots, str(self.home / "code"),
                                   float(self.config["supervisor.monitor.freq.secs"]),
                                   self.upload_every,
                                   self.config["cluster.secret"], self._waker.wake,
                                   os.path.join(self.config["local.dir"], "venvs"))
            self._sync.start()
        except BaseException:
            self._close()
            raise
        if not self.config["cluster.secret"]:
            log.warning("supervisor %s: no cluster.secret: workers use the public development "
                        "key, so this cluster has no security", self.id)
        log.info("supervisor %s: started on %s with slots %s (home %s, control %s, %d worker(s) "
                 "adopted)", self.id, self.host, self.slots, self.home, self._server.endpoint,
                 len(self.workers.running))

    def stop(self, kill_workers: bool | None = None) -> None:
        """Ask `run()` to return. Only sets flags: safe from a signal handler or a thread."""
        if kill_workers is not None:
            self.kill_workers = kill_workers
        self._stop_requested = True
        if self._waker is not None:
            self._waker.wake()

    def run(self) -> None:
        """Serve the workers until `stop()`; then shut down (see module doc)."""
        assert self._server is not None and self._sync is not None and self._waker is not None, \
            "start() first"
        poller = zmq.Poller()
        poller.register(self._server.socket, zmq.POLLIN)
        poller.register(self._waker.fd, zmq.POLLIN)
        next_check = next_beat = 0.0
        try:
            while not self._stop_requested:
                wait = min(next_check, next_beat) - time.monotonic()
                poller.poll(max(0, int(wait * 1000) + 1))
                self._waker.drain()
                now = time.monotonic()
                generation, wanted = self._sync.wanted()
                for worker, message in self._server.poll(0):
                    self._on_message(worker, message, wanted, now)
                self.dumps.send_pending(self._server, self.workers.ports_of, self.host)
                self.broadcasts.send_pending(self._server, self.workers.ports_of, self.host)
                if now >= next_beat:
                    next_beat = now + self.beat_every
                    self._sync.offer_beat(self._beat())
                    self._vouch(wanted)
                if now >= next_check or generation != self._generation:
                    self._generation = generation
                    self.workers.reap_stopping(now)
                    if wanted is not None:  # not read yet: change nothing, above all kill nothing
                        self.workers.check(wanted, now)
                        self._checked = generation
                        self._clean_logs(now)
                    next_check = now + (REAP_SECS if self.workers.stopping else POLL_SECS)
        finally:
            self._shutdown()

    # --- what LocalCluster (another thread) uses ------------------------------------------------

    def worker_pids(self) -> dict[int, int]:
        """Port -> pid of every worker this supervisor runs now."""
        return self.workers.pids()

    @property
    def restarts(self) -> int:
        return sum(self.workers.restarts.values())

    def set_slots(self, ports: Sequence[int]) -> None:
        """Offer these ports from now on (registered at once, so the next round sees them)."""
        assert self._state is not None and self._sync is not None, "start() first"
        self.slots = list(ports)
        self._state.register_supervisor(self.id, self._info())
        self._state.supervisor_heartbeat(self.id, self._beat())
        self._sync.set_slots(self.slots)

    def mark(self) -> int:
        """A mark for `settled`: what is wanted is read again after it."""
        assert self._sync is not None, "start() first"
        return self._sync.mark()

    def settled(self, topology_id: str, mark: int) -> bool:
        """Whether, as of a reading of the assignments begun after `mark`, no worker of
        `topology_id` is wanted, runs or is being stopped here."""
        if self._sync is None:
            return True
        generation, wanted = self._sync.wanted()
        return (self._sync.refreshed_since(mark) and wanted is not None
                and all(w.topology_id != topology_id for w in wanted.values())
                and self._checked >= generation and not self.workers.busy(topology_id))

    def request_dumps(self, topology_id: str, timeout: float) -> dict[int, dict[str, Any]]:
        """Port -> what each worker of `topology_id` captured (testing mode)."""
        assert self._waker is not None, "start() first"
        return self.dumps.request(topology_id, timeout, self._waker.wake)

    def flush(self, topology_id: str) -> None:
        """Tell every worker of `topology_id` that the input is over ({"type": "flush"}:
        windows fire what they hold). Testing mode; returns once the message is queued."""
        assert self._waker is not None, "start() first"
        self.broadcasts.post(topology_id, {"type": "flush"}, self._waker.wake)

    @property
    def control_endpoint(self) -> str:
        return self._server.endpoint if self._server is not None else ""

    # --- start-up pieces ------------------------------------------------------------------------

    @property
    def logviewer_port(self) -> int | None:
        """The port its workers' logs are served on (None: not served)."""
        return self._logviewer.port if self._logviewer is not None else None

    def _info(self) -> dict[str, Any]:
        return {"host": self.host, "ports": list(self.slots), "started": self.started,
                "hostname": self.hostname, "pid": os.getpid(),
                "logviewer_port": self.logviewer_port}

    def _start_logviewer(self) -> None:
        """Serve the workers' logs (supervisor.logviewer). A port that cannot be bound
        costs the log server, not the workers: said in one line, and not advertised."""
        if not self._serve_logs:
            return
        port = int(self.config["supervisor.logviewer.port"])
        try:
            self._logviewer = LogViewer(self.home / "logs", self.host, port,
                                        self.config["cluster.secret"])
        except OSError as e:
            log.error("supervisor %s: cannot serve worker logs on %s:%d "
                      "(supervisor.logviewer.port): %s; running without a log server",
                      self.id, self.host, port, e.strerror or e)
            return
        self._logviewer.start()
        log.info("supervisor %s: serving worker logs on http://%s:%d/api/v1/log", self.id,
                 self.host, self._logviewer.port)

    def _clean_logs(self, now: float) -> None:
        """Now and then, remove the logs of topologies gone from here for a long time."""
        if now < self._next_log_cleanup:
            return
        self._next_log_cleanup = now + LOG_CLEANUP_SECS
        keep = {r.proc.record.topology_id for r in self.workers.running.values()}
        keep |= {p.record.topology_id for p, _ in self.workers.stopping.values()}
        for name in remove_old_logs(self.home / "logs", keep, time.time() - LOG_KEEP_SECS):
            log.info("supervisor %s: removed the old logs of %s", self.id, name)

    def _beat(self) -> dict[str, Any]:
        """The supervisor's own heartbeat: its info and a counter nimbus sees change."""
        self._beats += 1
        return {**self._info(), "seq": self._beats, "time": time.time(),
                "workers": len(self.workers.running)}

    # --- the loop ------------------------------------------------------------------------------

    def _on_message(self, worker: str, message: dict[str, Any],
                    wanted: dict[int, PortWant] | None, now: float) -> None:
        kind = message.get("type")
        if kind == "dump":  # its identity is "host:port"; a dump does not repeat the port
            port_text = worker.rpartition(":")[2]
            if port_text.isdigit():
                self.dumps.answered(int(port_text), message)
            return
        port = message.get("port")
        running = self.workers.running.get(port) if isinstance(port, int) else None
        if kind != "heartbeat" or running is None:
            return
        record = running.proc.record
        assert self._server is not None and self._sync is not None
        if message.get("pid") != record.pid or message.get("topology_id") != record.topology_id:
            # A worker being replaced, still talking: not the one on this port now. Its errors
            # (e.g. why it could not start) are still the topology's.
            if message.get("topology_id") == record.topology_id and message.get("errors"):
                self._sync.offer_errors(record.topology_id, list(message["errors"]))
            return
        running.last_heartbeat = now
        reply = answer(wanted.get(record.port) if wanted is not None else None,
                       wanted is not None, record.topology_id, record.tasks,
                       record.code_version, message.get("version"))
        if reply is not None:
            self._server.send(worker, reply)
        self._sync.offer_heartbeat(record.topology_id, f"{self.host}:{record.port}", message)

    def _vouch(self, wanted: dict[int, PortWant] | None) -> None:
        """Say "supervised" to every worker that keeps its work, unasked, once a beat: a
        worker's silence timer then does not depend on how often it heartbeats itself."""
        assert self._server is not None
        for port, running in self.workers.running.items():
            r = running.proc.record
            want = wanted.get(port) if wanted is not None else None
            if answer(want, wanted is not None, r.topology_id, r.tasks, r.code_version,
                      want.version if want is not None else None) == SUPERVISED:
                self._server.send(f"{self.host}:{port}", SUPERVISED)

    # --- shutdown ------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        left = self.workers.shutdown(self.kill_workers)
        if self.kill_workers and self._state is not None and self.id:
            try:  # leaving with our workers: nimbus may move the work at once
                self._state.remove_supervisor_heartbeat(self.id)
            except SquallError:
                log.warning("supervisor %s: could not remove its heartbeat", self.id)
        self.dumps.cancel()
        self._close()
        log.info("supervisor %s: stopped (%d worker(s) left running)", self.id, left)

    def _close(self) -> None:
        if self._logviewer is not None:
            self._logviewer.stop()
            self._logviewer = None
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        if self._state is not None:
            self._state.close()  # ends the session: the registration goes at once
            self._state = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._waker is not None:
            self._waker.close()
            self._waker = None
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None
