"""The worker processes on a supervisor's ports: adopted at start, started and restarted as
`supervisor.classify` decides (with a back-off for workers that keep dying young), stopped
when unwanted (SIGTERM, then SIGKILL after `supervisor.worker.stop.timeout.secs`).

Used only by the supervisor's main loop thread; `pids()` and `ports_of()` may be called from
another thread (they copy a dict, which is atomic in CPython).
"""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from cluster import logsink
from cluster.logfiles import worker_log_path
from cluster.processes import stop_processes
from supervisor.classify import LocalWorker, classify
from supervisor.procs import WorkerProcess, WorkerRecords, adopt, spawned, stop_all
from supervisor.wants import PortWant
from worker.launcher import QUICK_EXIT_SECS, restart_delay, spawn_worker

log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class Timeouts:
    worker: float  # supervisor.worker.timeout.secs
    start: float  # supervisor.worker.start.timeout.secs
    stop: float  # supervisor.worker.stop.timeout.secs


@dataclass(frozen=True)
class Launch:
    """How this supervisor's workers are started (`worker.launcher.spawn_worker`)."""

    host: str
    control: str
    secret: str
    log_dir: Path
    parent_pid: int | None = None  # local mode: workers exit when this process is gone
    sys_path: Sequence[str] = ()
    log_max_bytes: int = logsink.MAX_BYTES  # each worker's log rotates at this size,
    log_backups: int = logsink.BACKUPS  # keeping this many older files (cluster.logsink)


