"""nimbus.liveness on a fake clock: supervisors judged by their own heartbeats, workers by
theirs, nimbus's blindness counted against nobody; and reconcile rounds over the in-memory
state showing what that changes (a silent supervisor's work moves, a restarting one keeps it,
a hung worker costs only its own slot)."""

from __future__ import annotations

from typing import Any

import pytest

from cluster.memstore import MemoryBackend, MemoryClusterState
from nimbus import submission as sub
from nimbus.lifecycle import ACTIVE, TopologyStatus
from nimbus.liveness import Liveness
from nimbus.reconcile import Reconciler
from topology import Bolt, Spout, TopologyBuilder

INFO = {"host": "ha", "ports": [1, 2]}


def live(**kwargs: Any) -> Liveness:
    settings = {"worker_timeout": 2.0, "launch_grace": 10.0, "supervisor_timeout": 5.0,
                "blind_after": 3.0, "forget_after": 60.0, **kwargs}
    return Liveness(**settings)


def beat(n: int) -> dict[str, Any]:
    return {**INFO, "seq": n}


# --- supervisors --------------------------------------------------------------------------------


def test_a_supervisor_is_lost_after_its_heartbeat_stops_changing_for_the_timeout() -> None:
    t = live()
    for now in range(5):  # beating
        t.begin(now)
        assert set(t.supervisors({"a": INFO}, {"a": beat(now)}, now).alive) == {"a"}
    for now in range(5, 9):  # rounds go on: what nimbus sees, it counts
        t.begin(now)
        t.supervisors({"a": INFO}, {"a": beat(4)}, now)
    t.begin(9)
    view = t.supervisors({"a": INFO}, {"a": beat(4)}, 9)  # silent since 4: 5 s, the boundary
    assert set(view.alive) == {"a"}
    t.begin(9.5)
    view = t.supervisors({"a": INFO}, {"a": beat(4)}, 9.5)
    assert view.alive == {} and view.lost == {"a": 5.5} and view.newly_lost == {"a"}
    t.begin(10)
    view = t.supervisors({"a": INFO}, {"a": beat(4)}, 10)
    assert view.newly_lost == set() and "a" in view.lost  # said once
    t.begin(11)
    assert set(t.supervisors({"a": INFO}, {"a": beat(5)}, 11).alive) == {"a"}  # back


def test_its_registration_vanishing_is_not_loss() -> None:
    t = live()
    t.begin(0)
    t.supervisors({"a": INFO}, {"a": beat(0)}, 0)
    for now in range(1, 4):  # restarting: session closed, heartbeat record still there
        t.begin(now)
        assert set(t.supervisors({}, {"a": beat(0)}, now).alive) == {"a"}
    t.begin(4)
    assert set(t.supervisors({"a": INFO}, {"a": beat(1)}, 4).alive) == {"a"}


def test_a_record_first_seen_without_registration_must_change_first() -> None:
    t = live()  # e.g. a new leader, and a record a dead supervisor left behind
    t.begin(100)
    view = t.supervisors({}, {"dead": beat(1), "up": beat(1)}, 100)
    assert view.alive == {} and set(view.lost) == {"dead", "up"}
    t.begin(101)
    view = t.supervisors({}, {"dead": beat(1), "up": beat(2)}, 101)
    assert set(view.alive) == {"up"} and set(view.lost) == {"dead"}
    fresh = live()
    fresh.begin(100)
    assert set(fresh.supervisors({"b": INFO}, {"b": beat(1)}, 100).alive) == {"b"}


def test_a_supervisor_without_heartbeats_lives_by_its_registration() -> None:
    t = live()
    t.begin(0)
    assert t.supervisors({"old": INFO}, {}, 0).alive == {"old": INFO}
    t.begin(1000)
    assert t.supervisors({"old": INFO}, {}, 1000).alive == {"old": INFO}
    t.begin(1001)
    assert t.supervisors({}, {}, 1001).alive == {}


def test_a_long_silent_unregistered_record_is_forgotten() -> None:
    t = live(forget_after=30)
    for now in range(32):
        t.begin(now)
        view = t.supervisors({"a": INFO}, {"a": beat(0)}, now)
        assert view.expired == set()  # still registered
    t.begin(32)
    assert t.supervisors({}, {"a": beat(0)}, 32).expired == {"a"}
    assert live().forget_after == 60 and Liveness(2, 10, 5, 3).forget_after == 60


# --- workers ------------------------------------------------------------------------------------


SLOT_A = ("a", 1)
WORKERS = {SLOT_A: ("ha", [1, 2])}


