"""AckerLedger: pure logic, every message order, and forgetting trees by rotation."""

from __future__ import annotations

import itertools
import random

import pytest

from acker.ledger import ACK, FAIL, AckerLedger, Outcome

# --- AckerLedger --------------------------------------------------------------------------------


def test_init_then_ack_completes_the_tree() -> None:
    ledger = AckerLedger()
    assert ledger.init(1, 0b1010, spout_task=7) is None
    assert ledger.ack(1, 0b1010) == Outcome(ACK, 1, 7)
    assert len(ledger) == 0


def test_ack_before_init_waits_for_the_init() -> None:
    ledger = AckerLedger()
    assert ledger.ack(1, 0b1010) is None  # the value is zero only after the init
    assert len(ledger) == 1
    assert ledger.init(1, 0b1010, spout_task=3) == Outcome(ACK, 1, 3)
    assert len(ledger) == 0


def test_acks_that_cancel_out_before_init_do_not_complete_the_tree() -> None:
    ledger = AckerLedger()
    # A child acked before its parent: the XOR passes through zero, but no init yet.
    assert ledger.ack(5, 0xF0) is None
    assert ledger.ack(5, 0xF0) is None
    assert len(ledger) == 1
    assert ledger.init(5, 0x0F, spout_task=2) is None  # the spout's edge is still open
    assert ledger.ack(5, 0x0F) == Outcome(ACK, 5, 2)


def test_a_tree_completes_in_every_order_of_its_messages() -> None:
    # spout -> e1, e2; bolt A acks e1 and anchors e3; bolt B acks e2; bolt C acks e3.
    e1, e2, e3 = 0x1111, 0x2222, 0x4444
    messages = [("init", e1 ^ e2), ("ack", e1 ^ e3), ("ack", e2), ("ack", e3)]
    for order in itertools.permutations(messages):
        ledger = AckerLedger()
        outcomes = []
        for kind, val in order:
            out = ledger.init(9, val, 4) if kind == "init" else ledger.ack(9, val)
            outcomes.append(out)
        assert outcomes[:-1] == [None] * 3, order
        assert outcomes[-1] == Outcome(ACK, 9, 4), order
        assert len(ledger) == 0


def test_combined_ack_is_the_xor_of_many_acks() -> None:
    # A worker folds the acks of one root into a single XOR before sending it.
    rng = random.Random(1)
    edges = [rng.getrandbits(64) for _ in range(20)]
    ledger = AckerLedger()
    init = 0
    for e in edges:
        init ^= e
    assert ledger.init(1, init, 0) is None
    combined = 0
    for e in edges[:10]:
        combined ^= e
    assert ledger.ack(1, combined) is None
    combined = 0
    for e in edges[10:]:
        combined ^= e
    assert ledger.ack(1, combined) == Outcome(ACK, 1, 0)


def test_multiple_roots_are_tracked_independently() -> None:
    ledger = AckerLedger()
    assert ledger.init(1, 0xA, 10) is None
    assert ledger.init(2, 0xB, 20) is None
    assert ledger.init(3, 0xC, 10) is None
    assert len(ledger) == 3
    assert ledger.ack(2, 0xB) == Outcome(ACK, 2, 20)
    assert ledger.ack(1, 0xB) is None  # wrong value for root 1: still pending
    assert ledger.ack(3, 0xC) == Outcome(ACK, 3, 10)
    assert ledger.ack(1, 0xB ^ 0xA) == Outcome(ACK, 1, 10)
    assert len(ledger) == 0


def test_one_tuple_acking_several_roots() -> None:
    # A bolt that anchors to tuples from two spout trees acks both roots.
    ledger = AckerLedger()
    ledger.init(1, 0x1, 5)
    ledger.init(2, 0x2, 6)
    assert ledger.ack(1, 0x1 ^ 0x10) is None  # its child (edge 0x10) belongs to both roots
    assert ledger.ack(2, 0x2 ^ 0x10) is None
    assert ledger.ack(1, 0x10) == Outcome(ACK, 1, 5)
    assert ledger.ack(2, 0x10) == Outcome(ACK, 2, 6)


