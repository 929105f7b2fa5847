"""Wiring a topology with stateful bolts for checkpoints (called by `TopologyBuilder.build`).

Every spout and stateful bolt of such a topology runs the executor of the checkpoint
protocol (`worker.checkpoint_spout`, `worker.stateful`). The builder gives each of them a
subclass of the user's class (made here, pickled by value with the topology) that names that
executor and carries the `CheckpointPlan`: which components take part. No component is
added: the coordinator runs in the first task of the stateful bolts (`coordinator_task`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from topology.state.bolts import CommitterBolt, StatefulBolt

SPOUT_EXECUTOR = "worker.checkpoint_spout:CheckpointSpoutExecutor"
STATEFUL_EXECUTOR = "worker.stateful:StatefulBoltExecutor"
WATCHED_EXECUTOR = "worker.stateful:WatchedBoltExecutor"


@dataclass(frozen=True)
class CheckpointPlan:
    spouts: tuple[str, ...]
    stateful: tuple[str, ...]  # committers included
    committers: tuple[str, ...]
    watched: tuple[str, ...] = ()  # stateless bolts that say HELLO when they (re)start

    def coordinator_task(self, component_tasks: Mapping[str, list[int]]) -> int:
        """The task that coordinates checkpoints: the first task of the stateful bolts."""
        return min(t for c in self.stateful for t in component_tasks.get(c, ()))


def plan_of(obj: Any) -> CheckpointPlan | None:
    """The plan a component built by `prepare_checkpoints` carries, or None."""
    plan = getattr(obj, "_checkpoint_plan", None)
    return plan if isinstance(plan, CheckpointPlan) else None


def _cls(obj: Any) -> type:
    return obj if isinstance(obj, type) else type(obj)


def _with_executor(obj: Any, executor: str, plan: CheckpointPlan) -> Any:
    """`obj` (a class or an instance) as a subclass naming `executor` and carrying `plan`."""
    base = _cls(obj)
    if plan_of(base) is not None:  # built before (a topology built twice): rebase on the user's
        base = base.__mro__[1]
    sub = type(base.__name__, (base,), {"executor_factory": executor, "_checkpoint_plan": plan,
                                         "__module__": base.__module__,
                                         "__qualname__": base.__qualname__})
    if isinstance(obj, type):
        return sub
    out = copy.copy(obj)
    out.__class__ = sub
    return out


def prepare_checkpoints(topology: Any) -> list[str]:
    """Give a topology with stateful bolts its checkpoint executors; return its problems."""
    stateful = sorted(c for c, s in topology.components.items()
                      if issubclass(_cls(s.obj), StatefulBolt))
    if not stateful:
        return []
    ackers = topology.config.get("topology.acker.executors")
    if ackers is not None and not ackers:
        return [f"it has stateful bolts ({', '.join(stateful)}) and topology.acker.executors "
                "0: exactly-once state needs the acker to know when tuples are processed"]
    components = topology.components
    spouts = sorted(c for c, s in components.items() if s.kind == "spout")
    own = [c for c in spouts if _own_executor(components[c].obj)]
    if own:
        return [f"spout {c!r} runs its own executor ({_executor(components[c].obj)!r}) and "
                "cannot take part in the checkpoints of stateful bolts" for c in own]
    committers = sorted(c for c in stateful if issubclass(_cls(components[c].obj), CommitterBolt))
    watched = sorted(c for c, s in components.items()
                     if s.kind == "bolt" and c not in stateful and not _own_executor(s.obj))
    plan = CheckpointPlan(tuple(spouts), tuple(stateful), tuple(committers), tuple(watched))
    for executor, cids in ((SPOUT_EXECUTOR, spouts), (STATEFUL_EXECUTOR, stateful),
                           (WATCHED_EXECUTOR, watched)):
        for cid in cids:
            components[cid].obj = _with_executor(components[cid].obj, executor, plan)
    return []


def _executor(obj: Any) -> Any:
    return getattr(_cls(obj), "executor_factory", None)


def _own_executor(obj: Any) -> bool:
    """Whether a component brings an executor of its own (not one this module gave it)."""
    return _executor(obj) is not None and plan_of(obj) is None
