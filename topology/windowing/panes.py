"""Aligned windows as runs of panes: Duration length and slide, or Count length and slide.

Positions are integers: a timestamp in microseconds for time windows, the release number
(0, 1, 2, ...) for count windows. With length L and slide S, window k holds positions
`k*S - L <= pos < k*S`, so bounds are multiples of the slide whatever the parallelism. A
pane is a slice of P = gcd(L, S) positions, so every window is a run of whole panes; pane q
is in windows `first(q) = ceil((q+1)P/S)` to `last(q) = floor((qP+L)/S)`, none if
first > last (a gap between windows when S > L). Window k fires when the clock reaches k*S
(the watermark or the wall clock for time windows, the number of tuples released for count
windows), if it holds any tuple; once it has fired, the panes whose last window it was are
done: their ack handles go out.

A pane holds its tuples (full form), or one accumulator and the ack handles (incremental
form); either way a tuple costs one list slot in one pane.
"""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import Callable
from typing import Any

from topology.windowing.bolt import Window
from topology.windowing.spec import US
from topology.windowing.step import Fold, Step


class _Pane:
    __slots__ = ("index", "first", "last", "items", "acc")

    def __init__(self, index: int, first: int, last: int, items: Any) -> None:
        self.index = index
        self.first = first  # the first and last window that hold this pane
        self.last = last
        self.items = items  # tuples (full form) or ack handles (incremental form), in a bag
        self.acc: Any = _EMPTY


class PaneWindows:
    """The engine of aligned windows. `release` positions in order; `tick` the time clock."""

    def __init__(self, length: int, slide: int, *, by_count: bool, out: Step,
                 fold: Fold | None = None, keep: Callable[[Any], Any] | None = None,
                 bag: Callable[[], Any] = list) -> None:
        self.length = length
        self.slide = slide
        self.pane = math.gcd(length, slide)
        self.by_count = by_count
        self.out = out
        self.fold = fold
        self.keep = keep if keep is not None else _same
        self.bag = bag
        self._panes: collections.deque[_Pane] = collections.deque()
        self._released = 0  # count windows: the position of the next tuple
        self._last: float = -math.inf  # the number of the last window fired
        self._gap: int | None = None  # a pane in no window: its tuples are done at once
        self._prev_end: float = -math.inf  # first pane after the last fired window
        self._expired: list[Any] = []  # full form: tuples done since the last firing
        self._due: float = math.inf  # the clock at which the next window fires

    def release(self, pos: int, item: Any) -> None:
        """Take the next tuple, in position order (`pos` is ignored for count windows)."""
        if self.by_count:
            pos = self._released
        q = pos // self.pane
        panes = self._panes
        taken = True
        if panes and panes[-1].index == q:
            taken = self._put(panes[-1], item)
        elif q == self._gap:
            self.out.done.append(self.keep(item))
        else:
            # Positions come at or after the clock, so no window holding q has fired yet.
            first = -(-(q + 1) * self.pane // self.slide)
            last = (q * self.pane + self.length) // self.slide
            if first > last:
                self._gap = q
                self.out.done.append(self.keep(item))
            else:
                pane = _Pane(q, first, last, self.bag())
                taken = self._put(pane, item)
                if taken:
                    panes.append(pane)
                    if len(panes) == 1:
                        self._reschedule()
        if self.by_count and taken:
            self._released += 1
            self._advance(self._released)

    def in_no_window(self, pos: int) -> bool:
        """Whether a time position falls in a gap between windows (slide longer than length)."""
        q = pos // self.pane
        return -(-(q + 1) * self.pane // self.slide) > (q * self.pane + self.length) // self.slide

    def _put(self, pane: _Pane, item: Any) -> bool:
        fold = self.fold
        if fold is None:
            pane.items.append(item)
            return True
        try:  # user code: on an error the tuple is not taken and the pane is unchanged
            acc = fold.initial() if pane.acc is _EMPTY else pane.acc
            pane.acc = fold.add(acc, item)
        except Exception as e:
            self.out.failed.append((item, e))
            return False
        pane.items.append(self.keep(item))
        return True

    def tick(self, clock: float) -> None:
        """Time reached `clock` (microseconds): every tuple before it has been released.
        Count windows go by their own clock, the number of tuples released."""
        if not self.by_count:
            self._advance(clock)

    def _advance(self, clock: float) -> None:
        while clock >= self._due and self._panes:
            self._fire(int(self._due // self.slide))

    def flush(self) -> None:
        """End of input: fire every window still holding tuples, then let every tuple go."""
        if self.by_count:
            next_window = -(-self._released // self.slide)
            if self._panes and next_window > self._last:
                self._fire(next_window)
        else:
            self._advance(math.inf)
        while self._panes:
            self._drop(self._panes.popleft())
        self._reschedule()

    def next_due(self) -> float:
        """The clock at which the next window fires (inf: none is pending)."""
        return self._due

    def _reschedule(self) -> None:
        if self._panes:
            self._due = max(self._last + 1, self._panes[0].first) * self.slide
        else:
            self._due = math.inf

    def _fire(self, k: int) -> None:
        end = k * self.slide
        end_pane = end // self.pane
        panes = list(itertools.takewhile(lambda p: p.index < end_pane, self._panes))
        if self.by_count:
            start_s: float | None = None
            end_s: float | None = None
        else:
            start_s, end_s = (end - self.length) / US, end / US
        if self.fold is not None:
            fold = self.fold
            window = Window(start_s, end_s, result=lambda: _merge(fold, panes),
                            groups=[p.items for p in panes])
        else:
            prev_end = self._prev_end
            window = Window(start_s, end_s, tuples=[t for p in panes for t in p.items],
                            new=[t for p in panes if p.index >= prev_end for t in p.items],
                            expired=self._expired, groups=[p.items for p in panes])
            self._expired = []
        self.out.fired.append(window)
        self._last = k
        self._prev_end = end_pane
        while self._panes and self._panes[0].last <= k:
            self._drop(self._panes.popleft())
        self._reschedule()

    def _drop(self, pane: _Pane) -> None:
        self.out.done.extend(pane.items)
        if self.fold is None:
            self._expired.extend(pane.items)


def _merge(fold: Fold, panes: list[_Pane]) -> Any:
    """A window's result from its panes, computed when first read: merge is user code, so an
    error surfaces in process_window, where the executor handles it."""
    acc = fold.initial()
    for p in panes:
        acc = fold.merge(acc, p.acc)
    return acc


_EMPTY = object()  # a pane's accumulator before its first tuple


def _same(item: Any) -> Any:
    return item
