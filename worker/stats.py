"""Counters and latency histograms kept per executor, cheap enough for the hot path.

Hot paths bump plain integer attributes; latencies go into log-scale histograms
(8 buckets per power of two, about 9% resolution) from which percentiles are read.
"""

from __future__ import annotations

import math
from typing import Any


class Histogram:
    """Latencies in seconds; `percentile` answers within one bucket's width (~9%)."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        micros = seconds * 1e6
        b = int(math.log2(micros) * 8) if micros > 1.0 else 0
        buckets = self.buckets
        buckets[b] = buckets.get(b, 0) + 1
        self.count += 1
        self.total += seconds

    def merge(self, other: Histogram | dict[str, Any]) -> None:
        if isinstance(other, dict):
            other = Histogram.from_dict(other)
        for b, n in other.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + n
        self.count += other.count
        self.total += other.total

    def percentile(self, p: float) -> float | None:
        """Upper edge of the bucket holding the p-th percentile, in seconds (None if empty)."""
        if not self.count:
            return None
        rank = p / 100.0 * self.count
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return 2 ** ((b + 1) / 8) / 1e6
        return 2 ** ((max(self.buckets) + 1) / 8) / 1e6

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_dict(self) -> dict[str, Any]:
        return {"buckets": {str(b): n for b, n in self.buckets.items()}, "count": self.count,
                "total": self.total}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Histogram:
        h = cls()
        h.buckets = {int(b): int(n) for b, n in data.get("buckets", {}).items()}
        h.count = int(data.get("count", 0))
        h.total = float(data.get("total", 0.0))
        return h


class ExecutorStats:
    """What one task did. Counters are totals since the task started."""

    def __init__(self, component: str, task: int, kind: str) -> None:
        self.component = component
        self.task = task
        self.kind = kind
        self.executed = 0
        self.acked = 0
        self.failed = 0
        self.timed_out = 0
        self.execute_time = 0.0  # seconds spent in process()/next_tuple()
        self.complete_latency = Histogram()  # spouts: emit -> tree acked

    def snapshot(self, emitted: dict[str, int], transferred: dict[str, int],
                 executed: dict[str, dict[str, int]]) -> dict[str, Any]:
        """`emitted` and `transferred` per output stream; `executed` per input component
        and stream."""
        return {
            "component": self.component,
            "task": self.task,
            "type": self.kind,
            "emitted": emitted,
            "transferred": sum(transferred.values()),
            "transferred_streams": transferred,
            "executed_streams": executed,
            "executed": self.executed,
            "acked": self.acked,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "execute_time": self.execute_time,
            "complete_latency": self.complete_latency.to_dict(),
        }


def aggregate_components(heartbeats: Any) -> dict[str, dict[str, Any]]:
    """Sum the executor snapshots of many worker heartbeats per component.

    Returns {component: {"type", "tasks", "emitted", "transferred", "executed", "acked",
    "failed", "timed_out", "execute_time", "complete_latency": Histogram}}.
    """
    out: dict[str, dict[str, Any]] = {}
    for hb in heartbeats:
        for e in hb.get("executors", ()):
            c = out.get(e["component"])
            if c is None:
                c = out[e["component"]] = {
                    "type": e["type"], "tasks": 0, "emitted": 0, "transferred": 0,
                    "executed": 0, "acked": 0, "failed": 0, "timed_out": 0,
                    "execute_time": 0.0, "complete_latency": Histogram(),
                }
            c["tasks"] += 1
            c["emitted"] += sum(e["emitted"].values())
            for key in ("transferred", "executed", "acked", "failed", "timed_out",
                        "execute_time"):
                c[key] += e.get(key, 0)
            c["complete_latency"].merge(e.get("complete_latency") or {})
    return out


WINDOW_SECS = 600.0
_COUNTERS = ("transferred", "executed", "acked", "failed", "timed_out", "execute_time")


_PER_STREAM = ("emitted", "transferred_streams", "executed_streams")


def _totals(snapshot: dict[str, Any]) -> dict[str, Any]:
    latency = snapshot["complete_latency"]
    return {
        **{k: snapshot[k] for k in (*_PER_STREAM, *_COUNTERS)},
        "latency_total": latency["total"],
        "latency_count": latency["count"],
    }


def _delta(now: Any, before: Any) -> Any:
    """now - before, for numbers and (nested) dicts of numbers; what is new counts whole."""
    if isinstance(now, dict):
        before = before if isinstance(before, dict) else {}
        return {k: _delta(v, before.get(k)) for k, v in now.items()}
    return now - (before or 0)


class Windows:
    """Keeps a worker's executor totals over time to report the last 10 minutes.

    `add(now, snapshots)` stores the totals and attaches to each snapshot a "window" dict
    with the same counters over the last WINDOW_SECS (or since start, whichever is
    shorter) plus its length in "seconds". Time is the caller's monotonic clock.
    """

    def __init__(self, span: float = WINDOW_SECS) -> None:
        self.span = span
        self._history: list[tuple[float, dict[int, dict[str, Any]]]] = []

    def add(self, now: float, snapshots: list[dict[str, Any]]) -> None:
        current = {s["task"]: _totals(s) for s in snapshots}
        history = self._history
        history.append((now, current))
        while len(history) > 2 and history[1][0] <= now - self.span:
            history.pop(0)
        then, old = history[0]
        for s in snapshots:
            window = _delta(current[s["task"]], old.get(s["task"]))
            window["seconds"] = now - then
            s["window"] = window
