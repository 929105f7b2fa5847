"""`/metrics`: the dashboard's counters and latencies in Prometheus's text format (0.0.4).

Written by hand rather than with prometheus_client. The dashboard does not own these metrics:
it re-exposes, at each scrape, what the workers last reported, so prometheus_client would
only serve as a formatter (a custom Collector building metric families every scrape), for a
runtime dependency the dashboard does not otherwise need; the format is small and stable, and
the tests parse what this writes with prometheus_client's own parser.

Per-task series are labelled {topology, component, task} (plus stream for emitted); per-worker
series {topology, host, port}. Counters are totals since each task started. Complete latency
(spouts) and execute latency are histograms with fixed buckets (LATENCY_BOUNDS), so they can
be summed across tasks (`sum by (le) (rate(..._bucket[1m]))`); a bucket's count errs by at
most one of the workers' ~9%-wide log buckets. Components' own metrics
(`context.register_metric`) are families `squall_user_<name>` (`_total` for counters).
Windowed, stateful and replayable tasks' figures (cluster.records: "windowing",
"checkpoint", "source") are per-task gauges: a watermark, late tuples, the last committed
checkpoint's txid, time and duration, failed checkpoints, and how far a source is behind
(what to alert on when a spout falls behind its log or stream).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from cluster.records import ExecutorSnapshot, Histogram, UserMetric, heartbeats_of, num
from ui.api import View

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
VALUE_BOUNDS = tuple(10.0 ** e for e in range(-6, 13))  # user histograms: any unit

# name -> (type, help)
_FAMILIES: dict[str, tuple[str, str]] = {
    "squall_emitted_total": ("counter", "Tuples emitted, per stream."),
    "squall_transferred_total": ("counter", "Tuples sent to other tasks."),
    "squall_executed_total": ("counter", "Tuples processed by a bolt."),
    "squall_acked_total": ("counter", "Tuples acked (spouts: tuple trees completed)."),
    "squall_failed_total": ("counter", "Tuples failed (spouts: tuple trees failed)."),
    "squall_timed_out_total": ("counter", "Spout tuple trees that timed out."),
    "squall_execute_seconds_total": ("counter", "Time spent in process() or next_tuple()."),
    "squall_execute_latency_seconds": ("histogram", "Time of each process() or next_tuple() "
                                                    "call (only +Inf until workers report "
                                                    "buckets)."),
    "squall_complete_latency_seconds": ("histogram", "Spout tuple tree completion latency."),
    "squall_capacity": ("gauge", "Share of the last 10 minutes spent executing (Storm's "
                                 "capacity)."),
    "squall_window_watermark_seconds": ("gauge", "Event-time watermark of a windowed task."),
    "squall_window_late_tuples": ("gauge", "Tuples a windowed task saw after its watermark "
                                           "(since it started)."),
    "squall_checkpoint_txid": ("gauge", "Transaction id of the last committed checkpoint."),
    "squall_checkpoint_time_seconds": ("gauge", "Unix time the last checkpoint committed."),
    "squall_checkpoint_duration_seconds": ("gauge", "How long the last committed checkpoint "
                                                    "took."),
    "squall_checkpoint_failed": ("gauge", "Checkpoints rolled back (as the task counts them)."),
    "squall_source_behind": ("gauge", "How much of its source a replayable spout task has not "
                                      "read yet (bytes or entries)."),
    "squall_worker_rss_bytes": ("gauge", "Resident memory of a worker process."),
    "squall_worker_uptime_seconds": ("gauge", "Seconds since the worker started."),
    "squall_worker_queued_tuples": ("gauge", "Tuples queued in a worker's bolts."),
    "squall_topology_info": ("gauge", "One per topology, with its id and status."),
    "squall_topology_tasks": ("gauge", "Tasks of a topology."),
    "squall_topology_errors": ("gauge", "Recent errors kept for a component."),
    "squall_supervisors": ("gauge", "Supervisors, alive or lost as the dashboard judges."),
    "squall_slots_total": ("gauge", "Worker slots offered by live supervisors."),
    "squall_slots_used": ("gauge", "Worker slots assigned to topologies."),
}
_KINDS = {"counter": "counter", "gauge": "gauge", "histogram": "histogram"}


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _value(v: float) -> str:
    if isinstance(v, float):
        return "+Inf" if v == math.inf else repr(v)
    return str(int(v))


def user_family(name: str, kind: str) -> str:
    """The Prometheus family of a component's own metric `name`."""
    base = "squall_user_" + re.sub(r"[^a-zA-Z0-9_]", "_", name).strip("_")[:100]
    return base + "_total" if kind == "counter" else base


