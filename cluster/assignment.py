"""The records nimbus and supervisors share through the cluster state: supervisors, topology
demands, assignments, and the version a worker runs.

Plain records with `to_dict`/`from_dict` so that the cluster-state layer can store them as
JSON. No I/O here. They live in `cluster/` because both daemons read them: a supervisor never
imports nimbus, nor nimbus a supervisor.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from topology.errors import SquallError

Slot = tuple[str, int]
"""A worker slot: `(supervisor_id, port)`."""


class SchedulerError(SquallError):
    """A demand or an assignment is malformed: the message names the topology and the value."""


@dataclass
class SupervisorInfo:
    """A live supervisor: the host its workers are reached at and the ports it offers."""

    host: str
    ports: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "ports": sorted(self.ports)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SupervisorInfo":
        try:
            return cls(host=str(data["host"]), ports=[int(p) for p in data["ports"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise SchedulerError(f"malformed supervisor info {data!r}: {exc}") from exc


@dataclass
class TopologyDemand:
    """A topology to schedule: how many workers it asks for and its tasks per component.

    Every task id belongs to exactly one component; the acker component ("__acker") is one of
    them.
    """

    topology_id: str
    num_workers: int
    component_tasks: dict[str, list[int]]

    def __post_init__(self) -> None:
        if self.num_workers < 1:
            raise SchedulerError(
                f"topology {self.topology_id!r}: num_workers must be >= 1, got {self.num_workers}"
            )
        seen: dict[int, str] = {}
        for component in sorted(self.component_tasks):
            for task in self.component_tasks[component]:
                if task in seen:
                    raise SchedulerError(
                        f"topology {self.topology_id!r}: task {task} is in both "
                        f"{seen[task]!r} and {component!r}"
                    )
                seen[task] = component
        if not seen:
            raise SchedulerError(f"topology {self.topology_id!r} has no tasks")

    def tasks(self) -> set[int]:
        """Every task id of the topology."""
        return {t for tasks in self.component_tasks.values() for t in tasks}

    def target_workers(self) -> int:
        """Workers wanted when slots are plentiful: never more workers than tasks."""
        return min(self.num_workers, len(self.tasks()))


@dataclass
class Assignment:
    """Where one topology runs: its tasks per slot, and the host of each supervisor used.

    `hosts` maps every supervisor id that appears in `workers` to its host, so that the
    assignment alone tells workers where to send tuples. Task lists are kept sorted.
    """

    topology_id: str
    workers: dict[Slot, list[int]]
    hosts: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = sorted({sid for sid, _ in self.workers} - set(self.hosts))
        if missing:
            raise SchedulerError(
                f"assignment of {self.topology_id!r}: no host for supervisor(s) {missing}"
            )

    def tasks(self) -> list[int]:
        """Every assigned task id, sorted (a task appearing twice appears twice)."""
        return sorted(t for tasks in self.workers.values() for t in tasks)

    def task_locations(self) -> dict[int, tuple[str, int]]:
        """Task id -> `(host, port)` of the worker running it."""
        return {
            task: (self.hosts[sid], port)
            for (sid, port), tasks in self.workers.items()
            for task in tasks
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "topology_id": self.topology_id,
            "workers": [
                {
                    "supervisor": sid,
                    "host": self.hosts[sid],
                    "port": port,
                    "tasks": sorted(self.workers[(sid, port)]),
                }
                for sid, port in sorted(self.workers)
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Assignment":
        try:
            topology_id = str(data["topology_id"])
            workers: dict[Slot, list[int]] = {}
            hosts: dict[str, str] = {}
            for entry in data["workers"]:
                sid, host, port = str(entry["supervisor"]), str(entry["host"]), int(entry["port"])
                if hosts.setdefault(sid, host) != host:
                    raise SchedulerError(
                        f"assignment of {topology_id!r}: supervisor {sid!r} has two hosts, "
                        f"{hosts[sid]!r} and {host!r}"
                    )
                if (sid, port) in workers:
                    raise SchedulerError(
                        f"assignment of {topology_id!r}: slot {sid}:{port} appears twice"
                    )
                workers[(sid, port)] = sorted(int(t) for t in entry["tasks"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SchedulerError(f"malformed assignment {data!r}: {exc}") from exc
        return cls(topology_id, workers, hosts)


# --- the version a worker runs ------------------------------------------------------------------


def worker_version(assignment: Mapping[str, Any]) -> dict[str, Any]:
    """The version of a stored assignment that a worker runs and echoes back in its heartbeat:
    separate fields, compared for equality only (workers treat it as opaque).

    Everything a worker runs by is in the assignment, and nimbus bumps "version" whenever any
    of it changes (tasks, `active`, code version), so the pair names it exactly.
    """
    return {"assignment": assignment.get("version"), "code": assignment.get("code_version")}


def runs_version(heartbeat_version: Any, assignment_version: Any) -> bool:
    """Whether a worker reporting `heartbeat_version` runs assignment version
    `assignment_version` (the stored assignment's "version" number)."""
    return (isinstance(heartbeat_version, dict) and assignment_version is not None
            and heartbeat_version.get("assignment") == assignment_version)
