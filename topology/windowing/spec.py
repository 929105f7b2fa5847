"""What a windowed bolt asks for: `Count`, `Duration` and the `WindowSpec` its `with_*` calls build.

A spec is plain immutable data, copied with each task's bolt. Single values are checked where
they are given (`Count(0)` raises at once, pointing at the line); what needs several settings
or the topology (a late stream without event time, a timestamp field an input lacks, a window
longer than the message timeout) is checked by `spec_problems` when the topology is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from topology.errors import TopologyError

US = 1_000_000  # time inside the engine is integer microseconds: window bounds come out exact
DEFAULT_MESSAGE_TIMEOUT_SECS = 30  # cluster.config's default; topology/ cannot import cluster/
# A windowed bolt's component config: the components it reads from (set by build()), whose
# tasks hold its watermark back until they have sent something or gone idle.
WINDOW_SOURCES = "squall.windowing.sources"


class Count:
    """A window length or slide in tuples."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise TopologyError(f"Count({n!r}): a window count must be an integer >= 1")
        self.n = n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Count) and other.n == self.n

    def __hash__(self) -> int:
        return hash(("count", self.n))

    def __repr__(self) -> str:
        return f"Count({self.n})"

    def describe(self) -> str:
        return "tuple" if self.n == 1 else f"{self.n} tuples"


class Duration:
    """A span of time: a window length or slide, a lag, an interval. Exact to the microsecond."""

    __slots__ = ("micros",)

    def __init__(self, seconds: float = 0, *, milliseconds: float = 0, minutes: float = 0,
                 hours: float = 0) -> None:
        parts = {"seconds": seconds, "milliseconds": milliseconds, "minutes": minutes,
                 "hours": hours}
        for name, value in parts.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise TopologyError(f"Duration({name}={value!r}): a duration must be a finite "
                                    "number >= 0")
        total = seconds + milliseconds / 1000 + minutes * 60 + hours * 3600
        self.micros = round(total * US)
        if total > 0 and self.micros == 0:
            raise TopologyError(f"Duration of {total!r} s is shorter than a microsecond")

    @property
    def seconds(self) -> float:
        return self.micros / US

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Duration) and other.micros == self.micros

    def __hash__(self) -> int:
        return hash(("duration", self.micros))

    def __repr__(self) -> str:
        return f"Duration(seconds={_number(self.seconds)})"

    def describe(self) -> str:
        for unit, size in (("h", 3600 * US), ("min", 60 * US), ("s", US)):
            if self.micros >= size and self.micros % size == 0:
                return f"{self.micros // size} {unit}"
        if 0 < self.micros < US and self.micros % 1000 == 0:
            return f"{self.micros // 1000} ms"
        return f"{_number(self.seconds)} s"


Size = Count | Duration


