"""The executor of a `WindowedBolt`: its tuples go into a `WindowManager`, not to `process`.

A thin shell around the pure engine (topology.windowing.manager): it feeds each input tuple
in with its time, lets time pass on the loop's timers, and acts on each `Step`: windows to
`process_window`, tuples to ack, late tuples to the late stream, tuples to fail. The
reliability rules are in topology.windowing's docstring; here is how they are done.

- **Held acks.** This executor overrides `execute`, so the worker acks nothing for it
  (worker.executor, extension point 4). The full form holds the `Tuple`s; the incremental
  form holds only their ids, folded per pane into one XOR per spout root (`RootXor`): a pane
  of a million words from ten thousand sentences holds ten thousand integers.
- **Anchoring per root.** What `process_window` emits is anchored to a `WindowAnchor`: an
  anchor whose ids are (root, 0) for every root of the window's tuples. The collector draws
  one edge per emitted tuple and target and gives the child that edge under every root; the
  anchor is acked as soon as `process_window` returns, which sends each root the XOR of the
  children's edges. The window's own tuples are still held at that moment (they are acked
  only as they leave their last window, after it fired), so no tree can complete before the
  window's output is processed: the same guarantee as anchoring to every tuple, at the cost
  of one (root, edge) pair per distinct root per child.
- **Clocks.** Processing time is the wall clock (`time.time()`: window bounds are wall-clock
  seconds); a one-shot timer is kept at the engine's `next_due`. Event time recomputes the
  watermark every `with_watermark_interval` on a repeating timer; idle input tasks are
  measured with `time.monotonic()`.
- **Inputs.** The input tasks that hold the watermark back are those of the components named
  by `WINDOW_SOURCES` in the component's config, set by `TopologyBuilder.build`; without it
  (a hand-made Topology) input tasks are learnt as they send.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from topology.tuple import Tuple
from topology.windowing import Fold, Step, Window, WindowManager, fold_methods
from topology.windowing.spec import WINDOW_SOURCES
from worker.executor import BoltExecutor, TaskEnv
from worker.schedule import Timer

log = logging.getLogger(__name__)



class RootXor:
    """A pane's ack handles in the incremental form: root -> XOR of its tuples' edges.

    `append` takes a Tuple and keeps only its ids, folded; iterating yields (root, xor)
    pairs, shaped like the ids of a one-root tuple, so acking a pane is acking each pair."""

    __slots__ = ("xor",)

    def __init__(self) -> None:
        self.xor: dict[int, int] = {}

    def append(self, tup: Tuple) -> None:
        ids = tup.id
        xor = self.xor
        if len(ids) == 2:
            root = ids[0]
            xor[root] = xor.get(root, 0) ^ ids[1]
            return
        for i in range(0, len(ids), 2):
            root = ids[i]
            xor[root] = xor.get(root, 0) ^ ids[i + 1]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.xor.items())

    def __len__(self) -> int:
        return len(self.xor)


class TupleBag(list):  # type: ignore[type-arg]
    """A pane's tuples in the full form, and the set of their roots (kept as they come, so a
    firing unions a few per-pane sets instead of walking every tuple of the window)."""

    __slots__ = ("roots",)

    def __init__(self) -> None:
        super().__init__()
        self.roots: dict[int, int] = {}

    def append(self, tup: Tuple) -> None:
        super().append(tup)
        ids = tup.id
        if len(ids) == 2:
            self.roots[ids[0]] = 0
        else:
            for i in range(0, len(ids), 2):
                self.roots[ids[i]] = 0


class WindowAnchor:
    """What a fired window's output is anchored to: (root, 0) for each root of its tuples
    (see the module doc). Quacks like a Tuple for the collector and the AckOutbox."""

    __slots__ = ("id", "_ackval")

    def __init__(self, ids: tuple[int, ...]) -> None:
        self.id = ids
        self._ackval: int | None = 0

    @classmethod
    def of(cls, window: Window) -> WindowAnchor:
        roots: dict[int, int] = {}
        for group in window.held_groups():
            if isinstance(group, RootXor):
                roots.update(group.xor)  # only the keys matter
                continue
            if isinstance(group, TupleBag):
                roots.update(group.roots)
                continue
            for handle in group:
                ids = handle.id if isinstance(handle, Tuple) else handle
                for i in range(0, len(ids), 2):
                    roots[ids[i]] = 0
        flat: list[int] = []
        for root in roots:
            flat += (root, 0)
        return cls(tuple(flat))

    def __repr__(self) -> str:
        return f"WindowAnchor({len(self.id) // 2} roots)"


class WindowedBoltExecutor(BoltExecutor):
    """Runs one task of a WindowedBolt (see the module doc)."""

    kind = "bolt"

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        bolt = self.bolt
        self.spec = bolt.window_spec
        self.event_time = self.spec.event_time
        self.fold = Fold.of(bolt) if len(fold_methods(bolt)) == 3 else None
        sources = env.conf.get(WINDOW_SOURCES) or ()
        self.input_tasks = [t for c in sources for t in (env.context.component_tasks(c)
                                                    if env.context is not None else ())]
        self.manager = self._engine()
        self._out = self.manager.pending  # the engine's Step being filled
        self._timer: Timer | None = None
        self._timer_due: float | None = None  # wall clock, processing time only
        self.windows_fired = 0
        self.flushes = 0

    # --- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        super().open()
        if self.event_time:
            every = self.spec.watermark_secs
            self.services.schedule.every(every, self._on_watermark, 0.0,
                                         f"{self.component}:{self.task} watermark")

    def _engine(self) -> WindowManager:
        return WindowManager(self.spec, input_tasks=self.input_tasks, now=time.monotonic(),
                             fold=self.fold, bag=RootXor if self.fold is not None else TupleBag)

    def flush(self, now: float) -> None:
        """A final watermark: every open window fires, every held tuple is acked. What comes
        after it starts afresh (new windows, fired by the next flush), so that in a chain
        of windowed bolts the next one takes what this one emitted while flushing."""
        self.flushes += 1
        log.debug("%s task %d: flush", self.component, self.task)
        self.manager.flush()
        self._act()
        late = self.manager.late
        self.manager = self._engine()
        self.manager.late = late
        self._out = self.manager.pending
        if self._timer is not None:  # it was for the windows just fired
            self._timer.cancel()
            self._timer = self._timer_due = None

    def extra_snapshot(self) -> dict[str, Any]:
        return self.manager.status()

    # --- input -----------------------------------------------------------------------------

    def execute(self, tup: Tuple) -> None:
        if self.event_time:
            try:
                ts = self.spec.timestamp(tup)
            except Exception as e:  # a missing field, a bad value, the user's extractor
                self.errors.report(self.component, self.task, "the timestamp of a tuple", e)
                self.collector.fail(tup)
                return
            self.manager.add(tup, time.monotonic(), ts, tup.task)
        else:
            self.manager.add(tup, time.time(), None, tup.task)
            if self._timer is None:  # a tuple never makes the next due time earlier
                self._reschedule()
        if self._out:
            self._act()

    def _on_watermark(self, now: float) -> None:
        self.manager.advance(time.monotonic())
        if self._out:
            self._act()

    def _on_due(self, now: float) -> None:
        self._timer = self._timer_due = None
        self.manager.advance(time.time())
        if self._out:
            self._act()
        self._reschedule()

    def _reschedule(self) -> None:
        """Processing time: keep one timer at the engine's next due time (wall clock)."""
        due = self.manager.next_due()
        if due is None or (self._timer_due is not None and self._timer_due <= due):
            return
        if self._timer is not None:
            self._timer.cancel()
        wall = time.time()
        self._timer_due = due
        self._timer = self.services.schedule.at(time.monotonic() + max(0.0, due - wall),
                                                self._on_due,
                                                f"{self.component}:{self.task} window end")

    # --- output ----------------------------------------------------------------------------

    def _act(self) -> None:
        step = self.manager.take()
        for window in step.fired:
            self._fire(window)
        ack_handles(self, step.done)
        self._late(step)
        for tup, e in step.failed:
            self.errors.report(self.component, self.task, "add", e)
            self.collector.fail(tup)

    def _fire(self, window: Window) -> None:
        anchor = WindowAnchor.of(window)
        collector = self.collector
        current = collector.current  # the input being executed: restored after (the loop
        collector.current = anchor   # counts references to it to know if it may reuse it)
        self.windows_fired += 1
        try:
            self.bolt.process_window(window)
        except Exception as e:
            collector.current = current
            self.errors.report(self.component, self.task, "process_window", e)
            if self.auto_fail:
                self.outbox.fail(anchor)
                fail_handles(self, window.held())
                return
        collector.current = current
        self.outbox.ack(anchor)

    def _late(self, step: Step) -> None:
        stream = self.spec.late_stream
        for tup in step.late:
            if stream is not None:
                self.collector.emit(list(tup.values), anchors=[tup], stream=stream)
            self.collector.ack(tup)


def ack_handles(executor: WindowedBoltExecutor, handles: list[Any]) -> None:
    """Ack what left its last window: Tuples (full form) or (root, xor, ...) ids."""
    acks = executor.outbox.acks
    n = 0
    for h in handles:
        if isinstance(h, Tuple):
            executor.collector.ack(h)
            continue
        for i in range(0, len(h), 2):
            root = h[i]
            acks[root] = acks.get(root, 0) ^ h[i + 1]
        n += 1
    executor.stats.acked += n


def fail_handles(executor: WindowedBoltExecutor, handles: Any) -> None:
    """Fail the trees of a window whose process_window raised (they replay)."""
    fails = executor.outbox.fails
    for h in handles:
        if isinstance(h, Tuple):
            executor.collector.fail(h)
        else:
            fails.extend(h[i] for i in range(0, len(h), 2))
            executor.stats.failed += 1
