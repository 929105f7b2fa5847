"""The task side of the checkpoint protocol (acker.epochs): epoch tags in root ids, a spout
task's ledger and a stateful task's ledger. Pure: every case, no worker."""

from __future__ import annotations

import random

import pytest

from acker.checkpoint import (
    Commit,
    Done,
    Failed,
    Prepare,
    Prepared,
    Recover,
    Recovered,
    Start,
    from_wire,
    to_wire,
)
from acker.epochs import (
    DROP,
    HOLD,
    PROCESS,
    TAG_MASK,
    SpoutLedger,
    TaskLedger,
    make_root,
    root_tag,
    tuple_epoch,
    unwrap,
)

rng = random.Random(7)


def root(epoch: int) -> int:
    return make_root(epoch, rng.getrandbits(64))


# --- tags ----------------------------------------------------------------------------------


def test_a_root_carries_its_epoch_on_top_of_48_random_bits() -> None:
    r = make_root(70_000, 0xFFFF_FFFF_FFFF_FFFF)
    assert root_tag(r) == 70_000 & TAG_MASK
    assert r & ((1 << 48) - 1) == (1 << 48) - 1
    assert 0 <= r < 1 << 64


def test_roots_still_spread_over_acker_tasks() -> None:
    # The worker picks an acker task by root % n: the random low bits must decide it.
    counts = [0] * 3
    for _ in range(3000):
        counts[root(5) % 3] += 1
    assert min(counts) > 800


@pytest.mark.parametrize("epoch", [0, 1, 5, 32767, 32768, 65535, 65536, 65537, 10**9])
@pytest.mark.parametrize("delta", [-32767, -3, -1, 0, 1, 2, 32767])
def test_unwrap_finds_the_epoch_near_a_known_one_across_the_wrap(epoch: int, delta: int) -> None:
    near = epoch + delta
    assert unwrap(epoch & TAG_MASK, near) == epoch


def test_a_tuple_belongs_to_the_earliest_epoch_of_its_roots() -> None:
    assert tuple_epoch((), 10) is None
    assert tuple_epoch((root(10), 123), 10) == 10
    assert tuple_epoch((root(11), 1, root(9), 2, root(12), 3), 10) == 9
    assert tuple_epoch((root(65536), 1), 65535) == 65536  # across the wrap


# --- messages on the wire ------------------------------------------------------------------


def test_every_message_round_trips_through_builtin_values() -> None:
    import marshal

    messages = [Recover(3, 17, {"lines": {"a.log": 5}}), Start(4, 18), Prepare(4, 18),
                Commit(4, 18), Recovered(2, 17), Done(1, 4, 18, {"a.log": 9}),
                Done(1, 4, 18, None), Failed(5, 4, 18, "timed out"), Prepared(5, 4, 18)]
    for msg in messages:
        wire = marshal.loads(marshal.dumps(to_wire(msg)))
        assert from_wire(wire) == msg and type(from_wire(wire)) is type(msg)


