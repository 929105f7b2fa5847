"""`WindowManager`: the pure window engine of one windowed task (no I/O, no clock).

The executor feeds it tuples (`add(item, now, ts, task)`), lets time pass (`advance(now)`:
on a timer, every watermark interval in event time, at `next_due()` in processing time),
ends the input (`flush()`), and after each of these `take()`s the Step to act on: windows to
process, tuples to ack, late tuples.

Both clocks come down to one discipline: tuples are *released* to the windows in time order,
and the windows' clock only says "every tuple before this time has been released".

- Processing time: a tuple's time is `now` when it arrives; it is released at once, and the
  clock is the wall clock (never going back).
- Event time: a tuple waits in a heap until the watermark reaches its timestamp, then is
  released in timestamp order (ties in arrival order); the clock is the watermark. The
  watermark is computed at each `advance`: for every input task, the largest timestamp it
  sent minus the lag; the minimum of that over the input tasks not idle (silent for
  `idle_timeout`; if all are idle, the maximum over all); never going back. An input task
  that sent nothing yet holds it at minus infinity until it goes idle. A tuple whose
  timestamp is below the watermark when it arrives is late.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable
from typing import Any

from topology.errors import TopologyError
from topology.windowing.mixed import CountTimeWindows, TimeCountWindows
from topology.windowing.panes import PaneWindows
from topology.windowing.spec import US, Count, Duration, WindowSpec, windowing_status
from topology.windowing.step import Fold, Step

Windows = PaneWindows | CountTimeWindows | TimeCountWindows


class WindowManager:
    """Tuples and time in; windows to fire, tuples to ack and late tuples out (see `take`).

    `input_tasks` are the task ids that feed this task (event time: each holds the watermark
    back until it has sent something or gone idle); `now` is the creation time (seconds, the
    same clock as every later `now`); `fold` makes it the incremental form, keeping per tuple
    only `keep(tuple)`, its ack handle. Windows of panes keep what they hold per pane in a
    `bag()` (a list by default; anything with `append` and iteration).
    """

    def __init__(self, spec: WindowSpec, *, input_tasks: Iterable[Any] = (), now: float = 0.0,
                 fold: Fold | None = None, keep: Callable[[Any], Any] | None = None,
                 bag: Callable[[], Any] = list) -> None:
        self.spec = spec
        self.incremental = fold is not None
        self._keep = keep if fold is not None else None
        self._out = Step()
        self._windows = _make_windows(spec, self._out, fold, keep, bag)
        self.late = 0  # late tuples seen, for the heartbeat
        self._event = spec.event_time
        self._clock: float = -math.inf  # microseconds: the wall clock or the watermark
        self._lag = spec.lag_micros
        self._idle = spec.idle_timeout.seconds if spec.idle_timeout is not None else None
        self._max_ts: dict[Any, float] = {task: -math.inf for task in input_tasks}
        self._seen: dict[Any, float] = {task: now for task in self._max_ts}
        self._heap: list[tuple[int, int, Any]] = []
        self._seq = 0
        self._flushed = False
        windows = self._windows
        # With gaps between time windows, a tuple in one is acked when it comes, not held.
        self._gaps = (windows.in_no_window if isinstance(windows, PaneWindows)
                      and not windows.by_count and windows.slide > windows.length else None)

    def add(self, item: Any, now: float, ts: float | None = None, task: Any = None) -> bool:
        """Take one tuple that came from input `task` at `now`; in event time `ts` is its
        timestamp (seconds). False if it was late (it is then in the Step's `late`): older
        than the watermark, or after `flush`."""
        if self._flushed:
            return self._late(item)
        if not self._event:
            clock = round(now * US)
            if clock > self._clock:
                self._clock = clock
                self._windows.tick(clock)
            self._windows.release(int(self._clock), item)
            return True
        if ts is None:
            raise TypeError("WindowManager.add: an event-time window needs the tuple's ts")
        pos = round(ts * US)
        if pos > self._max_ts.get(task, -math.inf):
            self._max_ts[task] = pos
        self._seen[task] = now
        if pos < self._clock:
            return self._late(item)
        if self._gaps is not None and self._gaps(pos):
            self._out.done.append(item if self._keep is None else self._keep(item))
            return True
        heapq.heappush(self._heap, (pos, self._seq, item))
        self._seq += 1
        return True

    def _late(self, item: Any) -> bool:
        self.late += 1
        self._out.late.append(item)
        return False

    def advance(self, now: float) -> None:
        """Time passed: recompute the watermark (event time) or the clock, fire what is due."""
        if not self._event:
            clock = round(now * US)
            if clock > self._clock:
                self._clock = clock
            self._windows.tick(self._clock)
            return
        watermark = self._watermark(now)
        if watermark > self._clock:
            self._clock = watermark
        self._release(self._clock)

    def flush(self) -> None:
        """End of input (a final watermark): fire every window still open, let every tuple go.
        Every later tuple is late (its window may have fired already)."""
        self._flushed = True
        if self._event:
            self._clock = math.inf
            self._release(math.inf, tick=False)  # the windows' own flush ends the clock
        self._windows.flush()

    def take(self) -> Step:
        """What happened since the last take (see Step for the order to act in)."""
        out = self._out
        step = Step(out.fired, out.done, out.late, out.failed)
        out.fired, out.done, out.late, out.failed = [], [], [], []
        return step

    @property
    def pending(self) -> Step:
        """The Step being filled (the same object until the engine is gone): true when there
        is something to `take`, so an executor can test it after each tuple cheaply."""
        return self._out

    @property
    def watermark(self) -> float | None:
        """Event time: the watermark in seconds (None before one is known and after flush)."""
        if not self._event or not math.isfinite(self._clock):
            return None
        return self._clock / US

    def next_due(self) -> float | None:
        """Processing time: the wall-clock time (seconds) at which `advance` fires a window or
        lets a tuple go; None if nothing is pending or time does not drive it."""
        if self._event or (isinstance(self._windows, PaneWindows) and self._windows.by_count):
            return None
        due = self._windows.next_due()
        return due / US if math.isfinite(due) else None

    def status(self) -> dict[str, Any]:
        """The heartbeat fields of this task: {"windowing": {spec, watermark, late}}."""
        return windowing_status(self.spec, self.watermark, self.late, self.incremental)

    def _watermark(self, now: float) -> float:
        highs = self._max_ts
        if not highs:
            return -math.inf
        idle = self._idle
        if idle is None:
            low = min(highs.values())
        else:
            active = [high for task, high in highs.items() if now - self._seen[task] < idle]
            low = min(active) if active else max(highs.values())
        return low - self._lag

    def _release(self, upto: float, tick: bool = True) -> None:
        heap = self._heap
        windows = self._windows
        while heap and heap[0][0] <= upto:
            pos, _, item = heapq.heappop(heap)
            windows.tick(pos)
            windows.release(pos, item)
        if tick:
            windows.tick(upto)


def _make_windows(spec: WindowSpec, out: Step, fold: Fold | None,
                  keep: Callable[[Any], Any] | None, bag: Callable[[], Any]) -> Windows:
    length, slide = spec.length, spec.slide
    if isinstance(length, Count) and isinstance(slide, Count):
        return PaneWindows(length.n, slide.n, by_count=True, out=out, fold=fold, keep=keep,
                           bag=bag)
    if isinstance(length, Duration) and isinstance(slide, Duration):
        return PaneWindows(length.micros, slide.micros, by_count=False, out=out, fold=fold,
                           keep=keep, bag=bag)
    if fold is not None:
        raise TopologyError(f"the incremental form needs a length and a slide of one kind, not "
                            f"{length!r} and {slide!r}")
    if isinstance(length, Count) and isinstance(slide, Duration):
        return CountTimeWindows(length.n, slide.micros, out)
    if isinstance(length, Duration) and isinstance(slide, Count):
        return TimeCountWindows(length.micros, slide.n, out)
    raise TopologyError(f"no window set (length {length!r}, slide {slide!r}): call with_window "
                        "or with_tumbling_window")
