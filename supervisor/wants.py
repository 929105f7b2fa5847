"""What the assignments ask of one supervisor, port by port. Pure: no I/O, no clock.

`wanted_ports` turns the cluster's assignments and topology statuses into one `PortWant` per
slot of this supervisor: what `classify` compares the running workers with, and the assignment
message the supervisor sends to the worker on that port.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from nimbus.assignment import Assignment, SchedulerError
from supervisor.classify import WorkerWant

log = logging.getLogger(__name__)

ACTIVE = "ACTIVE"


@dataclass(frozen=True)
class PortWant:
    """One slot's share of an assignment."""

    work: WorkerWant
    version: str  # the worker-facing assignment version: "{assignment}-{code}-{status}"
    message: dict[str, Any] = field(compare=False)  # {"type": "assignment", ...} for the worker
    code_path: str | None = None  # the topology's code on disk; None until it is fetched

    @property
    def topology_id(self) -> str:
        return self.work.topology_id

    @property
    def code_version(self) -> str:
        return self.work.code_version


def worker_version(assignment_version: object, code_version: str, status: str) -> str:
    """The version a worker reports back: it changes when anything the worker runs by does."""
    return f"{assignment_version}-{code_version}-{status}"


def _int_version(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def wanted_ports(
    supervisor_id: str,
    slots: Collection[int],
    assignments: Mapping[str, Mapping[str, Any]],
    statuses: Mapping[str, str],
) -> dict[int, PortWant]:
    """Port -> what should run there, for every slot of `supervisor_id` that is assigned.

    `assignments` are as stored (Assignment.to_dict() + "version" + "code_version");
    `statuses` maps topology id -> "ACTIVE"/"INACTIVE"/"KILLED"/"REBALANCING" (a topology
    without one counts as inactive). Malformed assignments and ports that are not our slots
    are logged and skipped; a port assigned twice goes to the first topology by id.
    """
    out: dict[int, PortWant] = {}
    for topology_id in sorted(assignments):
        data = assignments[topology_id]
        try:
            assignment = Assignment.from_dict(data)
        except SchedulerError as e:
            log.warning("supervisor %s: ignoring assignment of %s: %s", supervisor_id,
                        topology_id, e)
            continue
        mine = {port: tasks for (sid, port), tasks in assignment.workers.items()
                if sid == supervisor_id}
        if not mine:
            continue
        code_version = str(data.get("code_version", ""))
        status = statuses.get(topology_id, "INACTIVE")
        version = worker_version(data.get("version", 0), code_version, status)
        message = {
            "type": "assignment",
            "assignment": {
                "version": version,
                "topology_id": topology_id,
                "active": status == ACTIVE,
                "tasks": {str(task): [host, port]
                          for task, (host, port) in assignment.task_locations().items()},
            },
        }
        for port, tasks in sorted(mine.items()):
            if port not in slots:
                log.warning("supervisor %s: %s is assigned port %d, which is not one of my "
                            "slots %s", supervisor_id, topology_id, port, sorted(slots))
                continue
            if port in out:
                log.warning("supervisor %s: port %d is assigned to both %s and %s; keeping %s",
                            supervisor_id, port, out[port].topology_id, topology_id,
                            out[port].topology_id)
                continue
            work = WorkerWant(topology_id, tuple(sorted(tasks)),
                              _int_version(data.get("version", 0)), code_version)
            out[port] = PortWant(work, version, message)
    return out
