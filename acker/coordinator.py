"""The checkpoint coordinator's decisions, as a pure state machine (no I/O, no clock).

The protocol is described in `acker.checkpoint`. The machine is fed the messages the
coordinator task receives and the time (`now`: a monotonic clock; `wall`: the wall clock,
only stamped into the commit record) and returns actions for its shell to carry out in
order: `Send` a message to tasks, `Persist` the commit record, and `RolledBack` (log it).

A commit decision is a `Persist(record, commit=True)`: the shell writes the record and calls
`persisted(ok, ...)` before anything else, and only then are the tasks told to commit. Any
other `Persist` is bookkeeping (the rollback count and the next epoch): the shell writes it
if it can and carries on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from acker.checkpoint import (
    Commit,
    CommitRecord,
    Committed,
    Done,
    Failed,
    Hello,
    Message,
    Prepare,
    Prepared,
    Recover,
    Recovered,
    Start,
    checkpoint_snapshot,
)

#: A coordinator that starts from a record opens epochs this far past the record's next
#: epoch, so that tuples a previous coordinator tagged after its last write look stale.
RESTART_EPOCH_GAP = 1 << 14

RECOVERING, RUNNING = "recovering", "running"
OPEN, CLOSED, PREPARING, COMMITTING = "open", "closed", "preparing", "committing"


class Send(NamedTuple):
    tasks: tuple[int, ...]
    message: Message


class Persist(NamedTuple):
    record: CommitRecord
    commit: bool  # a commit decision: persisted() must be called with the outcome


class RolledBack(NamedTuple):
    reason: str
    txids: tuple[int, ...]  # the checkpoints rolled back


Action = Send | Persist | RolledBack


class _Checkpoint:
    __slots__ = ("txid", "epoch", "opened", "closed", "done", "prepared", "phase")

    def __init__(self, txid: int, epoch: int, opened: float) -> None:
        self.txid = txid
        self.epoch = epoch
        self.opened = opened
        self.closed: float | None = None
        self.done: dict[int, dict[str, Any] | None] = {}  # spout task -> position at close
        self.prepared: set[int] = set()
        self.phase = OPEN


class Coordinator:
    """Decides when checkpoints open, prepare, commit and roll back.

    `spouts` maps every spout task to its component; `stateful` lists every stateful task
    (committers included); `watched` are other tasks (stateless bolts, ackers) whose restart
    loses tuples in flight, so that their HELLO rolls back at once instead of after the
    tuples time out; `layout` is the parallelism of the stateful components, kept in the
    record. A checkpoint opens every `interval` seconds; one not committed `timeout`
    seconds after it closed is rolled back; RECOVER is resent every `resend` seconds to the
    tasks that have not answered it.
    """

    def __init__(self, spouts: Mapping[int, str], stateful: Iterable[int],
                 committers: Iterable[int] = (), record: CommitRecord | None = None, *,
                 interval: float, timeout: float, resend: float = 1.0,
                 watched: Iterable[int] = (), layout: Mapping[str, int] | None = None) -> None:
        self.spouts = dict(spouts)
        self.stateful = tuple(sorted(set(stateful)))
        self.committers = frozenset(committers)
        self.everyone = tuple(sorted(set(self.spouts) | set(self.stateful)))
        self.watched = frozenset(watched) - set(self.everyone)
        self.interval = interval
        self.timeout = timeout
        self.resend = resend
        self.committed = record or CommitRecord()
        self.layout = dict(layout if layout is not None else self.committed.layout)
        self.failed = self.committed.failed
        self.next_epoch = self.committed.next_epoch
        self.phase = RECOVERING
        self.recovery: Recover | None = None
        self.unconfirmed: set[int] = set()
        self.checkpoints: list[_Checkpoint] = []  # uncommitted, oldest first
        self._resent = 0.0
        self._committer_txid: dict[int, int] = {}
        self._awaiting: CommitRecord | None = None

    # ----------------------------------------------------------------- entry points

    def start(self, now: float) -> list[Action]:
        """Begin: every task restores the committed state before any checkpoint opens."""
        self.next_epoch += RESTART_EPOCH_GAP
        recover = self._recover(now)
        return [Persist(self._bookkeeping(), False), *recover]

    def tick(self, now: float, wall: float | None = None) -> list[Action]:
        """Time passed: resend RECOVER, open the next checkpoint, time one out."""
        self._not_awaiting()
        if self.phase == RECOVERING:
            if self.unconfirmed and now - self._resent >= self.resend:
                self._resent = now
                return [Send(tuple(sorted(self.unconfirmed)), self._current_recovery())]
            return []
        oldest = self.checkpoints[0]
        if oldest.closed is not None and now - oldest.closed > self.timeout:
            return self._rollback(f"checkpoint {oldest.txid} did not commit within "
                                  f"{self.timeout:g} s of its close", now)
        current = self.checkpoints[-1]
        if now - current.opened >= self.interval:
            return [*self._open_next(now), *self._advance(now, wall)]
        return []

    def receive(self, msg: Message, now: float, wall: float | None = None) -> list[Action]:
        """A task's message arrived."""
        self._not_awaiting()
        if isinstance(msg, Hello):
            return self._hello(msg, now)
        if isinstance(msg, Recovered):
            return self._recovered(msg, now)
        if self.phase != RUNNING:
            return []  # about checkpoints that a rollback has dropped already
        if isinstance(msg, Done):
            cp = self._find(msg.txid, msg.epoch)
            if cp is None or msg.task not in self.spouts or cp.closed is None:
                return []
            cp.done[msg.task] = msg.source
            return self._advance(now, wall)
        if isinstance(msg, Failed):
            if self._find(msg.txid, msg.epoch) is None:
                return []
            return self._rollback(f"checkpoint {msg.txid}: task {msg.task}: {msg.reason}", now)
        if isinstance(msg, Prepared):
            cp = self.checkpoints[0]
            if (cp.txid, cp.epoch, cp.phase) != (msg.txid, msg.epoch, PREPARING):
                return []
            if msg.task in self.stateful:
                cp.prepared.add(msg.task)
            return self._advance(now, wall)
        if isinstance(msg, Committed):
            if msg.task in self.committers:
                self._committer_txid[msg.task] = max(msg.txid,
                                                     self._committer_txid.get(msg.task, 0))
            return self._advance(now, wall)
        return []

    def persisted(self, ok: bool, now: float, wall: float | None = None) -> list[Action]:
        """The outcome of writing the commit record the last `Persist(commit=True)` held."""
        record, self._awaiting = self._awaiting, None
        if record is None:
            raise RuntimeError("persisted() called without a commit record to write")
        if not ok:
            return self._rollback(f"checkpoint {record.txid}: the commit record could not be "
                                  "written", now)
        cp = self.checkpoints.pop(0)
        self.committed = record
        message = Commit(cp.txid, cp.epoch)
        return [Send(self.everyone, message), *self._advance(now, wall)]

    def snapshot(self) -> dict[str, Any]:
        """The heartbeat field "checkpoint"."""
        return checkpoint_snapshot(self.committed._replace(failed=self.failed))

    # ----------------------------------------------------------------- recovery

    def _current_recovery(self) -> Recover:
        assert self.recovery is not None
        return self.recovery

    def _recover(self, now: float) -> list[Action]:
        epoch = self.next_epoch
        self.next_epoch += 1
        self.phase = RECOVERING
        self.checkpoints.clear()
        self.recovery = Recover(self.committed.txid, epoch, _copy_sources(self.committed))
        self.unconfirmed = set(self.everyone)
        self._resent = now
        if not self.unconfirmed:
            return self._run(now)
        return [Send(self.everyone, self.recovery)]

    def _hello(self, msg: Hello, now: float) -> list[Action]:
        if msg.task in self.watched:
            if self.phase == RECOVERING:
                return []  # nothing runs yet: nothing of it was lost
            return self._rollback(f"task {msg.task} restarted and lost the tuples it held", now)
        if msg.task not in self.everyone:
            return []
        if self.phase == RECOVERING:
            # Nothing has run since the RECOVER: the new task only has to restore too.
            self.unconfirmed.add(msg.task)
            return [Send((msg.task,), self._current_recovery())]
        return self._rollback(f"task {msg.task} (re)started and lost what it had not "
                              "committed", now)

    def _recovered(self, msg: Recovered, now: float) -> list[Action]:
        if self.phase != RECOVERING or msg.epoch != self._current_recovery().epoch:
            return []
        self.unconfirmed.discard(msg.task)
        if self.unconfirmed:
            return []
        return self._run(now)

    def _run(self, now: float) -> list[Action]:
        recovery = self._current_recovery()
        self.phase = RUNNING
        # Committers ran commit(txid) for the committed checkpoint while recovering.
        self._committer_txid = {t: recovery.txid for t in self.committers}
        cp = _Checkpoint(recovery.txid + 1, recovery.epoch, now)
        self.checkpoints.append(cp)
        return [Send(tuple(sorted(self.spouts)), Start(cp.txid, cp.epoch))]

    def _rollback(self, reason: str, now: float) -> list[Action]:
        txids = tuple(cp.txid for cp in self.checkpoints)
        self.failed += len(txids)
        recover = self._recover(now)
        return [RolledBack(reason, txids), Persist(self._bookkeeping(), False), *recover]

    def _bookkeeping(self) -> CommitRecord:
        return self.committed._replace(failed=self.failed, next_epoch=self.next_epoch,
                                       layout=self.layout)

    # ----------------------------------------------------------------- checkpoints

    def _open_next(self, now: float) -> list[Action]:
        current = self.checkpoints[-1]
        current.closed = now
        current.phase = CLOSED
        cp = _Checkpoint(current.txid + 1, self.next_epoch, now)
        self.next_epoch += 1
        self.checkpoints.append(cp)
        return [Send(tuple(sorted(self.spouts)), Start(cp.txid, cp.epoch))]

    def _find(self, txid: int, epoch: int) -> _Checkpoint | None:
        for cp in self.checkpoints:
            if cp.epoch == epoch:
                return cp if cp.txid == txid else None
        return None

    def _advance(self, now: float, wall: float | None) -> list[Action]:
        """Move the oldest checkpoint on: prepare it once it is done, decide once prepared."""
        if not self.checkpoints:
            return []
        cp = self.checkpoints[0]
        if cp.phase == CLOSED and self._ready_to_prepare(cp):
            cp.phase = PREPARING
            if self.stateful:
                return [Send(self.stateful, Prepare(cp.txid, cp.epoch))]
        if cp.phase == PREPARING and cp.prepared.issuperset(self.stateful):
            cp.phase = COMMITTING
            assert cp.closed is not None
            self._awaiting = self._bookkeeping()._replace(
                txid=cp.txid, epoch=cp.epoch, time=now if wall is None else wall,
                duration=now - cp.closed, sources=self._sources(cp))
            return [Persist(self._awaiting, True)]
        return []

    def _ready_to_prepare(self, cp: _Checkpoint) -> bool:
        if not set(cp.done).issuperset(self.spouts):
            return False
        # A committer's commit(txid - 1) must have run: its external store is then never
        # more than the checkpoint being committed behind the record.
        return all(self._committer_txid.get(t, 0) >= cp.txid - 1 for t in self.committers)

    def _sources(self, cp: _Checkpoint) -> dict[str, dict[str, Any]]:
        sources = _copy_sources(self.committed)
        for task, position in cp.done.items():
            if position:
                sources.setdefault(self.spouts[task], {}).update(position)
        return sources

    def _not_awaiting(self) -> None:
        if self._awaiting is not None:
            raise RuntimeError(f"checkpoint {self._awaiting.txid}: persisted() must be called "
                               "with the outcome of the commit record's write first")


def _copy_sources(record: CommitRecord) -> dict[str, dict[str, Any]]:
    return {component: dict(positions) for component, positions in record.sources.items()}
