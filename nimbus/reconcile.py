"""One scheduling round of the leader nimbus: read the state, call the pure cores
(lifecycle, liveness, `compute_assignments`), write only what changed.

The round runs on the leader only, under its lock: on a timer, on a change in the cluster
state, and right after each API action (so an action's effect is stored when it returns).

One topology's bad record or failed write never stops the round for the others: each
topology's steps are guarded, and a failure is logged (once while it stays the same) and,
where it concerns the topology, reported as its error ("__nimbus"). A StateError that is not
about one record (ZooKeeper away) still ends the round: the daemon counts it as blindness.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from cluster.assignment import Assignment, SchedulerError, Slot, SupervisorInfo
from cluster.codesign import sign_code, verify_code
from cluster.state import ClusterState, RecordError, StateError
from cluster.status import Status, status_of_record
from nimbus import submission as sub
from nimbus.lifecycle import REMOVED, TIMEOUT_DONE, LifecycleError, TopologyStatus, due, transition
from nimbus.liveness import Liveness
from nimbus.scheduler import compute_assignments

log = logging.getLogger(__name__)

T = TypeVar("T")
ERROR_COMPONENT = "__nimbus"  # where nimbus's own problems with a topology are reported


def status_of(meta: Mapping[str, Any]) -> TopologyStatus | None:
    """A topology's lifecycle status from its meta; None (logged) when it is malformed."""
    try:
        return TopologyStatus.from_dict(meta["lifecycle"])
    except (KeyError, TypeError, LifecycleError) as e:
        log.warning("nimbus: topology %s has a bad lifecycle: %s", meta.get("id"), e)
        return None


