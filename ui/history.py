"""Throughput over the last minutes: a ring of counter samples per topology.

The server samples every topology's summed counters every few seconds (`History.add`); rates
are differences between samples, so the page's chart survives a reload and every viewer sees
the same history. A worker restart resets its counters: a negative difference counts as 0.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cluster.records import ALL_TIME, component_figures
from topology.model import ACKER_COMPONENT

SPAN_SECS = 300.0
SMOOTH_SECS = 5.0  # rates are taken over at least this long (heartbeats come every second)


@dataclass(frozen=True)
class Sample:
    time: float
    # component -> {"emitted": {stream: n}, "executed", "acked", "failed"}
    counts: dict[str, dict[str, Any]]


def counts_of(heartbeats: Iterable[Any]) -> dict[str, dict[str, Any]]:
    return {cid: {"emitted": dict(f.emitted), "executed": f.executed, "acked": f.acked,
                  "failed": f.failed}
            for cid, f in component_figures(heartbeats, ALL_TIME).items()}


def _rate(new: float, old: float, seconds: float) -> float:
    return round(max(0.0, new - old) / seconds, 2) if seconds > 0 else 0.0


class History:
    """Samples per topology id, `span` seconds of them; safe to use from several threads."""

    def __init__(self, span: float = SPAN_SECS) -> None:
        self.span = span
        self._lock = threading.Lock()
        self._rings: dict[str, deque[Sample]] = {}

    def add(self, topology_id: str, now: float, heartbeats: Iterable[Any]) -> None:
        sample = Sample(now, counts_of(heartbeats))
        with self._lock:
            ring = self._rings.setdefault(topology_id, deque())
            ring.append(sample)
            while ring and ring[0].time < now - self.span - SMOOTH_SECS:
                ring.popleft()

    def keep_only(self, topology_ids: Iterable[str]) -> None:
        keep = set(topology_ids)
        with self._lock:
            for tid in list(self._rings):
                if tid not in keep:
                    del self._rings[tid]

    def samples(self, topology_id: str) -> list[Sample]:
        with self._lock:
            return list(self._rings.get(topology_id, ()))

    def series(self, topology_id: str, spouts: set[str]) -> list[dict[str, Any]]:
        """Per sample: tuples/s emitted and acked/failed by spouts, executed by bolts."""
        samples = self.samples(topology_id)
        out = []
        j = 0
        for s in samples:
            while j < len(samples) - 1 and samples[j + 1].time <= s.time - SMOOTH_SECS:
                j += 1
            old = samples[j]
            if old is s:
                continue
            out.append({"time": round(s.time, 3),
                        **_totals_rate(s, old, spouts)})
        return [p for p in out if p["time"] >= samples[-1].time - self.span] if out else []

    def component_rates(self, topology_id: str) -> dict[str, dict[str, Any]]:
        """The latest rates per component: {"emitted": {stream: r}, "executed", "acked",
        "failed"} in tuples/s."""
        samples = self.samples(topology_id)
        if len(samples) < 2:
            return {}
        new = samples[-1]
        old = next((s for s in reversed(samples) if s.time <= new.time - SMOOTH_SECS),
                   samples[0])
        secs = new.time - old.time
        out = {}
        for cid, c in new.counts.items():
            before = old.counts.get(cid, {})
            out[cid] = {
                "emitted": {st: _rate(n, before.get("emitted", {}).get(st, 0), secs)
                            for st, n in c["emitted"].items()},
                **{k: _rate(c[k], before.get(k, 0), secs)
                   for k in ("executed", "acked", "failed")},
            }
        return out


def _totals_rate(new: Sample, old: Sample, spouts: set[str]) -> dict[str, float]:
    secs = new.time - old.time
    totals = {"emitted": 0.0, "acked": 0.0, "failed": 0.0, "executed": 0.0}
    for cid, c in new.counts.items():
        if cid == ACKER_COMPONENT:
            continue
        before = old.counts.get(cid, {})
        if cid in spouts:
            totals["emitted"] += _rate(sum(c["emitted"].values()),
                                       sum(before.get("emitted", {}).values()), secs)
            totals["acked"] += _rate(c["acked"], before.get("acked", 0), secs)
            totals["failed"] += _rate(c["failed"], before.get("failed", 0), secs)
        else:
            totals["executed"] += _rate(c["executed"], before.get("executed", 0), secs)
    return {k: round(v, 2) for k, v in totals.items()}


def live_view(meta: Mapping[str, Any], history: History,
              capacities: Mapping[str, float]) -> dict[str, Any]:
    """The graph (nodes, edges with tuples/s) and the throughput series of one topology."""
    components = meta.get("components") or {}
    rates = history.component_rates(str(meta.get("id")))
    spouts = {cid for cid, spec in components.items() if spec.get("type") == "spout"}
    nodes, edges = [], []
    for cid, spec in sorted(components.items()):
        if cid == ACKER_COMPONENT:
            continue
        r = rates.get(cid, {})
        nodes.append({"id": cid, "type": spec.get("type"),
                      "parallelism": spec.get("parallelism"),
                      "emitRate": round(sum(r.get("emitted", {}).values()), 2),
                      "executeRate": r.get("executed", 0.0),
                      "capacity": capacities.get(cid, 0.0)})
        for i in spec.get("inputs") or []:
            source, stream = i.get("source"), i.get("stream", "default")
            rate = rates.get(source, {}).get("emitted", {}).get(stream, 0.0)
            if i.get("grouping") == "all":  # every task of the target gets each tuple
                rate = round(rate * len(spec.get("tasks") or [1]), 2)
            edges.append({"source": source, "target": cid, "stream": stream,
                          "grouping": i.get("grouping"), "rate": rate})
    return {"topologyId": meta.get("id"), "nodes": nodes, "edges": edges,
            "samples": history.series(str(meta.get("id")), spouts), "spanSeconds": history.span}
