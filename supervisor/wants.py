"""What the assignments ask of one supervisor, port by port. Pure: no I/O, no clock.

`wanted_ports` turns the cluster's assignments into one `PortWant` per slot of this
supervisor: what `classify` compares the running workers with, and the assignment message
the supervisor sends to the worker on that port; `answer` is what the supervisor says to a
worker's heartbeat. Everything a worker runs by is in the stored
assignment (its tasks, where every task runs, `active`, the code version), and nimbus bumps
the assignment's version whenever any of it changes: the supervisor reads nothing else.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.assignment import Assignment, SchedulerError, worker_version
from supervisor.classify import WorkerWant

SUPERVISED: dict[str, Any] = {"type": "supervised"}


@dataclass(frozen=True)
class Runtime:
    """The Python a topology's workers run with: an interpreter, and site directories its
    imports need beside its own (a topology's requirements: supervisor.venvs)."""

    python: str
    paths: tuple[str, ...] = ()


DEFAULT_RUNTIME = Runtime(sys.executable)  # no requirements: the supervisor's own Python


@dataclass(frozen=True)
class PortWant:
    """One slot's share of an assignment."""

    work: WorkerWant
    version: dict[str, Any]  # what the worker echoes: cluster.assignment.worker_version
    message: dict[str, Any] = field(compare=False)  # {"type": "assignment", ...} for the worker
    code_path: str | None = None  # the topology's code on disk; None until it is fetched
    runtime: Runtime | None = None  # None until its environment is ready (or if it failed)

    @property
    def ready(self) -> bool:
        """Whether a worker can be started for it: code fetched, environment ready."""
        return self.code_path is not None and self.runtime is not None

    @property
    def topology_id(self) -> str:
        return self.work.topology_id

    @property
    def code_version(self) -> str:
        return self.work.code_version


def _int_version(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def topology_wants(
    supervisor_id: str, slots: Collection[int], topology_id: str, data: Any
) -> tuple[dict[int, PortWant], list[str]]:
    """Port -> what should run there for one topology's stored assignment, and the problems
    found (ports that are not our slots). Raises SchedulerError when it is malformed."""
    if not isinstance(data, Mapping):
        raise SchedulerError(f"assignment of {topology_id!r} is not an object")
    assignment = Assignment.from_dict(data)
    mine = {port: tasks for (sid, port), tasks in assignment.workers.items()
            if sid == supervisor_id}
    if not mine:
        return {}, []
    code_version = str(data.get("code_version", ""))
    version = worker_version(data)
    message = {
        "type": "assignment",
        "assignment": {
            "version": version,
            "topology_id": topology_id,
            "active": data.get("active") is True,
            "tasks": {str(task): [host, port]
                      for task, (host, port) in assignment.task_locations().items()},
        },
    }
    out, problems = {}, []
    for port, tasks in sorted(mine.items()):
        if port not in slots:
            problems.append(f"assigned port {port}, which is not one of my slots "
                            f"{sorted(slots)}")
            continue
        work = WorkerWant(topology_id, tuple(sorted(tasks)),
                          _int_version(data.get("version", 0)), code_version)
        out[port] = PortWant(work, version, message)
    return out, problems


def wanted_ports(
    supervisor_id: str,
    slots: Collection[int],
    assignments: Mapping[str, Any],
    problems: dict[str, str] | None = None,
) -> dict[int, PortWant]:
    """Port -> what should run there, for every slot of `supervisor_id` that is assigned.

    `assignments` are as stored (Assignment.to_dict() + "version", "code_version", "active").
    A malformed assignment, a port that is not our slot or one assigned twice (it goes to the
    first topology by id) is skipped, and what is wrong is put in `problems` (topology id ->
    one line) for the caller to report: one topology's bad record never hides the others.
    """
    problems = {} if problems is None else problems
    out: dict[int, PortWant] = {}
    for topology_id in sorted(assignments):
        try:
            wants, notes = topology_wants(supervisor_id, slots, topology_id,
                                          assignments[topology_id])
        except SchedulerError as e:
            problems[topology_id] = f"ignoring its assignment: {e}"
            continue
        for port, want in wants.items():
            if port in out:
                notes.append(f"port {port} is assigned to {out[port].topology_id} too; "
                             f"{out[port].topology_id} keeps it")
                continue
            out[port] = want
        if notes:
            problems[topology_id] = "; ".join(notes)
    return out


def answer(want: PortWant | None, assignments_read: bool, topology_id: str,
           tasks: tuple[int, ...], code_version: str, reported: Any) -> dict[str, Any] | None:
    """The supervisor's answer to a heartbeat of the worker it runs on a port (that worker
    runs `topology_id`'s `tasks` with `code_version` and reports version `reported`):

    - its assignment, when the port wants what it runs and it reports an older version;
    - `{"type": "supervised"}` when it runs what is wanted, or when the assignments have not
      been read yet (a supervisor just restarted vouches for what it adopted);
    - nothing (None) for a worker that is no longer wanted: it is about to be stopped, and
      without an answer its spouts pause, since its work may already run elsewhere.

    Every worker that keeps its work thus hears from its supervisor at each heartbeat.
    """
    if want is None:
        return None if assignments_read else SUPERVISED
    if (want.topology_id, want.work.tasks, want.code_version) != (topology_id, tasks,
                                                                  code_version):
        return None
    return want.message if reported != want.version else SUPERVISED
