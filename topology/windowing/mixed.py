"""Windows whose length and slide are of different kinds (full form only: no panes line up).

- `CountTimeWindows`: the last N tuples, fired at each multiple of the slide S (a time) at
  which tuples came in since the last firing; `start`/`end` are None as for every count
  window. A tuple is done when N newer tuples have come (no later window can hold it).
- `TimeCountWindows`: fired at every M-th tuple, holding the tuples of the last L seconds
  before it: timestamps `end - L < ts <= end`, `end` being the time of that M-th tuple. A
  tuple is done once the clock has passed its time plus L.

Positions are microseconds as in panes.py; tuples come in time order (event time releases
them sorted), and `tick(clock)` means every tuple before `clock` has been released.
"""

from __future__ import annotations

import collections
import math
from typing import Any

from topology.windowing.bolt import Window
from topology.windowing.spec import US
from topology.windowing.step import Step


class _Buffer:
    """Tuples in time order with their release numbers, and what the last firing held."""

    def __init__(self, out: Step) -> None:
        self.out = out
        self.entries: collections.deque[tuple[int, int, Any]] = collections.deque()
        self.seq = 0  # release number of the next tuple
        self.prev = (0, 0)  # release numbers [a, b) of the last fired window
        self.expired: list[Any] = []  # tuples of the last fired window that left since

    def append(self, ts: int, item: Any) -> None:
        self.entries.append((ts, self.seq, item))
        self.seq += 1

    def pop(self) -> None:
        _, seq, item = self.entries.popleft()
        self.out.done.append(item)
        if self.prev[0] <= seq < self.prev[1]:
            self.expired.append(item)

    def fire(self, start: float | None, end: float | None) -> None:
        entries = self.entries
        first_new = self.prev[1]
        self.out.fired.append(Window(
            start, end, tuples=[e[2] for e in entries],
            new=[e[2] for e in entries if e[1] >= first_new], expired=self.expired))
        self.expired = []
        self.prev = (entries[0][1] if entries else self.seq, self.seq)

    def clear(self) -> None:
        while self.entries:
            self.pop()


class CountTimeWindows:
    """Count length N, time slide S (microseconds)."""

    def __init__(self, length: int, slide: int, out: Step) -> None:
        self.length = length
        self.slide = slide
        self.buf = _Buffer(out)
        self._first_new: int | None = None  # time of the first tuple since the last firing

    def release(self, ts: int, item: Any) -> None:
        buf = self.buf
        buf.append(ts, item)
        if self._first_new is None:
            self._first_new = ts
        if len(buf.entries) > self.length:
            buf.pop()

    def next_due(self) -> float:
        if self._first_new is None:
            return math.inf
        return (self._first_new // self.slide + 1) * self.slide

    def tick(self, clock: float) -> None:
        if self._first_new is not None and clock >= self.next_due():
            self._fire()

    def flush(self) -> None:
        if self._first_new is not None:
            self._fire()
        self.buf.clear()

    def _fire(self) -> None:
        self.buf.fire(None, None)
        self._first_new = None


class TimeCountWindows:
    """Time length L (microseconds), count slide M."""

    def __init__(self, length: int, slide: int, out: Step) -> None:
        self.length = length
        self.slide = slide
        self.buf = _Buffer(out)
        self._since = 0  # tuples released since the last firing

    def release(self, ts: int, item: Any) -> None:
        self.tick(ts)
        self.buf.append(ts, item)
        self._since += 1
        if self._since == self.slide:
            self._fire(ts)

    def next_due(self) -> float:
        entries = self.buf.entries
        return entries[0][0] + self.length if entries else math.inf

    def tick(self, clock: float) -> None:
        """Tuples at or before clock - L are in no later window: they are done."""
        entries = self.buf.entries
        while entries and entries[0][0] + self.length <= clock:
            self.buf.pop()

    def flush(self) -> None:
        if self._since and self.buf.entries:
            self._fire(self.buf.entries[-1][0])
        self.buf.clear()

    def _fire(self, end: int) -> None:
        self.buf.fire((end - self.length) / US, end / US)
        self._since = 0
