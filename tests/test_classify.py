"""Tests of supervisor.classify: each kind of worker, the boundaries, and a mixed round."""

import pytest

from supervisor.classify import Actions, LocalWorker, WorkerWant, classify

NOW = 1000.0
WORKER_TIMEOUT = 5.0
START_TIMEOUT = 120.0


def want(topology: str = "wc", tasks: tuple[int, ...] = (1, 2, 3), version: int = 4) -> WorkerWant:
    return WorkerWant(topology, tasks, version)


def worker(
    topology: str = "wc",
    tasks: tuple[int, ...] = (1, 2, 3),
    alive: bool = True,
    started_at: float = 900.0,
    last_heartbeat: float | None = 999.0,
    pid: int | None = 4242,
) -> LocalWorker:
    return LocalWorker(pid, alive, topology, tasks, started_at, last_heartbeat)


def run(
    assigned: dict[int, WorkerWant], running: dict[int, LocalWorker], now: float = NOW
) -> Actions:
    return classify(assigned, running, now, WORKER_TIMEOUT, START_TIMEOUT)


def test_nothing_assigned_nothing_running() -> None:
    assert run({}, {}) == Actions()


def test_assigned_port_with_nothing_running_is_started() -> None:
    actions = run({6701: want()}, {})
    assert (actions.start, actions.kill, actions.keep) == ([6701], [], [])
    assert actions.reasons == {
        6701: "worker 6701: not running, assigned 3 task(s) of 'wc' (assignment v4)"
    }


def test_healthy_worker_is_kept() -> None:
    actions = run({6701: want()}, {6701: worker()})
    assert (actions.start, actions.kill, actions.keep) == ([], [], [6701])
    assert actions.reasons[6701].startswith("worker 6701: healthy")


def test_task_order_does_not_matter() -> None:
    actions = run({6701: want(tasks=(3, 1, 2))}, {6701: worker(tasks=(1, 2, 3))})
    assert actions.keep == [6701]


def test_unassigned_port_is_killed_not_restarted() -> None:
    actions = run({}, {6701: worker()})
    assert (actions.start, actions.kill, actions.keep) == ([], [6701], [])
    assert actions.reasons[6701] == "worker 6701: unwanted, port no longer assigned (runs 'wc')"


def test_unassigned_dead_worker_is_still_cleaned_up() -> None:
    actions = run({}, {6701: worker(alive=False, pid=None)})
    assert (actions.start, actions.kill, actions.keep) == ([], [6701], [])


def test_port_assigned_to_another_topology_is_killed_then_started() -> None:
    actions = run({6701: want(topology="other")}, {6701: worker()})
    assert (actions.start, actions.kill, actions.keep) == ([6701], [6701], [])
    assert actions.reasons[6701] == (
        "worker 6701: unwanted, runs 'wc' but the port is assigned to 'other'"
    )


def test_port_assigned_other_tasks_is_killed_then_started() -> None:
    actions = run({6701: want(tasks=(1, 2))}, {6701: worker()})
    assert (actions.start, actions.kill, actions.keep) == ([6701], [6701], [])
    assert actions.reasons[6701] == (
        "worker 6701: unwanted, runs tasks [1, 2, 3] of 'wc' but is assigned [1, 2]"
    )


def test_long_task_lists_are_shortened_in_reasons() -> None:
    actions = run({6701: want(tasks=tuple(range(20)))}, {6701: worker(tasks=tuple(range(19)))})
    assert "[0, 1, 2, 3, 4, 5, 6, 7, ... +11 more]" in actions.reasons[6701]
    assert "[0, 1, 2, 3, 4, 5, 6, 7, ... +12 more]" in actions.reasons[6701]


def test_dead_worker_is_started_again() -> None:
    actions = run({6701: want()}, {6701: worker(alive=False)})
    assert (actions.start, actions.kill, actions.keep) == ([6701], [], [])
    assert actions.reasons[6701] == (
        "worker 6701: dead (pid 4242), assigned 3 task(s) of 'wc' (assignment v4)"
    )


@pytest.mark.parametrize(
    ("last_heartbeat", "stale"),
    [(999.0, False), (995.0, False), (994.99, True), (992.8, True)],
)
def test_heartbeat_timeout_boundary(last_heartbeat: float, stale: bool) -> None:
    actions = run({6701: want()}, {6701: worker(last_heartbeat=last_heartbeat)})
    if stale:
        assert (actions.start, actions.kill, actions.keep) == ([6701], [6701], [])
    else:
        assert actions.keep == [6701]


def test_stale_reason_says_how_long() -> None:
    actions = run({6701: want()}, {6701: worker(last_heartbeat=992.8)})
    assert actions.reasons[6701] == "worker 6701: stale, no heartbeat for 7.2 s (timeout 5 s)"


@pytest.mark.parametrize(
    ("started_at", "stale"),
    [(900.0, False), (880.0, False), (879.5, True)],
)
def test_start_timeout_boundary_when_never_heartbeated(started_at: float, stale: bool) -> None:
    actions = run({6701: want()}, {6701: worker(started_at=started_at, last_heartbeat=None)})
    if stale:
        assert (actions.start, actions.kill, actions.keep) == ([6701], [6701], [])
        assert actions.reasons[6701] == (
            "worker 6701: stale, no heartbeat since it started 120.5 s ago (start timeout 120 s)"
        )
    else:
        assert actions.keep == [6701]


def test_heartbeat_counts_even_within_start_timeout() -> None:
    # Started long ago, heartbeated recently: healthy. Heartbeated once, then silent: stale,
    # even though the start timeout has not passed.
    assert run({6701: want()}, {6701: worker(started_at=0.0, last_heartbeat=999.0)}).keep == [6701]
    actions = run({6701: want()}, {6701: worker(started_at=990.0, last_heartbeat=991.0)})
    assert actions.kill == [6701]


def test_dead_wins_over_stale_and_unwanted_wins_over_dead() -> None:
    actions = run({6701: want()}, {6701: worker(alive=False, last_heartbeat=0.0)})
    assert (actions.start, actions.kill) == ([6701], [])
    actions = run({6701: want(topology="x")}, {6701: worker(alive=False)})
    assert (actions.start, actions.kill) == ([6701], [6701])


def test_mixed_round_is_sorted_and_gives_one_reason_per_port() -> None:
    assigned = {p: want() for p in (6704, 6700, 6702, 6703, 6705)}
    running = {
        6700: worker(),  # healthy
        6701: worker(),  # unassigned
        6702: worker(alive=False),  # dead
        6703: worker(last_heartbeat=900.0),  # stale
        6705: worker(topology="old"),  # unwanted, replaced
    }
    actions = run(assigned, running)
    assert actions.start == [6702, 6703, 6704, 6705]
    assert actions.kill == [6701, 6703, 6705]
    assert actions.keep == [6700]
    assert sorted(actions.reasons) == [6700, 6701, 6702, 6703, 6704, 6705]
    assert all(r.startswith(f"worker {p}: ") and "\n" not in r for p, r in actions.reasons.items())
