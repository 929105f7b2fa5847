"""Storm UI's REST responses for the cluster and its topologies, from the cluster state.

Every function takes a `View` (the state to read, `now` in wall-clock seconds for uptimes,
and what the dashboard itself keeps: the long windows, its verdict on supervisors) and
returns a JSON-ready dict with Storm UI's field names, so scripts written against Storm's
`/api/v1/...` keep working. Counts are integers; latencies are milliseconds and capacity a
fraction, both as numbers rounded to 3 decimals (Storm sends them as strings like "0.123";
`float()` reads both). Fields Storm has but Squall cannot fill (memory and CPU scheduling)
are left out rather than faked; Squall adds a few of its own ("rssBytes", "slots", "mode",
"status" of supervisors, "errorTraceback", a topology's last committed "checkpoint", a
spout's replayable "source", a windowed bolt's "windowing"), which Storm's clients ignore.
Component pages, per-stream metrics and the graph are in ui.components.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cluster.records import (
    ALL_TIME,
    WINDOW_10M,
    WINDOWS,
    Figures,
    WorkerHeartbeat,
    component_figures,
    component_progress,
    heartbeats_of,
    last_checkpoint,
    num,
)
from cluster.state import ClusterState
from topology.errors import SquallError
from topology.model import ACKER_COMPONENT
from ui.stats import LONG_WINDOWS, LongWindows


class ApiError(SquallError):
    """A request the API cannot answer; `status` is the HTTP status to send."""

    status = 400


class NotFound(ApiError):
    status = 404


@dataclass
class View:
    """What one request reads: the state, the time, and the dashboard's own observations."""

    state: ClusterState
    now: float
    windows: LongWindows | None = None  # the 3 h and 1 day windows (None: shown as all-time)
    lost: Mapping[str, float] | None = None  # supervisor id -> seconds silent, as judged
    mode: str = "cluster"


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


def check_window(window: str | None) -> str:
    window = ALL_TIME if window is None else window
    if window not in WINDOWS:
        raise ApiError(f"window must be one of {', '.join(WINDOWS)}, got {window!r}")
    return window


def workers_of(assignment: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    workers = (assignment or {}).get("workers") or []
    return [w for w in workers if isinstance(w, dict)]


def figures(view: View, topology_id: str, beats: list[WorkerHeartbeat],
            window: str) -> dict[str, Figures]:
    """Per-component figures of a topology over any of Storm's windows."""
    if window not in LONG_WINDOWS:
        return component_figures(beats, window)
    if view.windows is None:
        return component_figures(beats, ALL_TIME)
    view.windows.add(topology_id, view.now, beats)  # a look now: the figures are current
    out = view.windows.figures(topology_id, window, view.now)
    recent = component_figures(beats, WINDOW_10M)
    for cid, f in out.items():
        f.capacity = recent[cid].capacity if cid in recent else 0.0
        f.executors = recent[cid].executors if cid in recent else 0
        f.metrics = recent[cid].metrics if cid in recent else {}
    return out


# --- supervisors and log links ------------------------------------------------------------------


def supervisor_infos(state: ClusterState) -> dict[str, dict[str, Any]]:
    """Every supervisor registered or with a heartbeat record: id -> its info (the
    registration's, else the heartbeat's, which carries the same fields)."""
    beats = state.supervisor_heartbeats()
    registered = state.supervisors()
    return {sid: dict(registered.get(sid) or beats.get(sid) or {})
            for sid in sorted(set(registered) | set(beats))}


def log_link(info: Mapping[str, Any] | None, topology_id: str, port: Any) -> str | None:
    """The worker's log on its supervisor's log server, or None when it serves none."""
    info = info or {}
    lv = info.get("logviewer_port")
    host = info.get("host")
    if isinstance(lv, bool) or not isinstance(lv, int) or not 0 < lv < 65536 or not host:
        return None
    host = f"[{host}]" if ":" in str(host) else str(host)
    target = quote(f"{topology_id}/{int(num(port))}/worker.log", safe="/")
    return f"http://{host}:{lv}/api/v1/log?file={target}"


def worker_links(view: View, topology_id: str) -> dict[tuple[str, int], str | None]:
    """(host, port) -> log link of every worker of a topology's assignment."""
    infos = supervisor_infos(view.state)
    return {(str(w.get("host")), int(num(w.get("port")))):
            log_link(infos.get(str(w.get("supervisor"))), topology_id, w.get("port"))
            for w in workers_of(view.state.assignment(topology_id))}


# --- cluster ------------------------------------------------------------------------------------


def nimbus_summary(view: View) -> dict[str, Any]:
    state, now = view.state, view.now
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


def supervisor_summary(view: View) -> dict[str, Any]:
    """Every supervisor registered or with a heartbeat record, "alive" or "lost" as the
    dashboard judges it (lost ones stay listed until nimbus forgets them)."""
    state, now = view.state, view.now
    used: dict[str, list[dict[str, Any]]] = {}
    metas = state.topologies()
    for tid, assignment in state.assignments().items():
        name = (metas.get(tid) or {}).get("name", tid)
        for w in workers_of(assignment):
            used.setdefault(str(w.get("supervisor")), []).append(
                {"port": w.get("port"), "topologyId": tid, "topologyName": name})
    lost = view.lost or {}
    supervisors = []
    for sid, info in supervisor_infos(state).items():
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
            "status": "lost" if sid in lost else "alive",
            "silentSecs": round(lost[sid], 1) if sid in lost else None,
            "logviewerPort": info.get("logviewer_port"),
        })
    return {"supervisors": supervisors, "schedulerDisplayResource": False}