class WorkerSet:
    """The workers of one supervisor (see the module doc)."""

    def __init__(self, supervisor_id: str, records: WorkerRecords, timeouts: Timeouts) -> None:
        self.id = supervisor_id
        self.records = records
        self.timeouts = timeouts
        self.running: dict[int, Running] = {}
        self.stopping: dict[int, tuple[WorkerProcess, float]] = {}  # port -> (proc, kill at)
        self.restarts: Counter[str] = Counter()  # topology id -> workers restarted
        self.launch: Launch | None = None
        self._quick_exits: dict[int, int] = {}
        self._not_before: dict[int, float] = {}

    # --- start-up -------------------------------------------------------------------------------

    def adopt(self, slots: list[int], home: Path, now: float, look_for_strays: bool) -> None:
        """Re-adopt the live workers of our records; stop those on ports that are no longer
        our slots and, when asked, workers of this home that have no record."""
        adopted = adopt(self.records)
        foreign = [p for port, p in adopted.items() if port not in slots]
        if foreign:
            log.warning("supervisor %s: stopping %d worker(s) on ports that are no longer my "
                        "slots", self.id, len(foreign))
            stop_all(foreign, self.timeouts.stop)
            for proc in foreign:
                self.records.remove(proc.record.port)
        # A fresh grace period: an adopted worker must heartbeat within the start timeout.
        self.running = {port: Running(p, now) for port, p in adopted.items() if port in slots}
        if look_for_strays:
            self._stop_strays(home)

    def _stop_strays(self, home: Path) -> None:
        """Stop workers of this home that have no record (we died between spawn and record)."""
        known = {r.proc.pid for r in self.running.values()}
        marker = str(home / "code") + os.sep
        strays = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if (proc.pid not in known and "worker" in cmdline and "--code" in cmdline
                    and any(arg.startswith(marker) for arg in cmdline)):
                log.warning("supervisor %s: stopping unrecorded worker pid %d", self.id,
                            proc.pid)
                strays.append(proc)
        stop_processes(strays, self.timeouts.stop, "unrecorded worker")

    # --- what other threads may read ------------------------------------------------------------

    def pids(self) -> dict[int, int]:
        return {port: r.proc.pid for port, r in dict(self.running).items()}

    def ports_of(self, topology_id: str) -> list[int]:
        return sorted(port for port, r in dict(self.running).items()
                      if r.proc.record.topology_id == topology_id)

    def busy(self, topology_id: str) -> bool:
        """Whether a worker of `topology_id` runs or is being stopped."""
        return bool(self.ports_of(topology_id)) or any(
            p.record.topology_id == topology_id for p, _ in dict(self.stopping).values())

    # --- the loop -------------------------------------------------------------------------------

    def check(self, wanted: dict[int, PortWant], now: float) -> None:
        """Compare the workers with what is wanted and act on the difference."""
        self.reap_stopping(now)
        running = {port: r.observed() for port, r in self.running.items()}
        actions = classify({port: w.work for port, w in wanted.items()}, running, now,
                           self.timeouts.worker, self.timeouts.start)
        for port in actions.kill:
            log.info("supervisor %s: %s; stopping it", self.id, actions.reasons[port])
            self._begin_stop(port, now)
        for port in actions.start:
            running_now = self.running.get(port)
            if running_now is not None:  # dead: not in kill, so still listed
                log.warning("supervisor %s: %s, exit code %s; restarting it", self.id,
                            actions.reasons[port], running_now.proc.exit_code())
                self._forget_dead(port, now)
            self._start(port, wanted[port], now)

    def _start(self, port: int, want: PortWant, now: float) -> None:
        if port in self.stopping or not want.ready or now < self._not_before.get(port, 0):
            return  # the old worker still holds the port, the code or its environment is not
            # ready (or failed), or backing off
        launch = self.launch
        assert launch is not None, "WorkerSet.launch is set before the loop runs"
        assert want.code_path is not None and want.runtime is not None  # want.ready
        # The worker runs with its environment's interpreter; the environment's site
        # directories also go first on its path, so that its requirements win over any
        # site directory in `launch.sys_path` (local mode passes the caller's sys.path).
        popen = spawn_worker(
            topology_id=want.topology_id, host=launch.host, port=port, control=launch.control,
            code_path=want.code_path, secret=launch.secret,
            log_path=str(worker_log_path(launch.log_dir, want.topology_id, port)),
            parent_pid=launch.parent_pid, sys_path=[*want.runtime.paths, *launch.sys_path],
            python=want.runtime.python, log_max_bytes=launch.log_max_bytes,
            log_backups=launch.log_backups,
        )
        try:
            proc = spawned(port, popen, want.topology_id, want.work.tasks, want.code_version)
        except psutil.Error:  # died at once; the next check finds no worker and starts again
            popen.poll()
            log.warning("supervisor %s: worker %d exited immediately", self.id, port)
            self.restarts[want.topology_id] += 1
            self._note_quick_exit(port, now)
            return
        self.records.save(proc.record)
        self.running[port] = Running(proc, now)
        log.info("supervisor %s: started worker %s:%d (pid %d) for tasks %s of %s", self.id,
                 launch.host, port, proc.pid, list(want.work.tasks), want.topology_id)

    def _begin_stop(self, port: int, now: float) -> None:
        running = self.running.pop(port)
        if not running.proc.alive():
            self._finish_stop(port, running.proc)
            return
        running.proc.signal(signal.SIGTERM)
        self.stopping[port] = (running.proc, now + self.timeouts.stop)

    def reap_stopping(self, now: float) -> None:
        for port, (proc, kill_at) in list(self.stopping.items()):
            if not proc.alive():
                del self.stopping[port]
                self._finish_stop(port, proc)
            elif now >= kill_at:
                log.warning("supervisor %s: worker %d (pid %d) ignored SIGTERM for %g s; "
                            "killing it", self.id, port, proc.pid, self.timeouts.stop)
                proc.signal(signal.SIGKILL)
                self.stopping[port] = (proc, float("inf"))

    def _finish_stop(self, port: int, proc: WorkerProcess) -> None:
        proc.reap()
        self.records.remove(port)
        log.info("supervisor %s: worker %d (pid %d) stopped", self.id, port, proc.pid)

    def _forget_dead(self, port: int, now: float) -> None:
        running = self.running.pop(port)
        running.proc.reap()
        self.records.remove(port)
        self.restarts[running.proc.record.topology_id] += 1
        if now - running.started_at < QUICK_EXIT_SECS:
            self._note_quick_exit(port, now)
        else:
            self._quick_exits.pop(port, None)

    def _note_quick_exit(self, port: int, now: float) -> None:
        """Restart at once the first time, then back off: a crashing worker must not spin."""
        n = self._quick_exits[port] = self._quick_exits.get(port, 0) + 1
        self._not_before[port] = now + restart_delay(n)

    # --- the end --------------------------------------------------------------------------------

    def shutdown(self, kill_running: bool) -> int:
        """Finish the stops under way and, if asked, stop every worker; returns how many are
        left running."""
        stopping = [proc for proc, _ in self.stopping.values()]
        if kill_running:
            log.info("supervisor %s: stopping %d worker(s)", self.id, len(self.running))
            stopping += [r.proc for r in self.running.values()]
            self.running.clear()
        stop_all(stopping, self.timeouts.stop)  # those being stopped are finished either way
        for proc in stopping:
            self.records.remove(proc.record.port)
        self.stopping.clear()
        return len(self.running)
