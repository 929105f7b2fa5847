"""Storm UI's REST responses, computed from the cluster state.

Every function takes the `ClusterState` to read and `now` (wall-clock seconds, to compute
uptimes) and returns a JSON-ready dict with Storm UI's field names, so scripts written against
Storm's `/api/v1/...` keep working. Counts are integers; latencies are milliseconds and
capacity a fraction, both as numbers rounded to 3 decimals (Storm sends them as strings
like "0.123"; `float()` reads both). Fields Storm has but Squall cannot fill (memory and CPU
scheduling, log viewer links) are left out rather than faked; Squall adds a few of its own
("rssBytes", "slots", "mode"), which Storm's clients ignore.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cluster.state import ClusterState
from topology.errors import SquallError
from topology.model import ACKER_COMPONENT
from ui.stats import ALL_TIME, WINDOWS, Figures, component_figures, executors, num, stream_figures


class ApiError(SquallError):
    """A request the API cannot answer; `status` is the HTTP status to send."""

    status = 400


class NotFound(ApiError):
    status = 404


def squall_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("squall")
    except PackageNotFoundError:
        return "unknown"


def pretty_duration(seconds: float | None) -> str:
    """Storm's uptime spelling: "1d 2h 3m 4s", "10m 0s", "5s"."""
    if seconds is None:
        return ""
    s = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size or parts:
            parts.append(f"{s // size}{unit}")
            s %= size
    parts.append(f"{s}s")
    return " ".join(parts)


def _uptime(started: Any, now: float) -> dict[str, Any]:
    secs = max(0, int(now - started)) if num(started) > 0 else None
    return {"uptime": pretty_duration(secs), "uptimeSeconds": secs}


# --- cluster ------------------------------------------------------------------------------------