class _Exposition:
    def __init__(self) -> None:
        self.families: dict[str, tuple[str, str]] = dict(_FAMILIES)
        self.samples: dict[str, list[str]] = {name: [] for name in _FAMILIES}

    def add(self, family: str, labels: dict[str, Any], value: float, suffix: str = "") -> None:
        self.samples[family].append(f"{family}{suffix}{_labels(labels)} {_value(value)}")

    def histogram(self, family: str, labels: dict[str, Any], h: Histogram,
                  bounds: Sequence[float]) -> None:
        for bound, n in zip((*bounds, math.inf), (*h.cumulative(bounds), h.count), strict=True):
            self.add(family, {**labels, "le": _value(float(bound))}, n, "_bucket")
        self.add(family, labels, float(h.total), "_sum")
        self.add(family, labels, h.count, "_count")

    def user(self, name: str, metric: UserMetric, labels: dict[str, Any]) -> None:
        family = user_family(name, metric.type)
        kind = self.families.setdefault(family, (_KINDS[metric.type],
                                                 f"Component metric {name!r}."))[0]
        if kind != metric.type:
            log.debug("ui: metric %r of %s is a %s elsewhere; left out", name, labels, kind)
            return
        if metric.histogram is not None:
            self.histogram(family, labels, metric.histogram, VALUE_BOUNDS)
        else:
            self.samples.setdefault(family, [])
            self.add(family, labels, metric.value)

    def render(self) -> str:
        lines = []
        for name, (kind, doc) in self.families.items():
            if not self.samples.get(name):
                continue
            lines += [f"# HELP {name} {_escape(doc)}", f"# TYPE {name} {kind}",
                      *self.samples[name]]
        return "\n".join(lines) + "\n"


def _executor(out: _Exposition, topology: str, e: ExecutorSnapshot) -> None:
    labels = {"topology": topology, "component": e.component, "task": e.task}
    t = e.totals
    for stream, n in sorted(t.emitted.items()):
        out.add("squall_emitted_total", {**labels, "stream": stream}, n)
    for key in ("transferred", "executed", "acked", "failed", "timed_out"):
        out.add(f"squall_{key}_total", labels, getattr(t, key))
    out.add("squall_execute_seconds_total", labels, float(t.execute_time))
    execute = e.execute_latency
    if execute is None:  # no buckets reported: the whole count under +Inf
        execute = Histogram()
        execute.count, execute.total = int(t.executed), float(t.execute_time)
    out.histogram("squall_execute_latency_seconds", labels, execute, LATENCY_BOUNDS)
    out.add("squall_capacity", labels, float(e.capacity))
    if e.spout:
        out.histogram("squall_complete_latency_seconds", labels, e.complete_latency,
                      LATENCY_BOUNDS)
    for name, metric in sorted(e.metrics.items()):
        out.user(name, metric, labels)
    _progress(out, labels, e.extra)


# (heartbeat field, its key) -> family: the figures windowed, stateful and replayable tasks add
_PROGRESS = {
    ("windowing", "watermark"): "squall_window_watermark_seconds",
    ("windowing", "late"): "squall_window_late_tuples",
    ("checkpoint", "txid"): "squall_checkpoint_txid",
    ("checkpoint", "time"): "squall_checkpoint_time_seconds",
    ("checkpoint", "duration"): "squall_checkpoint_duration_seconds",
    ("checkpoint", "failed"): "squall_checkpoint_failed",
    ("source", "behind"): "squall_source_behind",
}


def _progress(out: _Exposition, labels: dict[str, Any], extra: dict[str, Any]) -> None:
    """A task's windowing/checkpoint/source figures; a value not known (None, malformed) is
    left out rather than written as 0."""
    for (field, key), family in _PROGRESS.items():
        value = extra.get(field)
        figure = value.get(key) if isinstance(value, dict) else None
        if isinstance(figure, (int, float)) and not isinstance(figure, bool) \
                and math.isfinite(figure):
            out.add(family, labels, figure)


def _workers(out: _Exposition, topology: str, beats: Iterable[Any]) -> None:
    for hb in beats:
        labels = {"topology": topology, "host": hb.host, "port": int(hb.port)}
        out.add("squall_worker_rss_bytes", labels, hb.rss)
        out.add("squall_worker_uptime_seconds", labels, float(hb.uptime))
        out.add("squall_worker_queued_tuples", labels, hb.queued)
        for e in hb.executors:
            _executor(out, topology, e)


def render(view: View) -> str:
    """The whole exposition for the cluster as the state describes it."""
    state = view.state
    out = _Exposition()
    lost = view.lost or {}
    supervisors = {**state.supervisor_heartbeats(), **state.supervisors()}
    alive = {sid: info for sid, info in supervisors.items() if sid not in lost}
    for status, n in (("alive", len(alive)), ("lost", len(supervisors) - len(alive))):
        out.add("squall_supervisors", {"status": status}, n)
    out.add("squall_slots_total", {}, sum(len(s.get("ports") or []) for s in alive.values()))
    assignments = state.assignments()
    out.add("squall_slots_used", {}, sum(len(a.get("workers") or []) for a in assignments.values()))
    for tid, meta in sorted(state.topologies().items()):
        name = meta.get("name", tid)
        out.add("squall_topology_info", {"topology": name, "id": tid,
                                         "status": meta.get("status", "")}, 1)
        out.add("squall_topology_tasks", {"topology": name}, int(num(meta.get("num_tasks"))))
        _workers(out, name, heartbeats_of(state.worker_heartbeats(tid).values()))
        for component, errors in sorted(state.errors(tid).items()):
            out.add("squall_topology_errors", {"topology": name, "component": component},
                    len(errors))
    return out.render()
