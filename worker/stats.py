"""Counters and latency histograms kept per executor, cheap enough for the hot path.

Hot paths bump plain integer attributes; latencies go into log-scale histograms
(8 buckets per power of two, about 9% resolution) from which percentiles are read.

Per stream (the keys cluster.records reads): a spout counts, per output stream, the trees
acked and failed and their complete latency; a bolt counts, per input stream (a StreamInfo:
its source component and stream), the tuples it acked and failed and the time `process`
took. A bolt times a run of tuples from one source and stream, not each tuple, and
`execute_latency` gets a slice's mean (up to loop.BOLT_SLICE tuples) once per tuple in it:
a bolt whose time goes to one tuple in a slice shows it as a slice of slower ones (a
per-tuple clock would cost a tenth of a simple bolt's time). A spout's `execute_latency`
is likewise the mean of a slice's calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cluster.records import Histogram
from topology.tuple import StreamInfo

__all__ = ["ExecutorStats", "Histogram", "InputCounts", "Windows", "spout_figures"]


def _by_stream(counts: dict[Any, Any], leaf: Any = None) -> dict[str, Any]:
    """{stream: x} for a spout's keys (stream names), {component: {stream: x}} for a bolt's
    (StreamInfo); `leaf` turns a value into its wire form."""
    out: dict[str, Any] = {}
    for key, value in counts.items():
        value = leaf(value) if leaf is not None else value
        if isinstance(key, StreamInfo):
            out.setdefault(key.component, {})[key.stream] = value
        else:
            out[key] = value
    return out


def _mean(pair: list[float]) -> dict[str, float]:
    return {"total": pair[0], "count": pair[1]}


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
        self.execute_latency = Histogram()  # per call of process()/next_tuple() (see above)
        # Spouts: keyed by output stream name; bolts: by input StreamInfo. Executors keep
        # some of these in cheaper shapes and give them to snapshot (worker.executor's
        # stream_figures): a spout's acked trees are the counts of its latency_streams, a
        # bolt's automatic acks and process times are lists by stream code.
        self.acked_streams: dict[Any, int] = {}
        self.failed_streams: dict[Any, int] = {}
        self.latency_streams: dict[Any, list[float]] = {}  # [total seconds, count]

    def acked_on(self, key: Any, n: int = 1) -> None:
        acked = self.acked_streams
        acked[key] = acked.get(key, 0) + n

    def failed_on(self, key: Any, n: int = 1) -> None:
        failed = self.failed_streams
        failed[key] = failed.get(key, 0) + n

    def snapshot(self, emitted: dict[str, int], transferred: dict[str, int],
                 executed: dict[str, dict[str, int]], acked: dict[Any, int] | None = None,
                 latency: dict[Any, list[float]] | None = None) -> dict[str, Any]:
        """`emitted` and `transferred` per output stream; `executed` per input component
        and stream; `acked` and `latency` per stream key, when not this object's own (an
        executor may keep them in cheaper shapes on its hot path)."""
        acked = self.acked_streams if acked is None else acked
        latency = self.latency_streams if latency is None else latency
        snap = {
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
            "execute_latency": self.execute_latency.to_dict(),
        }
        if acked:  # absent means none (as cluster.records writes them back)
            snap["acked_streams"] = _by_stream(acked)
        if self.failed_streams:
            snap["failed_streams"] = _by_stream(self.failed_streams)
        if latency:
            snap["latency_streams"] = _by_stream(latency, _mean)
        return snap


def spout_figures(stats: ExecutorStats) -> tuple[dict[Any, int], dict[Any, list[float]]]:
    """A spout's (acked, latency) per stream: its acked trees are counted in latency_streams
    only (one dict on the hot path), plus acked_streams for those acked at emit (no ackers:
    no latency)."""
    acked = dict(stats.acked_streams)
    for stream, (_, n) in stats.latency_streams.items():
        acked[stream] = acked.get(stream, 0) + int(n)
    return acked, stats.latency_streams


class InputCounts:
    """A bolt's counters per input stream as its hot path bumps them: lists indexed by
    stream code (worker.routing's stream table) of tuples executed, tuples acked
    automatically (explicit acks are in ExecutorStats.acked_streams) and seconds spent."""

    def __init__(self, infos: Sequence[StreamInfo], first_system_code: int) -> None:
        self.infos = infos
        self.first_system_code = first_system_code
        self.executed = [0] * len(infos)
        self.auto_acked = [0] * len(infos)
        self.times = [0.0] * len(infos)

    def by_code(self) -> tuple[list[int], list[int], list[float]]:
        return self.executed, self.auto_acked, self.times

    def executed_streams(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for code, n in enumerate(self.executed):
            if n:
                info = self.infos[code]
                out.setdefault(info.component, {})[info.stream] = n
        return out

    def figures(self, explicit: dict[Any, int]) -> tuple[dict[Any, int], dict[Any, list[float]]]:
        """(acked, [seconds, executed]) per input StreamInfo, data streams only."""
        acked = dict(explicit)
        latency = {}
        for code, n in enumerate(self.executed[:self.first_system_code]):
            if n:
                info = self.infos[code]
                latency[info] = [self.times[code], n]
                if self.auto_acked[code]:
                    acked[info] = acked.get(info, 0) + self.auto_acked[code]
        return acked, latency


WINDOW_SECS = 600.0
_COUNTERS = ("transferred", "executed", "acked", "failed", "timed_out", "execute_time")


_PER_STREAM = ("emitted", "transferred_streams", "executed_streams", "acked_streams",
               "failed_streams", "latency_streams")


def _totals(snapshot: dict[str, Any]) -> dict[str, Any]:
    latency = snapshot["complete_latency"]
    return {
        **{k: snapshot[k] for k in (*_PER_STREAM, *_COUNTERS) if k in snapshot},
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
