"""`/metrics`: the dashboard's counters and latencies in Prometheus's text format (0.0.4).

Written by hand (a few dozen lines) rather than with prometheus_client, so the dashboard
needs no extra dependency; the tests parse it with prometheus_client's own parser.
Per-task series are labelled {topology, component, task} (plus stream for emitted);
per-worker series {topology, host, port}. Counters are totals since each task started.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cluster.state import ClusterState
from ui.stats import capacity, executors, num
from worker.stats import Histogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# name -> (type, help)
_FAMILIES: dict[str, tuple[str, str]] = {
    "squall_emitted_total": ("counter", "Tuples emitted, per stream."),
    "squall_transferred_total": ("counter", "Tuples sent to other tasks."),
    "squall_executed_total": ("counter", "Tuples processed by a bolt."),
    "squall_acked_total": ("counter", "Tuples acked (spouts: tuple trees completed)."),
    "squall_failed_total": ("counter", "Tuples failed (spouts: tuple trees failed)."),
    "squall_timed_out_total": ("counter", "Spout tuple trees that timed out."),
    "squall_execute_seconds_total": ("counter", "Time spent in process() or next_tuple()."),
    "squall_execute_latency_seconds": ("gauge", "Mean execute latency since the task started."),
    "squall_complete_latency_seconds": ("summary", "Spout tuple tree completion latency."),
    "squall_capacity": ("gauge", "Share of the last 10 minutes spent executing (Storm's "
                                 "capacity)."),
    "squall_worker_rss_bytes": ("gauge", "Resident memory of a worker process."),
    "squall_worker_uptime_seconds": ("gauge", "Seconds since the worker started."),
    "squall_worker_queued_tuples": ("gauge", "Tuples queued in a worker's bolts."),
    "squall_topology_info": ("gauge", "One per topology, with its id and status."),
    "squall_topology_tasks": ("gauge", "Tasks of a topology."),
    "squall_topology_errors": ("gauge", "Recent errors kept for a component."),
    "squall_supervisors": ("gauge", "Registered supervisors."),
    "squall_slots_total": ("gauge", "Worker slots offered by supervisors."),
    "squall_slots_used": ("gauge", "Worker slots assigned to topologies."),
}


def _escape(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, Any]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _value(v: float) -> str:
    return repr(float(v)) if isinstance(v, float) else str(int(v))


class _Exposition:
    def __init__(self) -> None:
        self.samples: dict[str, list[str]] = {name: [] for name in _FAMILIES}

    def add(self, family: str, labels: dict[str, Any], value: float, suffix: str = "") -> None:
        self.samples[family].append(f"{family}{suffix}{_labels(labels)} {_value(value)}")

    def render(self) -> str:
        lines = []
        for name, (kind, doc) in _FAMILIES.items():
            if not self.samples[name]:
                continue
            lines += [f"# HELP {name} {doc}", f"# TYPE {name} {kind}", *self.samples[name]]
        return "\n".join(lines) + "\n"


def _executor_samples(out: _Exposition, topology: str, beats: Iterable[dict[str, Any]]) -> None:
    for _, e in executors(beats):
        labels = {"topology": topology, "component": e["component"], "task": e.get("task")}
        raw = e.get("emitted")
        emitted: dict[str, Any] = raw if isinstance(raw, dict) else {}
        for stream, n in sorted(emitted.items()):
            out.add("squall_emitted_total", {**labels, "stream": stream}, num(n))
        for key in ("transferred", "executed", "acked", "failed", "timed_out"):
            out.add(f"squall_{key}_total", labels, num(e.get(key)))
        execute_time = float(num(e.get("execute_time")))
        out.add("squall_execute_seconds_total", labels, execute_time)
        executed = num(e.get("executed"))
        out.add("squall_execute_latency_seconds", labels,
                execute_time / executed if executed else 0.0)
        out.add("squall_capacity", labels, float(capacity(e)))
        if e.get("type") == "spout" and isinstance(e.get("complete_latency"), dict):
            h = Histogram.from_dict(e["complete_latency"])
            for q in (0.5, 0.99):
                out.add("squall_complete_latency_seconds", {**labels, "quantile": q},
                        float(h.percentile(q * 100) or 0.0))
            out.add("squall_complete_latency_seconds", labels, float(h.total), "_sum")
            out.add("squall_complete_latency_seconds", labels, h.count, "_count")


def render(state: ClusterState, now: float) -> str:
    """The whole exposition for the cluster as `state` describes it."""
    out = _Exposition()
    supervisors = state.supervisors()
    assignments = state.assignments()
    out.add("squall_supervisors", {}, len(supervisors))
    out.add("squall_slots_total", {}, sum(len(s.get("ports") or []) for s in supervisors.values()))
    out.add("squall_slots_used", {}, sum(len(a.get("workers") or []) for a in assignments.values()))
    for tid, meta in sorted(state.topologies().items()):
        name = meta.get("name", tid)
        out.add("squall_topology_info", {"topology": name, "id": tid,
                                         "status": meta.get("status", "")}, 1)
        out.add("squall_topology_tasks", {"topology": name}, int(num(meta.get("num_tasks"))))
        beats = state.worker_heartbeats(tid)
        _executor_samples(out, name, beats.values())
        for hb in beats.values():
            labels = {"topology": name, "host": hb.get("host"), "port": hb.get("port")}
            out.add("squall_worker_rss_bytes", labels, num(hb.get("rss")))
            out.add("squall_worker_uptime_seconds", labels, float(num(hb.get("uptime"))))
            out.add("squall_worker_queued_tuples", labels, num(hb.get("queued")))
        for component, errors in sorted(state.errors(tid).items()):
            out.add("squall_topology_errors", {"topology": name, "component": component},
                    len(errors))
    return out.render()
