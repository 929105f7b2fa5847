"""Typed records of what workers report, and the one aggregator of their figures.

A worker heartbeats (through its supervisor, into `ClusterState.worker_heartbeat`) a dict
that `WorkerHeartbeat.from_dict` reads; each of its "executors" is one task's snapshot
(`ExecutorSnapshot`): counters since the task started, and a "window" dict with the same
counters over the last 10 minutes (worker.stats.Windows). Heartbeats are external input:
`from_dict` never raises on a malformed one. A value of the wrong type reads as 0 (or empty),
a malformed executor is skipped, and keys it does not know are kept and written back by
`to_dict`, so records round-trip.

Keys a snapshot carries when they have something to say (absent means 0 or empty):

    acked_streams, failed_streams   spout: {stream: n} per output stream
                                    bolt:  {component: {stream: n}} per input stream
    latency_streams                 spout: {stream: {"total": s, "count": n}} complete latency
                                    bolt:  {component: {stream: {...}}} execute latency
    execute_latency                 histogram of process()/next_tuple() times (seconds;
                                    a bolt's is timed per run of tuples from one stream,
                                    each tuple counting the run's mean)
    metrics                         {name: {"type": "counter"|"gauge", "value": x}} and
                                    {name: {"type": "histogram", "buckets", "count", "total"}}

The "window" dict may carry acked_streams, failed_streams and latency_streams too.

What windowed, stateful and replayable tasks add to their snapshot (worker executors'
`extra_snapshot()`), summed per component by `component_progress`:

    windowing   {"spec": words, "watermark": event-time seconds or None, "late": n}
    checkpoint  {"txid", "time", "duration", "failed"}: the last committed checkpoint
    source      {"kind", "name", "offset", "behind"}: a replayable spout task's read position
Output and input streams are both named by a `GlobalStream`, (component, stream) as Storm's
GlobalStreamId: a spout's output stream is (the spout, stream), a bolt's input is (its
source, stream).

`component_figures(heartbeats, window)` is the aggregator: per component and per stream, over
WINDOW_10M or ALL_TIME (the dashboard keeps the longer windows itself, ui.stats).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

WINDOW_10M, WINDOW_3H, WINDOW_1D, ALL_TIME = "600", "10800", "86400", ":all-time"
WINDOWS = {WINDOW_10M: "10m 0s", WINDOW_3H: "3h 0m 0s", WINDOW_1D: "1d 0h 0m 0s",
           ALL_TIME: "All time"}  # Storm's window ids and their "windowPretty"
MAX_USER_METRICS = 100  # per executor: a heartbeat must stay small

GlobalStream = tuple[str, str]


def num(value: Any) -> float:
    """A heartbeat number as given (int or float), or 0 for anything that is not a finite one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return value if math.isfinite(value) else 0


def _map(value: Any) -> dict[Any, Any]:
    return value if isinstance(value, dict) else {}


# --- histograms -----------------------------------------------------------------------------