def cluster_summary(view: View) -> dict[str, Any]:
    sups = supervisor_summary(view)["supervisors"]
    alive = [s for s in sups if s["status"] == "alive"]
    state = view.state
    metas = state.topologies()
    leader, nimbuses = state.leader(), state.nimbuses()
    up = _uptime((nimbuses.get(leader or "") or {}).get("started"), view.now)
    tasks = sum(int(num(m.get("num_tasks"))) for m in metas.values())
    total = sum(s["slotsTotal"] for s in alive)
    used = sum(s["slotsUsed"] for s in sups)
    return {
        "stormVersion": squall_version(),
        "supervisors": len(alive), "supervisorsLost": len(sups) - len(alive),
        "topologies": len(metas),
        "slotsTotal": total, "slotsUsed": used, "slotsFree": max(0, total - used),
        "executorsTotal": tasks, "tasksTotal": tasks,
        "nimbusUptime": up["uptime"], "nimbusUptimeSeconds": up["uptimeSeconds"],
        "leader": leader, "mode": view.mode, "schedulerDisplayResource": False,
    }


def history_summary(view: View) -> dict[str, Any]:
    """GET /api/v1/history/summary: the running topologies' ids (Storm lists those of the
    user asking; Squall has no users, so every one)."""
    metas = sorted(view.state.topologies().values(), key=lambda m: num(m.get("submitted")))
    return {"topo-history": [m.get("id") for m in metas]}


# --- topologies ---------------------------------------------------------------------------------


def _summary(meta: Mapping[str, Any], assignment: Mapping[str, Any] | None,
             now: float) -> dict[str, Any]:
    tasks = int(num(meta.get("num_tasks")))
    workers = workers_of(assignment)
    return {
        "id": meta.get("id"), "name": meta.get("name"), "owner": meta.get("owner", ""),
        "status": meta.get("status", ""), **_uptime(meta.get("submitted"), now),
        "tasksTotal": tasks, "executorsTotal": tasks,
        "workersTotal": len(workers) if workers else int(num(meta.get("num_workers"))),
        "replicationCount": 1, "schedulerInfo": "",
    }


def topology_summary(view: View) -> dict[str, Any]:
    assignments = view.state.assignments()
    metas = sorted(view.state.topologies().items(), key=lambda kv: str(kv[1].get("name")))
    return {"topologies": [_summary(m, assignments.get(tid), view.now) for tid, m in metas],
            "schedulerDisplayResource": False}


def topology_meta(state: ClusterState, topology_id: str) -> dict[str, Any]:
    meta = state.topology(topology_id)
    if meta is None:
        raise NotFound(f"no topology with id {topology_id!r}")
    return meta


