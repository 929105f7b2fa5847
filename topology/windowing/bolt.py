"""`WindowedBolt`, the class users extend, and the `Window` its `process_window` receives."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Self

from topology.component import Bolt
from topology.errors import TopologyError
from topology.windowing.spec import Count, Duration, Size, WindowSpec

if TYPE_CHECKING:
    from topology.tuple import Tuple

FOLD_METHODS = ("initial", "add", "merge")


class Window:
    """One firing of a window: what `process_window` gets.

    `start`/`end` are its bounds in seconds (event time or wall clock; the window holds
    timestamps `start <= ts < end`), None for count windows. `tuples` is every tuple in it,
    oldest first; `new` those that were not in the previously fired window, `expired` those of
    the previously fired window that are not in this one. A bolt of the incremental form keeps
    no tuples: it reads `result`, the merge of its panes' accumulators.
    """

    __slots__ = ("start", "end", "_tuples", "_new", "_expired", "_result", "_groups")

    def __init__(self, start: float | None, end: float | None, *,
                 tuples: list[Any] | None = None, new: list[Any] | None = None,
                 expired: list[Any] | None = None,
                 result: Callable[[], Any] | None = None,
                 groups: list[Iterable[Any]] | None = None) -> None:
        self.start = start
        self.end = end
        self._tuples = tuples
        self._new = new
        self._expired = expired
        self._result: Any = result  # computed on first read (it runs the bolt's merge)
        self._groups = groups  # the held handles, one iterable per pane

    def _full(self, what: str, value: list[Any] | None) -> list[Any]:
        if value is None:
            raise TopologyError(f"window.{what}: an incremental windowed bolt (one defining "
                                "initial/add/merge) keeps no tuples; read window.result")
        return value

    @property
    def tuples(self) -> list[Tuple]:
        return self._full("tuples", self._tuples)

    @property
    def new(self) -> list[Tuple]:
        return self._full("new", self._new)

    @property
    def expired(self) -> list[Tuple]:
        return self._full("expired", self._expired)

    @property
    def result(self) -> Any:
        if self._tuples is not None:
            raise TopologyError("window.result: only a windowed bolt of the incremental form "
                                "(defining initial, add and merge) has a result; read "
                                "window.tuples")
        if callable(self._result):
            self._result = _Computed(self._result())
        return self._result.value if isinstance(self._result, _Computed) else self._result

    def held(self) -> Iterator[Any]:
        """The ack handles of every tuple in the window: what its output is anchored to."""
        return itertools.chain.from_iterable(self.held_groups())

    def held_groups(self) -> list[Iterable[Any]]:
        """The same, as the engine keeps them: one container per pane (the `bag`s given to
        WindowManager, so an executor may keep per-pane summaries in them), or one list."""
        if self._groups is not None:
            return self._groups
        return [self._tuples or []]

    def __repr__(self) -> str:
        size = f"{len(self._tuples)} tuples" if self._tuples is not None else "incremental"
        return f"Window(start={self.start!r}, end={self.end!r}, {size})"


class _Computed:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class WindowedBolt(Bolt):
    """A bolt that sees windows of tuples: override `process_window(window)`.

    Configure it by chaining `with_*` calls on the instance given to `set_bolt`. Define
    `initial()`, `add(acc, tup)` and `merge(acc1, acc2)` as well to get the incremental form
    (one accumulator per pane instead of the tuples; `process_window` reads `window.result`).
    `merge` may update `acc1` and return it, but must leave `acc2` as it was.
    """

    _window_spec: WindowSpec = WindowSpec()  # replaced (never mutated) per instance
    executor_factory = "worker.windowed:WindowedBoltExecutor"  # runs its tasks in a worker

    def process_window(self, window: Window) -> None:
        """Handle one fired window; `emit` here anchors to every tuple of the window."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_window(window)")

    def process(self, tup: Tuple) -> None:
        raise TopologyError(f"{type(self).__name__} is a WindowedBolt: its tuples go to windows "
                            "and process_window(window), never to process(tup)")

    @property
    def window_spec(self) -> WindowSpec:
        return self._window_spec

    def _set(self, **changes: Any) -> Self:
        self._window_spec = dataclasses.replace(self._window_spec, **changes)
        return self

    def with_window(self, length: Size, slide: Size | None = None) -> Self:
        """A sliding window of `length` moving by `slide` (each a Count or a Duration); without
        a slide it moves with every tuple (Count(1)), as in Storm."""
        return self._set(length=_size("with_window", "length", length),
                         slide=_size("with_window", "slide", slide if slide is not None
                                     else Count(1)))

    def with_tumbling_window(self, length: Size) -> Self:
        """Back-to-back windows of `length`: each tuple is in exactly one."""
        size = _size("with_tumbling_window", "length", length)
        return self._set(length=size, slide=size)

    def with_timestamp_field(self, field: str) -> Self:
        """Event time: the tuple's `field` holds its time in seconds (int or float)."""
        if not isinstance(field, str) or not field:
            raise TopologyError(f"with_timestamp_field({field!r}): give a field name")
        self._one_clock("with_timestamp_field")
        return self._set(timestamp_field=field)

    def with_timestamp_extractor(self, fn: Callable[[Tuple], float]) -> Self:
        """Event time: `fn(tup)` returns the tuple's time in seconds."""
        if not callable(fn):
            raise TopologyError(f"with_timestamp_extractor({fn!r}): give a function of a tuple")
        self._one_clock("with_timestamp_extractor")
        return self._set(timestamp_extractor=fn)

    def with_lag(self, lag: Duration) -> Self:
        """Event time: how far out of order tuples may come (the watermark trails by this)."""
        return self._set(lag=_duration("with_lag", lag, zero_ok=True))

    def with_watermark_interval(self, interval: Duration) -> Self:
        """Event time: how often the watermark is computed and due windows fire (default 1 s)."""
        return self._set(watermark_interval=_duration("with_watermark_interval", interval))

    def with_idle_timeout(self, timeout: Duration) -> Self:
        """Event time: an input task silent this long stops holding the watermark back."""
        return self._set(idle_timeout=_duration("with_idle_timeout", timeout))

    def with_late_tuple_stream(self, stream: str) -> Self:
        """Event time: late tuples go out on `stream` (declared in `outputs`) with their values."""
        if not isinstance(stream, str) or not stream:
            raise TopologyError(f"with_late_tuple_stream({stream!r}): give a stream id")
        return self._set(late_stream=stream)

    def _one_clock(self, method: str) -> None:
        spec = self._window_spec
        if spec.timestamp_field is not None or spec.timestamp_extractor is not None:
            already = (f"timestamp field {spec.timestamp_field!r}" if spec.timestamp_field
                       else "a timestamp extractor")
            raise TopologyError(f"{method}: {type(self).__name__} already has {already}")


def fold_methods(bolt: Any) -> list[str]:
    """Which of initial/add/merge a windowed bolt (class or instance) defines."""
    return [m for m in FOLD_METHODS if callable(getattr(bolt, m, None))]


def _size(method: str, what: str, value: Any) -> Size:
    if not isinstance(value, (Count, Duration)):
        raise TopologyError(f"{method}: the window {what} must be Count(n) or "
                            f"Duration(seconds=...), not {value!r}")
    if isinstance(value, Duration) and value.micros == 0:
        raise TopologyError(f"{method}: the window {what} must be longer than 0 s")
    return value


def _duration(method: str, value: Any, zero_ok: bool = False) -> Duration:
    if not isinstance(value, Duration):
        raise TopologyError(f"{method}: give a Duration(seconds=...), not {value!r}")
    if not zero_ok and value.micros == 0:
        raise TopologyError(f"{method}: the duration must be longer than 0 s")
    return value