@dataclass(slots=True)
class Histogram:
    """Latencies (or any positive values) in log-scale buckets, worker.stats's encoding:
    bucket b holds values in [2**(b/8), 2**((b+1)/8)) micro-units (about 9% wide)."""

    buckets: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total: float = 0.0

    def add(self, value: float, n: int = 1) -> None:
        """Count `value` `n` times (a run of tuples timed together counts its mean per tuple)."""
        if n <= 0:
            return
        micros = value * 1e6
        b = int(math.log2(micros) * 8) if micros > 1.0 else 0
        self.buckets[b] = self.buckets.get(b, 0) + n
        self.count += n
        self.total += value * n

    @staticmethod
    def upper_edge(bucket: int) -> float:
        return float(2 ** ((bucket + 1) / 8) / 1e6)

    def merge(self, other: Histogram | Mapping[str, Any]) -> None:
        if not isinstance(other, Histogram):
            other = Histogram.from_dict(other)
        for b, n in other.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + n
        self.count += other.count
        self.total += other.total

    def percentile(self, p: float) -> float | None:
        """Upper edge of the bucket holding the p-th percentile (None if empty)."""
        if not self.count or not self.buckets:
            return None
        rank, seen = p / 100.0 * self.count, 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return self.upper_edge(b)
        return self.upper_edge(max(self.buckets))

    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def cumulative(self, bounds: Iterable[float]) -> list[int]:
        """How many values are at most each bound (Prometheus's `le`), counting a bucket under
        the first bound at or above its upper edge: a count errs by at most one bucket."""
        edges = sorted((self.upper_edge(b), n) for b, n in self.buckets.items())
        out, i, seen = [], 0, 0
        for bound in bounds:
            while i < len(edges) and edges[i][0] <= bound:
                seen += edges[i][1]
                i += 1
            out.append(seen)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"buckets": {str(b): n for b, n in self.buckets.items()}, "count": self.count,
                "total": self.total}

    @classmethod
    def from_dict(cls, data: Any) -> Histogram:
        """A histogram from its dict; malformed buckets are skipped."""
        h = cls()
        data = _map(data)
        for b, n in _map(data.get("buckets")).items():
            try:
                bucket = int(b)
            except (TypeError, ValueError):
                continue
            if num(n) > 0 and -10_000 < bucket < 10_000:
                h.buckets[bucket] = int(num(n))
        h.count = int(num(data.get("count")))
        h.total = float(num(data.get("total")))
        return h


@dataclass
class Mean:
    """A running mean: a total and a count (latencies in seconds)."""

    total: float = 0.0
    count: float = 0

    def add(self, other: Mean) -> None:
        self.total += other.total
        self.count += other.count

    @property
    def ms(self) -> float:
        return round(self.total / self.count * 1000, 3) if self.count else 0.0

    @classmethod
    def from_dict(cls, data: Any) -> Mean:
        data = _map(data)
        return cls(float(num(data.get("total"))), num(data.get("count")))


@dataclass
class UserMetric:
    """A metric a component registered: a counter (total since the task started), a gauge
    (its current value) or a histogram."""

    type: str
    value: float = 0
    histogram: Histogram | None = None
    low: float | None = None  # summed gauges: the lowest and highest task's value
    high: float | None = None

    @classmethod
    def from_dict(cls, data: Any) -> UserMetric | None:
        data = _map(data)
        kind = data.get("type")
        if kind in ("counter", "gauge"):
            value = num(data.get("value"))
            return cls(kind, value, low=value if kind == "gauge" else None,
                       high=value if kind == "gauge" else None)
        if kind == "histogram":
            return cls(kind, histogram=Histogram.from_dict(data))
        return None

    def to_dict(self) -> dict[str, Any]:
        if self.histogram is not None:
            return {"type": self.type, **self.histogram.to_dict()}
        return {"type": self.type, "value": self.value}

    def add(self, other: UserMetric) -> None:
        """Fold in another task's metric of the same name (counters and gauges sum)."""
        if self.histogram is not None and other.histogram is not None:
            self.histogram.merge(other.histogram)
        self.value += other.value
        if self.low is not None and other.low is not None:
            self.low = min(self.low, other.low)
        if self.high is not None and other.high is not None:
            self.high = max(self.high, other.high)

    def copy(self) -> UserMetric:
        return copy.deepcopy(self)


def user_metrics(data: Any) -> dict[str, UserMetric]:
    out = {}
    for name, raw in list(_map(data).items())[:MAX_USER_METRICS]:
        metric = UserMetric.from_dict(raw)
        if isinstance(name, str) and metric is not None:
            out[name] = metric
    return out


# --- the figures of one window --------------------------------------------------------------

_SUMS = ("transferred", "executed", "acked", "failed", "timed_out", "execute_time")