def look(t: Liveness, now: float, worker_beat: int | None, sup_beat: int | None) -> set:
    t.begin(now)
    beats = {} if sup_beat is None else {"a": beat(sup_beat)}
    t.supervisors({"a": INFO}, beats, now)
    hbs = {} if worker_beat is None else {"ha:1": {"n": worker_beat}}
    return t.observe("t", WORKERS, hbs, now)


def test_a_worker_is_dead_after_its_own_timeout_while_its_supervisor_beats() -> None:
    t = live()
    assert look(t, 0, 0, 0) == set()
    assert look(t, 1, 1, 1) == set()
    assert look(t, 3, 1, 3) == set()  # 2 s silent: the boundary
    assert look(t, 3.5, 1, 3.5) == {SLOT_A}


def test_a_worker_is_not_judged_while_its_supervisor_is_silent() -> None:
    t = live()
    look(t, 0, 0, 0)
    look(t, 1, 1, 1)
    # The supervisor restarts: neither its heartbeat nor its workers' reach the state.
    for now in (2, 3, 4, 5):
        assert look(t, now, 1, 1) == set(), now
    assert look(t, 5.5, 2, 2) == set()  # back, and so are its workers' heartbeats


def test_a_worker_that_never_heartbeats_is_dead_after_the_launch_grace() -> None:
    t = live()
    for now in range(11):
        assert look(t, now, None, now) == set()
    assert look(t, 10.5, None, 10.5) == {SLOT_A}


def test_one_hung_worker_does_not_make_its_supervisor_lost() -> None:
    t = live()
    for now in range(20):
        t.begin(now)
        view = t.supervisors({"a": INFO}, {"a": beat(now)}, now)
        assert set(view.alive) == {"a"}
        dead = t.observe("t", WORKERS, {"ha:1": {"n": 0}}, now)
    assert dead == {SLOT_A}


# --- nimbus's blindness -------------------------------------------------------------------------


def test_time_nimbus_could_not_read_is_nobodys_silence() -> None:
    t = live()
    look(t, 0, 0, 0)
    t.blind()  # rounds failed for half a minute: ZooKeeper away
    assert look(t, 30, 0, 0) == set()  # the first round that sees again: clocks restart
    assert look(t, 32, 0, 0) == set()  # the supervisor still reconnecting: not yet lost
    assert set(t.supervisors({"a": INFO}, {"a": beat(0)}, 32).alive) == {"a"}
    assert look(t, 33, 1, 33) == set()  # it and its worker are heard again
    assert look(t, 35, 1, 35) == set()
    assert look(t, 35.5, 1, 35.5) == {SLOT_A}  # silence after sight counts again


def test_a_failed_round_restarts_the_clocks_even_between_regular_rounds() -> None:
    looks = []
    for fail in (False, True):
        t = live()
        look(t, 0, 0, 0)
        look(t, 1, 1, 1)  # its last heartbeat
        if fail:
            t.blind()
        look(t, 2, 1, 2)
        look(t, 3, 1, 3)
        looks.append(look(t, 3.5, 1, 3.5))
    assert looks == [{SLOT_A}, set()]


def test_a_gap_between_rounds_longer_than_blind_after_counts_as_blindness() -> None:
    t = live(blind_after=3)
    look(t, 0, 0, 0)
    assert t.begin(3) is False
    assert t.begin(7) is True  # 4 s without a round: nimbus could not see
    t.begin(8)
    assert set(t.supervisors({}, {"a": beat(0)}, 8).alive) == {"a"}


def test_forget_starts_afresh() -> None:
    t = live()
    look(t, 0, 0, 0)
    t.forget()
    assert t.last_change("t", SLOT_A, 1) is None
    t.begin(100)
    assert set(t.supervisors({"a": INFO}, {"a": beat(0)}, 100).alive) == {"a"}


# --- rounds over the in-memory state ------------------------------------------------------------


class _Spout(Spout):
    outputs = ["n"]


class _Bolt(Bolt):
    def process(self, tup: Any) -> None:
        pass


