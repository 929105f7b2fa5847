"""The XOR bookkeeping of tuple trees: the one place that does the acker's arithmetic.

Every edge of a spout tuple's tree has a random 64-bit id, and the acker keeps one XOR per
tree (acker/ledger.py): each edge is XORed in exactly twice, once when it is created and once
when the tuple travelling on it is acked, so the value returns to zero when the whole tree
has been processed.

A tracked tuple's `id` is (root1, edge1, root2, edge2, ...): for every tree it belongs to,
the root and the edge it travels on (a tuple anchored to tuples of several spout tuples
belongs to several trees). `Tuple._ackval` is the XOR of the edges of the children anchored
to it so far, and None once it has been acked or failed.

- A spout emit opens a tree (`AckOutbox.open_tree`): a root, one edge per target, and an
  init (root, XOR of those edges, spout task) for the acker.
- A bolt emit anchored to tuples (`BoltCollector._anchor`, unrolled in its `emit`): per
  target and anchor a new edge, XORed into the anchor's ackval and into the child's id under
  each root of that anchor (a new edge per anchor: two anchors of one tree must not cancel).
- Acking a tuple (`AckOutbox.ack`) sends, per root, its edge XOR its ackval; failing it
  (`AckOutbox.fail`) sends its roots.

The collectors and the bolt executor call these, and nothing else does this arithmetic. A
worker folds the acks of all its tasks into one XOR per root until the next flush, so a
sentence of ten words costs the acker a couple of messages, not ten.
"""

from __future__ import annotations

import itertools
import os
from array import array
from typing import Any

_BLOCK = 4096  # ids drawn from the OS at a time


def _random_block() -> array[int]:
    block = array("Q")
    block.frombytes(os.urandom(8 * _BLOCK))
    return block


# new_id(): a random 64-bit edge or root id. Drawn from the OS in blocks, so that taking one
# is a C-level `next` (a third of what random.getrandbits(64) costs per call).
new_id = itertools.chain.from_iterable(iter(_random_block, None)).__next__

UNTRACKED: tuple[int, ...] = ()  # the ids of a tuple no acker tracks


class AckOutbox:
    """What a worker's tasks tell the ackers, combined until the next flush."""

    __slots__ = ("inits", "acks", "fails")

    def __init__(self) -> None:
        self.inits: list[tuple[int, int, int]] = []  # (root, XOR of its first edges, spout task)
        self.acks: dict[int, int] = {}  # root -> XOR of everything acked under it
        self.fails: list[int] = []  # roots

    def __bool__(self) -> bool:
        return bool(self.inits or self.acks or self.fails)

    def take(self) -> tuple[list[tuple[int, int, int]], dict[int, int], list[int]]:
        """Everything gathered since the last call; the outbox is empty afterwards."""
        out = (self.inits, self.acks, self.fails)
        self.inits, self.acks, self.fails = [], {}, []
        return out

    def open_tree(self, spout_task: int, fanout: int) -> tuple[int, list[int]]:
        """A new tree sent to `fanout` targets: its root and the edge of each target."""
        root = new_id()
        if fanout == 1:  # the common case
            edge = new_id()
            self.inits.append((root, edge, spout_task))
            return root, [edge]
        edges = [new_id() for _ in range(fanout)]
        xor = 0
        for edge in edges:
            xor ^= edge
        self.inits.append((root, xor, spout_task))
        return root, edges

    def ack(self, tup: Any) -> bool:
        """Fold the acker's share of acking `tup` in; False if it was acked or failed before."""
        ackval = tup._ackval
        if ackval is None:
            return False
        tup._ackval = None
        ids = tup.id
        acks = self.acks
        if len(ids) == 2:  # the common case: one tree
            root = ids[0]
            acks[root] = acks.get(root, 0) ^ ids[1] ^ ackval
        else:
            for i in range(0, len(ids), 2):
                root = ids[i]
                acks[root] = acks.get(root, 0) ^ ids[i + 1] ^ ackval
        return True

    def fail(self, tup: Any) -> bool:
        """Fail every tree `tup` belongs to; False if it was acked or failed before."""
        if tup._ackval is None:
            return False
        tup._ackval = None
        ids = tup.id
        self.fails.extend(ids[i] for i in range(0, len(ids), 2))
        return True
