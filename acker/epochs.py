"""The checkpoint protocol on the task side: epoch tags in root ids, and what a spout task and
a stateful task decide (pure: no I/O, no clock). The protocol is described in
`acker.checkpoint`.

An epoch is tagged in the top TAG_BITS bits of a tree's root id; the other 48 bits stay
random. Tags wrap, so a tag is read relative to an epoch the reader knows (`unwrap`): tags
within 2**15 epochs of it are unambiguous, and nothing stays in flight that long.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from acker.checkpoint import Commit, Done, Failed, Prepare, Prepared, Recover, Recovered, Start

TAG_BITS = 16
TAG_SHIFT = 64 - TAG_BITS
TAG_MASK = (1 << TAG_BITS) - 1
RANDOM_MASK = (1 << TAG_SHIFT) - 1
_HALF = 1 << (TAG_BITS - 1)


def make_root(epoch: int, random64: int) -> int:
    """A root id for a tree of `epoch`: its tag on top of 48 of the given random bits."""
    return ((epoch & TAG_MASK) << TAG_SHIFT) | (random64 & RANDOM_MASK)


def root_tag(root: int) -> int:
    return root >> TAG_SHIFT


def unwrap(tag: int, near: int) -> int:
    """The epoch whose tag is `tag` and which is closest to epoch `near`."""
    return near + ((tag - near + _HALF) & TAG_MASK) - _HALF


def tuple_epoch(ids: Sequence[int], near: int) -> int | None:
    """The epoch of a tuple from its acker ids (root, edge, ...): the earliest of its roots'
    epochs, read near epoch `near`; None for an untracked tuple."""
    if len(ids) == 2:  # one root: nearly every tuple
        return near + (((ids[0] >> TAG_SHIFT) - near + _HALF) & TAG_MASK) - _HALF
    if not ids:
        return None
    return min(unwrap(ids[i] >> TAG_SHIFT, near) for i in range(0, len(ids), 2))


# --- a spout task ---------------------------------------------------------------------------


class _Epoch:
    __slots__ = ("txid", "epoch", "emitted", "completed", "closed", "position", "held",
                 "failed", "nfailed")

    def __init__(self, txid: int, epoch: int) -> None:
        self.txid = txid
        self.epoch = epoch
        self.emitted = 0
        self.completed = 0
        self.closed = False
        self.position: dict[str, Any] | None = None
        self.held: list[Any] = []  # msg ids of completed trees: acked to the user on commit
        self.failed: list[Any] = []  # msg ids of failed trees: failed to the user on recovery
        self.nfailed = 0


class SpoutRecovery(NamedTuple):
    reply: Recovered | None  # None for a stale RECOVER (an older recovery's)
    rollback: bool  # False for a repeated RECOVER: answer it, change nothing
    fail: list[Any]  # msg ids to fail to the user spout (its tuples of rolled-back epochs)


class SpoutLedger:
    """One spout task's checkpoints: which epoch its tuples go in, and when each is done.

    The executor makes roots with `make_root(ledger.epoch, ...)` and calls `emitted()` per
    tracked tuple; it routes acker outcomes here instead of to the user spout, and acks /
    fails the user's msg ids when `commit` / `recover` say so. It lets the spout emit only
    while `running` (after RECOVER, it waits for START). With `keep_msg_ids` False (a
    replayable spout, replayed by seeking) it only counts trees and returns no msg ids.
    """

    def __init__(self, task: int, keep_msg_ids: bool = True) -> None:
        self.task = task
        self.keep_msg_ids = keep_msg_ids
        self.running = False
        self.epoch = 0
        self.txid = 0
        self.committed_txid = 0
        self.committed_trees = 0  # trees of the last checkpoint committed
        self.committed_position: dict[str, Any] | None = None
        self._recovery: int | None = None
        self._epochs: dict[int, _Epoch] = {}
        self._current: _Epoch | None = None

    def recover(self, msg: Recover, in_flight: Iterable[Any] = ()) -> SpoutRecovery:
        """Roll back: every uncommitted epoch's msg ids fail (with `in_flight`, the msg ids
        still pending in the executor); pause until START. A repeated RECOVER (the
        coordinator resends until it hears back) is only answered: the epoch it opened may
        be running already."""
        if self._recovery is not None and msg.epoch <= self._recovery:
            reply = Recovered(self.task, msg.epoch) if msg.epoch == self._recovery else None
            return SpoutRecovery(reply, False, [])
        fail = list(in_flight) if self.keep_msg_ids else []
        for record in self._epochs.values():
            fail += record.held
            fail += record.failed
        self._epochs.clear()
        self._current = None
        self.running = False
        self._recovery = msg.epoch
        self.epoch = msg.epoch
        self.txid = msg.txid
        self.committed_txid = msg.txid
        return SpoutRecovery(Recovered(self.task, msg.epoch), True, fail)

    def start(self, msg: Start, position: dict[str, Any] | None) -> list[Done]:
        """Close the current epoch at `position` (the spout's read position now) and open
        `msg.epoch`. Returns DONE for the closed epoch if its trees have all completed."""
        if self._recovery is None or msg.epoch < self.epoch or msg.epoch in self._epochs:
            return []  # before any RECOVER, or a duplicate / stale START
        out: list[Done] = []
        current = self._current
        if current is not None:
            current.closed = True
            current.position = position
            if self._is_done(current):
                out.append(self._done(current))
        self._current = self._epochs[msg.epoch] = _Epoch(msg.txid, msg.epoch)
        self.epoch, self.txid = msg.epoch, msg.txid
        self.running = True
        return out

    def emitted(self, n: int = 1) -> None:
        """`n` tracked tuples were emitted in the current epoch."""
        assert self._current is not None, "a spout emitted outside an epoch"
        self._current.emitted += n

    def _find(self, root: int) -> _Epoch | None:
        return self._epochs.get(unwrap(root_tag(root), self.epoch))

    def completed(self, root: int, msg_id: Any) -> Done | None:
        """The acker completed the tree of `root`; DONE if that finished its epoch."""
        record = self._find(root)
        if record is None:
            return None  # a tree of a rolled-back epoch: its msg id was failed already
        record.completed += 1
        if self.keep_msg_ids:
            record.held.append(msg_id)
        if record.closed and self._is_done(record):
            return self._done(record)
        return None

    def failed(self, root: int, msg_id: Any, reason: str = "a tuple failed") -> Failed | None:
        """The tree of `root` failed or timed out: FAILED, once per epoch."""
        record = self._find(root)
        if record is None:
            return None
        record.nfailed += 1
        if self.keep_msg_ids:
            record.failed.append(msg_id)
        if record.nfailed > 1:
            return None
        return Failed(self.task, record.txid, record.epoch, reason)

    def commit(self, msg: Commit) -> list[Any]:
        """Checkpoint `msg.txid` committed: the msg ids to ack to the user spout."""
        record = self._epochs.get(msg.epoch)
        if record is None or record.txid != msg.txid:
            return []
        # Commits are in txid order: an earlier checkpoint whose COMMIT this task missed
        # has committed too (a rollback would have recovered this task instead).
        done = sorted((r for r in self._epochs.values() if r.txid <= msg.txid),
                      key=lambda r: r.txid)
        held: list[Any] = []
        for r in done:
            del self._epochs[r.epoch]
            held += r.held
        self.committed_trees = sum(r.completed for r in done)
        self.committed_txid = msg.txid
        self.committed_position = record.position
        return held

    def _is_done(self, record: _Epoch) -> bool:
        return not record.nfailed and record.completed == record.emitted

    def _done(self, record: _Epoch) -> Done:
        return Done(self.task, record.txid, record.epoch, record.position)

    @property
    def held(self) -> int:
        """Completed trees whose acks wait for their checkpoint to commit."""
        return sum(r.completed for r in self._epochs.values())


# --- a stateful task ------------------------------------------------------------------------

PROCESS, HOLD, DROP = 0, 1, 2


class TaskRecovery(NamedTuple):
    reply: Recovered | None  # None for a stale RECOVER (an older recovery's)
    restore: bool  # False for a repeated or stale RECOVER: change nothing
    # True: the in-memory state can be rolled back by undoing its uncommitted changes (the
    # task followed every checkpoint since its state was last restored and has committed
    # exactly the RECOVER's txid); False: read it back from the store.
    in_step: bool
    release: list[Any]  # held items of the new epoch, to process once the state is restored


class TaskLedger:
    """One stateful task's place in the protocol: which tuples it may process now, which
    wait for a later epoch, which are stale, and whether it is in step to prepare.

    Items (whatever the executor queues) are held per epoch and handed back when their
    epoch opens. Until the first RECOVER nothing is processed: the state is not restored.
    """

    def __init__(self, task: int) -> None:
        self.task = task
        self.recovery: int | None = None  # epoch of the last RECOVER
        self.open = 0  # the epoch being processed
        self.open_tag = -1  # its tag; -1 before the first RECOVER matches no tuple
        self.committed_txid = 0
        self.prepared: list[tuple[int, int]] = []  # (txid, epoch) prepared, not committed
        self.dropped = 0
        self._held: dict[int, list[Any]] = {}
        self._unsorted: list[tuple[Any, Sequence[int]]] = []  # held before the first RECOVER

    @property
    def ready(self) -> bool:
        return self.recovery is not None

    def classify(self, ids: Sequence[int]) -> int:
        """PROCESS, HOLD or DROP for a tuple with these acker ids."""
        if self.recovery is None:
            return HOLD
        return self._kind(tuple_epoch(ids, self.open))

    def _kind(self, epoch: int | None) -> int:
        if epoch is None or epoch == self.open:
            return PROCESS
        return HOLD if epoch > self.open else DROP

    def admit(self, item: Any, ids: Sequence[int]) -> bool:
        """Classify `item` and hold it until its epoch opens, or drop it: True if the caller
        should process it now."""
        if self.recovery is None:
            self._unsorted.append((item, ids))
            return False
        epoch = tuple_epoch(ids, self.open)  # read once: it decides and files the item
        kind = self._kind(epoch)
        if kind == HOLD:
            assert epoch is not None  # a later epoch than the open one
            self._held.setdefault(epoch, []).append(item)
        elif kind == DROP:
            self.dropped += 1
        return kind == PROCESS

    @property
    def held(self) -> int:
        return sum(len(items) for items in self._held.values()) + len(self._unsorted)

    def recover(self, msg: Recover) -> TaskRecovery:
        """Roll back to `msg.txid` (see TaskRecovery). A repeated RECOVER is only answered:
        the epoch it opened may be running already."""
        if self.recovery is not None and msg.epoch <= self.recovery:
            reply = Recovered(self.task, msg.epoch) if msg.epoch == self.recovery else None
            return TaskRecovery(reply, False, False, [])
        in_step = self.recovery is not None and self.committed_txid == msg.txid
        unsorted, self._unsorted = self._unsorted, []
        old = self._held
        self._held = {}
        self.recovery = self.open = msg.epoch
        self.open_tag = msg.epoch & TAG_MASK
        self.committed_txid = msg.txid
        self.prepared.clear()
        self.dropped += sum(len(items) for e, items in old.items() if e < msg.epoch)
        release = old.get(msg.epoch, [])
        for e, items in old.items():
            if e > msg.epoch:
                self._held[e] = items
        for item, ids in unsorted:
            if self.admit(item, ids):
                release.append(item)
        return TaskRecovery(Recovered(self.task, msg.epoch), True, in_step, release)

    def check_prepare(self, msg: Prepare) -> str | None:
        """Why this task cannot prepare `msg`, or None if it is in step to."""
        if self.recovery is None:
            return "it has not restored its state yet"
        if msg.epoch != self.open:
            return f"it is processing epoch {self.open}, not {msg.epoch}"
        last = self.prepared[-1][0] if self.prepared else self.committed_txid
        if msg.txid != last + 1:
            return f"its last checkpoint is txid {last}, not {msg.txid - 1}"
        return None

    def prepared_ok(self, msg: Prepare) -> tuple[Prepared, list[Any]]:
        """The state of `msg.epoch` is prepared: open the next epoch; return the reply and
        the items held for it."""
        self.prepared.append((msg.txid, msg.epoch))
        self.open = msg.epoch + 1
        self.open_tag = self.open & TAG_MASK
        return Prepared(self.task, msg.txid, msg.epoch), self._held.pop(self.open, [])

    def prepare_failed(self, msg: Prepare, reason: str) -> Failed:
        return Failed(self.task, msg.txid, msg.epoch, f"task {self.task} cannot prepare: {reason}")

    def commit(self, msg: Commit) -> list[int]:
        """The txids to commit now, in order: `msg.txid` and any prepared before it (a COMMIT
        that went missing is implied by the next one). Empty for a stale or repeated one."""
        if (msg.txid, msg.epoch) not in self.prepared:
            return []
        done = [t for t, _ in self.prepared if t <= msg.txid]
        self.prepared = [(t, e) for t, e in self.prepared if t > msg.txid]
        self.committed_txid = msg.txid
        return done
