"""The checkpoint coordinator's rollbacks and committers (acker.coordinator): pure."""

from __future__ import annotations

import pytest
from test_checkpoint_coordinator import (
    EVERYONE,
    FIRST,
    SPOUTS,
    STATEFUL,
    commit_oldest,
    make,
    running,
    sends,
)

from acker.checkpoint import (
    Commit,
    CommitRecord,
    Committed,
    Done,
    Failed,
    Hello,
    Prepare,
    Prepared,
    Recover,
    Recovered,
    Start,
)
from acker.coordinator import Action, Coordinator, Persist, RolledBack, Send

# --- rollback --------------------------------------------------------------------------------


def rolled_back(actions: list[Action]) -> RolledBack:
    [rb] = [a for a in actions if isinstance(a, RolledBack)]
    return rb


def test_a_failure_in_n_rolls_back_n_everywhere_while_n_minus_1_stays_committed() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    commit_oldest(c, 1.0, {1: {"a.log": 10}})  # checkpoint 1 committed
    c.tick(2.0)  # 2 closed, 3 open
    out = c.receive(Failed(2, 2, FIRST + 1, "tuple 17 timed out"), 2.5)
    rb = rolled_back(out)
    assert rb.txids == (2, 3) and "timed out" in rb.reason and "task 2" in rb.reason
    [persist] = [a for a in out if isinstance(a, Persist)]
    assert not persist.commit and persist.record.txid == 1 and persist.record.failed == 2
    recover = Recover(1, FIRST + 3, {"lines": {"a.log": 10}})
    assert sends(out) == [(EVERYONE, recover)]
    assert c.committed.txid == 1 and c.failed == 2
    # After the recovery the txid of the rolled-back checkpoint is tried again, in a new epoch.
    for task in EVERYONE:
        out = c.receive(Recovered(task, FIRST + 3), 2.6)
    assert sends(out) == [((1, 2), Start(2, FIRST + 3))]
    assert c.snapshot()["failed"] == 2 and c.snapshot()["txid"] == 1


def test_a_task_that_cannot_prepare_rolls_back_everywhere() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    for spout in SPOUTS:
        c.receive(Done(spout, 1, FIRST, None), 1.1)
    c.receive(Prepared(5, 1, FIRST), 1.2)
    out = c.receive(Failed(6, 1, FIRST, "task 6 cannot prepare: disk full"), 1.3)
    assert rolled_back(out).txids == (1, 2)
    assert sends(out) == [(EVERYONE, Recover(0, FIRST + 2, {}))]
    assert c.committed.txid == 0


def test_a_task_dying_mid_prepare_rolls_back_when_it_says_hello() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    for spout in SPOUTS:
        c.receive(Done(spout, 1, FIRST, None), 1.1)
    c.receive(Prepared(5, 1, FIRST), 1.2)
    out = c.receive(Hello(6), 3.0)  # 6 was killed before preparing, and restarted
    assert "task 6" in rolled_back(out).reason
    assert sends(out) == [(EVERYONE, Recover(0, FIRST + 2, {}))]
    # Its PREPARED for the old attempt, if it ever arrives, is ignored.
    assert c.receive(Prepared(6, 1, FIRST), 3.1) == []


def test_a_task_dying_mid_prepare_that_never_returns_times_the_checkpoint_out() -> None:
    c = make(timeout=5.0)
    running(c, 0.0)
    c.tick(1.0)
    for spout in SPOUTS:
        c.receive(Done(spout, 1, FIRST, None), 1.1)
    c.receive(Prepared(5, 1, FIRST), 1.2)
    assert [a for a in c.tick(5.9) if isinstance(a, RolledBack)] == []
    out = c.tick(6.1)
    rb = rolled_back(out)
    assert "checkpoint 1 did not commit within 5 s" in rb.reason
    assert rb.txids[0] == 1 and c.committed.txid == 0 and c.failed == len(rb.txids)


def test_a_commit_record_that_cannot_be_written_rolls_back() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    for spout in SPOUTS:
        c.receive(Done(spout, 1, FIRST, None), 1.0)
    c.receive(Prepared(5, 1, FIRST), 1.0)
    c.receive(Prepared(6, 1, FIRST), 1.0)
    out = c.persisted(False, 1.1)
    assert "commit record" in rolled_back(out).reason
    assert c.committed.txid == 0
    assert not any(isinstance(a, Send) and isinstance(a.message, Commit) for a in out)


