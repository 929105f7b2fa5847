"""Storm UI's REST responses about components: one component's page, every component's
figures per stream (`/metrics`), and the graph in Storm's shape (`/visualization`).

Per-stream acked, failed and latency (a bolt's per input stream, a spout's per output stream)
come from what the workers report (cluster.records: "acked_streams", "failed_streams",
"latency_streams"); a worker that does not report them yet counts as 0. A component page also
has its tasks' "windowing", "checkpoint" and "source" as one (cluster.records
.component_progress; null when its tasks report none), and each executor row its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from cluster.records import (
    ALL_TIME,
    PROGRESS,
    WINDOW_10M,
    WINDOWS,
    Figures,
    Mean,
    component_progress,
    heartbeats_of,
    num,
)
from ui.api import (
    NotFound,
    View,
    bolt_fields,
    check_window,
    components,
    error_fields,
    figures,
    pretty_duration,
    stats_fields,
    topology_meta,
    worker_links,
)
from ui.stats import LONG_WINDOWS


def metrics_rows(f: Figures) -> list[dict[str, Any]]:
    """A component's own metrics (context.register_metric), summed over its tasks."""
    rows = []
    for name, m in sorted(f.metrics.items()):
        row: dict[str, Any] = {"name": name, "type": m.type}
        if m.histogram is not None:
            h = m.histogram
            row.update(count=h.count, sum=h.total, mean=h.mean(),
                       p50=h.percentile(50), p99=h.percentile(99))
        else:
            row["value"] = m.value
            if m.type == "gauge":
                row.update(min=m.low, max=m.high)
        rows.append(row)
    return rows


def _latency(streams: Mapping[tuple[str, str], Mean], key: tuple[str, str]) -> float:
    mean = streams.get(key)
    return mean.ms if mean is not None else 0.0


def _window_rows(view: View, tid: str, beats: Any, component: str,
                 spout: bool) -> list[dict[str, Any]]:
    rows = []
    for w, pretty in WINDOWS.items():
        f = figures(view, tid, beats, w).get(component, Figures())
        row = {"window": w, "windowPretty": pretty, **stats_fields(f)}
        row.update({"completeLatency": f.complete_latency_ms} if spout else bolt_fields(f))
        rows.append(row)
    return rows


def _outputs(f: Figures, component: str, spout: bool) -> list[dict[str, Any]]:
    rows = []
    for s, n in sorted(f.emitted.items()):
        row: dict[str, Any] = {"stream": s, "emitted": int(n),
                               "transferred": int(f.transferred_streams.get(s, 0))}
        if spout:
            key = (component, s)
            row.update(completeLatency=_latency(f.latency_streams, key),
                       acked=int(f.acked_streams.get(key, 0)),
                       failed=int(f.failed_streams.get(key, 0)))
        rows.append(row)
    return rows


