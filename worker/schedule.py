"""The loop's timers: a heap of due times. Pure: time is always a parameter.

The loop asks `pop_due(now)` for the callbacks to run at the start of each turn and sleeps
at most until `next_due()` when idle. Executors add their own timers through the same
schedule (a windowed bolt's window ends, a checkpoint interval).

A repeating timer keeps its phase (its next due time is the previous one plus its period)
but never fires in a burst to catch up: after a stall longer than a period it is due one
period after `now`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

Callback = Callable[[float], None]


class Timer:
    """A handle to cancel a timer with."""

    __slots__ = ("callback", "period", "cancelled", "name")

    def __init__(self, callback: Callback, period: float | None, name: str) -> None:
        self.callback = callback
        self.period = period
        self.cancelled = False
        self.name = name

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        every = f" every {self.period:g} s" if self.period else ""
        return f"Timer({self.name!r}{every}{', cancelled' if self.cancelled else ''})"


class Schedule:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # ties fire in the order they were added

    def at(self, due: float, callback: Callback, name: str = "") -> Timer:
        """Call `callback(now)` once, at the first turn at or after `due`."""
        timer = Timer(callback, None, name or getattr(callback, "__name__", "timer"))
        heapq.heappush(self._heap, (due, next(self._order), timer))
        return timer

    def every(self, period: float, callback: Callback, first: float, name: str = "") -> Timer:
        """Call `callback(now)` at `first` and every `period` seconds after it."""
        if not period > 0:
            raise ValueError(f"a repeating timer needs a period > 0, got {period!r}")
        timer = Timer(callback, period, name or getattr(callback, "__name__", "timer"))
        heapq.heappush(self._heap, (first, next(self._order), timer))
        return timer

    def next_due(self) -> float | None:
        """When the earliest live timer is due (None if there is none)."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[Timer]:
        """The timers due at `now`, in due order; repeating ones are scheduled again."""
        heap = self._heap
        due: list[Timer] = []
        while heap and heap[0][0] <= now:
            when, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            due.append(timer)
            if timer.period is not None:
                following = when + timer.period
                if following <= now:
                    following = now + timer.period
                heapq.heappush(heap, (following, next(self._order), timer))
        return due

    def __len__(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)
