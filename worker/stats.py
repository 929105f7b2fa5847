"""Counters and latency histograms kept per executor, cheap enough for the hot path.

Hot paths bump plain integer attributes; latencies go into log-scale histograms
(8 buckets per power of two, about 9% resolution) from which percentiles are read.
"""

from __future__ import annotations

from typing import Any

from cluster.records import Histogram

__all__ = ["ExecutorStats", "Histogram", "Windows"]


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
