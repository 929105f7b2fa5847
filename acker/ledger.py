"""The XOR ledger: one 64-bit value per spout tuple tree (no I/O, no clock).

Every edge of a tuple tree has a random 64-bit id. The spout reports the XOR of the edges it
created (init); each bolt reports, when it acks a tuple, the tuple's edge XOR the edges of the
children it anchored to it. Each edge is therefore XORed in exactly twice, and the value
returns to zero exactly when the whole tree has been processed. Messages may arrive in any
order (an ack can overtake its init), so completion also needs the init to have been seen.
"""

from __future__ import annotations

from typing import NamedTuple

from acker.rotating import RotatingMap

ACK = "ack"
FAIL = "fail"


class Outcome(NamedTuple):
    """What to tell a spout task about one root: ACK or FAIL."""

    kind: str
    root: int
    spout_task: int


class _Entry:
    __slots__ = ("val", "spout_task", "failed")

    def __init__(self) -> None:
        self.val = 0
        self.spout_task = -1  # unknown until the init arrives
        self.failed = False


class AckerLedger:
    """Tracks tuple trees by root id. Each call returns the outcome it completes, if any."""

    def __init__(self, buckets: int = 3) -> None:
        self._entries: RotatingMap[int, _Entry] = RotatingMap(buckets)

    def __len__(self) -> int:
        return len(self._entries)

    def _entry(self, root: int) -> _Entry:
        entry = self._entries.get(root)
        if entry is None:
            entry = _Entry()
            self._entries.put_new(root, entry)  # get() just looked in every bucket
        return entry

    def init(self, root: int, val: int, spout_task: int) -> Outcome | None:
        entry = self._entry(root)
        entry.val ^= val
        entry.spout_task = spout_task
        return self._settle(root, entry)

    def ack(self, root: int, val: int) -> Outcome | None:
        entry = self._entry(root)
        entry.val ^= val
        return self._settle(root, entry)

    def fail(self, root: int) -> Outcome | None:
        entry = self._entry(root)
        entry.failed = True
        return self._settle(root, entry)

    def _settle(self, root: int, entry: _Entry) -> Outcome | None:
        if entry.spout_task < 0:
            return None
        if entry.failed:
            self._entries.pop(root)
            return Outcome(FAIL, root, entry.spout_task)
        if entry.val == 0:
            self._entries.pop(root)
            return Outcome(ACK, root, entry.spout_task)
        return None

    def rotate(self) -> list[int]:
        """Forget trees that have been pending for a full rotation; return their roots.

        The spout times such tuples out on its own clock, so nothing is sent for them.
        """
        return list(self._entries.rotate())