class Round:
    """A topology of 2 workers (2 tasks) over supervisors a and b with 2 slots each."""

    def __init__(self, **settings: Any) -> None:
        self.backend = MemoryBackend()
        self.state = MemoryClusterState(self.backend)
        self.sessions = {sid: MemoryClusterState(self.backend) for sid in ("a", "b")}
        self.seq = {"a": 0, "b": 0}
        for sid, session in self.sessions.items():
            session.register_supervisor(sid, {"host": f"h{sid}", "ports": [1, 2]})
        b = TopologyBuilder("t")
        b.set_spout("s", _Spout(), parallelism=1)
        b.set_bolt("b", _Bolt(), parallelism=1).shuffle_grouping("s")
        topology = b.build(config={"topology.workers": 2})
        conf = {"topology.workers": 2, "topology.acker.executors": 0}
        self.state.set_topology("t-1", sub.make_meta("t-1", topology, conf,
                                                     TopologyStatus(ACTIVE), 0, "me", 1))
        self.r = Reconciler("n", live(**settings))

    def run(self, now: float, beating: tuple[str, ...] = ("a", "b"),
            workers: tuple[str, ...] = ("a", "b")) -> None:
        for sid in beating:
            self.seq[sid] += 1
            self.state.supervisor_heartbeat(sid, {"host": f"h{sid}", "ports": [1, 2],
                                                  "seq": self.seq[sid]})
        for w in (self.state.assignment("t-1") or {}).get("workers", []):
            if w["supervisor"] in workers:
                self.state.worker_heartbeat("t-1", f"{w['host']}:{w['port']}",
                                            {"n": now, "sup": w["supervisor"]})
        self.r.run(self.state, now)

    def workers(self) -> dict[tuple[str, int], list[int]]:
        return {(w["supervisor"], w["port"]): w["tasks"]
                for w in (self.state.assignment("t-1") or {})["workers"]}

    def version(self) -> int:
        return int((self.state.assignment("t-1") or {})["version"])


def test_round_moves_a_silent_supervisors_work_after_its_timeout() -> None:
    r = Round()
    r.run(0)
    assert sorted(sid for sid, _ in r.workers()) == ["a", "b"]
    for now in range(1, 4):
        r.run(now)
    for now in range(4, 9):  # "a" dies with its workers; it stays registered
        r.run(now, beating=("b",), workers=("b",))
    assert sorted(sid for sid, _ in r.workers()) == ["a", "b"]  # 5 s: not yet
    r.run(9.5, beating=("b",), workers=("b",))
    workers = r.workers()
    assert sorted(sid for sid, _ in workers) == ["b", "b"], workers  # not "a"'s other port
    assert sorted(t for ts in workers.values() for t in ts) == [1, 2]


def test_round_keeps_the_work_of_a_restarting_supervisor() -> None:
    r = Round()
    for now in range(4):
        r.run(now)
    version = r.version()
    r.sessions["a"].close()  # SIGTERM: its session (and registration) goes
    for now in (4, 5, 6, 7):  # starting again: nothing written meanwhile
        r.run(now, beating=("b",), workers=("b",))
    r.sessions["a"] = MemoryClusterState(r.backend)
    r.sessions["a"].register_supervisor("a", {"host": "ha", "ports": [1, 2]})
    for now in (8, 9, 10, 11, 12):
        r.run(now)
    assert r.version() == version  # nothing was reassigned
    assert sorted(sid for sid, _ in r.workers()) == ["a", "b"]


def test_round_moves_only_a_hung_workers_own_tasks() -> None:
    r = Round()
    for now in range(4):
        r.run(now)
    before = r.workers()
    slot_a = next(s for s in before if s[0] == "a")
    for now in range(4, 12):  # "a" beats, its worker does not
        r.run(now, workers=("b",))
    after = r.workers()
    assert slot_a not in after
    assert [s for s in after if s[0] == "b"] == [s for s in before if s[0] == "b"]  # untouched
    (moved,) = [s for s in after if s[0] == "a"]  # a is not lost: it gets the tasks back
    assert after[moved] == before[slot_a]


def test_a_zookeeper_outage_moves_nothing() -> None:
    r = Round()
    for now in range(4):
        r.run(now)
    version = r.version()
    r.r.liveness.blind()  # rounds failed for 30 s: neither nimbus nor supervisors could talk
    r.run(34, beating=(), workers=())
    r.run(35, beating=(), workers=())
    r.run(36)
    r.run(37)
    assert r.version() == version


@pytest.mark.parametrize("bad", [["not", "an", "object"], {"topology_id": "x"}])
def test_a_bad_record_of_one_topology_does_not_stop_the_round(bad: Any) -> None:
    r = Round()
    r.state.set_assignment("broken-1", bad)
    r.state.set_topology("broken-1", {"id": "broken-1", "name": "broken", "lifecycle": 7})
    r.run(0)
    assert sorted(sid for sid, _ in r.workers()) == ["a", "b"]
    assert r.state.assignment("broken-1") is None  # a topology without a record is unassigned
