"""Per-executor and per-component figures from worker heartbeats (pure functions).

A heartbeat (worker.process) lists executor snapshots with totals since the task started and a
"window" dict with the same counters over the last 10 minutes (worker.stats.Windows). The
dashboard reports both, as Storm does: window "600" and ":all-time".

Capacity follows Storm: executed x execute latency / window length, i.e. the share of the last
10 minutes an executor spent in `process()`; a component's capacity is its busiest executor's.
Squall has no separate "process latency" (receipt to ack): bolts ack when `process` returns,
so process latency is reported equal to execute latency.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

WINDOW_10M = "600"
ALL_TIME = ":all-time"
WINDOWS = {WINDOW_10M: "10m 0s", ALL_TIME: "All time"}

_COUNTERS = ("transferred", "executed", "acked", "failed", "timed_out")


def num(value: Any) -> float:
    """A heartbeat number, or 0 for anything that is not one (heartbeats are external input)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return value if value == value else 0  # NaN -> 0


@dataclass
class Figures:
    """Counters of one executor, or summed over several, for one window."""

    emitted: dict[str, float] = field(default_factory=dict)
    transferred_streams: dict[str, float] = field(default_factory=dict)
    executed_streams: dict[tuple[str, str], float] = field(default_factory=dict)
    transferred: float = 0
    executed: float = 0
    acked: float = 0
    failed: float = 0
    timed_out: float = 0
    execute_time: float = 0.0
    latency_total: float = 0.0
    latency_count: float = 0
    capacity: float = 0.0
    executors: int = 0

    def add(self, other: Figures) -> None:
        pairs: list[tuple[dict[Any, float], dict[Any, float]]] = [
            (self.emitted, other.emitted),
            (self.transferred_streams, other.transferred_streams),
            (self.executed_streams, other.executed_streams),
        ]
        for mine, theirs in pairs:
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        for key in (*_COUNTERS, "execute_time", "latency_total", "latency_count"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.capacity = max(self.capacity, other.capacity)
        self.executors += other.executors

    @property
    def emitted_total(self) -> int:
        return int(sum(self.emitted.values()))

    @property
    def execute_latency_ms(self) -> float:
        return round(self.execute_time / self.executed * 1000, 3) if self.executed else 0.0

    @property
    def complete_latency_ms(self) -> float:
        if not self.latency_count:
            return 0.0
        return round(self.latency_total / self.latency_count * 1000, 3)


def executor_figures(snapshot: dict[str, Any], window: str) -> Figures:
    """One executor snapshot's figures over `window` (WINDOW_10M or ALL_TIME)."""
    if window == ALL_TIME:
        source = snapshot
        latency = snapshot.get("complete_latency")
        latency = latency if isinstance(latency, dict) else {}
        lat_total, lat_count = num(latency.get("total")), num(latency.get("count"))
    else:
        window_dict = snapshot.get("window")
        source = window_dict if isinstance(window_dict, dict) else {}
        lat_total, lat_count = num(source.get("latency_total")), num(source.get("latency_count"))
    emitted = _mapping(source.get("emitted"))
    executed = {(str(c), str(s)): num(n) for c, streams in
                _mapping(source.get("executed_streams")).items()
                for s, n in _mapping(streams).items()}
    return Figures(
        emitted={str(s): num(n) for s, n in emitted.items()},
        transferred_streams={str(s): num(n) for s, n in
                             _mapping(source.get("transferred_streams")).items()},
        executed_streams=executed,
        **{k: num(source.get(k)) for k in _COUNTERS},
        execute_time=num(source.get("execute_time")),
        latency_total=lat_total,
        latency_count=lat_count,
        capacity=capacity(snapshot),
        executors=1,
    )


def _mapping(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def capacity(snapshot: dict[str, Any]) -> float:
    """Storm's capacity of one executor over the last 10 minutes (0 before any window)."""
    window = snapshot.get("window")
    if not isinstance(window, dict):
        return 0.0
    seconds = num(window.get("seconds"))
    return round(num(window.get("execute_time")) / seconds, 3) if seconds > 0 else 0.0


def executors(heartbeats: Iterable[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict]]:
    """(heartbeat, executor snapshot) for every well-formed executor of every heartbeat."""
    for hb in heartbeats:
        if not isinstance(hb, dict):
            continue
        for e in hb.get("executors") or ():
            if isinstance(e, dict) and isinstance(e.get("component"), str):
                yield hb, e


def component_figures(heartbeats: Iterable[dict[str, Any]], window: str) -> dict[str, Figures]:
    """Figures summed per component over `window`."""
    out: dict[str, Figures] = {}
    for _, e in executors(heartbeats):
        out.setdefault(e["component"], Figures()).add(executor_figures(e, window))
    return out


def stream_figures(heartbeats: Iterable[dict[str, Any]], component: str,
                   window: str) -> Figures:
    """`component`'s figures over `window`, summed over its executors (per stream too)."""
    total = Figures()
    for _, e in executors(heartbeats):
        if e["component"] == component:
            total.add(executor_figures(e, window))
    return total
