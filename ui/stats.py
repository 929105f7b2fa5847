"""Storm's windows beyond the worker's 10 minutes ("10800": 3 hours, "86400": 1 day), kept
by the dashboard. Pure: time is `now`, given to every call.

A worker reports each task's totals since the task started and over its last 10 minutes
(cluster.records). For the longer windows the dashboard keeps, per topology, a ledger of
per-component figures (per stream too) that only grows: at each look it adds every task's
growth since the last look, so a worker that restarts (its totals start again from 0) loses
nothing already counted. A task seen for the first time adds everything it has done so far.

The ledger is copied every `fine_secs` (2 min) into a ring covering 3 hours and every
`coarse_secs` (15 min) into one covering a day: at most 91 + 97 copies per topology, each
the size of one topology's per-component figures, whatever the traffic, so memory is bounded
by topologies x components x streams. A window is the ledger now minus the newest copy at
least as old as the window (within one ring step: ~1% of either window). Until the dashboard
has watched a topology that long, the window reaches back to when the dashboard first saw it,
and holds everything its tasks did before too: it shows what "All time" shows, except that
work done by earlier incarnations of restarted workers stays counted.

Capacity stays Storm's (the last 10 minutes) whatever the window; user metrics are not
windowed (counters since the task started, gauges as they are now).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cluster.records import WINDOW_1D, WINDOW_3H, Figures, Mean, heartbeats_of

LONG_WINDOWS = {WINDOW_3H: 3 * 3600.0, WINDOW_1D: 86400.0}
FINE_SECS = 120.0
COARSE_SECS = 900.0
FORGET_SECS = 600.0  # a task unseen this long is forgotten (a record missing for a moment
# is not a new task: forgetting it at once would count its totals twice when it is back)

_DICTS = ("emitted", "transferred_streams", "executed_streams", "acked_streams",
          "failed_streams")
_SCALARS = ("transferred", "executed", "acked", "failed", "timed_out", "execute_time")
_GROWING = ("transferred", "executed", "acked", "failed", "timed_out")  # restart tells


def _copy(f: Figures) -> Figures:
    out = Figures()
    out.add(f)
    out.metrics = {}
    return out


def difference(new: Figures, old: Figures | None) -> Figures:
    """What `new` has that `old` had not, per counter and stream (never below 0)."""
    if old is None:
        return _copy(new)
    out = Figures()
    for name in _DICTS:
        mine, before = getattr(new, name), getattr(old, name)
        setattr(out, name, {k: max(0, n - before.get(k, 0)) for k, n in mine.items()})
    out.latency_streams = {k: _mean_minus(m, old.latency_streams.get(k))
                           for k, m in new.latency_streams.items()}
    for name in _SCALARS:
        setattr(out, name, max(0, getattr(new, name) - getattr(old, name)))
    out.complete = _mean_minus(new.complete, old.complete)
    return out


def _mean_minus(new: Mean, old: Mean | None) -> Mean:
    if old is None:
        return Mean(new.total, new.count)
    return Mean(max(0.0, new.total - old.total), max(0, new.count - old.count))


def restarted(new: Figures, old: Figures) -> bool:
    """Whether a task's totals went back (its worker restarted and counts from 0 again)."""
    return (any(getattr(new, k) < getattr(old, k) for k in _GROWING)
            or new.emitted_total < old.emitted_total or new.complete.count < old.complete.count)


@dataclass
class _Ledger:
    # per task: (its worker's uptime, its totals, when last seen) at the last look
    last: dict[tuple[str, Any], tuple[float, Figures, float]] = field(default_factory=dict)
    total: dict[str, Figures] = field(default_factory=dict)  # per component, only grows
    fine: deque[tuple[float, dict[str, Figures]]] = field(default_factory=deque)
    coarse: deque[tuple[float, dict[str, Figures]]] = field(default_factory=deque)


class LongWindows:
    """The 3-hour and 1-day windows of every topology; safe to use from several threads."""

    def __init__(self, fine_secs: float = FINE_SECS, coarse_secs: float = COARSE_SECS) -> None:
        self.fine_secs, self.coarse_secs = fine_secs, coarse_secs
        self._fine_len = int(LONG_WINDOWS[WINDOW_3H] // fine_secs) + 1
        self._coarse_len = int(LONG_WINDOWS[WINDOW_1D] // coarse_secs) + 1
        self._lock = threading.Lock()
        self._ledgers: dict[str, _Ledger] = {}

    def add(self, topology_id: str, now: float, heartbeats: Iterable[Any]) -> None:
        """One look at a topology's heartbeats at `now`."""
        with self._lock:
            ledger = self._ledgers.setdefault(topology_id, _Ledger())
            for hb in heartbeats_of(heartbeats):
                for e in hb.executors:
                    key = (e.component, e.task)
                    before = ledger.last.get(key)
                    grew = e.totals
                    if before is not None and not (hb.uptime < before[0]
                                                   or restarted(e.totals, before[1])):
                        grew = difference(e.totals, before[1])
                    ledger.total.setdefault(e.component, Figures()).add(_copy(grew))
                    ledger.last[key] = (hb.uptime, _copy(e.totals), now)
            for key in [k for k, v in ledger.last.items() if now - v[2] > FORGET_SECS]:
                del ledger.last[key]  # moved (rebalance) or gone: its work stays counted
            self._keep(ledger.fine, now, self.fine_secs, self._fine_len, ledger.total)
            self._keep(ledger.coarse, now, self.coarse_secs, self._coarse_len, ledger.total)

    @staticmethod
    def _keep(ring: deque[tuple[float, dict[str, Figures]]], now: float, step: float,
              most: int, total: dict[str, Figures]) -> None:
        if ring and now - ring[-1][0] < step:
            return
        ring.append((now, {cid: _copy(f) for cid, f in total.items()}))
        while len(ring) > most:
            ring.popleft()

    def figures(self, topology_id: str, window: str, now: float) -> dict[str, Figures]:
        """Per-component figures of `window` (WINDOW_3H or WINDOW_1D) at `now`; empty for a
        topology never seen."""
        span = LONG_WINDOWS[window]
        with self._lock:
            ledger = self._ledgers.get(topology_id)
            if ledger is None:
                return {}
            ring = ledger.fine if window == WINDOW_3H else ledger.coarse
            old = next((copy for t, copy in reversed(ring) if t <= now - span), {})
            return {cid: difference(f, old.get(cid)) for cid, f in ledger.total.items()}

    def keep_only(self, topology_ids: Iterable[str]) -> None:
        keep = set(topology_ids)
        with self._lock:
            for tid in [t for t in self._ledgers if t not in keep]:
                del self._ledgers[tid]

    def samples_held(self, topology_id: str) -> int:
        with self._lock:
            ledger = self._ledgers.get(topology_id)
            return 0 if ledger is None else len(ledger.fine) + len(ledger.coarse)
