"""Tests of nimbus.lifecycle: every legal transition, every illegal one, and the records."""

import json

import pytest

from cluster.status import Status, status_of_record
from nimbus.lifecycle import (
    EVENTS,
    STATES,
    TRANSITIONS,
    LifecycleError,
    TopologyStatus,
    allowed_events,
    due,
    transition,
)

NOW = 1000.0
ACTIVE = TopologyStatus("active")
INACTIVE = TopologyStatus("inactive")
KILLED = TopologyStatus("killed", deadline=1030.0, wait_secs=30.0)
REB_ACTIVE = TopologyStatus("rebalancing", deadline=1010.0, wait_secs=10.0, previous="active")
REB_INACTIVE = TopologyStatus("rebalancing", deadline=1010.0, wait_secs=10.0, previous="inactive")
REMOVED = TopologyStatus("removed")

# (status, event, now, wait_secs) -> the status after. Every legal pair of the table.
LEGAL = [
    (ACTIVE, "activate", NOW, None, ACTIVE),
    (ACTIVE, "deactivate", NOW, None, INACTIVE),
    (ACTIVE, "kill", NOW, 30.0, TopologyStatus("killed", deadline=1030.0, wait_secs=30.0)),
    (
        ACTIVE,
        "rebalance",
        NOW,
        5.0,
        TopologyStatus("rebalancing", deadline=1005.0, wait_secs=5.0, previous="active"),
    ),
    (ACTIVE, "startup", NOW, None, ACTIVE),
    (INACTIVE, "activate", NOW, None, ACTIVE),
    (INACTIVE, "deactivate", NOW, None, INACTIVE),
    (INACTIVE, "kill", NOW, 0.0, TopologyStatus("killed", deadline=1000.0, wait_secs=0.0)),
    (
        INACTIVE,
        "rebalance",
        NOW,
        5.0,
        TopologyStatus("rebalancing", deadline=1005.0, wait_secs=5.0, previous="inactive"),
    ),
    (INACTIVE, "startup", NOW, None, INACTIVE),
    (KILLED, "kill", NOW, 3.0, TopologyStatus("killed", deadline=1003.0, wait_secs=3.0)),
    (KILLED, "timeout-done", 1030.0, None, REMOVED),
    (KILLED, "startup", 5000.0, None, TopologyStatus("killed", deadline=5030.0, wait_secs=30.0)),
    (REB_ACTIVE, "kill", NOW, 30.0, TopologyStatus("killed", deadline=1030.0, wait_secs=30.0)),
    (REB_ACTIVE, "timeout-done", 1010.5, None, ACTIVE),
    (REB_INACTIVE, "timeout-done", 1010.0, None, INACTIVE),
    (
        REB_ACTIVE,
        "startup",
        20.0,
        None,
        TopologyStatus("rebalancing", deadline=30.0, wait_secs=10.0, previous="active"),
    ),
    (
        REB_INACTIVE,
        "startup",
        20.0,
        None,
        TopologyStatus("rebalancing", deadline=30.0, wait_secs=10.0, previous="inactive"),
    ),
]

ILLEGAL = [
    (KILLED, "activate", "cannot activate a killed topology"),
    (KILLED, "deactivate", "cannot deactivate a killed topology"),
    (KILLED, "rebalance", "cannot rebalance a killed topology"),
    (REB_ACTIVE, "activate", "cannot activate a rebalancing topology"),
    (REB_ACTIVE, "deactivate", "cannot deactivate a rebalancing topology"),
    (REB_ACTIVE, "rebalance", "cannot rebalance a rebalancing topology"),
    (ACTIVE, "timeout-done", "cannot apply timeout-done to an active topology"),
    (INACTIVE, "timeout-done", "cannot apply timeout-done to an inactive topology"),
    (REMOVED, "activate", "cannot activate a removed topology"),
    (REMOVED, "deactivate", "cannot deactivate a removed topology"),
    (REMOVED, "kill", "cannot kill a removed topology"),
    (REMOVED, "rebalance", "cannot rebalance a removed topology"),
    (REMOVED, "timeout-done", "cannot apply timeout-done to a removed topology"),
    (REMOVED, "startup", "cannot start up a removed topology"),
]


@pytest.mark.parametrize(
    ("status", "event", "now", "wait", "after"), LEGAL, ids=[f"{s.name}-{e}" for s, e, *_ in LEGAL]
)
def test_legal_transition(
    status: TopologyStatus, event: str, now: float, wait: float | None, after: TopologyStatus
) -> None:
    assert transition(status, event, now, wait) == after


@pytest.mark.parametrize(
    ("status", "event", "message"), ILLEGAL, ids=[f"{s.name}-{e}" for s, e, _ in ILLEGAL]
)
def test_illegal_transition(status: TopologyStatus, event: str, message: str) -> None:
    with pytest.raises(LifecycleError, match=f"^{message}$"):
        transition(status, event, 1e9, 1.0)


def test_the_tests_cover_every_pair_of_states_and_events() -> None:
    legal = {(s.name, e) for s, e, *_ in LEGAL}
    illegal = {(s.name, e) for s, e, _ in ILLEGAL}
    assert not legal & illegal
    assert legal | illegal == {(s, e) for s in STATES for e in EVENTS}
    assert legal == {(s, e) for s in TRANSITIONS for e in TRANSITIONS[s]}


