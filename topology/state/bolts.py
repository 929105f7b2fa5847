"""`StatefulBolt` and `CommitterBolt`: the bolts whose state the framework checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from topology.component import Bolt
from topology.state.kv import KeyValueState


class StatefulBolt(Bolt):
    """A bolt whose state survives failures and reflects each reliable spout tuple exactly
    once (see README, "State and exactly-once").

    Keep the state in the `KeyValueState` given to `init_state`; change it by assignment.
    Tuples are acked as usual; the spout hears of them only when the checkpoint holding
    their effect has committed.
    """

    def init_state(self, state: KeyValueState) -> None:
        """Called after `prepare` and before the first tuple, and again after every
        rollback, with the state as of the last committed checkpoint."""


class CommitterBolt(StatefulBolt):
    """A stateful bolt that also writes outside Squall, once per checkpoint, in txid order.

    `commit(txid, changes)` runs after checkpoint `txid` has committed, before the next one
    can: `changes` maps each key of this task's state written in that checkpoint to its new
    value (`topology.state.DELETED` for a deleted key); it is empty when nothing changed.
    After a crash it runs again for the last committed txid, so store `txid` with what you
    write and skip a txid you already have: then each checkpoint is applied exactly once.
    """

    def commit(self, txid: int, changes: Mapping[Any, Any]) -> None:
        """Write this checkpoint's changes out (idempotently, by `txid`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement commit(txid, changes)")


def is_stateful(obj: Any) -> bool:
    """Whether a component (class or instance) is a stateful bolt."""
    cls = obj if isinstance(obj, type) else type(obj)
    return issubclass(cls, StatefulBolt)


def layout_problem(topology: str, old: Mapping[str, int], new: Mapping[str, int]) -> str | None:
    """Why stateful components whose state was written by `old` ({component: tasks}) cannot
    run with `new`, or None.

    A stateful bolt's state is kept per task under keys its own code chose; they need not
    be the values its input is grouped by, so nothing says which new task a key would
    belong to, and moving keys by guesswork would silently corrupt the state. Its
    parallelism therefore cannot change; spouts, stateless bolts and the worker count can.
    """
    changed = sorted((c, n, new[c]) for c, n in old.items() if c in new and new[c] != n)
    if not changed:
        return None
    what = ", ".join(f"{c!r} from {n} to {m}" for c, n, m in changed)
    return (f"topology {topology!r}: cannot change the parallelism of stateful component(s) "
            f"{what}: their checkpointed state is kept per task under keys of their own "
            "choosing, so it cannot be redistributed; keep the parallelism, or submit the "
            "topology under a new name to start from empty state")


def stateful_layout(topology: Any) -> dict[str, int]:
    """{component: parallelism} of the topology's stateful bolts."""
    return {cid: spec.parallelism for cid, spec in topology.components.items()
            if is_stateful(spec.obj)}


def rebalance_problem(topology: Any, parallelism: Mapping[str, int]) -> str | None:
    """Why a rebalance to `parallelism` ({component: tasks}) must be refused, or None (see
    `layout_problem`). For nimbus to call before it accepts a rebalance."""
    return layout_problem(topology.name, stateful_layout(topology), parallelism)
