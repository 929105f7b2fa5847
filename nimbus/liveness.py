"""Which assigned worker slots are dead, judged by nimbus's own clock. Pure: time is `now`.

A heartbeat is the worker's dict as its supervisor wrote it. Nimbus never compares the time
inside it with its own clock (two hosts); it only notes *when it saw the heartbeat change*. A
slot is dead when its heartbeat has not changed for `worker_timeout` seconds, or, for a slot
that has not heartbeated since it was (re)assigned, within `launch_grace` seconds of that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nimbus.assignment import Slot


@dataclass
class _Seen:
    tasks: tuple[int, ...]
    assigned_at: float
    heartbeat: Any = None
    changed_at: float | None = None


class HeartbeatTracker:
    """Remembers, per (topology id, slot), the last heartbeat seen and when it changed."""

    def __init__(self, worker_timeout: float, launch_grace: float) -> None:
        self.worker_timeout = worker_timeout
        self.launch_grace = launch_grace
        self._seen: dict[tuple[str, Slot], _Seen] = {}

    def observe(
        self,
        topology_id: str,
        workers: Mapping[Slot, tuple[str, list[int]]],
        heartbeats: Mapping[str, Mapping[str, Any]],
        now: float,
    ) -> set[Slot]:
        """Record one look at a topology; return its dead slots.

        `workers` maps each assigned slot to (host, tasks); `heartbeats` is keyed "host:port".
        A slot whose tasks changed is treated as newly assigned (its worker restarts).
        """
        dead: set[Slot] = set()
        for slot, (host, tasks) in workers.items():
            key = (topology_id, slot)
            seen = self._seen.get(key)
            if seen is None or seen.tasks != tuple(tasks):
                seen = self._seen[key] = _Seen(tuple(tasks), assigned_at=now,
                                               heartbeat=heartbeats.get(f"{host}:{slot[1]}"))
            hb = heartbeats.get(f"{host}:{slot[1]}")
            if hb is not None and hb != seen.heartbeat:
                seen.heartbeat, seen.changed_at = hb, now
            if seen.changed_at is None:
                if now - seen.assigned_at > self.launch_grace:
                    dead.add(slot)
            elif now - seen.changed_at > self.worker_timeout:
                dead.add(slot)
        for key in [k for k in self._seen if k[0] == topology_id and k[1] not in workers]:
            del self._seen[key]
        return dead

    def last_change(self, topology_id: str, slot: Slot, now: float) -> float | None:
        """Seconds since the slot's heartbeat last changed, None if never seen changing."""
        seen = self._seen.get((topology_id, slot))
        if seen is None or seen.changed_at is None:
            return None
        return now - seen.changed_at

    def forget(self, topology_id: str | None = None) -> None:
        """Drop what was seen of one topology (or of all, when leadership changes)."""
        if topology_id is None:
            self._seen.clear()
            return
        for key in [k for k in self._seen if k[0] == topology_id]:
            del self._seen[key]