@dataclass
class Figures:
    """The counters of one executor, or summed over several, for one window."""

    emitted: dict[str, float] = field(default_factory=dict)  # per output stream
    transferred_streams: dict[str, float] = field(default_factory=dict)
    executed_streams: dict[GlobalStream, float] = field(default_factory=dict)  # per input
    acked_streams: dict[GlobalStream, float] = field(default_factory=dict)
    failed_streams: dict[GlobalStream, float] = field(default_factory=dict)
    latency_streams: dict[GlobalStream, Mean] = field(default_factory=dict)
    transferred: float = 0
    executed: float = 0
    acked: float = 0
    failed: float = 0
    timed_out: float = 0
    execute_time: float = 0.0
    complete: Mean = field(default_factory=Mean)  # spouts: emit -> tree acked
    capacity: float = 0.0  # Storm's, over the last 10 minutes: the busiest executor's
    executors: int = 0
    metrics: dict[str, UserMetric] = field(default_factory=dict)

    def add(self, other: Figures) -> None:
        for name in ("emitted", "transferred_streams", "executed_streams", "acked_streams",
                     "failed_streams"):
            mine, theirs = getattr(self, name), getattr(other, name)
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        for key, mean in other.latency_streams.items():
            self.latency_streams.setdefault(key, Mean()).add(mean)
        for name in _SUMS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.complete.add(other.complete)
        self.capacity = max(self.capacity, other.capacity)
        self.executors += other.executors
        for name, metric in other.metrics.items():
            mine_metric = self.metrics.get(name)
            if mine_metric is None:
                self.metrics[name] = metric.copy()
            elif mine_metric.type == metric.type:
                mine_metric.add(metric)

    @property
    def emitted_total(self) -> int:
        return int(sum(self.emitted.values()))

    @property
    def execute_latency_ms(self) -> float:
        return round(self.execute_time / self.executed * 1000, 3) if self.executed else 0.0

    @property
    def complete_latency_ms(self) -> float:
        return self.complete.ms


def _per_source(value: Any, own: str, leaf: Any, leaf_is_map: bool = False
                ) -> dict[GlobalStream, Any]:
    """{GlobalStream: leaf(x)} from a spout's {stream: x} (streams of `own`) or a bolt's
    {component: {stream: x}}: a level whose values are mappings (of leaves that are not
    themselves mappings) is a bolt's."""
    out: dict[GlobalStream, Any] = {}
    for key, inner in _map(value).items():
        nested = isinstance(inner, dict) and (
            not leaf_is_map or all(isinstance(v, dict) for v in inner.values()))
        if nested:
            for stream, x in inner.items():
                out[(str(key), str(stream))] = leaf(x)
        else:
            out[(own, str(key))] = leaf(inner)
    return out


def counts_from(source: Mapping[str, Any], component: str) -> Figures:
    """Figures from one counter dict: a snapshot's top level (all time, with its complete
    latency in "complete_latency") or its "window" (with "latency_total"/"latency_count")."""
    if "latency_total" in source or "latency_count" in source:
        complete = Mean(float(num(source.get("latency_total"))), num(source.get("latency_count")))
    else:
        complete = Mean.from_dict(source.get("complete_latency"))
    return Figures(
        emitted={str(s): num(n) for s, n in _map(source.get("emitted")).items()},
        transferred_streams={str(s): num(n)
                             for s, n in _map(source.get("transferred_streams")).items()},
        executed_streams=_per_source(source.get("executed_streams"), component, num),
        acked_streams=_per_source(source.get("acked_streams"), component, num),
        failed_streams=_per_source(source.get("failed_streams"), component, num),
        latency_streams=_per_source(source.get("latency_streams"), component, Mean.from_dict,
                                    leaf_is_map=True),
        transferred=num(source.get("transferred")), executed=num(source.get("executed")),
        acked=num(source.get("acked")), failed=num(source.get("failed")),
        timed_out=num(source.get("timed_out")), execute_time=num(source.get("execute_time")),
        complete=complete,
    )


