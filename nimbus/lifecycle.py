"""The topology lifecycle as a table of transitions, after Storm's nimbus. Pure: time is `now`.

States are `cluster.status.Status` (the one status vocabulary, which the topology record and
the dashboard use too): ACTIVE, INACTIVE, KILLED, REBALANCING, and the terminal REMOVED that a
killed topology reaches when its wait is over (nimbus then deletes the topology's state). Events:
"activate", "deactivate", "kill", "rebalance", "timeout-done" (the kill or rebalance wait has
elapsed; `due` tells when) and "startup" (a nimbus, maybe a new leader, takes charge).

Killed and rebalancing topologies carry a deadline on the clock of the nimbus that set it.
"startup" re-arms it from the new leader's own `now` with the same wait, because deadlines
must never be compared across the clocks of two hosts.

    active      activate -> active (no-op)     deactivate -> inactive
                kill -> killed                 rebalance -> rebalancing (returns to active)
                startup -> active
    inactive    activate -> active             deactivate -> inactive (no-op)
                kill -> killed                 rebalance -> rebalancing (returns to inactive)
                startup -> inactive
    killed      kill -> killed (new wait)      timeout-done -> removed
                startup -> killed (wait re-armed)
    rebalancing kill -> killed                 timeout-done -> the state it came from
                startup -> rebalancing (wait re-armed)

Every other (state, event) pair raises `LifecycleError`.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.status import Status
from topology.errors import SquallError

ACTIVE = Status.ACTIVE
INACTIVE = Status.INACTIVE
KILLED = Status.KILLED
REBALANCING = Status.REBALANCING
REMOVED = Status.REMOVED
STATES = tuple(Status)

ACTIVATE = "activate"
DEACTIVATE = "deactivate"
KILL = "kill"
REBALANCE = "rebalance"
TIMEOUT_DONE = "timeout-done"
STARTUP = "startup"
EVENTS = (ACTIVATE, DEACTIVATE, KILL, REBALANCE, TIMEOUT_DONE, STARTUP)

_TIMED = (KILLED, REBALANCING)
_VERBS = {
    ACTIVATE: "activate",
    DEACTIVATE: "deactivate",
    KILL: "kill",
    REBALANCE: "rebalance",
    TIMEOUT_DONE: "apply timeout-done to",
    STARTUP: "start up",
}


class LifecycleError(SquallError):
    """An event that the topology's state does not allow, or a malformed status."""


def _state(name: Any) -> Status:
    try:
        return Status.parse(name)
    except ValueError:
        known = ", ".join(s.value for s in STATES)
        raise LifecycleError(f"unknown topology state {name!r}; expected one of {known}") from None


def _show(value: Any) -> str:
    return repr(value.value if isinstance(value, Status) else value)


