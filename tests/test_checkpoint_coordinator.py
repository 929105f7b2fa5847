"""The checkpoint coordinator's decisions (acker.coordinator): pure, every case of the protocol."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from acker.checkpoint import (
    Commit,
    CommitRecord,
    Done,
    Failed,
    Hello,
    Message,
    Prepare,
    Prepared,
    Recover,
    Recovered,
    Start,
)
from acker.coordinator import RESTART_EPOCH_GAP, Action, Coordinator, Persist, Send

SPOUTS = {1: "lines", 2: "lines"}
STATEFUL = (5, 6)
EVERYONE = (1, 2, 5, 6)
FIRST = 1 + RESTART_EPOCH_GAP  # the first recovery's epoch for a fresh topology


def sends(actions: list[Action]) -> list[tuple[tuple[int, ...], Message]]:
    return [(a.tasks, a.message) for a in actions if isinstance(a, Send)]


def make(record: CommitRecord | None = None, committers: tuple[int, ...] = (),
         **kw: Any) -> Coordinator:
    kw.setdefault("interval", 1.0)
    kw.setdefault("timeout", 10.0)
    return Coordinator(SPOUTS, STATEFUL, committers, record, **kw)


def running(c: Coordinator, now: float = 0.0) -> Start:
    """Start `c` and confirm the recovery; return the START of the first checkpoint."""
    actions = c.start(now)
    recover = sends(actions)[0][1]
    assert isinstance(recover, Recover)
    out: list[Action] = []
    for task in EVERYONE:
        out = c.receive(Recovered(task, recover.epoch), now)
    [(tasks, start)] = sends(out)
    assert tasks == (1, 2) and isinstance(start, Start)
    return start


def commit_oldest(c: Coordinator, now: float, sources: Any = None) -> list[Action]:
    """Drive the oldest (closed) checkpoint through DONE, PREPARE, PREPARED and the record."""
    cp = c.checkpoints[0]
    out: list[Action] = []
    for spout in SPOUTS:
        out = c.receive(Done(spout, cp.txid, cp.epoch, (sources or {}).get(spout)), now)
    assert sends(out) == [(STATEFUL, Prepare(cp.txid, cp.epoch))]
    for task in STATEFUL:
        out = c.receive(Prepared(task, cp.txid, cp.epoch), now)
    [persist] = out
    assert isinstance(persist, Persist) and persist.commit
    return c.persisted(True, now, wall=1000.0 + now)


# --- start and recovery ----------------------------------------------------------------------


def test_a_fresh_topology_recovers_everyone_before_the_first_checkpoint() -> None:
    c = make()
    actions = c.start(0.0)
    assert isinstance(actions[0], Persist) and not actions[0].commit
    assert actions[0].record.next_epoch == FIRST + 1  # written before any tuple is tagged
    assert sends(actions) == [(EVERYONE, Recover(0, FIRST, {}))]
    for task in (1, 2, 5):
        assert c.receive(Recovered(task, FIRST), 0.1) == []
    assert sends(c.receive(Recovered(6, FIRST), 0.2)) == [((1, 2), Start(1, FIRST))]


def test_recover_is_resent_to_the_silent_tasks_only_every_resend_interval() -> None:
    c = make(resend=0.5)
    c.start(0.0)
    c.receive(Recovered(1, FIRST), 0.1)
    c.receive(Recovered(5, FIRST), 0.1)
    assert c.tick(0.4) == []
    assert sends(c.tick(0.5)) == [((2, 6), Recover(0, FIRST, {}))]
    assert c.tick(0.7) == []
    assert sends(c.tick(1.0)) == [((2, 6), Recover(0, FIRST, {}))]


def test_a_recovered_of_another_recovery_does_not_count() -> None:
    c = make()
    c.start(0.0)
    for task in EVERYONE:
        assert c.receive(Recovered(task, FIRST - 1), 0.1) == []
    assert c.unconfirmed == set(EVERYONE)


def test_hello_while_recovering_only_sends_that_task_the_recovery() -> None:
    c = make()
    c.start(0.0)
    for task in EVERYONE:
        c.receive(Recovered(task, FIRST), 0.0) if task != 6 else None
    out = c.receive(Hello(5), 0.1)  # 5 restarted after answering: it must restore again
    assert sends(out) == [((5,), Recover(0, FIRST, {}))]
    assert c.failed == 0
    assert c.receive(Recovered(6, FIRST), 0.2) == []  # still waiting for 5
    assert sends(c.receive(Recovered(5, FIRST), 0.3)) == [((1, 2), Start(1, FIRST))]


def test_a_restarted_coordinator_resumes_after_the_committed_txid() -> None:
    record = CommitRecord(txid=7, epoch=90, next_epoch=100, time=5.0, duration=0.2, failed=3,
                          sources={"lines": {"a.log": 120}})
    c = make(record)
    actions = c.start(0.0)
    epoch = 100 + RESTART_EPOCH_GAP
    assert sends(actions) == [(EVERYONE, Recover(7, epoch, {"lines": {"a.log": 120}}))]
    for task in EVERYONE:
        out = c.receive(Recovered(task, epoch), 0.0)
    assert sends(out) == [((1, 2), Start(8, epoch))]
    assert c.snapshot() == {"txid": 7, "time": 5.0, "duration": 0.2, "failed": 3}


def test_messages_about_checkpoints_are_ignored_while_recovering() -> None:
    c = make()
    c.start(0.0)
    assert c.receive(Done(1, 1, FIRST, None), 0.1) == []
    assert c.receive(Failed(1, 1, FIRST, "x"), 0.1) == []
    assert c.receive(Prepared(5, 1, FIRST), 0.1) == []
    assert c.failed == 0


def test_tasks_outside_the_topology_are_ignored() -> None:
    c = make()
    c.start(0.0)
    assert c.receive(Hello(99), 0.0) == []
    for task in EVERYONE:
        c.receive(Recovered(task, FIRST), 0.0)
    assert c.receive(Hello(99), 0.0) == []
    assert c.failed == 0


# --- checkpoints -----------------------------------------------------------------------------


def test_checkpoints_open_every_interval_with_txids_and_epochs_up_by_one() -> None:
    c = make(interval=1.0)
    start = running(c, 0.0)
    assert start == Start(1, FIRST)
    assert c.tick(0.99) == []
    assert sends(c.tick(1.0)) == [((1, 2), Start(2, FIRST + 1))]
    assert c.tick(1.5) == []
    assert sends(c.tick(2.0)) == [((1, 2), Start(3, FIRST + 2))]


def test_the_whole_commit_of_one_checkpoint() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)  # closes checkpoint 1
    assert c.receive(Done(1, 1, FIRST, {"a.log": 10}), 1.1) == []
    out = c.receive(Done(2, 1, FIRST, {"b.log": 20}), 1.2)
    assert sends(out) == [(STATEFUL, Prepare(1, FIRST))]
    assert c.receive(Prepared(5, 1, FIRST), 1.3) == []
    [persist] = c.receive(Prepared(6, 1, FIRST), 1.4)
    assert isinstance(persist, Persist) and persist.commit
    record = persist.record
    assert (record.txid, record.epoch) == (1, FIRST)
    assert record.sources == {"lines": {"a.log": 10, "b.log": 20}}
    assert record.duration == pytest.approx(0.4)
    assert c.committed.txid == 0  # not before the record is written
    out = c.persisted(True, 1.4, wall=1234.5)
    assert sends(out) == [(EVERYONE, Commit(1, FIRST))]
    assert c.snapshot() == {"txid": 1, "time": 1.4, "duration": pytest.approx(0.4),
                            "failed": 0}


def test_the_record_is_stamped_with_the_wall_clock_when_given() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    for spout in SPOUTS:
        c.receive(Done(spout, 1, FIRST, None), 1.0)
    c.receive(Prepared(5, 1, FIRST), 1.0)
    [persist] = c.receive(Prepared(6, 1, FIRST), 1.5, wall=99.0)
    assert isinstance(persist, Persist) and persist.record.time == 99.0


def test_no_prepare_before_every_spout_is_done_and_none_for_the_open_checkpoint() -> None:
    c = make()
    running(c, 0.0)
    assert c.receive(Done(1, 1, FIRST, None), 0.5) == []  # checkpoint 1 is still open
    c.tick(1.0)
    assert c.receive(Done(1, 1, FIRST, None), 1.1) == []
    assert sends(c.receive(Done(2, 1, FIRST, None), 1.2)) == [(STATEFUL, Prepare(1, FIRST))]


def test_every_order_of_the_messages_of_one_checkpoint_commits_it_once() -> None:
    messages = [Done(1, 1, FIRST, None), Done(2, 1, FIRST, None), Prepared(5, 1, FIRST),
                Prepared(6, 1, FIRST)]
    for order in itertools.permutations(messages):
        c = make()
        running(c, 0.0)
        c.tick(1.0)
        prepares = persists = 0
        for msg in order:
            for action in c.receive(msg, 1.5):
                prepares += isinstance(action, Send) and isinstance(action.message, Prepare)
                persists += isinstance(action, Persist)
        # A PREPARED can only count once its PREPARE went out: a task never sends it earlier.
        done_first = order.index(messages[0]) < 2 and order.index(messages[1]) < 2
        assert prepares == 1
        assert persists == (1 if done_first else 0), order


def test_checkpoint_n_plus_1_never_commits_before_n() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    c.tick(2.0)  # checkpoints 1 and 2 closed, 3 open
    for spout in SPOUTS:  # 2 is done first
        assert c.receive(Done(spout, 2, FIRST + 1, None), 2.1) == []
    assert c.receive(Prepared(5, 2, FIRST + 1), 2.1) == []  # not asked: ignored
    assert c.receive(Done(1, 1, FIRST, None), 2.2) == []
    assert sends(c.receive(Done(2, 1, FIRST, None), 2.3)) == [(STATEFUL, Prepare(1, FIRST))]
    c.receive(Prepared(5, 1, FIRST), 2.4)
    [persist] = c.receive(Prepared(6, 1, FIRST), 2.4)
    assert isinstance(persist, Persist) and persist.record.txid == 1
    out = c.persisted(True, 2.5)
    # 1 commits, and only then is 2 (already done) prepared.
    assert sends(out) == [(EVERYONE, Commit(1, FIRST)), (STATEFUL, Prepare(2, FIRST + 1))]
    c.receive(Prepared(5, 2, FIRST + 1), 2.6)
    [persist] = c.receive(Prepared(6, 2, FIRST + 1), 2.6)
    assert isinstance(persist, Persist) and persist.record.txid == 2
    assert sends(c.persisted(True, 2.7)) == [(EVERYONE, Commit(2, FIRST + 1))]
    assert c.committed.txid == 2


def test_committed_txids_increase_by_one_over_many_checkpoints() -> None:
    c = make()
    running(c, 0.0)
    committed = []
    for second in range(1, 30):
        c.tick(float(second))
        out = commit_oldest(c, float(second))
        committed += [a.message.txid for a in out
                      if isinstance(a, Send) and isinstance(a.message, Commit)]
    assert committed == list(range(1, 30))


def test_sources_keep_the_last_position_of_spouts_that_report_none() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    commit_oldest(c, 1.0, {1: {"a.log": 10}, 2: {"b.log": 5}})
    c.tick(2.0)
    commit_oldest(c, 2.0, {1: {"a.log": 30}})
    assert c.committed.sources == {"lines": {"a.log": 30, "b.log": 5}}


def test_a_topology_without_stateful_tasks_commits_when_the_spouts_are_done() -> None:
    c = Coordinator({1: "lines"}, (), interval=1.0, timeout=10.0)
    [(tasks, recover)] = sends(c.start(0.0))
    assert tasks == (1,) and isinstance(recover, Recover)
    c.receive(Recovered(1, recover.epoch), 0.0)
    c.tick(1.0)
    [persist] = c.receive(Done(1, 1, recover.epoch, {"a.log": 3}), 1.0)
    assert isinstance(persist, Persist) and persist.record.sources == {"lines": {"a.log": 3}}
    assert sends(c.persisted(True, 1.0)) == [((1,), Commit(1, recover.epoch))]