def _streams_out(streams: Mapping[GlobalStream, Any], own: str, spout: bool, leaf: Any
                 ) -> dict[str, Any]:
    """The wire shape of per-stream values: a spout's {stream: x}, else {component: {...}}."""
    out: dict[str, Any] = {}
    for (component, stream), x in streams.items():
        if spout and component == own:
            out[stream] = leaf(x)
        else:
            out.setdefault(component, {})[stream] = leaf(x)
    return out


def _figures_out(f: Figures, own: str, spout: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "emitted": dict(f.emitted), "transferred": f.transferred,
        "transferred_streams": dict(f.transferred_streams),
        "executed_streams": _streams_out(f.executed_streams, own, False, lambda n: n),
        **{k: getattr(f, k) for k in _SUMS if k != "transferred"},
    }
    for name in ("acked_streams", "failed_streams", "latency_streams"):
        streams = getattr(f, name)
        if streams:
            leaf = (lambda m: {"total": m.total, "count": m.count}) \
                if name == "latency_streams" else (lambda n: n)
            data[name] = _streams_out(streams, own, spout, leaf)
    return data


_SNAPSHOT_KEYS = {"component", "task", "type", "emitted", "transferred", "transferred_streams",
                  "executed_streams", "executed", "acked", "failed", "timed_out", "execute_time",
                  "complete_latency", "window", "acked_streams", "failed_streams",
                  "latency_streams", "execute_latency", "metrics"}
_WINDOW_KEYS = _SNAPSHOT_KEYS - {"component", "task", "type", "complete_latency", "window",
                                 "execute_latency", "metrics"} | {"latency_total",
                                                                  "latency_count", "seconds"}


@dataclass
class ExecutorSnapshot:
    """One task's figures as its worker reported them (see the module doc for the keys)."""

    component: str
    task: int | None
    kind: str  # "spout", "bolt" or "acker" (the dict's "type")
    totals: Figures  # since the task started
    complete_latency: Histogram
    window: Figures | None = None  # the last 10 minutes, None before the worker kept one
    window_seconds: float = 0.0
    execute_latency: Histogram | None = None
    metrics: dict[str, UserMetric] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    window_extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> ExecutorSnapshot | None:
        """The snapshot, or None when it is not one (no component name)."""
        if not isinstance(data, dict) or not isinstance(data.get("component"), str):
            return None
        component = data["component"]
        task = data.get("task")
        window = data.get("window")
        snapshot = cls(
            component=component,
            task=task if isinstance(task, int) and not isinstance(task, bool) else None,
            kind=str(data.get("type") or "bolt"),
            totals=counts_from(data, component),
            complete_latency=Histogram.from_dict(data.get("complete_latency")),
            execute_latency=Histogram.from_dict(data["execute_latency"])
            if isinstance(data.get("execute_latency"), dict) else None,
            metrics=user_metrics(data.get("metrics")),
            extra={k: v for k, v in data.items() if k not in _SNAPSHOT_KEYS},
        )
        if isinstance(window, dict):
            snapshot.window = counts_from(window, component)
            snapshot.window_seconds = float(num(window.get("seconds")))
            snapshot.window_extra = {k: v for k, v in window.items() if k not in _WINDOW_KEYS}
        return snapshot

    @property
    def spout(self) -> bool:
        return self.kind == "spout"

    @property
    def capacity(self) -> float:
        """Storm's capacity over the last 10 minutes: the share of it spent executing."""
        if self.window is None or self.window_seconds <= 0:
            return 0.0
        return round(self.window.execute_time / self.window_seconds, 3)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"component": self.component, "task": self.task,
                                "type": self.kind, **self.extra,
                                **_figures_out(self.totals, self.component, self.spout),
                                "complete_latency": self.complete_latency.to_dict()}
        if self.execute_latency is not None:
            data["execute_latency"] = self.execute_latency.to_dict()
        if self.metrics:
            data["metrics"] = {name: m.to_dict() for name, m in self.metrics.items()}
        if self.window is not None:
            window = {**self.window_extra,
                      **_figures_out(self.window, self.component, self.spout),
                      "latency_total": self.window.complete.total,
                      "latency_count": self.window.complete.count,
                      "seconds": self.window_seconds}
            data["window"] = window
        return data

    def figures(self, window: str) -> Figures:
        """This executor's figures over WINDOW_10M or ALL_TIME (a copy)."""
        if window == ALL_TIME:
            source: Figures | None = self.totals
        elif window == WINDOW_10M:
            source = self.window
        else:
            raise ValueError(f"an executor reports windows {WINDOW_10M} and {ALL_TIME}, "
                             f"not {window!r}")
        out = Figures()
        if source is not None:
            out.add(source)
        out.capacity, out.executors = self.capacity, 1
        for name, metric in self.metrics.items():
            out.metrics[name] = metric.copy()
        return out


