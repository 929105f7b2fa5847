"""Which supervisors and worker slots are alive, judged on nimbus's own clock. Pure: time is
`now`, given to every call.

Nimbus never compares a time written by another host with its own clock: it notes *when it
saw a record change*. Three rules follow.

- **A supervisor is judged by its own heartbeat** (`ClusterState.supervisor_heartbeat`, a
  record it rewrites every `supervisor.heartbeat.frequency.secs`). It is lost when nimbus has
  not seen that record change for `supervisor_timeout` seconds: its work moves and no new work
  goes to it. Its ephemeral registration vanishing (its session closed: a graceful stop or a
  restart) is not loss by itself. A record seen for the first time counts as fresh only when
  the supervisor is also registered (a new leader must not trust a record a dead supervisor
  left behind); otherwise it has to change once first. A supervisor that writes no heartbeat
  record at all is judged by its registration alone. A lost supervisor's record is kept
  (shown as lost) until it has been silent for `forget_after` seconds; nimbus then deletes it.
- **A worker is judged by its own heartbeat**, never by its supervisor's: a slot is dead when
  its heartbeat has not changed for `worker_timeout` seconds while its supervisor kept
  heartbeating, or, never having heartbeated since it was (re)assigned, after `launch_grace`.
  Worker heartbeats reach the cluster state through the supervisor, so the time during which
  the supervisor itself was silent (restarting, or away: its own timeout decides then) is not
  counted against the worker. One hung worker therefore costs its own slot, nothing else.
- **Nimbus's blindness is not silence.** Time during which nimbus could not read the state
  (a failed round: `blind()`, or a gap between two rounds longer than `blind_after`) is not
  counted: after it, every clock restarts at the first round that sees again, so that
  supervisors and workers get a whole timeout to be heard once ZooKeeper is back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.assignment import Slot

FORGET_AFTER_TIMEOUTS = 12  # a lost supervisor's record goes after this many timeouts (1 min)


@dataclass
class _Seen:
    """One record as nimbus last saw it, and when (nimbus's clock) it last saw it change."""

    value: Any
    changed_at: float


@dataclass
class _Slot:
    tasks: tuple[int, ...]
    assigned_at: float
    heartbeat: Any = None
    changed_at: float | None = None


@dataclass
class Supervisors:
    """One look at the supervisors: the alive ones with their info, the lost ones with how
    long they have been silent, and those newly lost or to forget (records to delete)."""

    alive: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    lost: dict[str, float] = field(default_factory=dict)
    newly_lost: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)


class Liveness:
    """What nimbus has seen of supervisor and worker heartbeats (see the module doc)."""

    def __init__(self, worker_timeout: float, launch_grace: float, supervisor_timeout: float,
                 blind_after: float, forget_after: float | None = None) -> None:
        self.worker_timeout = worker_timeout
        self.launch_grace = launch_grace
        self.supervisor_timeout = supervisor_timeout
        self.blind_after = blind_after
        self.forget_after = (FORGET_AFTER_TIMEOUTS * supervisor_timeout
                             if forget_after is None else forget_after)
        self._supervisors: dict[str, _Seen] = {}
        self._lost: set[str] = set()
        self._slots: dict[tuple[str, Slot], _Slot] = {}
        self._last_round: float | None = None
        self._blind = False

    # --- rounds and blindness -------------------------------------------------------------------

    def blind(self) -> None:
        """Nimbus could not read the state (a round failed): the time until the next round
        that succeeds is not counted against anyone."""
        self._blind = True

    def begin(self, now: float) -> bool:
        """Start a round at `now`; True when it follows a blind period (every clock then
        restarts at `now`)."""
        gap = None if self._last_round is None else now - self._last_round
        self._last_round = now
        if not self._blind and (gap is None or gap <= self.blind_after):
            return False
        self._blind = False
        if gap is None:
            return False
        for seen in self._supervisors.values():
            seen.changed_at = max(seen.changed_at, now)
        for slot in self._slots.values():
            slot.assigned_at = max(slot.assigned_at, now)
            if slot.changed_at is not None:
                slot.changed_at = max(slot.changed_at, now)
        return True

    # --- supervisors ----------------------------------------------------------------------------

    def supervisors(self, registered: Mapping[str, Mapping[str, Any]],
                    beats: Mapping[str, Mapping[str, Any]], now: float) -> Supervisors:
        """Judge every supervisor that is registered or has a heartbeat record."""
        out = Supervisors()
        for sid in sorted(set(registered) | set(beats)):
            if sid not in beats:  # writes no heartbeat: alive while registered
                self._supervisors.pop(sid, None)
                out.alive[sid] = registered[sid]
                continue
            beat = beats[sid]
            seen = self._supervisors.get(sid)
            if seen is None:
                # First sight: fresh only if registered, else it must change once first.
                seen = self._supervisors[sid] = _Seen(
                    beat, now if sid in registered else now - self.supervisor_timeout - 1e-9)
            elif beat != seen.value:
                seen.value, seen.changed_at = beat, now
            silent = now - seen.changed_at
            if silent <= self.supervisor_timeout:
                out.alive[sid] = registered.get(sid) or beat
                self._lost.discard(sid)
                continue
            out.lost[sid] = silent
            if sid not in self._lost:
                self._lost.add(sid)
                out.newly_lost.add(sid)
            if silent > self.forget_after and sid not in registered:
                out.expired.add(sid)
        for sid in set(self._supervisors) - set(beats):
            del self._supervisors[sid]
        self._lost &= set(beats)
        return out

    def supervisor_changed_at(self, sid: str, now: float) -> float:
        """When nimbus last saw supervisor `sid`'s heartbeat change (`now` for one that writes
        none: its registration stands for it)."""
        seen = self._supervisors.get(sid)
        return now if seen is None else seen.changed_at

    # --- worker slots ---------------------------------------------------------------------------

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
            hb = heartbeats.get(f"{host}:{slot[1]}")
            seen = self._slots.get(key)
            if seen is None or seen.tasks != tuple(tasks):
                seen = self._slots[key] = _Slot(tuple(tasks), assigned_at=now, heartbeat=hb)
            if hb is not None and hb != seen.heartbeat:
                seen.heartbeat, seen.changed_at = hb, now
            # Silence counts only while the supervisor was heard from (see the module doc).
            heard = min(now, self.supervisor_changed_at(slot[0], now))
            if seen.changed_at is None:
                if heard - seen.assigned_at > self.launch_grace:
                    dead.add(slot)
            elif heard - seen.changed_at > self.worker_timeout:
                dead.add(slot)
        for key in [k for k in self._slots if k[0] == topology_id and k[1] not in workers]:
            del self._slots[key]
        return dead

    def last_change(self, topology_id: str, slot: Slot, now: float) -> float | None:
        """Seconds since the slot's heartbeat last changed, None if never seen changing."""
        seen = self._slots.get((topology_id, slot))
        if seen is None or seen.changed_at is None:
            return None
        return now - seen.changed_at

    def forget(self, topology_id: str | None = None) -> None:
        """Drop what was seen of one topology (or of everything, when leadership changes)."""
        if topology_id is None:
            self._slots.clear()
            self._supervisors.clear()
            self._lost.clear()
            self._last_round = None
            self._blind = False
            return
        for key in [k for k in self._slots if k[0] == topology_id]:
            del self._slots[key]
