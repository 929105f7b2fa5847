"""`TaskState`: the framework's side of one stateful task's state.

It holds the bolt's `KeyValueState`, the task's store and the undo logs of the checkpoints
that are prepared but not committed, and turns the protocol's steps into store calls:
prepare writes the write set of the checkpoint just ended, commit merges it, rollback undoes
the uncommitted changes in memory (no I/O), restore reads the committed state back (after a
restart, or when the task is not in step). The order of the steps is decided elsewhere (the
task's `acker.epochs.TaskLedger`); this class does not check it.
"""

from __future__ import annotations

from typing import Any

from topology.state.kv import DELETED, KeyValueState
from topology.state.providers import TaskStore


class TaskState:
    def __init__(self, store: TaskStore) -> None:
        self.kv = KeyValueState()
        self.store = store
        self.committed = 0  # the txid the in-memory state was last restored or committed at
        # (txid, undo log, changes) of each prepared, uncommitted checkpoint, oldest first
        self._sealed: list[tuple[int, dict[Any, Any], dict[Any, Any]]] = []

    @property
    def where(self) -> str:
        return self.store.where

    def restore(self, txid: int) -> dict[Any, Any]:
        """Read the state committed at `txid` back from the store; return its changes."""
        data, changes = self.store.restore(txid)
        self.kv._replace(data)
        self._sealed.clear()
        self.committed = txid
        return changes

    def rollback(self) -> None:
        """Undo every uncommitted change in memory, and drop the prepared sets in the store."""
        self.kv._rollback([undo for _, undo, _ in self._sealed])
        self._sealed.clear()
        self.store.rollback(self.committed)

    def prepare(self, txid: int) -> None:
        """Write the changes since the last prepare as checkpoint `txid`'s set. If the store
        fails, the changes stay in the current checkpoint (to be rolled back) and it raises."""
        writes, deletes, undo = self.kv._seal()
        try:
            self.store.prepare(txid, writes, deletes)
        except BaseException:
            self.kv._unseal(undo)
            raise
        changes = dict(writes)
        changes.update((k, DELETED) for k in deletes)
        self._sealed.append((txid, undo, changes))

    def commit(self, txid: int) -> dict[Any, Any]:
        """Merge `txid` (and any prepared before it) in the store; return its changes."""
        self.store.commit(txid)
        changes: dict[Any, Any] = {}
        while self._sealed and self._sealed[0][0] <= txid:
            _, _, changes = self._sealed.pop(0)
        self.committed = txid
        return changes