def components(meta: Mapping[str, Any], sys: bool) -> dict[str, Any]:
    """The topology's components; with `sys`, the ackers too (as a bolt, as Storm shows it)."""
    out = dict(meta.get("components") or {})
    ackers = meta.get("acker_tasks") or []
    if sys and ackers:
        out[ACKER_COMPONENT] = {"type": "bolt", "parallelism": len(ackers), "tasks": ackers,
                                "inputs": []}
    return out


def error_fields(e: Mapping[str, Any], now: float,
                 links: Mapping[tuple[str, int], str | None]) -> dict[str, Any]:
    """One stored error in Storm's names: its line ("error"), time ("errorTime", and "time"
    as before Storm 0.11), where, how long ago, the worker's log and the full traceback."""
    when = e.get("time")
    where = (str(e.get("host")), int(num(e.get("port"))))
    return {"error": str(e.get("error", "")), "errorTime": when, "time": when,
            "errorHost": e.get("host") or "", "errorPort": e.get("port") or "",
            "errorTask": e.get("task"),
            "errorLapsedSecs": max(0, int(now - num(when))) if num(when) > 0 else None,
            "errorWorkerLogLink": links.get(where),
            "errorTraceback": str(e.get("traceback") or e.get("error") or "")}


def last_error(errors: list[dict[str, Any]], now: float,
               links: Mapping[tuple[str, int], str | None]) -> dict[str, Any]:
    if not errors:
        return {"lastError": "", "errorHost": "", "errorPort": None, "errorTime": None,
                "errorLapsedSecs": None, "errorWorkerLogLink": "", "lastErrorTraceback": ""}
    e = error_fields(errors[-1], now, links)
    return {"lastError": e["error"], "errorHost": e["errorHost"], "errorPort": e["errorPort"],
            "errorTime": e["errorTime"], "errorLapsedSecs": e["errorLapsedSecs"],
            "errorWorkerLogLink": e["errorWorkerLogLink"] or "",
            "lastErrorTraceback": e["errorTraceback"]}


def stats_fields(f: Figures) -> dict[str, Any]:
    return {"emitted": f.emitted_total, "transferred": int(f.transferred),
            "acked": int(f.acked), "failed": int(f.failed)}


def bolt_fields(f: Figures) -> dict[str, Any]:
    return {**stats_fields(f), "executed": int(f.executed),
            "executeLatency": f.execute_latency_ms, "processLatency": f.execute_latency_ms,
            "capacity": f.capacity}