def test_allowed_events() -> None:
    assert allowed_events(ACTIVE) == ["activate", "deactivate", "kill", "rebalance", "startup"]
    assert allowed_events(KILLED) == ["kill", "timeout-done", "startup"]
    assert allowed_events(REMOVED) == []


def test_unknown_event() -> None:
    with pytest.raises(LifecycleError, match="unknown topology event 'explode'"):
        transition(ACTIVE, "explode", NOW)


@pytest.mark.parametrize("event", ["kill", "rebalance"])
@pytest.mark.parametrize("wait", [None, -1.0])
def test_kill_and_rebalance_need_a_wait(event: str, wait: float | None) -> None:
    with pytest.raises(LifecycleError, match=f"{event} needs a wait of 0 seconds or more, got"):
        transition(ACTIVE, event, NOW, wait)


@pytest.mark.parametrize("status", [KILLED, REB_ACTIVE])
def test_timeout_done_before_the_deadline_is_refused(status: TopologyStatus) -> None:
    assert status.deadline is not None
    expected = f"the wait of the {status.name.lower()} topology ends at"
    with pytest.raises(LifecycleError, match=expected):
        transition(status, "timeout-done", status.deadline - 0.001)


def test_due() -> None:
    assert due(ACTIVE, 1e12) is None
    assert due(INACTIVE, 1e12) is None
    assert due(REMOVED, 1e12) is None
    assert due(KILLED, 1029.9) is None
    assert due(KILLED, 1030.0) == "timeout-done"
    assert due(REB_INACTIVE, 2000.0) == "timeout-done"


def test_rebalance_wait_then_back_to_previous_state() -> None:
    status = transition(INACTIVE, "rebalance", 0.0, 2.0)
    assert due(status, 1.0) is None
    status = transition(status, "startup", 1.0)  # a new leader takes over: the wait restarts
    assert due(status, 2.5) is None
    assert due(status, 3.0) == "timeout-done"
    assert transition(status, "timeout-done", 3.0) == INACTIVE


@pytest.mark.parametrize("status", [ACTIVE, INACTIVE, KILLED, REB_ACTIVE, REB_INACTIVE, REMOVED])
def test_status_round_trips_through_json(status: TopologyStatus) -> None:
    assert TopologyStatus.from_dict(json.loads(json.dumps(status.to_dict()))) == status


def test_status_dict_shape() -> None:
    assert ACTIVE.to_dict() == {"name": "ACTIVE"}
    assert REB_ACTIVE.to_dict() == {
        "name": "REBALANCING",
        "deadline": 1010.0,
        "wait_secs": 10.0,
        "previous": "ACTIVE",
    }


def test_states_are_the_one_status_enum_and_old_records_stay_valid() -> None:
    """Lifecycle records were stored in lower case before the status enum: they still read,
    as the same status, and are written in the enum's (stored, Storm's) spelling."""
    assert set(STATES) == set(Status) and ACTIVE.name is Status.ACTIVE
    old = {"name": "rebalancing", "deadline": 5.0, "wait_secs": 1.0, "previous": "inactive"}
    status = TopologyStatus.from_dict(old)
    assert (status.name, status.previous) == (Status.REBALANCING, Status.INACTIVE)
    assert status.to_dict()["name"] == "REBALANCING" == Status.REBALANCING
    assert json.dumps(status.to_dict()["previous"]) == '"INACTIVE"'


@pytest.mark.parametrize("value", ["active", "ACTIVE", "Active"])
def test_status_parse_reads_either_case(value: str) -> None:
    assert Status.parse(value) is Status.ACTIVE


@pytest.mark.parametrize("value", ["paused", "", None, 3, "ACTIVE "])
def test_status_parse_refuses_other_values_naming_them(value: object) -> None:
    with pytest.raises(ValueError, match=f"unknown topology status {value!r}"):
        Status.parse(value)


def test_status_of_record_tolerates_bad_records() -> None:
    assert status_of_record({"status": "KILLED"}) is Status.KILLED
    assert status_of_record({"status": "nonsense"}) is None
    assert status_of_record({}) is None
    assert [s for s in Status if s.spouts_run] == [Status.ACTIVE]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "paused"}, "unknown topology state 'paused'"),
        ({"name": "killed"}, "a killed topology needs deadline and wait"),
        ({"name": "killed", "deadline": 1.0}, "a killed topology needs deadline and wait"),
        (
            {"name": "active", "deadline": 1.0, "wait_secs": 1.0},
            "an active topology has no deadline and wait",
        ),
        (
            {"name": "rebalancing", "deadline": 1.0, "wait_secs": 1.0},
            "returns to active or inactive, got None",
        ),
        (
            {"name": "rebalancing", "deadline": 1.0, "wait_secs": 1.0, "previous": "killed"},
            "returns to active or inactive, got 'KILLED'",
        ),
        ({"name": "inactive", "previous": "active"}, "an inactive topology has no previous state"),
    ],
)
def test_malformed_status(fields: dict, message: str) -> None:
    with pytest.raises(LifecycleError, match=message):
        TopologyStatus(**fields)
    with pytest.raises(LifecycleError, match=message):
        TopologyStatus.from_dict(fields)


@pytest.mark.parametrize("data", [{}, {"name": "killed", "deadline": "soon", "wait_secs": 1}])
def test_from_dict_rejects_malformed_data(data: dict) -> None:
    with pytest.raises(LifecycleError, match="malformed topology status"):
        TopologyStatus.from_dict(data)