_HEARTBEAT_NUMBERS = ("port", "pid", "time", "uptime", "queued", "parked", "rejected",
                      "dropped", "errors_suppressed", "rss", "sent_bytes", "received_bytes")
_HEARTBEAT_KEYS = {"topology_id", "host", "state", "version", "active", "overloaded", "tasks",
                   "executors", "errors", *_HEARTBEAT_NUMBERS}


@dataclass
class WorkerHeartbeat:
    """A worker's heartbeat (worker.process). Times: "time" is the worker's wall clock (only
    for display: liveness is judged on the observer's clock), "uptime" seconds since start."""

    topology_id: str = ""
    host: str = ""
    port: float = 0
    pid: float = 0
    version: Any = None  # opaque: compared for equality with the assignment's
    time: float = 0
    uptime: float = 0
    state: str = ""
    active: bool = False
    overloaded: bool = False
    tasks: list[int] = field(default_factory=list)
    executors: list[ExecutorSnapshot] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    queued: float = 0
    parked: float = 0
    rejected: float = 0
    dropped: float = 0
    errors_suppressed: float = 0
    rss: float = 0
    sent_bytes: float = 0
    received_bytes: float = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> WorkerHeartbeat:
        """The heartbeat in `data`; anything malformed reads as empty, never raises."""
        data = _map(data)
        executors = [s for s in map(ExecutorSnapshot.from_dict, data.get("executors") or ()
                                    if isinstance(data.get("executors"), list) else ())
                     if s is not None]
        tasks = data.get("tasks")
        errors = data.get("errors")
        return cls(
            topology_id=str(data.get("topology_id") or ""), host=str(data.get("host") or ""),
            version=data.get("version"), state=str(data.get("state") or ""),
            active=data.get("active") is True, overloaded=data.get("overloaded") is True,
            tasks=[t for t in tasks if isinstance(t, int)] if isinstance(tasks, list) else [],
            executors=executors,
            errors=[e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else [],
            **{k: num(data.get(k)) for k in _HEARTBEAT_NUMBERS},
            extra={k: v for k, v in data.items() if k not in _HEARTBEAT_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        data["executors"] = [e.to_dict() for e in self.executors]
        return {**self.extra, **data}

    @property
    def key(self) -> str:
        """The worker's key in the cluster state: "host:port"."""
        return f"{self.host}:{int(self.port)}"


def heartbeats_of(values: Iterable[Any]) -> list[WorkerHeartbeat]:
    """Typed heartbeats from stored ones (dicts or already typed)."""
    return [v if isinstance(v, WorkerHeartbeat) else WorkerHeartbeat.from_dict(v)
            for v in values]


# --- the aggregator -------------------------------------------------------------------------


def component_figures(heartbeats: Iterable[Any], window: str) -> dict[str, Figures]:
    """Figures summed per component (and per stream) over WINDOW_10M or ALL_TIME."""
    out: dict[str, Figures] = {}
    for hb in heartbeats_of(heartbeats):
        for e in hb.executors:
            out.setdefault(e.component, Figures()).add(e.figures(window))
    return out


def aggregate_components(heartbeats: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Totals since start per component, in the shape worker.stats.aggregate_components
    returns: {component: {"type", "tasks", "emitted", "transferred", "executed", "acked",
    "failed", "timed_out", "execute_time", "complete_latency": Histogram}}."""
    out: dict[str, dict[str, Any]] = {}
    for hb in heartbeats_of(heartbeats):
        for e in hb.executors:
            c = out.get(e.component)
            if c is None:
                c = out[e.component] = {
                    "type": e.kind, "tasks": 0, "emitted": 0, "transferred": 0, "executed": 0,
                    "acked": 0, "failed": 0, "timed_out": 0, "execute_time": 0.0,
                    "complete_latency": Histogram()}
            c["tasks"] += 1
            c["emitted"] += e.totals.emitted_total
            for key in _SUMS:
                c[key] += getattr(e.totals, key)
            c["complete_latency"].merge(e.complete_latency)
    return out


# --- windows, checkpoints, sources ----------------------------------------------------------


def _finite(value: Any) -> float | None:
    return None if isinstance(value, bool) or not isinstance(value, (int, float)) \
        or not math.isfinite(value) else value


def _windowing(entries: list[tuple[int | None, dict[str, Any]]]) -> dict[str, Any]:
    """A windowed bolt's tasks as one: the spec, the lowest known watermark (the one the
    component's output waits for), the late tuples summed."""
    marks = [m for _, w in entries if (m := _finite(w.get("watermark"))) is not None]
    specs = sorted({str(w.get("spec")) for _, w in entries if w.get("spec") is not None})
    return {"spec": "; ".join(specs) or None, "watermark": min(marks, default=None),
            "late": int(sum(num(w.get("late")) for _, w in entries)), "tasks": len(entries)}


def _checkpoint(entries: list[tuple[int | None, dict[str, Any]]]) -> dict[str, Any]:
    """The last committed checkpoint among the tasks that report one (highest txid)."""
    _, latest = max(entries, key=lambda e: num(e[1].get("txid")))
    return {"txid": _finite(latest.get("txid")), "time": _finite(latest.get("time")),
            "duration": _finite(latest.get("duration")),
            "failed": int(max(num(c.get("failed")) for _, c in entries))}


def _source(entries: list[tuple[int | None, dict[str, Any]]]) -> dict[str, Any]:
    """A replayable spout's tasks: what each reads and where, and how far behind they are
    in all (None when no task knows)."""
    tasks = [{"task": task, "kind": str(src.get("kind") or ""), "name": str(src.get("name") or ""),
              "offset": src.get("offset"), "behind": _finite(src.get("behind"))}
             for task, src in sorted(entries, key=lambda e: num(e[0]))]
    behind = [t["behind"] for t in tasks if t["behind"] is not None]
    kinds = sorted({str(t["kind"]) for t in tasks if t["kind"]})
    return {"kind": ", ".join(kinds) or None, "behind": sum(behind) if behind else None,
            "tasks": tasks}


PROGRESS = {"windowing": _windowing, "checkpoint": _checkpoint, "source": _source}


def component_progress(heartbeats: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Per component, what its tasks report beyond the counters (JSON-safe): "windowing",
    "checkpoint" and/or "source", each its tasks' as one (see the module doc); a component
    whose tasks report none of them is absent. Malformed values are skipped."""
    found: dict[str, dict[str, list[tuple[int | None, dict[str, Any]]]]] = {}
    for hb in heartbeats_of(heartbeats):
        for e in hb.executors:
            for key in PROGRESS:
                value = e.extra.get(key)
                if isinstance(value, dict):
                    found.setdefault(e.component, {}).setdefault(key, []).append((e.task, value))
    return {cid: {key: PROGRESS[key](entries) for key, entries in kinds.items()}
            for cid, kinds in found.items()}


def last_checkpoint(progress: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """A topology's last committed checkpoint (DESIGN §8: txid, time, duration), from
    `component_progress`; None when it checkpoints nothing."""
    found = [p["checkpoint"] for p in progress.values() if p.get("checkpoint")]
    return max(found, key=lambda c: num(c.get("txid"))) if found else None
