"""Which assigned worker slots are dead, judged by nimbus's own clock. Pure: time is `now`.

A heartbeat is the worker's dict as its supervisor wrote it. Nimbus never compares the time
inside it with its own clock (two hosts); it only notes *when it saw the heartbeat change*. A
slot is dead when its heartbeat has not changed for `worker_timeout` seconds, or, for a slot
that has not heartbeated since it was (re)assigned, within `launch_grace` seconds of that.

Heartbeats reach ZooKeeper through the worker's supervisor, so when every worker a supervisor
runs is dead, the supervisor itself is taken for lost (`lost_supervisors`): its free slots
are not used either, instead of waiting for its ZooKeeper session to expire. It stays lost
for `supervisor_grace` seconds (its session timeout: by then a dead one is gone from
ZooKeeper, and a live one that only lost its workers is used again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
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

    def __init__(self, worker_timeout: float, launch_grace: float,
                 supervisor_grace: float = 0.0) -> None:
        self.worker_timeout = worker_timeout
        self.launch_grace = launch_grace
        self.supervisor_grace = supervisor_grace
        self._seen: dict[tuple[str, Slot], _Seen] = {}
        self._lost: dict[str, float] = {}  # supervisor id -> when it was taken for lost

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

    def lost_supervisors(self, assigned: Iterable[Slot], dead: AbstractSet[Slot],
                         now: float) -> set[str]:
        """Supervisors taken for lost: all of whose assigned slots (at least one) are dead
        now, or were within the last `supervisor_grace` seconds; the newly lost first noted.

        A supervisor that died (or whose host did) stops every heartbeat of its workers at
        once but stays registered until its ZooKeeper session expires, its free slots looking
        usable all that time. Taking it for lost moves its work to other supervisors after
        `worker_timeout`, and keeps new work off it until the session would have expired.
        """
        alive: set[str] = set()
        silent: set[str] = set()
        for sid, port in assigned:
            (silent if (sid, port) in dead else alive).add(sid)
        for sid in silent - alive:
            self._lost.setdefault(sid, now)
        for sid, since in list(self._lost.items()):
            if now - since > self.supervisor_grace and sid not in silent - alive:
                del self._lost[sid]
        return set(self._lost)

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
            self._lost.clear()
            return
        for key in [k for k in self._seen if k[0] == topology_id]:
            del self._seen[key]