def test_fail_after_init_fails_at_once() -> None:
    ledger = AckerLedger()
    ledger.init(1, 0xA, 3)
    assert ledger.fail(1) == Outcome(FAIL, 1, 3)
    assert len(ledger) == 0


def test_fail_before_init_is_reported_when_the_init_arrives() -> None:
    ledger = AckerLedger()
    assert ledger.fail(1) is None
    assert ledger.init(1, 0xA, 3) == Outcome(FAIL, 1, 3)
    assert len(ledger) == 0


def test_fail_wins_over_acks_that_complete_the_tree() -> None:
    ledger = AckerLedger()
    assert ledger.fail(1) is None
    assert ledger.ack(1, 0xA) is None
    assert ledger.init(1, 0xA, 3) == Outcome(FAIL, 1, 3)


def test_nothing_is_reported_twice() -> None:
    ledger = AckerLedger()
    ledger.init(1, 0xA, 3)
    assert ledger.ack(1, 0xA) == Outcome(ACK, 1, 3)
    # Late messages about a finished root must not produce a second outcome.
    assert ledger.ack(1, 0xA) is None
    assert ledger.fail(1) is None
    ledger2 = AckerLedger()
    ledger2.init(2, 0xA, 3)
    assert ledger2.fail(2) == Outcome(FAIL, 2, 3)
    assert ledger2.fail(2) is None
    assert ledger2.ack(2, 0xA) is None


def test_late_messages_about_a_finished_root_expire_without_outcome() -> None:
    ledger = AckerLedger(buckets=3)
    ledger.init(1, 0xA, 3)
    ledger.ack(1, 0xA)
    ledger.ack(1, 0xB)  # straggler: creates an entry with no init
    expired: list[int] = []
    for _ in range(3):
        expired += ledger.rotate()
    assert expired == [1]
    assert len(ledger) == 0


def test_pending_trees_expire_after_a_full_rotation() -> None:
    ledger = AckerLedger(buckets=3)
    ledger.init(1, 0xA, 3)
    assert ledger.rotate() == []
    assert ledger.rotate() == []
    assert ledger.rotate() == [1]
    assert len(ledger) == 0
    # An ack for an expired root starts a new, init-less entry: no outcome.
    assert ledger.ack(1, 0xA) is None


def test_acks_do_not_renew_a_pending_tree() -> None:
    # A tree expires a full period after it was first seen, however busy it is since.
    ledger = AckerLedger(buckets=2)
    ledger.init(1, 0xA ^ 0xB, 3)
    ledger.rotate()
    assert ledger.ack(1, 0xA) is None
    assert ledger.rotate() == [1]


def test_rotate_returns_only_the_oldest_bucket() -> None:
    ledger = AckerLedger(buckets=3)
    ledger.init(1, 0xA, 3)
    ledger.rotate()
    ledger.init(2, 0xB, 3)
    assert ledger.rotate() == []
    assert ledger.rotate() == [1]
    assert ledger.rotate() == [2]


def test_a_ledger_needs_two_buckets() -> None:
    with pytest.raises(ValueError, match="at least 2 buckets, got 1"):
        AckerLedger(1)


def test_a_batch_finishes_many_trees_in_any_order() -> None:
    ledger = AckerLedger()
    acked, failed = ledger.apply([(1, 0xA, 5), (2, 0xB, 6)], {1: 0xA, 3: 0xC}, [2])
    assert acked == [(1, 5)] and failed == [(2, 6)]
    assert len(ledger) == 1  # root 3: an ack waiting for its init
    assert ledger.apply([(3, 0xC, 7)]) == ([(3, 7)], [])


def test_rotation_forgets_entries_in_the_order_they_came() -> None:
    ledger = AckerLedger(buckets=2)
    ledger.init(1, 0xA, 3)
    ledger.ack(1, 0x1)  # still pending
    ledger.rotate()
    ledger.init(2, 0xB, 3)
    ledger.ack(9, 0x9)
    assert ledger.rotate() == [1]
    assert ledger.rotate() == [2, 9]


def test_an_init_that_already_holds_every_ack_completes_at_once() -> None:
    # A worker that saw the whole tree between two flushes folds its acks into the init.
    ledger = AckerLedger()
    assert ledger.init(4, 0, spout_task=2) == Outcome(ACK, 4, 2)
    assert len(ledger) == 0