def _inputs(f: Figures, spec: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for i in spec.get("inputs") or []:
        key = (str(i.get("source")), str(i.get("stream", "default")))
        latency = _latency(f.latency_streams, key)
        rows.append({"component": key[0], "encodedComponentId": key[0], "stream": key[1],
                     "grouping": i.get("grouping"), "fields": i.get("fields"),
                     "executed": int(f.executed_streams.get(key, 0)),
                     "acked": int(f.acked_streams.get(key, 0)),
                     "failed": int(f.failed_streams.get(key, 0)),
                     "executeLatency": latency, "processLatency": latency})
    return rows


def _executor_rows(view: View, beats: Any, component: str, window: str, spout: bool,
                   links: Mapping[tuple[str, int], str | None]) -> list[dict[str, Any]]:
    """One row per task. A task reports its last 10 minutes and all time: the longer windows
    show its all-time figures."""
    own = window if window not in LONG_WINDOWS else ALL_TIME
    rows = []
    for hb in beats:
        for e in hb.executors:
            if e.component != component:
                continue
            f = e.figures(own)
            row = {"id": f"[{e.task}-{e.task}]", "task": e.task, "host": hb.host,
                   "port": int(hb.port), "uptime": pretty_duration(hb.uptime),
                   "uptimeSeconds": int(hb.uptime), **stats_fields(f),
                   "workerLogLink": links.get((hb.host, int(hb.port))),
                   "metrics": metrics_rows(f),
                   **{key: e.extra[key] for key in PROGRESS if isinstance(e.extra.get(key), dict)}}
            row.update({"completeLatency": f.complete_latency_ms} if spout else bolt_fields(f))
            rows.append(row)
    return sorted(rows, key=lambda r: num(r["task"]))


def component_page(view: View, topology_id: str, component: str,
                   window: str | None = None) -> dict[str, Any]:
    """GET /api/v1/topology/{id}/component/{component}?window=..."""
    window = check_window(window)
    state = view.state
    meta = topology_meta(state, topology_id)
    spec = components(meta, sys=True).get(component)
    if spec is None:
        raise NotFound(f"topology {meta.get('name')!r} has no component {component!r}")
    beats = heartbeats_of(state.worker_heartbeats(topology_id).values())
    errors = state.errors(topology_id, component).get(component, [])
    links = worker_links(view, topology_id)
    spout = spec.get("type") == "spout"
    f = figures(view, topology_id, beats, window).get(component, Figures())
    conf = meta.get("conf") or {}
    progress = component_progress(beats).get(component) or {}
    return {
        "id": component, "name": meta.get("name"), "topologyId": meta.get("id"),
        "encodedTopologyId": meta.get("id"), "encodedId": component,
        "user": meta.get("owner", ""), "componentType": "spout" if spout else "bolt",
        "topologyStatus": meta.get("status", ""),
        "window": window, "windowHint": WINDOWS[window],
        "debug": bool(conf.get("topology.debug")),
        "executors": int(num(spec.get("parallelism"))), "tasks": len(spec.get("tasks") or []),
        "spoutSummary" if spout else "boltStats": _window_rows(view, topology_id, beats,
                                                               component, spout),
        "outputStats": _outputs(f, component, spout),
        "inputStats": _inputs(f, spec),
        "executorStats": _executor_rows(view, beats, component, window, spout, links),
        "componentErrors": [error_fields(e, view.now, links) for e in reversed(errors)],
        "metrics": metrics_rows(f),
        **{key: progress.get(key) for key in PROGRESS},  # windowing, checkpoint, source
        "schedulerDisplayResource": False, "profilingAndDebuggingCapable": False,
    }


# --- every component per stream ---------------------------------------------------------------


def _values(streams: Mapping[Any, Any], bolt: bool, ms: bool = False) -> list[dict[str, Any]]:
    rows = []
    for key, v in sorted(streams.items()):
        value = f"{v.ms:.3f}" if ms else int(v)
        if bolt:
            rows.append({"component_id": key[0], "stream_id": key[1], "value": value})
        else:
            rows.append({"stream_id": key[1] if isinstance(key, tuple) else key, "value": value})
    return rows


def topology_metrics(view: View, topology_id: str, window: str | None = None,
                     sys: bool = False) -> dict[str, Any]:
    """GET /api/v1/topology/{id}/metrics?window=&sys=: per component, per stream."""
    window = check_window(window)
    meta = topology_meta(view.state, topology_id)
    beats = heartbeats_of(view.state.worker_heartbeats(topology_id).values())
    figs = figures(view, topology_id, beats, window)
    spouts, bolts = [], []
    for cid, spec in sorted(components(meta, sys).items()):
        f = figs.get(cid, Figures())
        common = {"id": cid, "emitted": _values(f.emitted, False),
                  "transferred": _values(f.transferred_streams, False)}
        if spec.get("type") == "spout":
            spouts.append({**common, "acked": _values(f.acked_streams, False),
                           "failed": _values(f.failed_streams, False),
                           "complete_ms_avg": _values(f.latency_streams, False, ms=True)})
        else:
            latencies = {k: f.latency_streams.get(k, Mean())
                         for k in {*f.executed_streams, *f.latency_streams}}
            bolts.append({**common, "acked": _values(f.acked_streams, True),
                          "failed": _values(f.failed_streams, True),
                          "process_ms_avg": _values(latencies, True, ms=True),
                          "executed": _values(f.executed_streams, True),
                          "executed_ms_avg": _values(latencies, True, ms=True)})
    return {"window": window, "window-hint": WINDOWS[window], "windowHint": WINDOWS[window],
            "spouts": spouts, "bolts": bolts}


# --- the graph in Storm's shape -------------------------------------------------------------------


def sanitize_stream(name: str) -> str:
    """Storm UI's `sanitizeStreamName`: a stream id usable as an HTML id."""
    text = name if re.match(r"[A-Za-z]", name) else "\\s" + name
    return re.sub(r"[^A-Za-z_\-:.]", "_", text)


def visualization(view: View, topology_id: str, window: str | None = None,
                  sys: bool = False) -> dict[str, Any]:
    """GET /api/v1/topology/{id}/visualization: Storm UI's graph data, keyed by component
    (":type", ":capacity", ":latency", ":transferred", ":stats" per executor, ":link",
    ":inputs"); Squall's own graph with live rates is /live."""
    window = check_window(window)
    meta = topology_meta(view.state, topology_id)
    beats = heartbeats_of(view.state.worker_heartbeats(topology_id).values())
    figs = figures(view, topology_id, beats, window)
    out: dict[str, Any] = {}
    for cid, spec in sorted(components(meta, sys).items()):
        f = figs.get(cid, Figures())
        spout = spec.get("type") == "spout"
        stats = [{":host": hb.host, ":port": int(hb.port), ":uptime_secs": int(hb.uptime),
                  ":transferred": {w: {sanitize_stream(s): int(n)
                                       for s, n in e.figures(w).transferred_streams.items()}
                                   for w in (WINDOW_10M, ALL_TIME)}}
                 for hb in beats for e in hb.executors if e.component == cid]
        out[cid] = {
            ":type": "spout" if spout else "bolt",
            ":capacity": 0 if spout else f.capacity,
            ":latency": f.complete_latency_ms if spout else f.execute_latency_ms,
            ":transferred": int(f.transferred), ":stats": stats,
            ":link": f"/#/topology/{quote(topology_id, safe='')}/component/"
                     f"{quote(cid, safe='')}",
            ":inputs": [{":component": i.get("source"), ":stream": i.get("stream", "default"),
                         ":sani-stream": sanitize_stream(str(i.get("stream", "default"))),
                         ":grouping": i.get("grouping")} for i in spec.get("inputs") or []],
        }
    return out
