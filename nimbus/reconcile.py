"""One scheduling round of the leader nimbus: read the state, call the pure cores
(lifecycle, liveness, `compute_assignments`), write only what changed.

The round runs on the leader only, under its lock: on a timer, on a change in the cluster
state, and right after each API action (so an action's effect is stored when it returns).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cluster.state import ClusterState
from nimbus import submission as sub
from nimbus.assignment import Assignment, SchedulerError, Slot, SupervisorInfo
from nimbus.lifecycle import REMOVED, TIMEOUT_DONE, LifecycleError, TopologyStatus, due, transition
from nimbus.liveness import HeartbeatTracker
from nimbus.scheduler import compute_assignments

log = logging.getLogger(__name__)


def status_of(meta: Mapping[str, Any]) -> TopologyStatus | None:
    """A topology's lifecycle status from its meta; None (logged) when it is malformed."""
    try:
        return TopologyStatus.from_dict(meta["lifecycle"])
    except (KeyError, TypeError, LifecycleError) as e:
        log.warning("nimbus: topology %s has a bad lifecycle: %s", meta.get("id"), e)
        return None


class Reconciler:
    """Brings the stored assignments in line with topologies, supervisors and heartbeats."""

    def __init__(self, nimbus_id: str, tracker: HeartbeatTracker) -> None:
        self.id = nimbus_id
        self.tracker = tracker

    def run(self, state: ClusterState, now: float) -> None:
        """One round at `now`: waits that are over, dead workers, lost supervisors (gone
        from ZooKeeper, or all of whose workers are dead); write the assignments that
        changed."""
        metas = self._advance_lifecycles(state, state.topologies(), now)
        for tid in state.orphaned_records():
            log.info("nimbus %s: removing heartbeats and errors left by killed %s", self.id, tid)
            state.remove_topology(tid)
        supervisors = self._supervisors(state)
        raw = state.assignments()
        existing: dict[str, Assignment] = {}
        for tid, data in raw.items():
            try:
                existing[tid] = Assignment.from_dict(data)
            except SchedulerError as e:
                log.warning("nimbus %s: ignoring a malformed assignment: %s", self.id, e)
        dead: set[Slot] = set()
        for tid, a in existing.items():
            if tid in metas:
                workers = {slot: (a.hosts[slot[0]], tasks) for slot, tasks in a.workers.items()}
                newly_dead = self.tracker.observe(tid, workers, state.worker_heartbeats(tid), now)
                for slot in sorted(newly_dead):
                    log.warning("nimbus %s: worker %s:%d of %s stopped heartbeating; "
                                "reassigning its tasks", self.id, a.hosts[slot[0]], slot[1], tid)
                dead |= newly_dead
        lost = self.tracker.lost_supervisors(
            (slot for a in existing.values() for slot in a.workers), dead, now)
        for sid in sorted(lost & set(supervisors)):
            if any(slot[0] == sid for slot in dead):
                log.warning("nimbus %s: every worker of supervisor %s stopped heartbeating; "
                            "taking it for lost", self.id, sid)
            del supervisors[sid]
        demands = []
        for tid, meta in metas.items():
            try:
                demands.append(sub.demand(meta))
            except (KeyError, TypeError, ValueError, SchedulerError) as e:
                log.warning("nimbus %s: cannot schedule %s: %s", self.id, tid, e)
        result = compute_assignments(demands, supervisors, existing, dead)
        for tid, meta in metas.items():
            if tid in result:
                self._write_assignment(state, meta, result[tid], raw.get(tid))
        for tid in raw:
            if tid not in result:
                log.info("nimbus %s: %s has no slots now; unassigned", self.id, tid)
                state.remove_assignment(tid)
                self.tracker.forget(tid)

    def _advance_lifecycles(self, state: ClusterState, metas: dict[str, dict[str, Any]],
                            now: float) -> dict[str, dict[str, Any]]:
        """Apply the kill and rebalance waits that are over; return the topologies left."""
        out = {}
        for tid, meta in metas.items():
            status = status_of(meta)
            if status is None or "components" not in meta:
                continue
            if due(status, now) is None:
                out[tid] = meta
                continue
            new = transition(status, TIMEOUT_DONE, now)
            if new.name == REMOVED:
                state.remove_assignment(tid)
                state.remove_topology(tid)
                self.tracker.forget(tid)
                log.info("nimbus %s: removed killed topology %s", self.id, tid)
                continue
            out[tid] = self._finish_rebalance(state, meta, new)
        return out

    def _finish_rebalance(self, state: ClusterState, meta: dict[str, Any],
                          new: TopologyStatus) -> dict[str, Any]:
        request = meta.get("rebalance") or {}
        tid = meta["id"]
        meta = {k: v for k, v in sub.with_status(meta, new).items() if k != "rebalance"}
        if request.get("workers") is not None or request.get("parallelism"):
            blob = state.get_code(tid)
            if blob is None:
                log.warning("nimbus %s: no code for %s; rebalance skipped", self.id, tid)
            else:
                package = sub.unpack_code(blob)
                topology, conf = sub.rebalanced(package["topology"], package["conf"],
                                                request.get("workers"),
                                                request.get("parallelism") or {})
                code_version = int(meta.get("code_version", 1)) + 1
                state.put_code(tid, sub.code_blob(topology, conf))
                meta = sub.make_meta(tid, topology, conf, new, meta["submitted"],
                                     meta.get("owner", ""), code_version)
        state.set_topology(tid, meta)
        log.info("nimbus %s: rebalanced %s: %d workers, %d tasks", self.id, tid,
                 meta["num_workers"], meta["num_tasks"])
        return meta

    def _supervisors(self, state: ClusterState) -> dict[str, SupervisorInfo]:
        out = {}
        for sid, info in state.supervisors().items():
            try:
                out[sid] = SupervisorInfo.from_dict(info)
            except SchedulerError as e:
                log.warning("nimbus %s: ignoring supervisor %s: %s", self.id, sid, e)
        return out

    def _write_assignment(self, state: ClusterState, meta: Mapping[str, Any],
                          computed: Assignment, old: Mapping[str, Any] | None) -> None:
        body = computed.to_dict()
        body["tasks"] = {str(t): [h, p] for t, (h, p) in sorted(computed.task_locations().items())}
        body["active"] = meta["status"] == "ACTIVE"
        body["code_version"] = meta.get("code_version", 1)
        if old is not None and {k: v for k, v in old.items() if k != "version"} == body:
            return
        body["version"] = int(old.get("version", 0)) + 1 if old is not None else 1
        state.set_assignment(computed.topology_id, body)
        log.info("nimbus %s: assignment of %s v%d: %d workers, active=%s", self.id,
                 computed.topology_id, body["version"], len(body["workers"]), body["active"])
        kept = {f"{w['host']}:{w['port']}" for w in body["workers"]}
        for w in (old or {}).get("workers", []):
            key = f"{w.get('host')}:{w.get('port')}"
            if key not in kept:
                state.remove_worker_heartbeat(computed.topology_id, key)