def test_nothing_may_happen_between_a_commit_record_and_its_outcome() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    for spout in SPOUTS:
        c.receive(Done(spout, 1, FIRST, None), 1.0)
    c.receive(Prepared(5, 1, FIRST), 1.0)
    c.receive(Prepared(6, 1, FIRST), 1.0)
    with pytest.raises(RuntimeError, match="persisted"):
        c.receive(Failed(1, 2, FIRST + 1, "x"), 1.0)
    with pytest.raises(RuntimeError, match="persisted"):
        c.tick(2.0)
    c.persisted(True, 1.0)
    with pytest.raises(RuntimeError, match="without a commit record"):
        c.persisted(True, 1.0)


def test_stale_messages_after_a_rollback_change_nothing() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    c.receive(Failed(1, 1, FIRST, "x"), 1.1)
    for task in EVERYONE:
        c.receive(Recovered(task, FIRST + 2), 1.2)
    c.tick(2.2)  # checkpoint 1 (epoch FIRST + 2) closed
    # Messages of the rolled-back attempt of txid 1 (epoch FIRST):
    assert c.receive(Done(1, 1, FIRST, None), 2.3) == []
    assert c.receive(Done(2, 1, FIRST, None), 2.3) == []
    assert c.receive(Failed(2, 1, FIRST, "late"), 2.3) == []
    assert c.receive(Recovered(5, FIRST), 2.3) == []
    assert c.failed == 2
    assert c.checkpoints[0].done == {}


def test_a_failure_of_an_already_committed_checkpoint_is_ignored() -> None:
    c = make()
    running(c, 0.0)
    c.tick(1.0)
    commit_oldest(c, 1.0)
    assert c.receive(Failed(1, 1, FIRST, "late duplicate"), 1.5) == []
    assert c.failed == 0


def test_hello_while_running_rolls_back_the_open_checkpoint_too() -> None:
    c = make()
    running(c, 0.0)
    out = c.receive(Hello(1), 0.5)
    assert rolled_back(out).txids == (1,)
    assert sends(out) == [(EVERYONE, Recover(0, FIRST + 1, {}))]


# --- committers ------------------------------------------------------------------------------


def test_the_next_checkpoint_prepares_only_once_every_committer_has_committed() -> None:
    c = make(committers=(6,))
    running(c, 0.0)
    c.tick(1.0)
    c.tick(2.0)
    commit_oldest(c, 2.0)  # checkpoint 1 committed; 2 is closed
    for spout in SPOUTS:
        out = c.receive(Done(spout, 2, FIRST + 1, None), 2.1)
    assert out == []  # committer 6 has not run commit(1) yet
    assert c.receive(Committed(5, 1), 2.2) == []  # 5 is not a committer
    assert sends(c.receive(Committed(6, 1), 2.3)) == [(STATEFUL, Prepare(2, FIRST + 1))]


def test_after_a_recovery_committers_are_taken_to_have_committed_the_committed_txid() -> None:
    c = make(CommitRecord(txid=4, next_epoch=10), committers=(6,))
    start = running(c, 0.0)
    assert start.txid == 5
    c.tick(1.0)
    for spout in SPOUTS:
        out = c.receive(Done(spout, 5, start.epoch, None), 1.1)
    assert sends(out) == [(STATEFUL, Prepare(5, start.epoch))]


def test_a_restarted_watched_task_rolls_back_at_once_but_not_while_recovering() -> None:
    c = Coordinator(SPOUTS, STATEFUL, interval=1.0, timeout=10.0, watched=(3, 4))
    c.start(0.0)
    assert c.receive(Hello(3), 0.1) == []  # a split task restarted before anything ran
    assert c.unconfirmed == set(EVERYONE)  # and it is not waited for
    for task in EVERYONE:
        c.receive(Recovered(task, FIRST), 0.2)
    out = c.receive(Hello(4), 0.5)
    assert "task 4 restarted" in rolled_back(out).reason
    assert sends(out) == [(EVERYONE, Recover(0, FIRST + 1, {}))]