def _number(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


@dataclass(frozen=True)
class WindowSpec:
    """A windowed bolt's settings (see `WindowedBolt.with_*`); `length is None` until set."""

    length: Size | None = None
    slide: Size | None = None
    timestamp_field: str | None = None
    timestamp_extractor: Callable[[Any], float] | None = None
    lag: Duration | None = None
    watermark_interval: Duration | None = None
    idle_timeout: Duration | None = None
    late_stream: str | None = None

    @property
    def event_time(self) -> bool:
        return self.timestamp_field is not None or self.timestamp_extractor is not None

    @property
    def lag_micros(self) -> int:
        return self.lag.micros if self.lag is not None else 0

    @property
    def watermark_secs(self) -> float:
        """How often an event-time task computes its watermark and fires what is due."""
        return self.watermark_interval.seconds if self.watermark_interval is not None else 1.0

    @property
    def aligned(self) -> bool:
        """Length and slide of one kind: the window is a run of panes (incremental form OK)."""
        return type(self.length) is type(self.slide)

    def timestamp(self, tup: Any) -> float:
        """The event time of `tup` in seconds; ValueError naming the value if it is not one."""
        if self.timestamp_field is not None:
            value = tup[self.timestamp_field]
            where = f"field {self.timestamp_field!r}"
        else:
            assert self.timestamp_extractor is not None
            value = self.timestamp_extractor(tup)
            where = "the timestamp extractor's result"
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ValueError(f"{where} is {value!r}: an event time must be a finite number of "
                             "seconds")
        return value

    def describe(self, incremental: bool = False) -> str:
        """One line for people: 'sliding 10 s every 2 s, event time on ts, lag 5 s'."""
        if self.length is None or self.slide is None:
            return "no window"
        if self.length == self.slide:
            text = f"tumbling {self.length.describe()}"
        else:
            text = f"sliding {self.length.describe()} every {self.slide.describe()}"
        if self.timestamp_field is not None:
            text += f", event time on {self.timestamp_field}"
        elif self.timestamp_extractor is not None:
            text += ", event time by extractor"
        else:
            text += ", processing time"
        if self.event_time:
            text += f", lag {(self.lag or Duration(0)).describe()}"
            if self.idle_timeout is not None:
                text += f", idle after {self.idle_timeout.describe()}"
        if self.late_stream is not None:
            text += f", late tuples to {self.late_stream!r}"
        if incremental:
            text += ", incremental"
        return text

    def holds_secs(self) -> float | None:
        """How long (wall clock) the window may hold a tuple's ack, by Storm's rule: length plus
        slide, or the time part alone when the other is a count. None for count windows."""
        held = [s.seconds for s in (self.length, self.slide) if isinstance(s, Duration)]
        return sum(held) if held else None


def windowing_status(spec: WindowSpec, watermark: float | None, late: int,
                     incremental: bool = False) -> dict[str, Any]:
    """The fields a windowed task adds to its heartbeat snapshot (read by the REST API and the
    dashboard): its spec in words, its watermark in seconds (None in processing time or
    before one is known) and how many late tuples it has seen."""
    return {"windowing": {"spec": spec.describe(incremental), "watermark": watermark,
                          "late": late}}


def spec_problems(bolt_id: str, spec: WindowSpec, *, fold_methods: Sequence[str],
                  outputs: Mapping[str, Sequence[str]],
                  inputs: Mapping[tuple[str, str], Sequence[str]],
                  timeout_secs: float | None) -> list[str]:
    """Everything wrong with a windowed bolt's settings, each problem naming the bolt.

    `fold_methods` are the incremental methods it defines (of initial/add/merge), `outputs`
    its declared streams, `inputs` the fields of each (component, stream) it subscribes to.
    """
    where = f"windowed bolt {bolt_id!r}"
    if spec.length is None or spec.slide is None:
        return [f"{where} has no window: call with_window(length, slide) or "
                "with_tumbling_window(length)"]
    problems: list[str] = []
    if fold_methods and len(fold_methods) < 3:
        missing = [m for m in ("initial", "add", "merge") if m not in fold_methods]
        problems.append(f"{where} defines {', '.join(fold_methods)} but not "
                        f"{', '.join(missing)}: the incremental form needs all three")
    elif fold_methods and not spec.aligned:
        problems.append(f"{where}: the incremental form needs a length and a slide of one kind "
                        f"(both Count or both Duration), not {spec.length!r} and {spec.slide!r}")
    if not spec.event_time:
        for name, value in (("with_lag", spec.lag), ("with_idle_timeout", spec.idle_timeout),
                            ("with_watermark_interval", spec.watermark_interval),
                            ("with_late_tuple_stream", spec.late_stream)):
            if value is not None:
                problems.append(f"{where} sets {name}({value!r}) but has no event time: call "
                                "with_timestamp_field or with_timestamp_extractor")
    problems += _stream_problems(where, spec, outputs, inputs)
    held = spec.holds_secs()
    if held is not None and timeout_secs is not None and held > timeout_secs:
        what = ("length plus slide" if spec.aligned
                else "length" if isinstance(spec.length, Duration) else "slide")
        problems.append(
            f"{where}: its window holds tuples for up to {_number(held)} s ({what}), more than "
            f"topology.message.timeout.secs = {timeout_secs!r}: they would time out and "
            "replay; raise the timeout or shorten the window")
    return problems


def _stream_problems(where: str, spec: WindowSpec, outputs: Mapping[str, Sequence[str]],
                     inputs: Mapping[tuple[str, str], Sequence[str]]) -> list[str]:
    problems: list[str] = []
    if spec.timestamp_field is not None:
        for (source, stream), fields in sorted(inputs.items()):
            if spec.timestamp_field not in fields:
                problems.append(
                    f"{where}: timestamp field {spec.timestamp_field!r} is not a field of "
                    f"input {source!r} stream {stream!r} (fields: {list(fields)})")
    if spec.late_stream is not None:
        late = outputs.get(spec.late_stream)
        if late is None:
            problems.append(f"{where}: late tuple stream {spec.late_stream!r} is not declared "
                            f"in its outputs (it declares {sorted(outputs)})")
        else:
            for (source, stream), fields in sorted(inputs.items()):
                if len(fields) != len(late):
                    problems.append(
                        f"{where}: late tuple stream {spec.late_stream!r} has {len(late)} "
                        f"fields but input {source!r} stream {stream!r} has {len(fields)}: a "
                        "late tuple goes out with the values it came in with")
    return problems
