"""The XOR bookkeeping, in one process: collectors, the bolt executor and the acker ledger
together, without sockets. Each test opens trees with a spout collector, passes the rows
a collector wrote to the next "task" as the worker would, and asks the ledger what the
combined acks finish."""

from __future__ import annotations

from typing import Any

import pytest

from acker.ledger import AckerLedger
from topology.errors import TopologyError
from topology.tuple import StreamInfo, Tuple
from worker.acking import UNTRACKED, AckOutbox
from worker.collector import BoltCollector, SpoutCollector
from worker.routing import Route
from worker.stats import ExecutorStats

SPOUT, A, B, C = 1, 10, 20, 30  # task ids
INFO = StreamInfo("src", "default", ["word"])


def route(targets: list[int], direct: frozenset[int] = frozenset(), code: int = 1) -> Route:
    """A route to all of `targets` (fanout len(targets)), and direct consumers."""
    chooser = (lambda values: list(targets)) if targets else None
    return Route("default", code, 1, [chooser] if chooser else [], direct, len(targets),
                 targets)


class Trees:
    """A spout task and bolt tasks sharing one worker's AckOutbox, and one acker ledger."""

    def __init__(self) -> None:
        self.outbox = AckOutbox()
        self.ledger = AckerLedger()
        self.pending: dict[int, tuple[Any, float]] = {}
        self.spout = SpoutCollector("src", SPOUT, {"default": route([A])}, {}, None,
                                    self.outbox, self.pending)
        self.stats: dict[int, ExecutorStats] = {}
        self.bolts = {task: self.bolt(task, targets)
                      for task, targets in ((A, [B]), (B, [C]), (C, []))}

    def bolt(self, task: int, targets: list[int], **kwargs: Any) -> BoltCollector:
        stats = self.stats[task] = ExecutorStats("bolt", task, "bolt")
        return BoltCollector("bolt", task, {"default": route(targets, **kwargs)}, {}, None,
                             self.outbox, stats)

    def received(self, sender: Any, task: int) -> list[Tuple]:
        """The tuples `sender` wrote for `task` since the last call, as `task` gets them."""
        rows, sender.out[task] = sender.out[task], []
        return [Tuple(rows[i + 1], sender.task, INFO, rows[i + 2]) for i in range(0, len(rows), 3)]

    def settle(self) -> tuple[list[int], list[int]]:
        """Flush the outbox into the ledger: (acked roots, failed roots) it finishes."""
        acked, failed = self.ledger.apply(*self.outbox.take())
        return sorted(r for r, _ in acked), sorted(r for r, _ in failed)

    def root_of(self, msg_id: Any) -> int:
        return next(root for root, (m, _) in self.pending.items() if m == msg_id)


def test_one_anchor_completes_when_every_descendant_is_acked() -> None:
    t = Trees()
    t.spout.emit(["the cow"], msg_id="s1")
    root = t.root_of("s1")
    (sentence,) = t.received(t.spout, A)
    assert sentence.id[0] == root
    a = t.bolts[A]
    a.current = sentence  # inside process(sentence): emit anchors to it
    a.emit(["the"])
    a.emit(["cow"])
    a.current = None
    a.ack(sentence)
    assert t.settle() == ([], [])  # the words are still open
    the, cow = t.received(a, B)
    assert the.id[0] == cow.id[0] == root and the.id[1] != cow.id[1]
    t.bolts[B].ack(the)
    assert t.settle() == ([], [])
    t.bolts[B].ack(cow)
    assert t.settle() == ([root], [])
    assert t.stats[A].acked == 1 and t.stats[B].acked == 2


def test_an_ack_that_overtakes_its_tree_waits() -> None:
    t = Trees()
    t.spout.emit(["x"], msg_id=1)
    (x,) = t.received(t.spout, A)
    t.bolts[A].ack(x)
    inits, acks, fails = t.outbox.take()
    assert t.ledger.apply([], acks, fails) == ([], [])  # the ack, before the init
    assert t.ledger.apply(inits) == ([(x.id[0], SPOUT)], [])


def test_several_anchors_several_roots() -> None:
    t = Trees()
    t.spout.emit(["left"], msg_id="l")
    t.spout.emit(["right"], msg_id="r")
    left, right = t.received(t.spout, A)
    roots = sorted([left.id[0], right.id[0]])
    a = t.bolts[A]
    a.emit(["joined"], anchors=[left, right])  # one child in both trees
    a.ack(left)
    a.ack(right)
    (joined,) = t.received(a, B)
    assert sorted(joined.id[0::2]) == roots and len(joined.id) == 4
    assert t.settle() == ([], [])
    b = t.bolts[B]
    b.current = joined  # a grandchild anchored to a tuple of two trees is in both
    b.emit(["grandchild"])
    b.current = None
    b.ack(joined)
    assert t.settle() == ([], [])
    (grandchild,) = t.received(b, C)
    assert sorted(grandchild.id[0::2]) == roots
    t.bolts[C].ack(grandchild)
    assert t.settle() == (roots, [])


def test_two_anchors_in_the_same_tree() -> None:
    t = Trees()
    t.spout.emit(["x"], msg_id="x")
    (x,) = t.received(t.spout, A)
    a = t.bolts[A]
    a.current = x
    a.emit(["y1"])
    a.emit(["y2"])
    a.current = None
    a.ack(x)
    y1, y2 = t.received(a, B)
    b = t.bolts[B]
    b.emit(["z"], anchors=[y1, y2])  # both anchors have the same root
    b.ack(y1)
    b.ack(y2)
    (z,) = t.received(b, C)
    assert t.settle() == ([], [])
    t.bolts[C].ack(z)
    assert t.settle() == ([x.id[0]], [])


