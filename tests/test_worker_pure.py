"""The worker's pure pieces on fake clocks: the timer schedule, sharding, the parent watch."""

from __future__ import annotations

import pytest

from worker.parent import CONTACT, ORPHANED, PAUSE, ParentWatch
from worker.schedule import Schedule
from worker.sharding import acker_of, by_worker, group_outcomes, shard_acks

# --- schedule -------------------------------------------------------------------------------------


def names(timers: list) -> list[str]:
    return [t.name for t in timers]


def test_a_timer_fires_once_at_or_after_its_due_time() -> None:
    s = Schedule()
    s.at(1.0, lambda now: None, "once")
    assert s.pop_due(0.99) == []
    assert names(s.pop_due(1.0)) == ["once"]
    assert s.pop_due(5.0) == [] and s.next_due() is None


def test_due_timers_come_in_due_order_ties_in_order_added() -> None:
    s = Schedule()
    s.at(2.0, lambda now: None, "b")
    s.at(1.0, lambda now: None, "a")
    s.at(2.0, lambda now: None, "c")
    assert s.next_due() == 1.0
    assert names(s.pop_due(3.0)) == ["a", "b", "c"]


def test_a_repeating_timer_keeps_its_phase() -> None:
    s = Schedule()
    s.every(1.0, lambda now: None, 10.0, "tick")
    assert names(s.pop_due(10.2)) == ["tick"]
    assert s.next_due() == 11.0  # not 11.2: late turns do not drift it
    assert names(s.pop_due(11.0)) == ["tick"]


def test_a_repeating_timer_does_not_fire_in_a_burst_after_a_stall() -> None:
    s = Schedule()
    s.every(1.0, lambda now: None, 0.0, "tick")
    s.pop_due(0.0)
    assert names(s.pop_due(5.5)) == ["tick"]  # once, not five times
    assert s.next_due() == 6.5


def test_a_cancelled_timer_never_fires() -> None:
    s = Schedule()
    timer = s.every(1.0, lambda now: None, 0.0, "tick")
    s.at(0.5, lambda now: None, "other")
    timer.cancel()
    assert names(s.pop_due(10.0)) == ["other"]
    assert s.next_due() is None and len(s) == 0


def test_a_repeating_timer_needs_a_period() -> None:
    with pytest.raises(ValueError, match="period > 0"):
        Schedule().every(0, lambda now: None, 0.0)


# --- sharding -------------------------------------------------------------------------------------

ACKERS = [3, 7]


def test_every_worker_picks_the_same_acker_for_a_root() -> None:
    assert [acker_of(r, ACKERS) for r in range(4)] == [3, 7, 3, 7]
    assert acker_of(2**64 - 1, ACKERS) == 7


def test_shard_acks_splits_by_acker_and_drops_acks_that_cancelled_out() -> None:
    shares = shard_acks([(2, 9, 1), (5, 8, 1)], {6: 4, 4: 0, 7: 1}, [9], ACKERS)
    assert shares == {3: ([(2, 9, 1)], {6: 4}, []), 7: ([(5, 8, 1)], {7: 1}, [9])}
    assert shard_acks([], {4: 0}, [], ACKERS) == {}


def test_an_ack_of_a_tree_opened_in_the_same_flush_travels_in_its_init() -> None:
    acks = {2: 4, 5: 8}
    shares = shard_acks([(2, 9, 1), (5, 8, 1)], acks, [], ACKERS)
    assert shares == {3: ([(2, 9 ^ 4, 1)], {}, []), 7: ([(5, 0, 1)], {}, [])}
    assert acks == {2: 4, 5: 8}  # the caller's dict is left alone


def test_group_outcomes_by_spout_task() -> None:
    assert group_outcomes([(1, 5), (2, 6), (3, 5)], [(4, 6)]) == {5: ([1, 3], []),
                                                                   6: ([2], [4])}


def test_by_worker_splits_mine_peers_and_unknown() -> None:
    mine, peers, unknown = by_worker({1: "a", 2: "b", 3: "c", 4: "d"}, {1},
                                     {2: ("h", 1), 3: ("h", 1), 1: ("me", 0)})
    assert mine == {1: "a"}
    assert peers == {("h", 1): {2: "b", 3: "c"}}
    assert unknown == [4]


# --- the parent watch -----------------------------------------------------------------------------


def test_a_supervised_worker_pauses_its_spouts_then_exits_when_its_parent_goes_silent() -> None:
    watch = ParentWatch(pause_after=2.5, exit_after=10.0, now=0.0)
    watch.contact("supervised", 1.0)
    assert watch.state(3.5) == CONTACT
    assert watch.state(3.51) == PAUSE
    watch.contact("assignment", 4.0)  # any message counts
    assert watch.state(6.4) == CONTACT
    assert watch.state(14.0) == PAUSE
    assert watch.state(14.01) == ORPHANED


def test_a_parent_that_never_said_supervised_is_not_watched_once_it_spoke() -> None:
    watch = ParentWatch(pause_after=2.5, exit_after=10.0, now=0.0)
    watch.contact("assignment", 0.5)  # an older parent: it answers only on changes
    assert watch.state(1000.0) == CONTACT


def test_a_worker_that_never_hears_from_its_parent_is_an_orphan() -> None:
    watch = ParentWatch(pause_after=2.5, exit_after=10.0, now=0.0)
    assert watch.state(9.9) == PAUSE  # no spouts run yet anyway: no assignment
    assert watch.state(10.01) == ORPHANED