def _workers_of(assignment: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    workers = (assignment or {}).get("workers") or []
    return [w for w in workers if isinstance(w, dict)]


def nimbus_summary(state: ClusterState, now: float) -> dict[str, Any]:
    leader = state.leader()
    nimbuses = []
    for nid, info in sorted(state.nimbuses().items()):
        up = _uptime(info.get("started"), now)
        nimbuses.append({
            "id": nid, "host": info.get("host"), "port": info.get("port"),
            "status": "Leader" if nid == leader else "Not a Leader",
            "version": info.get("version", ""),
            "nimbusUpTime": up["uptime"], "nimbusUpTimeSeconds": up["uptimeSeconds"],
        })
    return {"nimbuses": nimbuses}


def supervisor_summary(state: ClusterState, now: float) -> dict[str, Any]:
    used: dict[str, list[dict[str, Any]]] = {}
    metas = state.topologies()
    for tid, assignment in state.assignments().items():
        name = (metas.get(tid) or {}).get("name", tid)
        for w in _workers_of(assignment):
            used.setdefault(str(w.get("supervisor")), []).append(
                {"port": w.get("port"), "topologyId": tid, "topologyName": name})
    supervisors = []
    for sid, info in sorted(state.supervisors().items()):
        ports = [p for p in info.get("ports") or [] if isinstance(p, int)]
        busy = {s["port"]: s for s in used.get(sid, [])}
        slots = [busy.get(p, {"port": p, "topologyId": None, "topologyName": None})
                 for p in sorted(set(ports) | set(busy))]
        supervisors.append({
            "id": sid, "host": info.get("hostname") or info.get("host"),
            **_uptime(info.get("started"), now),
            "slotsTotal": len(ports), "slotsUsed": len(busy),
            "slotsFree": max(0, len(ports) - len(busy)),
            "version": squall_version(), "slots": slots,
        })
    return {"supervisors": supervisors, "schedulerDisplayResource": False}


def cluster_summary(state: ClusterState, now: float, mode: str = "cluster") -> dict[str, Any]:
    sups = supervisor_summary(state, now)["supervisors"]
    metas = state.topologies()
    leader, nimbuses = state.leader(), state.nimbuses()
    up = _uptime((nimbuses.get(leader or "") or {}).get("started"), now)
    tasks = sum(int(num(m.get("num_tasks"))) for m in metas.values())
    total = sum(s["slotsTotal"] for s in sups)
    used = sum(s["slotsUsed"] for s in sups)
    return {
        "stormVersion": squall_version(),
        "supervisors": len(sups), "topologies": len(metas),
        "slotsTotal": total, "slotsUsed": used, "slotsFree": max(0, total - used),
        "executorsTotal": tasks, "tasksTotal": tasks,
        "nimbusUptime": up["uptime"], "nimbusUptimeSeconds": up["uptimeSeconds"],
        "leader": leader, "mode": mode, "schedulerDisplayResource": False,
    }


# --- topologies ---------------------------------------------------------------------------------


def _summary(meta: Mapping[str, Any], assignment: Mapping[str, Any] | None,
             now: float) -> dict[str, Any]:
    tasks = int(num(meta.get("num_tasks")))
    workers = _workers_of(assignment)
    return {
        "id": meta.get("id"), "name": meta.get("name"), "owner": meta.get("owner", ""),
        "status": meta.get("status", ""), **_uptime(meta.get("submitted"), now),
        "tasksTotal": tasks, "executorsTotal": tasks,
        "workersTotal": len(workers) if workers else int(num(meta.get("num_workers"))),
        "replicationCount": 1, "schedulerInfo": "",
    }


def topology_summary(state: ClusterState, now: float) -> dict[str, Any]:
    assignments = state.assignments()
    metas = sorted(state.topologies().items(), key=lambda kv: str(kv[1].get("name")))
    return {"topologies": [_summary(m, assignments.get(tid), now) for tid, m in metas],
            "schedulerDisplayResource": False}


def check_window(window: str | None) -> str:
    window = ALL_TIME if window is None else window
    if window not in WINDOWS:
        raise ApiError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    return window


def _meta(state: ClusterState, topology_id: str) -> dict[str, Any]:
    meta = state.topology(topology_id)
    if meta is None:
        raise NotFound(f"no topology with id {topology_id!r}")
    return meta


def _last_error(errors: list[dict[str, Any]], now: float) -> dict[str, Any]:
    if not errors:
        return {"lastError": "", "errorHost": "", "errorPort": "", "errorTime": None,
                "errorLapsedSecs": None}
    e = errors[-1]
    return {"lastError": str(e.get("error", "")), "errorHost": e.get("host", ""),
            "errorPort": e.get("port", ""), "errorTime": e.get("time"),
            "errorLapsedSecs": max(0, int(now - num(e.get("time"))))}


def _stats(f: Figures) -> dict[str, Any]:
    return {"emitted": f.emitted_total, "transferred": int(f.transferred),
            "acked": int(f.acked), "failed": int(f.failed)}


def _bolt_stats(f: Figures) -> dict[str, Any]:
    return {**_stats(f), "executed": int(f.executed), "executeLatency": f.execute_latency_ms,
            "processLatency": f.execute_latency_ms, "capacity": f.capacity}


def _components(meta: Mapping[str, Any], sys: bool) -> dict[str, Any]:
    """The topology's components; with `sys`, the ackers too (as a bolt, as Storm shows it)."""
    components = dict(meta.get("components") or {})
    ackers = meta.get("acker_tasks") or []
    if sys and ackers:
        components[ACKER_COMPONENT] = {"type": "bolt", "parallelism": len(ackers),
                                       "tasks": ackers, "inputs": []}
    return components


def _component_rows(meta: Mapping[str, Any], figures: dict[str, Figures],
                    errors: dict[str, list[dict[str, Any]]], now: float,
                    sys: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spouts, bolts = [], []
    for cid, spec in sorted(_components(meta, sys).items()):
        f = figures.get(cid, Figures())
        common = {"executors": int(num(spec.get("parallelism"))) or len(spec.get("tasks", [])),
                  "tasks": len(spec.get("tasks") or []), **_last_error(errors.get(cid, []), now)}
        if spec.get("type") == "spout":
            spouts.append({"spoutId": cid, "encodedSpoutId": cid, **_stats(f),
                           "completeLatency": f.complete_latency_ms, **common})
        else:
            bolts.append({"boltId": cid, "encodedBoltId": cid, **_bolt_stats(f), **common})
    return spouts, bolts


def _topology_stats(meta: Mapping[str, Any], heartbeats: list[dict[str, Any]]) -> list[dict]:
    out = []
    for window, pretty in WINDOWS.items():
        figures = component_figures(heartbeats, window)
        total = Figures()
        spout_total = Figures()
        for cid, f in figures.items():
            if cid == ACKER_COMPONENT:
                continue
            total.add(f)
            if (meta.get("components") or {}).get(cid, {}).get("type") == "spout":
                spout_total.add(f)
        out.append({"window": window, "windowPretty": pretty, **_stats(total),
                    "acked": int(spout_total.acked), "failed": int(spout_total.failed),
                    "completeLatency": spout_total.complete_latency_ms})
    return out


def _worker_rows(meta: Mapping[str, Any], assignment: Mapping[str, Any] | None,
                 heartbeats: dict[str, dict[str, Any]], now: float) -> list[dict[str, Any]]:
    task_component = {t: cid for cid, spec in _components(meta, sys=True).items()
                      for t in spec.get("tasks") or []}
    rows = []
    for w in _workers_of(assignment):
        hb = heartbeats.get(f"{w.get('host')}:{w.get('port')}", {})
        counts: dict[str, int] = {}
        for t in w.get("tasks") or []:
            cid = task_component.get(t, "?")
            counts[cid] = counts.get(cid, 0) + 1
        uptime = num(hb.get("uptime")) if hb else None
        rows.append({
            "topologyId": meta.get("id"), "topologyName": meta.get("name"),
            "host": w.get("host"), "port": w.get("port"), "supervisorId": w.get("supervisor"),
            "uptime": pretty_duration(uptime), "uptimeSeconds": None if uptime is None
            else int(uptime), "executorsTotal": len(w.get("tasks") or []),
            "componentNumTasks": counts, "rssBytes": int(num(hb.get("rss"))),
            "queued": int(num(hb.get("queued"))), "overloaded": bool(hb.get("overloaded")),
            "heartbeatLapsedSecs": max(0, int(now - num(hb.get("time")))) if hb else None,
        })
    return rows


def topology_page(state: ClusterState, topology_id: str, now: float,
                  window: str | None = None, sys: bool = False) -> dict[str, Any]:
    """GET /api/v1/topology/{id}?window=600|:all-time&sys=true|false"""
    window = check_window(window)
    meta = _meta(state, topology_id)
    assignment = state.assignment(topology_id)
    beats = state.worker_heartbeats(topology_id)
    errors = state.errors(topology_id)
    spouts, bolts = _component_rows(meta, component_figures(beats.values(), window), errors,
                                    now, sys)
    conf = meta.get("conf") or {}
    return {
        **_summary(meta, assignment, now),
        "window": window, "windowHint": WINDOWS[window],
        "msgTimeout": conf.get("topology.message.timeout.secs", 30),
        "topologyStats": _topology_stats(meta, list(beats.values())),
        "spouts": spouts, "bolts": bolts,
        "workers": _worker_rows(meta, assignment, beats, now),
        "recentErrors": _recent_errors(errors, now),
        "configuration": conf,
    }


def _recent_errors(errors: dict[str, list[dict[str, Any]]], now: float,
                   limit: int = 10) -> list[dict[str, Any]]:
    """The newest errors of every component (Squall's own field), newest first."""
    rows = [{"component": cid, **e} for cid, errs in errors.items()
            for e in _component_errors(errs, now)]
    return sorted(rows, key=lambda e: num(e["time"]), reverse=True)[:limit]


def _component_errors(errors: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    return [{"time": e.get("time"), "errorHost": e.get("host", ""),
             "errorPort": e.get("port", ""), "error": str(e.get("error", "")),
             "errorTask": e.get("task"),
             "errorLapsedSecs": max(0, int(now - num(e.get("time"))))}
            for e in reversed(errors)]  # newest first, as Storm shows them


def _executor_rows(beats: dict[str, dict[str, Any]], component: str, window: str,
                   spout: bool) -> list[dict[str, Any]]:
    from ui.stats import executor_figures

    rows = []
    for hb, e in executors(beats.values()):
        if e["component"] != component:
            continue
        f = executor_figures(e, window)
        uptime = num(hb.get("uptime"))
        row = {"id": f"[{e.get('task')}-{e.get('task')}]", "task": e.get("task"),
               "host": hb.get("host"), "port": hb.get("port"),
               "uptime": pretty_duration(uptime), "uptimeSeconds": int(uptime), **_stats(f)}
        row.update({"completeLatency": f.complete_latency_ms} if spout else _bolt_stats(f))
        rows.append(row)
    return sorted(rows, key=lambda r: num(r["task"]))


def component_page(state: ClusterState, topology_id: str, component: str, now: float,
                   window: str | None = None) -> dict[str, Any]:
    """GET /api/v1/topology/{id}/component/{component}?window=600|:all-time"""
    window = check_window(window)
    meta = _meta(state, topology_id)
    spec = _components(meta, sys=True).get(component)
    if spec is None:
        raise NotFound(f"topology {meta.get('name')!r} has no component {component!r}")
    beats = state.worker_heartbeats(topology_id)
    errors = state.errors(topology_id, component).get(component, [])
    spout = spec.get("type") == "spout"
    stats = []
    for w, pretty in WINDOWS.items():
        f = component_figures(beats.values(), w).get(component, Figures())
        row = {"window": w, "windowPretty": pretty, **_stats(f)}
        row.update({"completeLatency": f.complete_latency_ms} if spout else _bolt_stats(f))
        stats.append(row)
    streams = stream_figures(beats.values(), component, window)
    outputs = [{"stream": s, "emitted": int(n),
                "transferred": int(streams.transferred_streams.get(s, 0))}
               for s, n in sorted(streams.emitted.items())]
    return {
        "id": component, "name": meta.get("name"), "topologyId": meta.get("id"),
        "encodedTopologyId": meta.get("id"), "encodedId": component,
        "componentType": "spout" if spout else "bolt",
        "topologyStatus": meta.get("status", ""),
        "window": window, "windowHint": WINDOWS[window],
        "executors": int(num(spec.get("parallelism"))), "tasks": len(spec.get("tasks") or []),
        "spoutSummary" if spout else "boltStats": stats,
        "outputStats": outputs,
        "inputStats": [{"component": i.get("source"), "stream": i.get("stream"),
                        "grouping": i.get("grouping"), "fields": i.get("fields"),
                        "executed": int(streams.executed_streams.get(
                            (str(i.get("source")), str(i.get("stream"))), 0))}
                       for i in spec.get("inputs") or []],
        "executorStats": _executor_rows(beats, component, window, spout),
        "componentErrors": _component_errors(errors, now),
    }