def test_explicit_fail_fails_every_tree_of_the_tuple_once() -> None:
    t = Trees()
    t.spout.emit(["left"], msg_id="l")
    t.spout.emit(["right"], msg_id="r")
    left, right = t.received(t.spout, A)
    a = t.bolts[A]
    a.emit(["joined"], anchors=[left, right])
    a.ack(left)
    a.ack(right)
    (joined,) = t.received(a, B)
    b = t.bolts[B]
    b.fail(joined)
    b.fail(joined)  # a second verdict on the same tuple is ignored
    b.ack(joined)
    assert t.settle() == ([], sorted([left.id[0], right.id[0]]))
    assert t.stats[B].failed == 1 and t.stats[B].acked == 0


def test_anchoring_to_an_acked_tuple_is_refused_and_changes_nothing() -> None:
    t = Trees()
    t.spout.emit(["x"], msg_id="x")
    (x,) = t.received(t.spout, A)
    a = t.bolts[A]
    a.ack(x)
    with pytest.raises(TopologyError, match=r"'bolt' anchored a tuple .* already acked"):
        a.emit(["late"], anchors=[x])
    a.current = x  # the default anchor too
    with pytest.raises(TopologyError, match="already acked"):
        a.emit(["late"])
    assert t.bolts[A].out[B] == [] and a.routes["default"].emitted == 0
    assert t.settle() == ([x.id[0]], [])


def test_unanchored_emits_are_not_tracked() -> None:
    t = Trees()
    t.spout.emit(["x"], msg_id="x")
    (x,) = t.received(t.spout, A)
    a = t.bolts[A]
    a.current = x
    a.emit(["free"], anchors=[])  # explicitly unanchored, inside process
    a.current = None
    a.emit(["tick"])  # outside process: unanchored by default
    a.ack(x)
    free, tick = t.received(a, B)
    assert free.id == tick.id == UNTRACKED
    assert t.settle() == ([x.id[0]], [])  # the tree never depended on them
    t.bolts[B].ack(free)
    assert t.outbox.take() == ([], {}, [])  # acking an untracked tuple tells no acker


def test_an_untracked_input_gives_untracked_children() -> None:
    t = Trees()
    t.spout.emit(["x"])  # no msg id
    (x,) = t.received(t.spout, A)
    assert x.id == UNTRACKED and len(t.pending) == 0
    a = t.bolts[A]
    a.current = x
    a.emit(["y"])
    a.emit(["z"], anchors=[x])
    (y, z) = t.received(a, B)
    assert y.id == z.id == UNTRACKED


def test_emit_direct_anchors_and_counts_like_emit() -> None:
    t = Trees()
    a = t.bolt(A, [], direct=frozenset({B, C}))
    t.spout.emit(["x"], msg_id="x")
    (x,) = t.received(t.spout, A)
    a.current = x
    assert a.emit_direct(C, ["to c"]) == [C]
    a.current = None
    a.ack(x)
    assert a.out[B] == []
    (direct,) = t.received(a, C)
    assert direct.id[0] == x.id[0]
    assert t.settle() == ([], [])
    t.bolts[C].ack(direct)
    assert t.settle() == ([x.id[0]], [])
    route_ = a.routes["default"]
    assert (route_.emitted, route_.transferred(), a.count) == (1, 1, 1)
    with pytest.raises(TopologyError, match="task 99 is not a direct-grouped consumer"):
        a.emit_direct(99, ["nowhere"])


def test_count_and_stats_agree_across_every_emit_path() -> None:
    t = Trees()
    a = t.bolt(A, [B], direct=frozenset({C}))
    t.spout.emit(["x"], msg_id=1)
    t.spout.emit(["y"])
    (x, y) = t.received(t.spout, A)
    a.current = x
    a.emit(["anchored"])  # inline case
    a.emit(["two anchors"], anchors=[x, y])  # general case
    a.emit(["free"], anchors=[])
    a.emit_direct(C, ["direct"])
    a.current = None
    assert a.count == a.routes["default"].emitted == 4
    assert len(a.out[B]) // 3 == 3 and len(a.out[C]) // 3 == 1
    assert t.spout.count == t.spout.routes["default"].emitted == t.spout.emits == 2
    assert len(t.pending) == 1  # the tracked one


def test_without_ackers_reliable_spout_tuples_complete_at_once() -> None:
    pending: dict[int, tuple[Any, float]] = {}
    spout = SpoutCollector("src", SPOUT, {"default": route([A])}, {}, None, None, pending)
    spout.emit(["x"], msg_id="m")
    assert spout.instant == ["m"] and len(pending) == 0
    assert spout.out[A][2] == UNTRACKED


def test_a_spout_tuple_sent_to_several_targets_needs_every_one() -> None:
    t = Trees()
    t.spout = SpoutCollector("src", SPOUT, {"default": route([A, B])}, {}, None, t.outbox,
                             t.pending)
    t.spout.emit(["x"], msg_id="x")
    (to_a,) = t.received(t.spout, A)
    (to_b,) = t.received(t.spout, B)
    assert to_a.id[0] == to_b.id[0] and to_a.id[1] != to_b.id[1]
    t.bolts[A].ack(to_a)
    assert t.settle() == ([], [])
    t.bolts[B].ack(to_b)
    assert t.settle() == ([to_a.id[0]], [])
