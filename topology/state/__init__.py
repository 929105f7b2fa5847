"""Exactly-once state: stateful bolts, their key-value state, committers and the providers
that keep the checkpoints (DESIGN §8). The protocol is in `acker.checkpoint`.

Importing this package loads neither sqlite3 nor the redis client: providers are imported
when opened.
"""

from topology.state.bolts import (
    CommitterBolt,
    StatefulBolt,
    is_stateful,
    layout_problem,
    rebalance_problem,
    stateful_layout,
)
from topology.state.kv import DELETED, KeyValueState
from topology.state.providers import (
    PROVIDERS,
    MemoryProvider,
    StateError,
    StateProvider,
    TaskStore,
    open_provider,
)
from topology.state.task import TaskState

__all__ = [
    "DELETED",
    "PROVIDERS",
    "CommitterBolt",
    "KeyValueState",
    "MemoryProvider",
    "StateError",
    "StateProvider",
    "StatefulBolt",
    "TaskState",
    "TaskStore",
    "is_stateful",
    "layout_problem",
    "open_provider",
    "rebalance_problem",
    "stateful_layout",
]