def _component_rows(meta: Mapping[str, Any], figs: dict[str, Figures],
                    errors: dict[str, list[dict[str, Any]]], view: View, sys: bool,
                    links: Mapping[tuple[str, int], str | None],
                    progress: Mapping[str, Mapping[str, Any]]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    spouts, bolts = [], []
    for cid, spec in sorted(components(meta, sys).items()):
        f = figs.get(cid, Figures())
        mine = progress.get(cid) or {}
        common = {"executors": int(num(spec.get("parallelism"))) or len(spec.get("tasks", [])),
                  "tasks": len(spec.get("tasks") or []),
                  **last_error(errors.get(cid, []), view.now, links)}
        if spec.get("type") == "spout":
            spouts.append({"spoutId": cid, "encodedSpoutId": cid, **stats_fields(f),
                           "completeLatency": f.complete_latency_ms,
                           "source": mine.get("source"), **common})
        else:
            bolts.append({"boltId": cid, "encodedBoltId": cid, **bolt_fields(f),
                          "windowing": mine.get("windowing"), **common})
    return spouts, bolts


def _topology_stats(view: View, meta: Mapping[str, Any],
                    beats: list[WorkerHeartbeat]) -> list[dict[str, Any]]:
    out = []
    kinds = meta.get("components") or {}
    for window, pretty in WINDOWS.items():
        total, spout_total = Figures(), Figures()
        for cid, f in figures(view, str(meta.get("id")), beats, window).items():
            if cid == ACKER_COMPONENT:
                continue
            total.add(f)
            if (kinds.get(cid) or {}).get("type") == "spout":
                spout_total.add(f)
        out.append({"window": window, "windowPretty": pretty, **stats_fields(total),
                    "acked": int(spout_total.acked), "failed": int(spout_total.failed),
                    "completeLatency": spout_total.complete_latency_ms})
    return out


def worker_rows(view: View, meta: Mapping[str, Any], beats: list[WorkerHeartbeat]
                ) -> list[dict[str, Any]]:
    tid = str(meta.get("id"))
    task_component = {t: cid for cid, spec in components(meta, sys=True).items()
                      for t in spec.get("tasks") or []}
    by_key = {hb.key: hb for hb in beats}
    infos = supervisor_infos(view.state)
    rows = []
    for w in workers_of(view.state.assignment(tid)):
        hb = by_key.get(f"{w.get('host')}:{w.get('port')}")
        counts: dict[str, int] = {}
        for t in w.get("tasks") or []:
            cid = task_component.get(t, "?")
            counts[cid] = counts.get(cid, 0) + 1
        uptime = hb.uptime if hb else None
        rows.append({
            "topologyId": tid, "topologyName": meta.get("name"),
            "host": w.get("host"), "port": w.get("port"), "supervisorId": w.get("supervisor"),
            "uptime": pretty_duration(uptime),
            "uptimeSeconds": None if uptime is None else int(uptime),
            "executorsTotal": len(w.get("tasks") or []), "componentNumTasks": counts,
            "workerLogLink": log_link(infos.get(str(w.get("supervisor"))), tid, w.get("port")),
            "rssBytes": int(hb.rss) if hb else 0, "queued": int(hb.queued) if hb else 0,
            "overloaded": bool(hb and hb.overloaded),
            "heartbeatLapsedSecs": max(0, int(view.now - hb.time)) if hb else None,
        })
    return rows


def topology_page(view: View, topology_id: str, window: str | None = None,
                  sys: bool = False) -> dict[str, Any]:
    """GET /api/v1/topology/{id}?window=600|10800|86400|:all-time&sys=true|false"""
    window = check_window(window)
    state = view.state
    meta = topology_meta(state, topology_id)
    beats = heartbeats_of(state.worker_heartbeats(topology_id).values())
    errors = state.errors(topology_id)
    links = worker_links(view, topology_id)
    progress = component_progress(beats)
    spouts, bolts = _component_rows(meta, figures(view, topology_id, beats, window), errors,
                                    view, sys, links, progress)
    conf = meta.get("conf") or {}
    return {
        **_summary(meta, state.assignment(topology_id), view.now),
        "window": window, "windowHint": WINDOWS[window],
        "msgTimeout": conf.get("topology.message.timeout.secs", 30),
        "debug": bool(conf.get("topology.debug")),
        "topologyStats": _topology_stats(view, meta, beats),
        "spouts": spouts, "bolts": bolts,
        "workers": worker_rows(view, meta, beats),
        "recentErrors": _recent_errors(errors, view.now, links),
        "checkpoint": last_checkpoint(progress),
        "configuration": conf, "schedulerDisplayResource": False,
    }


def _recent_errors(errors: dict[str, list[dict[str, Any]]], now: float,
                   links: Mapping[tuple[str, int], str | None],
                   limit: int = 10) -> list[dict[str, Any]]:
    """The newest errors of every component (Squall's own field), newest first."""
    rows = [{"component": cid, **error_fields(e, now, links)}
            for cid, errs in errors.items() for e in errs]
    return sorted(rows, key=lambda e: num(e["errorTime"]), reverse=True)[:limit]


def topology_workers(view: View, topology_id: str) -> dict[str, Any]:
    """GET /api/v1/topology-workers/{id}: every worker's host and port. Storm has one
    cluster-wide log viewer port; Squall's supervisors each advertise theirs, so each entry
    carries its own ("logviewerPort", "workerLogLink"), and the top-level "logviewerPort" is
    the one they share (None when they differ or serve no logs)."""
    topology_meta(view.state, topology_id)
    infos = supervisor_infos(view.state)
    hosts = []
    for w in workers_of(view.state.assignment(topology_id)):
        info = infos.get(str(w.get("supervisor"))) or {}
        link = log_link(info, topology_id, w.get("port"))
        hosts.append({"host": w.get("host"), "port": w.get("port"),
                      "logviewerPort": info.get("logviewer_port") if link else None,
                      "workerLogLink": link})
    ports = {h["logviewerPort"] for h in hosts}
    return {"hostPortList": hosts, "logviewerPort": ports.pop() if len(ports) == 1 else None}
