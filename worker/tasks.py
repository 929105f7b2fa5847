"""Building a worker's executors from the topology and the tasks assigned to it.

Every worker computes the same stream table and task numbering from the same topology, so
they agree on stream codes and task ids without talking. The executor of each component is
the one its class names (`Component.executor_factory`), else the worker's own spout or bolt
executor, so the loop needs no `if` per kind of component.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from topology.context import TopologyContext
from topology.errors import TopologyError
from topology.model import ACKER_COMPONENT, ComponentSpec, Topology
from worker.acking import AckOutbox
from worker.errors import ErrorLog
from worker.executor import (
    AckerExecutor,
    BoltExecutor,
    Executor,
    LoopServices,
    SpoutExecutor,
    TaskEnv,
)
from worker.routing import (
    SystemStreams,
    build_routes,
    first_system_code,
    stream_codes,
    stream_table,
)

log = logging.getLogger(__name__)


def executor_class(spec: ComponentSpec) -> type[Executor]:
    """The executor class of a component: the one it names, else by its kind."""
    cls = spec.obj if isinstance(spec.obj, type) else type(spec.obj)
    named = getattr(cls, "executor_factory", None)
    if named is None:
        return SpoutExecutor if spec.kind == "spout" else BoltExecutor
    if isinstance(named, str):
        module, _, attr = named.partition(":")
        try:
            named = getattr(importlib.import_module(module), attr or "")
        except (ImportError, AttributeError, ValueError) as e:
            raise TopologyError(f"component {spec.id!r}: executor_factory {named!r} cannot be "
                                f"loaded: {e}") from None
    if not (isinstance(named, type) and issubclass(named, Executor)):
        raise TopologyError(f"component {spec.id!r}: executor_factory {named!r} is not an "
                            "Executor subclass")
    return named


def system_streams(topology: Topology) -> SystemStreams:
    """{component: {system stream: fields}} declared by the components' executor classes."""
    out = {}
    for cid, spec in topology.components.items():
        streams = executor_class(spec).system_streams
        if streams:
            out[cid] = streams
    return out


def depths(topology: Topology) -> dict[str, int]:
    """Each component's distance from the spouts: 0 for a spout, else one more than its
    farthest input (the topology is a DAG: builder.validate refuses cycles)."""
    depth: dict[str, int] = {}

    def visit(cid: str) -> int:
        if cid not in depth:
            spec = topology.components[cid]
            depth[cid] = 1 + max((visit(g.source) for g in spec.inputs), default=-1)
        return depth[cid]

    for cid in topology.components:
        visit(cid)
    return depth


@dataclass
class TaskSet:
    """The executors of one worker, by kind."""

    spouts: list[SpoutExecutor] = field(default_factory=list)
    bolts: list[BoltExecutor] = field(default_factory=list)
    ackers: dict[int, AckerExecutor] = field(default_factory=dict)
    others: list[Executor] = field(default_factory=list)  # neither spouts nor bolts
    acker_tasks: list[int] = field(default_factory=list)  # of the whole topology
    outbox: AckOutbox | None = None

    def all(self) -> list[Executor]:
        return [*self.spouts, *self.bolts, *self.others, *self.ackers.values()]

    def expire(self, now: float) -> None:
        """Time out the trees pending for a full rotation (spouts) and forget them (ackers)."""
        for spout in self.spouts:
            spout.expire(now)
        for acker in self.ackers.values():
            acker.expire(now)


def build_tasks(topology: Topology, conf: Mapping[str, Any], tasks: list[int], port: int,
                errors: ErrorLog, services: LoopServices,
                capture: list[Any] | None = None) -> TaskSet:
    """Build (not open) the executors of `tasks`."""
    component_tasks = topology.component_tasks(conf)
    task_component = {t: c for c, ts in component_tasks.items() for t in ts}
    system = system_streams(topology)
    infos = stream_table(topology, system)
    codes = stream_codes(infos)
    first_system = first_system_code(topology)
    acker_tasks = component_tasks.get(ACKER_COMPONENT, [])
    out = TaskSet(acker_tasks=acker_tasks, outbox=AckOutbox() if acker_tasks else None)
    mine = set(tasks)
    for task in tasks:
        component = task_component[task]
        spec = topology.components.get(component)
        context = TopologyContext(topology.name, task, component, component_tasks, tasks, port)
        env = TaskEnv(
            component=component, task=task, obj=spec.make_instance() if spec else None,
            conf={**conf, **spec.config} if spec else conf, context=context,
            routes=build_routes(topology, component, task, component_tasks, mine, codes,
                                context) if spec else {},
            system_codes={s: codes[(component, s)] for s in system.get(component, ())},
            infos=infos, first_system_code=first_system, outbox=out.outbox, capture=capture,
            errors=errors, services=services,
        )
        if spec is None:  # the acker
            out.ackers[task] = AckerExecutor(env)
            continue
        executor = executor_class(spec)(env)
        if isinstance(executor, SpoutExecutor):
            out.spouts.append(executor)
        elif isinstance(executor, BoltExecutor):
            out.bolts.append(executor)
        else:
            out.others.append(executor)
    # Upstream first: a turn then carries a tuple through every local step it has.
    depth = depths(topology)
    out.bolts.sort(key=lambda bolt: (depth[bolt.component], bolt.task))
    if conf.get("topology.debug"):
        for spout in out.spouts:
            log_emits(spout, port)
        for bolt in out.bolts:
            log_emits(bolt, port)
    return out


def log_emits(executor: SpoutExecutor | BoltExecutor, port: int) -> None:
    """topology.debug: wrap a task's emit methods to log every tuple (slow, on purpose)."""
    component = executor.component
    obj = executor.spout if isinstance(executor, SpoutExecutor) else executor.bolt
    for name in ("emit", "emit_direct"):
        inner = getattr(obj, name)

        def logged(*args: Any, _inner: Any = inner, _name: str = name, **kwargs: Any) -> Any:
            targets = _inner(*args, **kwargs)
            log.info("worker %d: %s task %d %s %r -> tasks %s", port, component,
                     executor.task, _name, args, targets)
            return targets

        setattr(obj, name, logged)
