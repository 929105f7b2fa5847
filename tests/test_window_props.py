"""The window engine against the brute-force oracle on random input (hypothesis).

Every combination of count/time length and slide, processing and event time, out-of-order
timestamps, several input tasks, watermark advances at random moments, then a flush:
the windows fired, the late tuples and the acks must be what the oracle says, acks never
before the last window holding the tuple fired, the incremental form must give the same
results as the full form folded by hand, and splitting the input over window tasks by key
must give the same windows as one task.
"""

from __future__ import annotations

import collections
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_window_oracle import CONCAT, E, Op, Run, oracle, released, spec

from topology.windowing import Count, Duration, WindowSpec

SIZES = st.one_of(st.builds(Count, st.integers(1, 6)),
                  st.builds(lambda s: Duration(seconds=s), st.sampled_from([0.5, 1, 2, 3, 5])))
DURATIONS = st.builds(lambda s: Duration(seconds=s), st.sampled_from([0.5, 1, 1.5, 2, 3, 5]))
COUNTS = st.builds(Count, st.integers(1, 6))
Scenario = tuple[WindowSpec, list[Op], tuple[int, ...]]


@st.composite
def scenarios(draw: Any, lengths: Any = SIZES, slides: Any = SIZES,
              event: bool | None = None) -> tuple[WindowSpec, list[Op], tuple[int, ...]]:
    """A spec, the ops, and the input tasks the window task is told of (none: it learns
    them from the tuples)."""
    is_event = draw(st.booleans()) if event is None else event
    s = spec(draw(lengths), draw(slides), is_event, lag=draw(st.sampled_from([0, 1, 3])))
    ops: list[Op] = []
    now = 0.0
    for seq in range(draw(st.integers(0, 40))):
        if draw(st.integers(0, 3)) == 0:
            ops.append(("advance", now))
        now += draw(st.sampled_from([0, 0, 0.5, 1, 2.5]))
        ts = draw(st.integers(0, 60)) / 2 if is_event else now
        ops.append(("add", E(seq, ts, draw(st.integers(0, 2)), draw(st.sampled_from("abcd")))))
    return s, ops, draw(st.sampled_from([(), (0, 1, 2)]))


def play(s: WindowSpec, ops: list[Op], tasks: tuple[int, ...], fold: Any = None,
         ) -> tuple[Run, list[float | None]]:
    """Run the ops then a flush; also return the watermark after each step."""
    run = Run(s, tasks=tasks, fold=fold)
    marks: list[float | None] = []
    now = 0.0
    for kind, x in ops:
        if kind == "add":
            now = max(now, x.ts) if not s.event_time else now
            run.add(x, now)
        else:
            now = x
            run.advance(now)
        marks.append(run.manager.watermark)
    run.flush()
    marks.append(None)
    return run, marks


def step_of(run: Run) -> tuple[dict[int, int], dict[int, int]]:
    """For each tuple: the step its last window fired in, and the step it was acked in."""
    last_window: dict[int, int] = {}
    acked: dict[int, int] = {}
    for i, step in enumerate(run.steps):
        for w in step.fired:
            for e in w.tuples:
                last_window[e.seq] = i
        for e in step.done:
            assert e.seq not in acked, f"tuple {e.seq} acked twice"
            acked[e.seq] = i
    return last_window, acked


@settings(max_examples=400, deadline=None, database=None)
@given(scenarios())
def test_fires_what_the_oracle_says_and_acks_each_tuple_once_after_its_windows(
        scenario: Scenario) -> None:
    s, ops, tasks = scenario
    run, _ = play(s, ops, tasks)
    on_time, late = released(ops, s, tasks)
    assert run.windows() == oracle(on_time, s)
    assert [e.seq for e in run.late] == [e.seq for e in late]
    assert run.manager.late == len(late)
    last_window, acked = step_of(run)
    assert sorted(acked) == sorted(e.seq for e in on_time)  # every on-time tuple, once
    for seq, step in last_window.items():
        assert acked[seq] >= step, f"tuple {seq} acked before its last window fired"
    if s.aligned:  # pane windows ack as soon as the last window holding a tuple fired
        flush = len(run.steps) - 1  # (or at the flush, for a count window that stops early)
        for seq, step in last_window.items():
            assert acked[seq] == step or (acked[seq] == flush and isinstance(s.slide, Count))


@settings(max_examples=300, deadline=None, database=None)
@given(scenarios())
def test_new_and_expired_are_the_differences_with_the_previous_window(
        scenario: Scenario) -> None:
    s, ops, tasks = scenario
    run, _ = play(s, ops, tasks)
    previous: list[int] = []
    for w in run.fired:
        now = [e.seq for e in w.tuples]
        assert [e.seq for e in w.new] == [x for x in now if x not in previous]
        assert [e.seq for e in w.expired] == [x for x in previous if x not in now]
        previous = now


@settings(max_examples=300, deadline=None, database=None)
@given(scenarios(lengths=DURATIONS, slides=DURATIONS, event=True))
def test_event_time_windows_fire_once_the_watermark_passes_their_end(
        scenario: Scenario) -> None:
    s, ops, tasks = scenario
    run, marks = play(s, ops, tasks)
    ends = []
    for step, mark in zip(run.steps[:-1], marks[:-1], strict=True):
        for w in step.fired:
            assert mark is not None and mark >= w.end
            ends.append(w.end)
    assert ends == sorted(ends)


@settings(max_examples=300, deadline=None, database=None)
@given(st.one_of(scenarios(lengths=DURATIONS, slides=DURATIONS),
                 scenarios(lengths=COUNTS, slides=COUNTS)))
def test_incremental_form_equals_the_full_form_folded_by_hand(
        scenario: Scenario) -> None:
    s, ops, tasks = scenario
    full, _ = play(s, ops, tasks)
    incremental, _ = play(s, ops, tasks, fold=CONCAT)
    assert len(full.steps) == len(incremental.steps)
    for a, b in zip(full.steps, incremental.steps, strict=True):
        assert [(w.start, w.end) for w in a.fired] == [(w.start, w.end) for w in b.fired]
        for wa, wb in zip(a.fired, b.fired, strict=True):
            by_hand = CONCAT.initial()
            for e in wa.tuples:
                by_hand = CONCAT.add(by_hand, e)
            assert wb.result == by_hand
            assert list(wb.held()) == [e.seq for e in wa.tuples]  # ack handles only
        assert b.done == [e.seq for e in a.done]
        assert b.late == a.late


@settings(max_examples=200, deadline=None, database=None)
@given(scenarios(lengths=DURATIONS, slides=DURATIONS, event=True), st.integers(2, 4))
def test_several_window_tasks_fire_the_windows_of_one(
        scenario: Scenario, parallelism: int) -> None:
    s, ops, tasks = scenario
    adds = [op for op in ops if op[0] == "add"]  # no watermark before the end: none late

    def by_key(runs: list[Run]) -> collections.Counter[Any]:
        out: collections.Counter[Any] = collections.Counter()
        for run in runs:
            for w in run.fired:
                for key in {e.key for e in w.tuples}:
                    out[(w.start, w.end, key, tuple(e.seq for e in w.tuples if e.key == key))] += 1
        return out

    one, _ = play(s, adds, tasks)
    parts = [play(s, [op for op in adds if "abcd".index(op[1].key) % parallelism == i], tasks)[0]
             for i in range(parallelism)]
    assert by_key(parts) == by_key([one])
