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


@dataclass(frozen=True)
class CheckpointPlan:
    spouts: tuple[str, ...]
    stateful: tuple[str, ...]  # committers included
    committers: tuple[str, ...]

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
    spouts = sorted(c for c, s in topology.components.items() if s.kind == "spout")
    committers = sorted(c for c in stateful
                        if issubclass(_cls(topology.components[c].obj), CommitterBolt))
    plan = CheckpointPlan(tuple(spouts), tuple(stateful), tuple(committers))
    for cid in spouts:
        spec = topology.components[cid]
        spec.obj = _with_executor(spec.obj, SPOUT_EXECUTOR, plan)
    for cid in stateful:
        spec = topology.components[cid]
        spec.obj = _with_executor(spec.obj, STATEFUL_EXECUTOR, plan)
    return []
