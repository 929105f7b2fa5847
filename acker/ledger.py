"""The XOR ledger: one 64-bit value per spout tuple tree (no I/O, no clock).

Every edge of a tuple tree has a random 64-bit id. The spout reports the XOR of the edges it
created (init); each bolt reports, when it acks a tuple, the tuple's edge XOR the edges of the
children it anchored to it. Each edge is therefore XORed in exactly twice, and the value
returns to zero exactly when the whole tree has been processed. Messages may arrive in any
order (an ack can overtake its init), so completion also needs the init to have been seen.
(worker/acking.py is the other side of this arithmetic.)

Trees are forgotten `buckets` rotations after they were first seen, as in Storm's
RotatingMap, but in one dict: entries are stamped with the rotation count when they are
created, and since a dict keeps insertion order, `rotate` expires from the front and stops
at the first young entry. A lookup is a single dict access.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

ACK = "ack"
FAIL = "fail"

_VAL, _TASK, _FAILED, _BORN = range(4)  # fields of an entry (a list: the cheapest record)


class Outcome(NamedTuple):
    """What to tell a spout task about one root: ACK or FAIL."""

    kind: str
    root: int
    spout_task: int


Done = list[tuple[int, int]]  # (root, spout task) of trees that finished


class AckerLedger:
    """Tracks tuple trees by root id; `apply` returns the trees each batch finishes."""

    def __init__(self, buckets: int = 3) -> None:
        if buckets < 2:
            raise ValueError(f"an AckerLedger needs at least 2 buckets, got {buckets}")
        self._buckets = buckets
        self._generation = 0  # rotations so far
        # root -> [xor, spout task (-1 until the init arrives), failed, generation born]
        self._entries: dict[int, list] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, inits: Iterable[tuple[int, int, int]], acks: Mapping[int, int] | None = None,
              fails: Iterable[int] = ()) -> tuple[Done, Done]:
        """Feed inits (root, xor, spout task), acks {root: xor} and fails [root]; return the
        (root, spout task) pairs acked and failed by them, each tree at most once."""
        entries = self._entries
        born = self._generation
        acked: Done = []
        failed: Done = []
        for root, val, task in inits:
            entry = entries.get(root)
            if entry is None:
                if val:
                    entries[root] = [val, task, False, born]
                else:  # the sender folded the tree's every ack into its init
                    acked.append((root, task))
                continue
            entry[_TASK] = task
            if entry[_FAILED]:
                del entries[root]
                failed.append((root, task))
            elif entry[_VAL] == val:
                del entries[root]
                acked.append((root, task))
            else:
                entry[_VAL] ^= val
        for root, val in (acks or {}).items():
            entry = entries.get(root)
            if entry is None:
                entries[root] = [val, -1, False, born]
            elif entry[_VAL] != val or entry[_TASK] < 0:
                entry[_VAL] ^= val
            else:  # XORs to zero, and the init was seen (a failed tree would be gone)
                del entries[root]
                acked.append((root, entry[_TASK]))
        for root in fails:
            entry = entries.get(root)
            if entry is None:
                entries[root] = [0, -1, True, born]
            elif entry[_TASK] >= 0:
                del entries[root]
                failed.append((root, entry[_TASK]))
            else:
                entry[_FAILED] = True
        return acked, failed

    def init(self, root: int, val: int, spout_task: int) -> Outcome | None:
        return _one(self.apply([(root, val, spout_task)]))

    def ack(self, root: int, val: int) -> Outcome | None:
        return _one(self.apply((), {root: val}))

    def fail(self, root: int) -> Outcome | None:
        return _one(self.apply((), None, (root,)))

    def rotate(self) -> list[int]:
        """Forget trees that have been pending for `buckets` rotations; return their roots.

        The spout times such tuples out on its own clock, so nothing is sent for them.
        """
        self._generation += 1
        oldest = self._generation - self._buckets
        expired: list[int] = []
        for root, entry in self._entries.items():
            if entry[_BORN] > oldest:
                break
            expired.append(root)
        for root in expired:
            del self._entries[root]
        return expired


def _one(done: tuple[Done, Done]) -> Outcome | None:
    acked, failed = done
    if acked:
        return Outcome(ACK, *acked[0])
    if failed:
        return Outcome(FAIL, *failed[0])
    return None