class Reconciler:
    """Brings the stored assignments in line with topologies, supervisors and heartbeats."""

    def __init__(self, nimbus_id: str, liveness: Liveness, secret: str | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.id = nimbus_id
        self.wall = wall  # unix time: when loggers' levels set by set-log-level are over
        self.liveness = liveness
        self.secret = secret
        self._failing: dict[tuple[str, str], str] = {}  # (topology, step) -> last problem

    def run(self, state: ClusterState, now: float) -> None:
        """One round at `now`: waits that are over, lost supervisors, dead workers; write the
        assignments that changed."""
        self.liveness.begin(now)
        metas = self._advance_lifecycles(state, state.topologies(), now)
        for tid in state.orphaned_records():
            log.info("nimbus %s: removing heartbeats and errors left by killed %s", self.id, tid)
            self._guard(tid, "cleanup", state.remove_topology, tid)
        supervisors = self._supervisors(state, now)
        raw = state.assignments()
        existing: dict[str, Assignment] = {}
        for tid, data in raw.items():
            try:
                existing[tid] = Assignment.from_dict(data)
            except SchedulerError as e:
                self._once(tid, "assignment", f"ignoring a malformed assignment: {e}")
        dead: set[Slot] = set()
        for tid, a in existing.items():
            if tid in metas:
                dead |= self._dead_slots(state, tid, a, now)
        demands = []
        for tid, meta in metas.items():
            try:
                demands.append(sub.demand(meta))
            except (KeyError, TypeError, ValueError, SchedulerError) as e:
                self._once(tid, "demand", f"cannot schedule it: {e}")
        result = compute_assignments(demands, supervisors, existing, dead)
        for tid, meta in metas.items():
            if tid in result:
                self._guard(tid, "assignment", self._write_assignment, state, meta,
                            result[tid], raw.get(tid), report=state)
        for tid in raw:
            if tid not in result:
                log.info("nimbus %s: %s has no slots now; unassigned", self.id, tid)
                self._guard(tid, "unassign", state.remove_assignment, tid)
                self.liveness.forget(tid)
        known = set(metas) | set(raw) | set(supervisors)
        self._failing = {k: v for k, v in self._failing.items() if k[0] in known}

    # --- guarding one topology's steps ----------------------------------------------------------

    def _guard(self, tid: str, step: str, fn: Callable[..., T], *args: Any,
               report: ClusterState | None = None) -> T | None:
        """Run one topology's step `fn(*args)`; a failure is logged once, reported to `report`
        as the topology's error if given, and does not stop the round."""
        try:
            value = fn(*args)
        except StateError as e:
            if not isinstance(e, RecordError):
                raise  # ZooKeeper itself is away: the round fails as a whole
            self._failed(tid, step, e, report)
            return None
        except Exception as e:  # a bad record, or user code unpickled: this topology only
            self._failed(tid, step, e, report)
            return None
        self._failing.pop((tid, step), None)
        return value

    def _failed(self, tid: str, step: str, e: Exception, report: ClusterState | None) -> None:
        problem = f"{step} failed: {type(e).__name__}: {e}"
        if self._once(tid, step, problem) and report is not None:
            self._report(report, tid, problem)

    def _once(self, tid: str, step: str, problem: str) -> bool:
        """Log `problem` of topology `tid` unless it is what was logged last time."""
        if self._failing.get((tid, step)) == problem:
            return False
        self._failing[(tid, step)] = problem
        log.warning("nimbus %s: topology %s: %s", self.id, tid, problem)
        return True

    def _report(self, state: ClusterState, tid: str, message: str) -> None:
        try:
            state.report_error(tid, ERROR_COMPONENT, {
                "component": ERROR_COMPONENT, "task": -1, "time": time.time(),
                "host": None, "port": None, "error": f"nimbus: {message}"})
        except StateError:
            log.warning("nimbus %s: could not report the error of %s", self.id, tid)

    # --- the steps ------------------------------------------------------------------------------

    def _supervisors(self, state: ClusterState, now: float) -> dict[str, SupervisorInfo]:
        view = self.liveness.supervisors(state.supervisors(), state.supervisor_heartbeats(), now)
        for sid in sorted(view.newly_lost):
            log.warning("nimbus %s: supervisor %s: no heartbeat for %.1f s; taking it for lost "
                        "and moving its work", self.id, sid, view.lost[sid])
        for sid in sorted(view.expired):
            log.info("nimbus %s: supervisor %s: silent for %.0f s; forgetting it", self.id, sid,
                     view.lost[sid])
            state.remove_supervisor_heartbeat(sid)
        out = {}
        for sid, info in view.alive.items():
            try:
                out[sid] = SupervisorInfo.from_dict(info)
            except SchedulerError as e:
                self._once(sid, "supervisor", f"ignoring supervisor {sid}: {e}")
        return out

    def _dead_slots(self, state: ClusterState, tid: str, a: Assignment, now: float) -> set[Slot]:
        workers = {slot: (a.hosts[slot[0]], tasks) for slot, tasks in a.workers.items()}
        newly_dead = self.liveness.observe(tid, workers, state.worker_heartbeats(tid), now)
        for slot in sorted(newly_dead):
            log.warning("nimbus %s: worker %s:%d of %s stopped heartbeating; reassigning its "
                        "tasks", self.id, a.hosts[slot[0]], slot[1], tid)
        return newly_dead

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
                if self._guard(tid, "removal", self._remove, state, tid):
                    continue
                out[tid] = meta
                continue
            done = self._guard(tid, "rebalance", self._finish_rebalance, state, meta, new)
            out[tid] = done if done is not None else meta
        return out

    def _remove(self, state: ClusterState, tid: str) -> bool:
        state.remove_assignment(tid)
        state.remove_topology(tid)
        self.liveness.forget(tid)
        log.info("nimbus %s: removed killed topology %s", self.id, tid)
        return True

    def _finish_rebalance(self, state: ClusterState, meta: dict[str, Any],
                          new: TopologyStatus) -> dict[str, Any]:
        """Apply a rebalance whose wait is over. When it cannot be applied (unsigned code, a
        record over the size limit...), the topology returns to its previous status with its
        old layout and the problem is reported: it must not stay REBALANCING, its spouts
        paused, for ever."""
        request = meta.get("rebalance") or {}
        tid = meta["id"]
        back = {k: v for k, v in sub.with_status(meta, new).items() if k != "rebalance"}
        if request.get("workers") is None and not request.get("parallelism") \
                and not request.get("conf"):
            state.set_topology(tid, back)
            return back
        signed = state.get_code(tid)
        try:
            if signed is None:
                raise RecordError("its code is missing")
            blob = verify_code(signed, self.secret, f"the stored code of {tid}")
            package = sub.unpack_code(blob)  # user code: anything may go wrong
            topology, conf = sub.rebalanced(package["topology"], package["conf"],
                                            request.get("workers"),
                                            request.get("parallelism") or {},
                                            request.get("conf") or {})
            code_version = int(meta.get("code_version", 1)) + 1
            changed = sub.make_meta(tid, topology, conf, new, meta["submitted"],
                                    meta.get("owner", ""), code_version)
            state.put_code(tid, sign_code(sub.code_blob(topology, conf,
                                                        package.get("resources")), self.secret))
            state.set_topology(tid, changed)
        except StateError as e:
            if not isinstance(e, RecordError):
                raise
            return self._abandon(state, tid, signed, back, e)
        except Exception as e:
            return self._abandon(state, tid, signed, back, e)
        log.info("nimbus %s: rebalanced %s: %d workers, %d tasks", self.id, tid,
                 changed["num_workers"], changed["num_tasks"])
        return changed

    def _abandon(self, state: ClusterState, tid: str, signed: bytes | None,
                 back: dict[str, Any], e: Exception) -> dict[str, Any]:
        if signed is not None:
            state.put_code(tid, signed)  # the code must stay the one the record describes
        state.set_topology(tid, back)
        problem = f"rebalance abandoned, the topology keeps its layout: {type(e).__name__}: {e}"
        log.warning("nimbus %s: topology %s: %s", self.id, tid, problem)
        self._report(state, tid, problem)
        return back

    def _write_assignment(self, state: ClusterState, meta: Mapping[str, Any],
                          computed: Assignment, old: Mapping[str, Any] | None) -> None:
        body = computed.to_dict()
        body["tasks"] = {str(t): [h, p] for t, (h, p) in sorted(computed.task_locations().items())}
        body["active"] = status_of_record(meta) is Status.ACTIVE
        body["code_version"] = meta.get("code_version", 1)
        levels = sub.live_log_levels_of(meta, self.wall())
        if levels:  # the workers apply them (worker.parent); gone when over, so put back
            body["log_levels"] = levels
        if old is not None and {k: v for k, v in old.items() if k != "version"} == body:
            return
        body["version"] = _int(old.get("version", 0)) + 1 if old is not None else 1
        state.set_assignment(computed.topology_id, body)
        log.info("nimbus %s: assignment of %s v%d: %d workers, active=%s", self.id,
                 computed.topology_id, body["version"], len(body["workers"]), body["active"])
        kept = {f"{w['host']}:{w['port']}" for w in body["workers"]}
        for w in (old or {}).get("workers", []):
            key = f"{w.get('host')}:{w.get('port')}" if isinstance(w, dict) else None
            if key is not None and key not in kept:
                state.remove_worker_heartbeat(computed.topology_id, key)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
