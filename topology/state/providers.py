"""State providers: where checkpoints are kept, by `topology.state.provider`.

A provider serves one topology (by name, so a topology submitted again under the same name
resumes from its last committed checkpoint). It holds one `TaskStore` per stateful task,
keyed by component and task index (not task id: ids shift when another component's
parallelism changes), and the coordinator's commit record.

A task store keeps a committed state and, per txid, prepared write sets that are not yet part
of it. `prepare` writes a set durably, `commit` merges it (idempotent), `rollback` drops sets
after a txid, and `restore(txid)` returns the state as of committed checkpoint `txid`:
prepared sets up to `txid` are merged first (the record says they committed; the task died
before merging), later ones dropped. The set of the last commit is kept until the next, so a
committer restarted after a crash can be given its changes again.

- `memory`: in the process, for tests; nothing survives the process.
- `sqlite`: the default; one database per topology under `local.dir`/state, durable.
- `redis`: `topology.state.redis.url`, for clusters that span hosts.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from topology.errors import ConfigError, SquallError
from topology.state.kv import DELETED

PROVIDERS = ("memory", "sqlite", "redis")
PICKLE_PROTOCOL = 5  # fixed, so equal keys encode equally on every worker


class StateError(SquallError):
    """Checkpointed state cannot be read or written as asked: the message names the
    topology, component or task and why."""


def encode(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=PICKLE_PROTOCOL)


def decode(data: bytes) -> Any:
    return pickle.loads(data)


def encode_writes(where: str, writes: Mapping[Any, Any]) -> list[tuple[bytes, bytes]]:
    """Pickle a write set; StateError naming the key whose key or value does not pickle."""
    out = []
    for key, value in writes.items():
        try:
            out.append((encode(key), encode(value)))
        except Exception as e:  # pickling runs user code (__reduce__): anything can fail
            raise StateError(f"{where}: state key {key!r:.80} (value of type "
                             f"{type(value).__name__}) cannot be saved: {e}") from None
    return out


def encode_keys(where: str, keys: Iterable[Any]) -> list[bytes]:
    try:
        return [encode(key) for key in keys]
    except Exception as e:
        raise StateError(f"{where}: a deleted state key cannot be saved: {e}") from None


class TaskStore(ABC):
    """The checkpoints of one stateful task."""

    def __init__(self, topology: str, component: str, index: int) -> None:
        self.topology = topology
        self.component = component
        self.index = index

    @property
    def where(self) -> str:
        return f"topology {self.topology!r} component {self.component!r} task {self.index}"

    @abstractmethod
    def restore(self, txid: int) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """(state as of committed `txid`, the changes of `txid` itself: key -> value, with
        `DELETED` for deleted keys). StateError if the store has a later txid committed."""

    @abstractmethod
    def prepare(self, txid: int, writes: Mapping[Any, Any], deletes: Iterable[Any]) -> None:
        """Durably keep the write set of `txid` (replacing any earlier attempt's)."""

    @abstractmethod
    def commit(self, txid: int) -> None:
        """Merge the set of `txid` (and any before it) into the committed state."""

    @abstractmethod
    def rollback(self, txid: int) -> None:
        """Drop the prepared sets after `txid`."""


class StateProvider(ABC):
    """The checkpoints of one topology."""

    kind = ""

    def __init__(self, topology: str) -> None:
        self.topology = topology

    @abstractmethod
    def task_store(self, component: str, index: int) -> TaskStore:
        """The store of task `index` (0 .. parallelism-1) of `component`."""

    @abstractmethod
    def read_record(self) -> dict[str, Any] | None:
        """The coordinator's commit record, or None before the first."""

    @abstractmethod
    def write_record(self, record: Mapping[str, Any]) -> None:
        """Durably replace the commit record (a JSON-safe mapping)."""

    @abstractmethod
    def read_control(self) -> dict[str, Any] | None:
        """The coordinator's latest directive to the spouts (see worker.checkpoint), or None.
        Read-only: a provider may return the same object again while it has not changed."""

    @abstractmethod
    def write_control(self, control: Mapping[str, Any]) -> None:
        """Replace the directive to the spouts (a JSON-safe mapping; not fsynced)."""

    @abstractmethod
    def clear(self) -> None:
        """Forget every checkpoint and the record of this topology."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""


# --- memory ---------------------------------------------------------------------------------


class _MemoryTaskStore(TaskStore):
    def __init__(self, topology: str, component: str, index: int) -> None:
        super().__init__(topology, component, index)
        self.state: dict[bytes, bytes] = {}
        self.committed = 0
        self.pending: dict[int, tuple[list[tuple[bytes, bytes]], list[bytes]]] = {}

    def restore(self, txid: int) -> tuple[dict[Any, Any], dict[Any, Any]]:
        if self.committed > txid:
            raise StateError(f"{self.where}: the store has txid {self.committed} committed, "
                             f"after the record's {txid}: the record or the store was lost")
        self.commit(txid)
        self.rollback(txid)
        return ({decode(k): decode(v) for k, v in self.state.items()},
                self._changes(txid))

    def _changes(self, txid: int) -> dict[Any, Any]:
        writes, deletes = self.pending.get(txid, ([], []))
        changes = {decode(k): decode(v) for k, v in writes}
        changes.update((decode(k), DELETED) for k in deletes)
        return changes

    def prepare(self, txid: int, writes: Mapping[Any, Any], deletes: Iterable[Any]) -> None:
        self.pending[txid] = (encode_writes(self.where, writes),
                              encode_keys(self.where, deletes))

    def commit(self, txid: int) -> None:
        if txid <= self.committed:
            return
        for t in sorted(t for t in self.pending if self.committed < t <= txid):
            writes, deletes = self.pending[t]
            self.state.update(writes)
            for k in deletes:
                self.state.pop(k, None)
        for t in [t for t in self.pending if t < txid]:
            del self.pending[t]
        self.committed = txid

    def rollback(self, txid: int) -> None:
        for t in [t for t in self.pending if t > txid]:
            del self.pending[t]


class MemoryProvider(StateProvider):
    """Checkpoints in this process's memory: for tests. A worker that restarts starts from
    empty state, so it is not durable and not shared between workers."""

    kind = "memory"

    def __init__(self, topology: str) -> None:
        super().__init__(topology)
        self._stores: dict[tuple[str, int], _MemoryTaskStore] = {}
        self._record: dict[str, Any] | None = None
        self._control: dict[str, Any] | None = None

    def task_store(self, component: str, index: int) -> TaskStore:
        key = (component, index)
        if key not in self._stores:
            self._stores[key] = _MemoryTaskStore(self.topology, component, index)
        return self._stores[key]

    def read_record(self) -> dict[str, Any] | None:
        return None if self._record is None else dict(self._record)

    def write_record(self, record: Mapping[str, Any]) -> None:
        self._record = decode(encode(dict(record)))

    def read_control(self) -> dict[str, Any] | None:
        return None if self._control is None else decode(encode(self._control))

    def write_control(self, control: Mapping[str, Any]) -> None:
        self._control = decode(encode(dict(control)))

    def clear(self) -> None:
        self._stores.clear()
        self._record = None
        self._control = None

    def close(self) -> None:
        """Nothing to release: the checkpoints live as long as this object."""


# --- by configuration -----------------------------------------------------------------------

_MEMORY: dict[str, MemoryProvider] = {}


def open_provider(conf: Mapping[str, Any], topology: str) -> StateProvider:
    """The provider `topology.state.provider` names, for `topology` (by name)."""
    kind = conf.get("topology.state.provider", "sqlite")
    if kind == "memory":  # one per topology and process: the tasks of a worker share it
        return _MEMORY.setdefault(topology, MemoryProvider(topology))
    if kind == "sqlite":
        import os

        from topology.state.sqlitestore import SqliteProvider

        return SqliteProvider(topology, os.path.join(str(conf["local.dir"]), "state"))
    if kind == "redis":
        from topology.state.redisstore import RedisProvider

        return RedisProvider(topology, str(conf["topology.state.redis.url"]))
    raise ConfigError(f"config key 'topology.state.provider': expected one of "
                      f"{', '.join(PROVIDERS)}, got {kind!r}")