@dataclass(frozen=True)
class TopologyStatus:
    """A topology's lifecycle state.

    `name` is a `Status` (a string in either case is read as one: lifecycle records were
    stored in lower case before). `deadline` (when the wait ends) and `wait_secs` (how long the
    wait is) are set for killed and rebalancing topologies only; `previous` (ACTIVE or
    INACTIVE) for rebalancing only: the state to return to when the rebalance is done.
    """

    name: Status
    deadline: float | None = None
    wait_secs: float | None = None
    previous: Status | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _state(self.name))
        if self.previous is not None:
            try:
                object.__setattr__(self, "previous", Status.parse(self.previous))
            except ValueError:
                pass  # refused below, naming the value
        timed = self.name in _TIMED
        if timed != (self.deadline is not None) or timed != (self.wait_secs is not None):
            raise LifecycleError(
                f"{self.name.article} topology {'needs' if timed else 'has no'} deadline and "
                f"wait, got deadline={self.deadline!r} wait_secs={self.wait_secs!r}"
            )
        rebalancing = self.name == REBALANCING
        if rebalancing and self.previous not in (ACTIVE, INACTIVE):
            raise LifecycleError(
                f"a rebalancing topology returns to active or inactive, got "
                f"{_show(self.previous)}"
            )
        if not rebalancing and self.previous is not None:
            raise LifecycleError(f"{self.name.article} topology has no previous state")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name.value}
        if self.deadline is not None:
            data["deadline"] = self.deadline
            data["wait_secs"] = self.wait_secs
        if self.previous is not None:
            data["previous"] = self.previous.value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TopologyStatus":
        try:
            return cls(
                name=_state(data["name"]),
                deadline=None if data.get("deadline") is None else float(data["deadline"]),
                wait_secs=None if data.get("wait_secs") is None else float(data["wait_secs"]),
                previous=None if data.get("previous") is None else _previous(data["previous"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LifecycleError(f"malformed topology status {data!r}: {exc}") from exc


def _previous(value: Any) -> Status:
    try:
        return Status.parse(value)
    except ValueError:
        raise LifecycleError(f"a rebalancing topology returns to active or inactive, got "
                             f"{value!r}") from None


_Handler = Callable[[TopologyStatus, float, float | None], TopologyStatus]


def _stay(status: TopologyStatus, now: float, wait_secs: float | None) -> TopologyStatus:
    return status


def _to(name: Status) -> _Handler:
    def handler(status: TopologyStatus, now: float, wait_secs: float | None) -> TopologyStatus:
        return TopologyStatus(name)

    return handler


def _wait(event: str, wait_secs: float | None) -> float:
    if wait_secs is None or wait_secs < 0:
        raise LifecycleError(f"{event} needs a wait of 0 seconds or more, got {wait_secs!r}")
    return wait_secs


def _kill(status: TopologyStatus, now: float, wait_secs: float | None) -> TopologyStatus:
    wait = _wait(KILL, wait_secs)
    return TopologyStatus(KILLED, deadline=now + wait, wait_secs=wait)


def _rebalance(status: TopologyStatus, now: float, wait_secs: float | None) -> TopologyStatus:
    wait = _wait(REBALANCE, wait_secs)
    return TopologyStatus(REBALANCING, deadline=now + wait, wait_secs=wait, previous=status.name)


def _rearm(status: TopologyStatus, now: float, wait_secs: float | None) -> TopologyStatus:
    assert status.wait_secs is not None  # guaranteed for timed states by __post_init__
    return TopologyStatus(
        status.name,
        deadline=now + status.wait_secs,
        wait_secs=status.wait_secs,
        previous=status.previous,
    )


def _timeout_done(status: TopologyStatus, now: float, wait_secs: float | None) -> TopologyStatus:
    if due(status, now) is None:
        raise LifecycleError(
            f"the wait of the {status.name.lower()} topology ends at {status.deadline}, not yet "
            f"at {now}"
        )
    if status.name == KILLED:
        return TopologyStatus(REMOVED)
    assert status.previous is not None  # guaranteed for rebalancing by __post_init__
    return TopologyStatus(status.previous)


TRANSITIONS: Mapping[Status, Mapping[str, _Handler]] = {
    ACTIVE: {
        ACTIVATE: _stay,
        DEACTIVATE: _to(INACTIVE),
        KILL: _kill,
        REBALANCE: _rebalance,
        STARTUP: _stay,
    },
    INACTIVE: {
        ACTIVATE: _to(ACTIVE),
        DEACTIVATE: _stay,
        KILL: _kill,
        REBALANCE: _rebalance,
        STARTUP: _stay,
    },
    KILLED: {
        KILL: _kill,
        TIMEOUT_DONE: _timeout_done,
        STARTUP: _rearm,
    },
    REBALANCING: {
        KILL: _kill,
        TIMEOUT_DONE: _timeout_done,
        STARTUP: _rearm,
    },
    REMOVED: {},
}
"""State -> event -> handler. A missing pair is an illegal transition."""


def transition(
    status: TopologyStatus, event: str, now: float, wait_secs: float | None = None
) -> TopologyStatus:
    """The status after `event` happens at `now`; `wait_secs` is the wait of kill/rebalance.

    Raises `LifecycleError` for an unknown event, an event the state does not allow
    ("cannot activate a killed topology"), a kill or rebalance without a wait, or a
    timeout-done before the deadline.
    """
    if event not in EVENTS:
        raise LifecycleError(f"unknown topology event {event!r}; expected one of {EVENTS}")
    handler = TRANSITIONS[status.name].get(event)
    if handler is None:
        raise LifecycleError(f"cannot {_VERBS[event]} {status.name.article} topology")
    return handler(status, now, wait_secs)


def allowed_events(status: TopologyStatus) -> list[str]:
    """The events `status` accepts, in the order of `EVENTS` (for the CLI and dashboard)."""
    return [e for e in EVENTS if e in TRANSITIONS[status.name]]


def due(status: TopologyStatus, now: float) -> str | None:
    """The timed event that is due: "timeout-done" once `now` reaches the deadline, else None."""
    if status.deadline is not None and now >= status.deadline:
        return TIMEOUT_DONE
    return None
