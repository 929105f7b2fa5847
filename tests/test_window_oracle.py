"""A driver for the window engine and a brute-force oracle of what it must fire.

The oracle recomputes, from the whole input at once and with no cleverness, which windows
exist and what each holds, for the four length/slide combinations, in processing and event
time; the engine tests (test_window_engine.py, test_window_props.py) compare the engine's
incremental answers with it. The tests here pin the oracle itself on hand-worked cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from topology.windowing import Count, Duration, Fold, Step, WindowManager, WindowSpec


class E(NamedTuple):
    """One input tuple: its arrival number, event time, input task and key."""

    seq: int
    ts: float
    task: int = 0
    key: str = "k"


CONCAT = Fold(initial=lambda: (), add=lambda acc, e: acc + (e.seq,), merge=lambda a, b: a + b)


def seq_of(e: E) -> int:
    return e.seq


@dataclass
class Run:
    """Feeds a WindowManager and keeps every Step it returned, in order."""

    spec: WindowSpec
    tasks: Sequence[int] = (0,)
    fold: Fold | None = None
    now: float = 0.0
    steps: list[Step] = field(default_factory=list)
    manager: WindowManager = field(init=False)

    def __post_init__(self) -> None:
        keep = seq_of if self.fold is not None else None
        self.manager = WindowManager(self.spec, input_tasks=self.tasks, now=self.now,
                                     fold=self.fold, keep=keep)

    def add(self, e: E, now: float | None = None) -> bool:
        now = e.ts if now is None else now
        ok = self.manager.add(e, now, e.ts if self.spec.event_time else None, e.task)
        self.steps.append(self.manager.take())
        return ok

    def advance(self, now: float) -> Step:
        self.manager.advance(now)
        self.steps.append(self.manager.take())
        return self.steps[-1]

    def flush(self) -> Step:
        self.manager.flush()
        self.steps.append(self.manager.take())
        return self.steps[-1]

    @property
    def fired(self) -> list[Any]:
        return [w for s in self.steps for w in s.fired]

    @property
    def done(self) -> list[Any]:
        return [d for s in self.steps for d in s.done]

    @property
    def late(self) -> list[Any]:
        return [x for s in self.steps for x in s.late]

    def windows(self) -> list[tuple[float | None, float | None, list[int]]]:
        """(start, end, seqs) of every fired window (full form)."""
        return [(w.start, w.end, [e.seq for e in w.tuples]) for w in self.fired]


def spec(length: Count | Duration, slide: Count | Duration, event: bool = False,
         lag: float = 0) -> WindowSpec:
    return WindowSpec(length=length, slide=slide, timestamp_field="ts" if event else None,
                      lag=Duration(seconds=lag) if event else None)


# --- the oracle -----------------------------------------------------------------------------

Op = tuple[str, Any]  # ("add", E) with E.ts the arrival time in processing time; ("advance", now)


def released(ops: Iterable[Op], s: WindowSpec, tasks: Iterable[int] = ()
             ) -> tuple[list[E], list[E]]:
    """(the tuples in release order, the late ones), simulating the watermark naively: the
    minimum over the input tasks (`tasks`, and any other that sent) of their largest
    timestamp, minus the lag, recomputed at each advance, never going back."""
    adds = [e for kind, e in ops if kind == "add"]
    if not s.event_time:
        return adds, []
    lag = s.lag.seconds if s.lag else 0.0
    highs: dict[int, float] = {task: -math.inf for task in tasks}
    watermark = -math.inf
    on_time: list[E] = []
    late: list[E] = []
    for kind, x in ops:
        if kind == "add":
            highs[x.task] = max(highs.get(x.task, -math.inf), x.ts)
            (late if x.ts < watermark else on_time).append(x)
        else:
            watermark = max(watermark, min(highs.values(), default=-math.inf) - lag)
    return sorted(on_time, key=lambda e: (e.ts, e.seq)), late


def oracle(items: list[E], s: WindowSpec) -> list[tuple[float | None, float | None, list[int]]]:
    """Every window that fires by the end of input (a flush), in firing order."""
    length, slide = s.length, s.slide
    if isinstance(length, Duration) and isinstance(slide, Duration):
        return _time_time(items, length.seconds, slide.seconds)
    if isinstance(length, Count) and isinstance(slide, Count):
        return _count_count(items, length.n, slide.n)
    if isinstance(length, Count) and isinstance(slide, Duration):
        return _count_time(items, length.n, slide.seconds)
    assert isinstance(length, Duration) and isinstance(slide, Count)
    return _time_count(items, length.seconds, slide.n)


def _time_time(items: list[E], length: float, slide: float) -> list[Any]:
    if not items:
        return []
    out = []
    k = math.floor(min(e.ts for e in items) / slide)
    while k * slide - length <= max(e.ts for e in items):
        start, end = k * slide - length, k * slide
        inside = [e.seq for e in items if start <= e.ts < end]
        if inside:
            out.append((start, end, inside))
        k += 1
    return out


def _count_count(items: list[E], n: int, m: int) -> list[Any]:
    out = []
    c = m
    while c <= len(items):
        out.append((None, None, [e.seq for e in items[max(0, c - n):c]]))
        c += m
    if len(items) % m:
        c = -(-len(items) // m) * m
        out.append((None, None, [e.seq for e in items[max(0, c - n):]]))
    return [w for w in out if w[2]]  # a window holding nothing (a gap) does not fire


def _count_time(items: list[E], n: int, slide: float) -> list[Any]:
    boundaries = sorted({math.floor(e.ts / slide) + 1 for e in items})
    return [(None, None, [e.seq for e in [x for x in items if x.ts < b * slide][-n:]])
            for b in boundaries]


def _time_count(items: list[E], length: float, m: int) -> list[Any]:
    out = []
    for i, e in enumerate(items):
        if (i + 1) % m == 0 or i == len(items) - 1:
            inside = [x.seq for x in items[:i + 1] if x.ts > e.ts - length]
            out.append((e.ts - length, e.ts, inside))
    return out


# --- the oracle on hand-worked cases --------------------------------------------------------

def es(*times: float) -> list[E]:
    return [E(i, t) for i, t in enumerate(times)]


def test_oracle_time_sliding() -> None:
    got = oracle(es(3, 5, 7, 18), spec(Duration(seconds=10), Duration(seconds=5)))
    assert got == [(-5, 5, [0]), (0, 10, [0, 1, 2]), (5, 15, [1, 2]), (10, 20, [3]),
                   (15, 25, [3])]


def test_oracle_count_tumbling_ends_with_the_partial_window() -> None:
    assert oracle(es(*range(5)), spec(Count(2), Count(2))) == [
        (None, None, [0, 1]), (None, None, [2, 3]), (None, None, [4])]


def test_oracle_count_time_and_time_count() -> None:
    items = es(0, 1, 2, 7)
    assert oracle(items, spec(Count(2), Duration(seconds=5))) == [
        (None, None, [1, 2]), (None, None, [2, 3])]
    assert oracle(items, spec(Duration(seconds=2), Count(2))) == [
        (-1, 1, [0, 1]), (5, 7, [3])]


def test_oracle_watermark_makes_late() -> None:
    ops: list[Op] = [("add", E(0, 10)), ("advance", 0), ("add", E(1, 4)), ("add", E(2, 9))]
    on_time, late = released(ops, spec(Duration(seconds=5), Duration(seconds=5), True, lag=1))
    assert [e.seq for e in on_time] == [2, 0] and [e.seq for e in late] == [1]
