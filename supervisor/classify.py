"""Which local workers to start, kill or keep: the core of the supervisor's loop. Pure.

The supervisor reads what its assignment wants on each port and what it runs there, calls
`classify`, and acts on the result: every port in `kill` first, then every port in `start`
(a stale worker or one running the wrong thing is in both). Times are on the supervisor's own
clock: `last_heartbeat` is when *it* last saw the worker's heartbeat, never the worker's
timestamp.

A running worker is
- *unwanted* (kill) when its port is not assigned, or assigned to another topology, to other
  tasks or to another version of the topology's code; when the port is assigned, its new
  worker is started after the kill;
- *dead* (start) when its process is gone;
- *stale* (kill, then start) when alive but silent: its last heartbeat is older than
  `worker_timeout_secs`, or it never heartbeated and started more than `start_timeout_secs`
  ago;
- *healthy* (keep) otherwise.
An assigned port with nothing running is started.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class WorkerWant:
    """What the assignment wants on one port."""

    topology_id: str
    tasks: tuple[int, ...]
    assignment_version: int
    code_version: str = ""


@dataclass(frozen=True)
class LocalWorker:
    """A worker this supervisor started on one port, as it last observed it."""

    pid: int | None
    alive: bool
    topology_id: str
    tasks: tuple[int, ...]
    started_at: float
    last_heartbeat: float | None
    code_version: str = ""


@dataclass
class Actions:
    """Ports to start, kill (before starting) and keep, sorted; one human line per port."""

    start: list[int] = field(default_factory=list)
    kill: list[int] = field(default_factory=list)
    keep: list[int] = field(default_factory=list)
    reasons: dict[int, str] = field(default_factory=dict)


def classify(
    assigned: Mapping[int, WorkerWant],
    running: Mapping[int, LocalWorker],
    now: float,
    worker_timeout_secs: float,
    start_timeout_secs: float,
) -> Actions:
    """Decide, port by port, what the supervisor does with its workers (see module doc)."""
    actions = Actions()
    for port in sorted(set(assigned) | set(running)):
        want, have = assigned.get(port), running.get(port)
        if have is None:
            assert want is not None  # the port comes from one of the two mappings
            actions.start.append(port)
            actions.reasons[port] = f"worker {port}: not running, {_describe(want)}"
            continue
        problem = _unwanted(want, have)
        if problem is not None:
            actions.kill.append(port)
            if want is not None:
                actions.start.append(port)
            actions.reasons[port] = f"worker {port}: unwanted, {problem}"
            continue
        assert want is not None  # _unwanted reports an unassigned port
        if not have.alive:
            actions.start.append(port)
            actions.reasons[port] = f"worker {port}: dead (pid {have.pid}), {_describe(want)}"
            continue
        silence = _silence(have, now, worker_timeout_secs, start_timeout_secs)
        if silence is not None:
            actions.kill.append(port)
            actions.start.append(port)
            actions.reasons[port] = f"worker {port}: stale, {silence}"
            continue
        actions.keep.append(port)
        actions.reasons[port] = f"worker {port}: healthy, {_describe(want)}"
    return actions


def _describe(want: WorkerWant) -> str:
    return (
        f"assigned {len(want.tasks)} task(s) of {want.topology_id!r} "
        f"(assignment v{want.assignment_version})"
    )


def _unwanted(want: WorkerWant | None, have: LocalWorker) -> str | None:
    """Why the running worker does not match what the port wants, or None if it does."""
    if want is None:
        return f"port no longer assigned (runs {have.topology_id!r})"
    if want.topology_id != have.topology_id:
        return f"runs {have.topology_id!r} but the port is assigned to {want.topology_id!r}"
    if sorted(want.tasks) != sorted(have.tasks):
        return (
            f"runs tasks {_tasks(have.tasks)} of {have.topology_id!r} "
            f"but is assigned {_tasks(want.tasks)}"
        )
    if want.code_version != have.code_version:
        return (
            f"runs code version {have.code_version!r} of {have.topology_id!r} "
            f"but version {want.code_version!r} is assigned"
        )
    return None


def _tasks(tasks: tuple[int, ...], shown: int = 8) -> str:
    """A task list short enough for a log line: the first few ids and how many more."""
    ordered = sorted(tasks)
    head = ", ".join(str(t) for t in ordered[:shown])
    more = len(ordered) - shown
    return f"[{head}, ... +{more} more]" if more > 0 else f"[{head}]"


def _silence(
    have: LocalWorker, now: float, worker_timeout_secs: float, start_timeout_secs: float
) -> str | None:
    """Why a live worker counts as stale, or None when it has heartbeated recently enough."""
    if have.last_heartbeat is not None:
        quiet = now - have.last_heartbeat
        if quiet > worker_timeout_secs:
            return f"no heartbeat for {quiet:.1f} s (timeout {worker_timeout_secs:g} s)"
        return None
    age = now - have.started_at
    if age > start_timeout_secs:
        return (
            f"no heartbeat since it started {age:.1f} s ago "
            f"(start timeout {start_timeout_secs:g} s)"
        )
    return None
