"""Exactly-once state: the checkpoint protocol, its messages and its commit record.

Squall's stateful bolts (`topology.state`) keep their state in memory and checkpoint it every
`topology.state.checkpoint.interval.ms`. The protocol runs beside the XOR acker, which it
uses unchanged, between three kinds of participant: one coordinator task, every spout task,
and every task of a stateful bolt (committers are stateful bolts). The decisions are pure
state machines: `acker.coordinator.Coordinator` (the coordinator), `acker.epochs.SpoutLedger`
(a spout task) and `acker.epochs.TaskLedger` (a stateful task); the worker only carries their
messages and does the state I/O they ask for.

On the worker (`worker.checkpoint`, `worker.stateful`, `worker.checkpoint_spout`) the
coordinator runs in the first task of the stateful bolts. Tasks' messages to it, and its
messages to stateful tasks, travel on a system stream, ordered with the data; its messages
to spouts (RECOVER, START, COMMIT) are published as one document in the state provider, the
*directive*, which every spout task reads every 10 ms. Stateless bolts say HELLO when they
(re)start, so that the tuples a restart lost roll back at once.

Epochs and checkpoints
    Time is cut into epochs. Checkpoint `txid` covers the reliable spout tuples emitted in
    one epoch: the coordinator opens an epoch by sending START(txid, epoch) to every spout
    task, which closes the one before, so a checkpoint covers exactly the tuples emitted
    since the previous one. Committed txids are 1, 2, 3, ... with no gap; epochs are
    numbered separately and never reused, because a rolled-back checkpoint's txid is tried
    again in a new epoch (like the attempt id of Storm's transactional topologies).

    A spout tags each tuple tree with its epoch: the top 16 bits of the random 64-bit root
    id are the epoch number modulo 2**16 (`acker.epochs.make_root`). The acker routes and
    XORs roots as before; every tuple in the tree carries its root in its ids, so every task
    knows the epoch of every tracked tuple it receives, at no cost on the wire. (A tuple
    anchored to several roots belongs to the earliest of their epochs.)

Processing in epoch order
    A stateful task processes epoch `e` only. Tuples of a later epoch wait in the task
    (held, not processed, not acked) until it is told to prepare `e`; tuples of an epoch
    older than the last recovery are dropped (their checkpoint was rolled back and their
    spout tuples failed). So when a task prepares `e` its state holds exactly the effect of
    the epochs up to `e`, whatever the interleaving on the wire; unlike aligned barriers,
    bolts without state need do nothing.

Completion gates the commit
    A spout counts the trees it emitted per epoch. The acker completes them as usual, but
    the spout holds the acks: the user's `ack(msg_id)` is called only once the checkpoint
    commits (held tuples do not count against `topology.max.spout.pending`). When every
    tree of a closed epoch has completed, the spout sends DONE(txid, epoch, position) with
    its read position at the close (replayable spouts; None for others). A failed or
    timed-out tree instead sends FAILED(txid, epoch): the checkpoint will be rolled back.

Two-phase commit, in txid order
    When every spout is DONE for the oldest open checkpoint, every tree of that epoch is
    complete, so every stateful task has processed all of its tuples. The coordinator sends
    PREPARE(txid, epoch) to every stateful task: each writes the keys it changed in that
    epoch (a write set, not a copy of the state) as a prepared, not yet visible, set, starts
    processing the next epoch and answers PREPARED, or FAILED if the write failed or it is
    not in step (it restarted, or missed an epoch). When all have prepared, the coordinator
    durably writes the commit record (txid, epoch, the spouts' positions), and only then
    sends COMMIT(txid, epoch) to every task: stateful tasks merge the prepared set, spouts
    release the held acks. The record is the commit point: a task that crashes before
    merging rolls forward on restore. Checkpoint txid+1 is prepared only after txid is
    committed (and after every committer has run `commit(txid, changes)`), so commits are
    strictly in order and an external store written by a committer is never ahead of it by
    more than the checkpoint being committed.

Rollback and recovery
    If a tree fails or times out, a task cannot prepare, a task (re)starts (it says HELLO),
    or a checkpoint is not committed within the timeout, the coordinator rolls back every
    uncommitted checkpoint: it sends RECOVER(txid, epoch, positions) with the last committed
    txid and a fresh epoch to every task. Spouts fail every tuple of the rolled-back epochs
    (the user's `fail(msg_id)`; replayable spouts seek back to the committed position) and
    pause; stateful tasks drop the held tuples of those epochs, restore the committed state
    (undoing their in-memory changes, or reading the store after a restart) and call
    `init_state` again. Each answers RECOVERED; when all have, START opens the new epoch.
    A coordinator that restarts does the same from the record it reads back, with an epoch
    2**14 past the last one it recorded, so that no tuple still in flight from before looks
    current. At start-up this is how every task restores its state before any tuple flows.

What it guarantees
    The committed state of every stateful bolt reflects each reliable spout tuple exactly
    once, whatever fails: a tuple's effects are committed only with its whole tree, and
    everything uncommitted is undone and replayed together. Replayable spouts
    (`topology.spouts`) resume from their committed positions after any failure, including
    their own worker's death; other spouts replay what they are asked to `fail` (tuples
    they had in flight are lost if their own worker dies, as in Storm). Not covered:
    effects outside the state (a bolt writing to a database, emitting to a sink) happen at
    least once, unless they go through a `CommitterBolt`, whose `commit(txid, changes)`
    runs once per committed checkpoint in txid order (again after a crash: store the txid
    with what you write and skip a txid you already have); tuples that are not tracked
    (no msg_id, emitted unanchored, or with `topology.acker.executors` 0) are applied in
    whatever epoch is open and are not replayed; state must be changed by assignment
    (`state[k] = v`): a value mutated in place is not seen as changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from topology.state import StateError, layout_problem

#: The component id of the task that coordinates checkpoints.
COORDINATOR_COMPONENT = "__checkpoint"


# --- messages: coordinator -> tasks ---------------------------------------------------------


class Recover(NamedTuple):
    """Restore the state committed at `txid` (0: none) and drop tuples of epochs before
    `epoch`, which the next checkpoint uses. `sources`: {spout component: {source: position}}
    as committed, for replayable spouts to seek to."""

    txid: int
    epoch: int
    sources: dict[str, dict[str, Any]]


class Start(NamedTuple):
    """Spouts: tuples emitted from now on belong to checkpoint `txid`, tagged `epoch`."""

    txid: int
    epoch: int


class Prepare(NamedTuple):
    """Stateful tasks: every tuple of `epoch` is processed; prepare it as `txid`."""

    txid: int
    epoch: int


class Commit(NamedTuple):
    """Everyone: checkpoint `txid` (epoch `epoch`) is committed."""

    txid: int
    epoch: int


# --- messages: tasks -> coordinator ---------------------------------------------------------


class Hello(NamedTuple):
    """A task started (for the first time or after a crash) and holds no checkpoint."""

    task: int


class Recovered(NamedTuple):
    """A task restored the committed state for the recovery that opens `epoch`."""

    task: int
    epoch: int


class Done(NamedTuple):
    """A spout: every tree it emitted in checkpoint `txid` completed; its position then."""

    task: int
    txid: int
    epoch: int
    source: dict[str, Any] | None


class Failed(NamedTuple):
    """A spout tuple of checkpoint `txid` failed or timed out, or a task could not prepare."""

    task: int
    txid: int
    epoch: int
    reason: str


class Prepared(NamedTuple):
    """A stateful task prepared checkpoint `txid` (epoch `epoch`)."""

    task: int
    txid: int
    epoch: int


class Committed(NamedTuple):
    """A committer ran `commit(txid, changes)`."""

    task: int
    txid: int


Message = (Recover | Start | Prepare | Commit | Hello | Recovered | Done | Failed | Prepared
           | Committed)

_KINDS: dict[str, Any] = {  # kind -> its NamedTuple class
    "recover": Recover, "start": Start, "prepare": Prepare, "commit": Commit, "hello": Hello,
    "recovered": Recovered, "done": Done, "failed": Failed, "prepared": Prepared,
    "committed": Committed,
}
_NAMES: dict[Any, str] = {cls: name for name, cls in _KINDS.items()}


def to_wire(message: Message) -> tuple:
    """A message as a tuple of built-in values: ("kind", field, ...)."""
    return (_NAMES[type(message)], *message)


def from_wire(data: Any) -> Message:
    """The message `to_wire` made; ValueError naming what is wrong with anything else."""
    if not isinstance(data, (tuple, list)) or not data or not isinstance(data[0], str):
        raise ValueError(f"checkpoint message: expected ('kind', ...), got {data!r:.200}")
    cls = _KINDS.get(data[0])
    if cls is None:
        raise ValueError(f"checkpoint message: unknown kind {data[0]!r:.50}")
    fields = data[1:]
    if len(fields) != len(cls._fields):
        raise ValueError(f"checkpoint message {data[0]!r}: expected {len(cls._fields)} fields, "
                         f"got {len(fields)}")
    for name, value in zip(cls._fields, fields, strict=True):
        if name in ("task", "txid", "epoch") and (isinstance(value, bool)
                                                  or not isinstance(value, int)):
            raise ValueError(f"checkpoint message {data[0]!r}: {name} must be an integer, "
                             f"got {value!r:.50}")
    message: Message = cls(*fields)
    return message


# --- the commit record ----------------------------------------------------------------------


class CommitRecord(NamedTuple):
    """What the coordinator writes durably when a checkpoint commits (and, to keep `failed`
    and `next_epoch` across restarts, when it rolls back).

    `sources` holds the replayable spouts' committed positions by component and source
    name, so a rebalance that changes a spout's parallelism still finds them. `layout` is
    the parallelism of every stateful component the state was written with.
    """

    txid: int = 0
    epoch: int = 0
    next_epoch: int = 1
    time: float | None = None
    duration: float | None = None
    failed: int = 0
    sources: dict[str, dict[str, Any]] = {}
    layout: dict[str, int] = {}

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommitRecord:
        """Read a stored record; StateError if it is not one."""
        try:
            record = cls(**{k: data[k] for k in cls._fields if k in data})
            ints = (record.txid, record.epoch, record.next_epoch, record.failed)
            if not all(isinstance(v, int) and v >= 0 for v in ints):
                raise TypeError("txid, epoch, next_epoch and failed must be integers >= 0")
            if not isinstance(record.sources, dict) or not isinstance(record.layout, dict):
                raise TypeError("sources and layout must be objects")
        except (TypeError, KeyError) as e:
            raise StateError(f"checkpoint record {dict(data)!r:.200} is damaged: {e}") from None
        return record


def check_layout(topology: str, record: CommitRecord, layout: Mapping[str, int]) -> None:
    """Refuse to run stateful components with another parallelism than the one their
    committed state was written with (see `topology.state.layout_problem`)."""
    problem = layout_problem(topology, record.layout, layout)
    if problem is not None:
        raise StateError(problem)


def checkpoint_snapshot(record: CommitRecord) -> dict[str, Any]:
    """The coordinator task's heartbeat field "checkpoint": the last committed checkpoint."""
    return {"txid": record.txid, "time": record.time, "duration": record.duration,
            "failed": record.failed}