@pytest.mark.parametrize("bad, problem", [
    (None, "expected"), ((), "expected"), ((1, 2), "expected"), (("nope", 1), "unknown kind"),
    (("start", 1), "expected 2 fields, got 1"), (("start", 1, "x"), "epoch must be an integer"),
    (("hello", True), "task must be an integer"),
])
def test_a_malformed_message_is_named(bad: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        from_wire(bad)


# --- a spout task --------------------------------------------------------------------------


def spout_at(epoch: int = 100, txid: int = 1) -> SpoutLedger:
    ledger = SpoutLedger(task=3)
    result = ledger.recover(Recover(txid - 1, epoch, {}))
    assert result.reply == Recovered(3, epoch) and result.rollback
    assert not ledger.running
    assert ledger.start(Start(txid, epoch), {"a.log": 0}) == []
    assert ledger.running and ledger.epoch == epoch
    return ledger


def test_a_spout_waits_for_recover_then_start() -> None:
    ledger = SpoutLedger(task=3)
    assert ledger.start(Start(1, 5), None) == [] and not ledger.running
    ledger.recover(Recover(0, 5, {}))
    assert not ledger.running
    ledger.start(Start(1, 5), None)
    assert ledger.running


def test_done_when_the_epoch_closes_after_all_its_trees_completed() -> None:
    ledger = spout_at(100)
    roots = [root(100) for _ in range(3)]
    ledger.emitted(3)
    for i, r in enumerate(roots):
        assert ledger.completed(r, f"m{i}") is None  # the epoch is still open
    assert ledger.start(Start(2, 101), {"a.log": 30}) == [Done(3, 1, 100, {"a.log": 30})]


def test_done_when_the_last_tree_completes_after_the_close() -> None:
    ledger = spout_at(100)
    r1, r2 = root(100), root(100)
    ledger.emitted(2)
    assert ledger.start(Start(2, 101), {"a.log": 20}) == []
    assert ledger.completed(r1, "m1") is None
    assert ledger.completed(r2, "m2") == Done(3, 1, 100, {"a.log": 20})
    assert ledger.held == 2


def test_an_empty_epoch_is_done_at_its_close() -> None:
    ledger = spout_at(100)
    assert ledger.start(Start(2, 101), None) == [Done(3, 1, 100, None)]


def test_trees_complete_in_their_own_epoch_whatever_the_order() -> None:
    ledger = spout_at(100)
    a = root(100)
    ledger.emitted()
    ledger.start(Start(2, 101), {"p": 1})
    b = root(101)
    ledger.emitted()
    assert ledger.completed(b, "b") is None  # epoch 101 is still open
    assert ledger.completed(a, "a") == Done(3, 1, 100, {"p": 1})
    assert ledger.start(Start(3, 102), {"p": 2}) == [Done(3, 2, 101, {"p": 2})]


def test_held_acks_are_released_by_the_commit_only() -> None:
    ledger = spout_at(100)
    ledger.emitted(2)
    ledger.completed(root(100), "m1")
    ledger.completed(root(100), "m2")
    ledger.start(Start(2, 101), None)
    assert ledger.commit(Commit(1, 999)) == []  # not that epoch
    assert ledger.commit(Commit(1, 100)) == ["m1", "m2"]
    assert ledger.commit(Commit(1, 100)) == []  # once
    assert ledger.committed_txid == 1 and ledger.held == 0


def test_a_missed_commit_is_implied_by_the_next() -> None:
    ledger = spout_at(100)
    ledger.emitted(1)
    ledger.completed(root(100), "m1")
    ledger.start(Start(2, 101), {"f": 10})
    ledger.emitted(1)
    ledger.completed(root(101), "m2")
    ledger.start(Start(3, 102), {"f": 20})
    assert ledger.commit(Commit(2, 101)) == ["m1", "m2"]  # txid 1's COMMIT went missing
    assert ledger.committed_txid == 2 and ledger.committed_trees == 2
    assert ledger.committed_position == {"f": 20} and ledger.held == 0
    assert ledger.commit(Commit(1, 100)) == []  # too late: nothing twice


def test_a_failed_tree_reports_its_checkpoint_once_and_it_is_never_done() -> None:
    ledger = spout_at(100)
    a, b, c = root(100), root(100), root(100)
    ledger.emitted(3)
    assert ledger.failed(a, "a", "timed out") == Failed(3, 1, 100, "timed out")
    assert ledger.failed(b, "b") is None
    assert ledger.start(Start(2, 101), None) == []
    assert ledger.completed(c, "c") is None


def test_recover_fails_every_uncommitted_tuple_and_pauses() -> None:
    ledger = spout_at(100)
    ledger.emitted(3)
    ledger.completed(root(100), "done-1")
    ledger.failed(root(100), "failed-1")
    ledger.start(Start(2, 101), None)
    ledger.emitted(1)
    ledger.completed(root(101), "done-2")
    result = ledger.recover(Recover(0, 102, {}), in_flight=["pending-1"])
    assert result.rollback and result.reply == Recovered(3, 102)
    assert sorted(result.fail) == ["done-1", "done-2", "failed-1", "pending-1"]
    assert not ledger.running and ledger.held == 0
    # A tree of a rolled-back epoch that completes late changes nothing.
    assert ledger.completed(root(100), "late") is None
    assert ledger.failed(root(101), "late") is None


def test_a_repeated_recover_is_answered_and_changes_nothing() -> None:
    ledger = spout_at(100)
    ledger.emitted()
    ledger.completed(root(100), "m")
    again = ledger.recover(Recover(0, 100, {}))
    assert again.reply == Recovered(3, 100) and not again.rollback and again.fail == []
    assert ledger.running and ledger.held == 1
    older = ledger.recover(Recover(0, 99, {}))
    assert older.reply is None and not older.rollback


def test_a_stale_or_repeated_start_is_ignored() -> None:
    ledger = spout_at(100)
    ledger.start(Start(2, 101), None)
    assert ledger.start(Start(2, 101), None) == []
    assert ledger.start(Start(1, 100), None) == []
    assert ledger.epoch == 101 and ledger.txid == 2


# --- a stateful task -----------------------------------------------------------------------


def task_at(epoch: int = 100, txid: int = 0) -> TaskLedger:
    ledger = TaskLedger(task=5)
    result = ledger.recover(Recover(txid, epoch, {}))
    assert result.restore and not result.in_step and result.reply == Recovered(5, epoch)
    return ledger


def test_nothing_is_processed_before_the_first_recover() -> None:
    ledger = TaskLedger(task=5)
    items = {"old": (root(99), 1), "now": (root(100), 2), "later": (root(101), 3),
             "untracked": ()}
    for name, ids in items.items():
        assert ledger.classify(ids) == HOLD
        assert not ledger.admit(name, ids)
    assert ledger.held == 4
    result = ledger.recover(Recover(0, 100, {}))
    assert sorted(result.release) == ["now", "untracked"]
    assert ledger.dropped == 1 and ledger.held == 1  # "later" waits for epoch 101
    assert ledger.prepared_ok(Prepare(1, 100))[1] == ["later"]


def test_tuples_of_the_open_epoch_are_processed_later_held_older_dropped() -> None:
    ledger = task_at(100)
    assert ledger.classify((root(100), 1)) == PROCESS
    assert ledger.classify(()) == PROCESS  # untracked: whatever epoch is open
    assert ledger.classify((root(101), 1)) == HOLD
    assert ledger.classify((root(99), 1)) == DROP
    assert ledger.classify((root(101), 1, root(100), 2)) == PROCESS  # earliest root wins
    assert ledger.admit("x", (root(100), 1))
    assert not ledger.admit("y", (root(99), 1)) and ledger.dropped == 1


def test_prepare_opens_the_next_epoch_and_releases_what_waited_for_it() -> None:
    ledger = task_at(100)
    ledger.admit("a", (root(101), 1))
    ledger.admit("b", (root(102), 1))
    ledger.admit("c", (root(101), 1))
    reply, release = ledger.prepared_ok(Prepare(1, 100))
    assert reply == Prepared(5, 1, 100) and release == ["a", "c"]
    assert ledger.open == 101 and ledger.held == 1
    assert ledger.classify((root(101), 1)) == PROCESS
    assert ledger.prepared_ok(Prepare(2, 101))[1] == ["b"]


@pytest.mark.parametrize("ledger_txid, prepare, problem", [
    (0, Prepare(1, 101), "processing epoch 100, not 101"),
    (0, Prepare(2, 100), "last checkpoint is txid 0, not 1"),
    (4, Prepare(4, 100), "last checkpoint is txid 4, not 3"),
])
def test_a_task_out_of_step_says_why_it_cannot_prepare(ledger_txid: int, prepare: Prepare,
                                                       problem: str) -> None:
    ledger = task_at(100, ledger_txid)
    reason = ledger.check_prepare(prepare)
    assert reason is not None and problem in reason
    assert ledger.prepare_failed(prepare, reason) == Failed(5, prepare.txid, prepare.epoch,
                                                             f"task 5 cannot prepare: {reason}")


def test_a_task_that_never_recovered_cannot_prepare() -> None:
    assert TaskLedger(5).check_prepare(Prepare(1, 100)) == "it has not restored its state yet"


def test_prepares_chain_by_txid_before_their_commits() -> None:
    ledger = task_at(100, txid=3)
    assert ledger.check_prepare(Prepare(4, 100)) is None
    ledger.prepared_ok(Prepare(4, 100))
    assert ledger.check_prepare(Prepare(5, 101)) is None


def test_a_commit_implies_the_missing_commits_before_it() -> None:
    ledger = task_at(100)
    ledger.prepared_ok(Prepare(1, 100))
    ledger.prepared_ok(Prepare(2, 101))
    ledger.prepared_ok(Prepare(3, 102))
    assert ledger.commit(Commit(2, 101)) == [1, 2]  # COMMIT 1 went missing
    assert ledger.commit(Commit(1, 100)) == []
    assert ledger.commit(Commit(3, 999)) == []  # another attempt's epoch
    assert ledger.commit(Commit(3, 102)) == [3]
    assert ledger.committed_txid == 3 and ledger.prepared == []


def test_recover_in_step_undoes_in_memory_otherwise_reads_the_store() -> None:
    ledger = task_at(100)
    ledger.prepared_ok(Prepare(1, 100))
    ledger.commit(Commit(1, 100))
    ledger.prepared_ok(Prepare(2, 101))
    result = ledger.recover(Recover(1, 200, {}))  # committed 1 here too: undo in memory
    assert result.restore and result.in_step
    ledger.prepared_ok(Prepare(2, 200))  # this task's COMMIT 2 will go missing
    result = ledger.recover(Recover(2, 300, {}))  # the record says 2: read the store
    assert result.restore and not result.in_step
    assert ledger.committed_txid == 2 and ledger.prepared == [] and ledger.open == 300


def test_recover_drops_the_rolled_back_epochs_and_keeps_later_ones() -> None:
    ledger = task_at(100)
    ledger.admit("rolled-back", (root(101), 1))
    ledger.admit("new", (root(150), 1))
    ledger.admit("newer", (root(151), 1))
    result = ledger.recover(Recover(0, 150, {}))
    assert result.release == ["new"] and ledger.dropped == 1 and ledger.held == 1


def test_a_repeated_recover_is_answered_and_changes_nothing_on_a_task() -> None:
    ledger = task_at(100)
    ledger.prepared_ok(Prepare(1, 100))  # epoch 100 ran after the recovery
    again = ledger.recover(Recover(0, 100, {}))
    assert again.reply == Recovered(5, 100) and not again.restore
    assert ledger.open == 101 and ledger.prepared == [(1, 100)]
    assert ledger.recover(Recover(0, 50, {})).reply is None


def test_a_spout_replayed_by_seeking_keeps_no_msg_ids() -> None:
    ledger = SpoutLedger(task=3, keep_msg_ids=False)
    ledger.recover(Recover(0, 100, {}))
    ledger.start(Start(1, 100), None)
    ledger.emitted(3)
    ledger.completed(root(100), 0)
    assert ledger.failed(root(100), 10) == Failed(3, 1, 100, "a tuple failed")
    assert ledger.failed(root(100), 20) is None
    assert ledger.held == 1
    assert ledger.recover(Recover(0, 101, {}), in_flight=[30]).fail == []
    ledger.start(Start(1, 101), None)
    ledger.emitted()
    ledger.completed(root(101), 40)
    assert ledger.start(Start(2, 102), None) == [Done(3, 1, 101, None)]
    assert ledger.commit(Commit(1, 101)) == []
