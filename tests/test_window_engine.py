"""The window engine (WindowManager) on hand-worked cases: one behaviour per test.

Random input against an oracle is in test_window_props.py; these pin the cases a reader can
check by hand: Storm's documented example, gaps, late tuples, the watermark over input tasks
and idle ones, flush, the mixed count/time windows, errors in user code.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_window_oracle import CONCAT, E, Run, spec

from topology import TopologyError
from topology.windowing import Count, Duration, Fold, WindowManager, WindowSpec

S = Duration  # Duration(seconds=...) positionally, for short specs


def seqs(items: Any) -> list[int]:
    return [e.seq for e in items]


def test_storms_documented_event_time_example() -> None:
    # docs/Windowing.md: length 20 s, slide 10 s, lag 5 s; times in seconds after 6:00:00.
    run = Run(spec(S(20), S(10), event=True, lag=5))
    for seq, ts in enumerate([3, 5, 7, 18, 26, 36]):
        run.add(E(seq, ts), now=0)
    step = run.advance(1)
    assert run.manager.watermark == 31
    assert [(w.start, w.end, seqs(w.tuples)) for w in step.fired] == [
        (-10, 10, [0, 1, 2]), (0, 20, [0, 1, 2, 3]), (10, 30, [3, 4])]
    assert seqs(step.done) == [0, 1, 2, 3]  # their last window (ending at 20 or 30) fired
    hour2 = 2 * 3600
    for seq, ts in enumerate([25, 26, 27, 39], start=6):
        run.add(E(seq, hour2 + ts), now=1)
    step = run.advance(2)
    assert run.manager.watermark == hour2 + 34
    assert [(w.start, w.end, seqs(w.tuples)) for w in step.fired] == [
        (20, 40, [4, 5]), (30, 50, [5]), (hour2 + 10, hour2 + 30, [6, 7, 8])]


def test_processing_time_tumbling_fires_when_the_clock_passes_the_end() -> None:
    run = Run(spec(S(1), S(1)))
    run.add(E(0, 0.1))
    run.add(E(1, 0.5))
    assert run.fired == [] and run.manager.next_due() == 1.0
    run.add(E(2, 1.2))  # the clock passed 1: [0, 1) fires before the new tuple goes in
    assert run.windows() == [(0, 1, [0, 1])] and seqs(run.done) == [0, 1]
    run.advance(1.9)
    assert len(run.fired) == 1
    run.advance(2.0)
    assert run.windows()[1:] == [(1, 2, [2])] and run.manager.next_due() is None


def test_window_bounds_are_exact_multiples_of_a_decimal_slide() -> None:
    run = Run(spec(S(0.3), S(0.1), event=True))
    for seq, ts in enumerate([0.05, 0.15, 0.25]):
        run.add(E(seq, ts))
    run.flush()
    assert [(w.start, w.end) for w in run.fired] == [
        (-0.2, 0.1), (-0.1, 0.2), (0.0, 0.3), (0.1, 0.4), (0.2, 0.5)]


def test_a_tuple_in_no_window_is_acked_at_once() -> None:
    run = Run(spec(S(1), S(3), event=True))  # windows [2, 3), [5, 6), ...: gaps between
    run.add(E(0, 0.5))
    assert seqs(run.steps[-1].done) == [0]  # not held until the watermark passes it
    run.add(E(1, 2.5))
    run.add(E(2, 1.0))
    run.flush()
    assert run.windows() == [(2, 3, [1])]
    assert sorted(seqs(run.done)) == [0, 1, 2]
    count = Run(spec(Count(1), Count(3)))  # every third tuple is a window of one
    for seq in range(4):
        count.add(E(seq, seq))
        assert seq in seqs(count.done)
    assert count.windows() == [(None, None, [2])]


def test_count_windows_slide_by_arrival_and_flush_the_partial_one() -> None:
    run = Run(spec(Count(3), Count(2)))
    for seq in range(5):
        run.add(E(seq, 0))
    assert run.windows() == [(None, None, [0, 1]), (None, None, [1, 2, 3])]
    assert seqs(run.done) == [0, 1, 2]  # 3 and 4 are in the next window, [3, 6)
    run.flush()
    assert run.windows()[2:] == [(None, None, [3, 4])] and seqs(run.done) == [0, 1, 2, 3, 4]
    assert run.windows()[2] == (None, None, [3, 4])
    assert seqs(run.fired[2].new) == [4] and seqs(run.fired[2].expired) == [1, 2]


def test_event_time_count_windows_take_tuples_in_timestamp_order() -> None:
    run = Run(spec(Count(2), Count(2), event=True))
    for seq, ts in enumerate([5, 1, 3, 2]):
        run.add(E(seq, ts))
    run.advance(0)
    assert run.windows() == [(None, None, [1, 3]), (None, None, [2, 0])]


def test_equal_timestamps_keep_their_arrival_order() -> None:
    run = Run(spec(S(10), S(10), event=True))
    for seq in range(4):
        run.add(E(seq, 5))
    run.flush()
    assert run.windows() == [(0, 10, [0, 1, 2, 3])]


def test_late_tuples_are_counted_reported_and_never_held() -> None:
    s = WindowSpec(length=S(10), slide=S(10), timestamp_field="ts", lag=S(2),
                   late_stream="late")
    run = Run(s)
    run.add(E(0, 20))
    run.advance(0)  # watermark 18
    assert not run.add(E(1, 17.5))
    assert run.add(E(2, 18))  # at the watermark: not late
    assert seqs(run.late) == [1] and run.manager.late == 1
    run.flush()
    assert 1 not in seqs(run.done) and sorted(seqs(run.done)) == [0, 2]
    assert run.manager.status() == {"windowing": {
        "spec": "tumbling 10 s, event time on ts, lag 2 s, late tuples to 'late'",
        "watermark": None, "late": 1}}


def test_after_flush_every_tuple_is_late() -> None:
    for event in (True, False):
        run = Run(spec(S(10), S(10), event=event))
        run.add(E(0, 1))
        run.flush()
        assert not run.add(E(1, 2)) and seqs(run.late) == [1]
        run.flush()
        assert run.windows() == [(0, 10, [0])]


def test_the_watermark_is_the_minimum_over_input_tasks_minus_the_lag() -> None:
    run = Run(spec(S(10), S(10), event=True, lag=1), tasks=(1, 2))
    run.add(E(0, 30, task=1))
    run.advance(0)
    assert run.manager.watermark is None  # task 2 has sent nothing: it holds it back
    run.add(E(1, 12, task=2))
    run.advance(0)
    assert run.manager.watermark == 11
    assert run.windows() == []  # [10, 20) holds 12 but ends after 11
    run.add(E(2, 25, task=2))
    run.add(E(3, 24, task=1))  # task 1 going back does not lower its high mark
    run.advance(0)
    assert run.manager.watermark == 24 and run.windows() == [(10, 20, [1])]


def test_the_watermark_never_goes_back() -> None:
    s = WindowSpec(length=S(10), slide=S(10), timestamp_field="ts", idle_timeout=S(5))
    run = Run(s, tasks=(1, 2))
    run.add(E(0, 50, task=1), now=0)
    run.advance(5)  # task 2 idle: task 1 alone sets it
    assert run.manager.watermark == 50
    assert not run.add(E(1, 41, task=2), now=6)  # late, but task 2 is active again...
    run.advance(6)
    assert run.manager.watermark == 50  # ...and its low mark does not pull it back


def test_an_idle_input_task_stops_holding_the_watermark_back() -> None:
    s = WindowSpec(length=S(10), slide=S(10), timestamp_field="ts", idle_timeout=S(5))
    run = Run(s, tasks=(1, 2), now=100)
    run.add(E(0, 30, task=1), now=101)
    run.advance(104.9)
    assert run.manager.watermark is None  # task 2 silent for 4.9 s only
    run.advance(105)
    assert run.manager.watermark == 30 and run.windows() == []  # [30, 40) is still open
    run.add(E(1, 31, task=2), now=105.5)  # back from idle: counts again
    run.add(E(2, 45, task=1), now=105.5)
    run.advance(106)
    assert run.manager.watermark == 31
    run.advance(111)  # both silent past the timeout: the highest of them
    assert run.manager.watermark == 45 and run.windows() == [(30, 40, [0, 1])]


def test_count_length_time_slide_fires_at_boundaries_with_new_tuples() -> None:
    run = Run(spec(Count(2), S(5)))
    for seq, now in enumerate([0, 1, 2]):
        run.add(E(seq, now))
    assert seqs(run.done) == [0]  # pushed out by two newer tuples before any window
    run.advance(5)
    assert run.windows() == [(None, None, [1, 2])]
    run.advance(20)  # nothing new: the same content is not fired again
    assert len(run.fired) == 1 and run.manager.next_due() is None
    run.add(E(3, 21))
    assert run.manager.next_due() == 25
    run.flush()
    assert run.windows()[1:] == [(None, None, [2, 3])]
    assert seqs(run.fired[1].expired) == [1] and seqs(run.fired[1].new) == [3]


def test_time_length_count_slide_holds_the_last_seconds_at_every_nth_tuple() -> None:
    run = Run(spec(S(2), Count(2)))
    for seq, now in enumerate([0, 1, 2.5, 3]):
        run.add(E(seq, now))
    assert run.windows() == [(-1, 1, [0, 1]), (1, 3, [2, 3])]
    assert seqs(run.done) == [0, 1]
    assert run.manager.next_due() == 4.5
    run.advance(4.5)  # 2.5 is now out of every later window, with no new tuple
    assert seqs(run.done) == [0, 1, 2]
    run.add(E(4, 6))
    run.flush()
    assert run.windows()[2:] == [(4, 6, [4])]


def test_window_of_count_moves_with_every_tuple_by_default() -> None:
    bolt = _bolt().with_window(Count(2))
    run = Run(bolt.window_spec)
    for seq in range(3):
        run.add(E(seq, seq))
    assert run.windows() == [(None, None, [0]), (None, None, [0, 1]), (None, None, [1, 2])]


def test_incremental_form_keeps_handles_and_merges_panes_in_order() -> None:
    run = Run(spec(S(4), S(2), event=True), fold=CONCAT)
    for seq, ts in enumerate([0.5, 1, 2.5, 3, 5]):
        run.add(E(seq, ts))
    run.flush()
    assert [(w.start, w.end, w.result) for w in run.fired] == [
        (-2, 2, (0, 1)), (0, 4, (0, 1, 2, 3)), (2, 6, (2, 3, 4)), (4, 8, (4,))]
    assert run.done == [0, 1, 2, 3, 4]  # handles (here the seq numbers), not tuples
    window = run.fired[0]
    with pytest.raises(TopologyError, match="incremental .* read window.result"):
        _ = window.tuples
    full = Run(spec(S(4), S(2), event=True))
    full.add(E(0, 1))
    full.flush()
    with pytest.raises(TopologyError, match="read window.tuples"):
        _ = full.fired[0].result


def test_an_error_in_add_fails_that_tuple_only() -> None:
    def add(acc: tuple[int, ...], e: E) -> tuple[int, ...]:
        if e.seq == 1:
            raise ValueError("bad tuple")
        return acc + (e.seq,)

    run = Run(spec(Count(3), Count(3)), fold=Fold(CONCAT.initial, add, CONCAT.merge))
    for seq in range(4):
        run.add(E(seq, 0))
    failed = [(x.seq, str(e)) for s in run.steps for x, e in s.failed]
    assert failed == [(1, "bad tuple")]
    assert [w.result for w in run.fired] == [(0, 2, 3)] and run.done == [0, 2, 3]


def test_an_error_in_merge_surfaces_when_the_result_is_read() -> None:
    def merge(a: Any, b: Any) -> Any:
        raise ValueError("cannot merge")

    run = Run(spec(Count(1), Count(1)), fold=Fold(CONCAT.initial, CONCAT.add, merge))
    run.add(E(0, 0))
    assert run.done == [0]  # the engine went on; process_window will meet the error
    with pytest.raises(ValueError, match="cannot merge"):
        _ = run.fired[0].result


def test_the_engine_refuses_what_it_cannot_run() -> None:
    with pytest.raises(TopologyError, match="no window"):
        WindowManager(WindowSpec())
    with pytest.raises(TopologyError, match="one kind"):
        WindowManager(spec(Count(3), S(1)), fold=CONCAT)
    with pytest.raises(TypeError, match="needs the tuple's ts"):
        WindowManager(spec(S(1), S(1), event=True)).add("x", now=0)


def _bolt() -> Any:
    from topology.windowing import WindowedBolt

    return WindowedBolt()


def test_panes_keep_their_handles_in_the_executors_bag() -> None:
    class Roots(list[Any]):
        """What an executor might keep per pane: the handles, and a summary of them."""

        def __init__(self) -> None:
            super().__init__()
            self.keys: set[str] = set()

        def append(self, handle: Any) -> None:
            super().append(handle)
            self.keys.add(handle.key)

    manager = WindowManager(spec(S(4), S(2), event=True), fold=CONCAT, keep=lambda e: e,
                            bag=Roots)
    for seq, (ts, key) in enumerate([(0.5, "a"), (1, "b"), (2.5, "a")]):
        manager.add(E(seq, ts, key=key), now=0, ts=ts)
    manager.flush()
    fired = manager.take().fired
    assert [[sorted(g.keys) for g in w.held_groups()] for w in fired] == [
        [["a", "b"]], [["a", "b"], ["a"]], [["a"]]]
    assert [seqs(w.held()) for w in fired] == [[0, 1], [0, 1, 2], [2]]
