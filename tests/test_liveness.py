"""nimbus.liveness: dead slots and lost supervisors on a fake clock; and the reconcile round
moving a silent supervisor's work away before its ZooKeeper session would expire."""

from __future__ import annotations

from typing import Any

from cluster.memstore import MemoryClusterState
from nimbus import submission as sub
from nimbus.lifecycle import ACTIVE, TopologyStatus
from nimbus.liveness import HeartbeatTracker
from nimbus.reconcile import Reconciler
from topology import Bolt, Spout, TopologyBuilder


def test_a_supervisor_is_lost_only_when_all_its_assigned_slots_are_dead() -> None:
    t = HeartbeatTracker(worker_timeout=2, launch_grace=10, supervisor_grace=4)
    assigned = [("a", 1), ("a", 2), ("b", 1)]
    assert t.lost_supervisors(assigned, {("a", 1)}, now=0) == set()
    assert t.lost_supervisors(assigned, {("a", 1), ("a", 2)}, now=0) == {"a"}
    fresh = HeartbeatTracker(worker_timeout=2, launch_grace=10, supervisor_grace=4)
    assert fresh.lost_supervisors([], set(), now=0) == set()  # nothing assigned: none lost


def test_a_lost_supervisor_stays_lost_for_the_grace_then_is_usable_again() -> None:
    t = HeartbeatTracker(worker_timeout=2, launch_grace=10, supervisor_grace=4)
    assert t.lost_supervisors([("a", 1)], {("a", 1)}, now=10) == {"a"}
    # its work moved: nothing of it is assigned any more, yet it is kept off for the grace
    assert t.lost_supervisors([("b", 1)], set(), now=13) == {"a"}
    assert t.lost_supervisors([("b", 1)], set(), now=14.5) == set()
    t.lost_supervisors([("a", 1)], {("a", 1)}, now=20)
    t.forget()  # a new leader starts afresh
    assert t.lost_supervisors([], set(), now=20) == set()


class _Spout(Spout):
    outputs = ["n"]


class _Bolt(Bolt):
    def process(self, tup: Any) -> None:
        pass


def _workers(state: MemoryClusterState, tid: str) -> dict[tuple[str, int], list[int]]:
    return {(w["supervisor"], w["port"]): w["tasks"]
            for w in (state.assignment(tid) or {})["workers"]}


def test_round_moves_a_silent_supervisors_work_after_the_worker_timeout() -> None:
    state = MemoryClusterState()
    for sid in ("a", "b"):
        state.register_supervisor(sid, {"host": f"h{sid}", "ports": [1, 2]})
    b = TopologyBuilder("t")
    b.set_spout("s", _Spout(), parallelism=1)
    b.set_bolt("b", _Bolt(), parallelism=1).shuffle_grouping("s")
    topology = b.build(config={"topology.workers": 2})
    conf = {"topology.workers": 2, "topology.acker.executors": 0}
    state.set_topology("t-1", sub.make_meta("t-1", topology, conf, TopologyStatus(ACTIVE), 0,
                                            "me", 1))
    tracker = HeartbeatTracker(worker_timeout=2, launch_grace=10, supervisor_grace=4)
    r = Reconciler("n", tracker)
    r.run(state, now=0)
    assert sorted(sid for sid, _ in _workers(state, "t-1")) == ["a", "b"]

    def beat(n: int, sids: tuple[str, ...]) -> None:
        for w in state.assignment("t-1")["workers"]:
            if w["supervisor"] in sids:
                state.worker_heartbeat("t-1", f"{w['host']}:{w['port']}", {"n": n})

    for n in range(4):  # both running
        beat(n, ("a", "b"))
        r.run(state, now=n)
    for n in range(4, 7):  # "a" dies: its worker's heartbeat stops; it stays registered
        beat(n, ("b",))
        r.run(state, now=n)
    workers = _workers(state, "t-1")
    assert sorted(sid for sid, _ in workers) == ["b", "b"], workers  # not "a"'s other port
    assert sorted(t for ts in workers.values() for t in ts) == [1, 2]
