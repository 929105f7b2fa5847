"""The supervisor's worker processes: a handle per process and the pid records that outlive us.

A worker is started detached (its own session, no parent watch), so it keeps running when its
supervisor stops or crashes. `{home}/workers/{port}.json` records what runs on each port (pid,
psutil create time, topology, tasks, code version); a restarted supervisor reads the records and
re-adopts the workers that are still alive instead of starting duplicates. A record is trusted
only when the pid still names the very process we started (same create time, a worker command
line for that port), so a recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from cluster.processes import stop_processes

log = logging.getLogger(__name__)

CREATE_TIME_TOLERANCE = 0.01  # seconds; psutil reads the same /proc value both times


@dataclass(frozen=True)
class WorkerRecord:
    """What `{home}/workers/{port}.json` says runs on one port."""

    port: int
    pid: int
    create_time: float
    topology_id: str
    tasks: tuple[int, ...]
    code_version: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorkerRecord:
        return cls(port=int(data["port"]), pid=int(data["pid"]),
                   create_time=float(data["create_time"]), topology_id=str(data["topology_id"]),
                   tasks=tuple(int(t) for t in data["tasks"]),
                   code_version=str(data.get("code_version", "")))


class WorkerProcess:
    """One worker process: a child we started (with its Popen) or one we adopted (psutil only)."""

    def __init__(self, record: WorkerRecord, proc: psutil.Process,
                 popen: subprocess.Popen | None = None) -> None:
        self.record = record
        self.proc = proc
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.record.pid

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None  # also reaps it
        try:
            return self.proc.is_running() and self.proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def exit_code(self) -> int | None:
        return self.popen.returncode if self.popen is not None else None

    def signal(self, sig: int) -> None:
        try:
            if self.popen is not None:
                if self.popen.poll() is None:
                    self.popen.send_signal(sig)
            elif self.proc.is_running():  # checks the create time: never a recycled pid
                self.proc.send_signal(sig)
        except (psutil.Error, ProcessLookupError):
            pass

    def reap(self) -> None:
        """Collect the exit status of a dead worker if it is our child (no zombie left)."""
        if self.popen is not None:
            self.popen.poll()
            return
        try:
            self.proc.wait(timeout=0)
        except (psutil.Error, ChildProcessError):
            pass


class WorkerRecords:
    """The `{home}/workers` directory: one JSON record per port with a worker."""

    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)  # made by the first save()

    def path(self, port: int) -> Path:
        return self.dir / f"{port}.json"

    def save(self, record: WorkerRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{record.port}.json.tmp"
        tmp.write_text(json.dumps(record.to_dict()))
        os.replace(tmp, self.path(record.port))  # atomic: a crash never leaves half a record

    def remove(self, port: int) -> None:
        self.path(port).unlink(missing_ok=True)

    def load_all(self) -> dict[int, WorkerRecord]:
        """Every readable record; unreadable ones are removed (they name nothing we can trust)."""
        out: dict[int, WorkerRecord] = {}
        for path in sorted(self.dir.glob("*.json")):
            try:
                record = WorkerRecord.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("supervisor: dropping unreadable worker record %s: %s", path, e)
                path.unlink(missing_ok=True)
                continue
            if path.stem != str(record.port):
                log.warning("supervisor: dropping misnamed worker record %s", path)
                path.unlink(missing_ok=True)
                continue
            out[record.port] = record
        return out


def spawned(record_port: int, popen: subprocess.Popen, topology_id: str,
            tasks: Iterable[int], code_version: str) -> WorkerProcess:
    """The handle of a worker we have just started."""
    proc = psutil.Process(popen.pid)
    record = WorkerRecord(port=record_port, pid=popen.pid, create_time=proc.create_time(),
                          topology_id=topology_id, tasks=tuple(sorted(tasks)),
                          code_version=code_version)
    return WorkerProcess(record, proc, popen)


def find_live(record: WorkerRecord) -> psutil.Process | None:
    """The process `record` describes if it is still that worker, else None."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > CREATE_TIME_TOLERANCE:
            return None  # the pid was recycled
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = proc.cmdline()
    except psutil.Error:
        return None
    if "worker" not in cmdline or str(record.port) not in cmdline:
        return None
    return proc


def adopt(records: WorkerRecords) -> dict[int, WorkerProcess]:
    """Re-adopt the live workers named by the records; remove the records of dead ones."""
    adopted: dict[int, WorkerProcess] = {}
    for port, record in records.load_all().items():
        proc = find_live(record)
        if proc is None:
            log.info("supervisor: worker %d (pid %d) of %s is gone; forgetting it", port,
                     record.pid, record.topology_id)
            records.remove(port)
            continue
        log.info("supervisor: adopting running worker %d (pid %d) of %s", port, record.pid,
                 record.topology_id)
        adopted[port] = WorkerProcess(record, proc)
    return adopted


def stop_all(workers: Iterable[WorkerProcess], timeout: float) -> None:
    """SIGTERM every worker, wait up to `timeout` s for all of them, SIGKILL the rest, reap."""
    workers = [w for w in workers if w.alive()]
    stop_processes([w.popen if w.popen is not None else w.proc for w in workers], timeout,
                   "worker")
    for w in workers:
        w.reap()
