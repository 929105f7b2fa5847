"""The built topology: plain data, picklable, validated once by `TopologyBuilder.build`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ACKER_COMPONENT = "__acker"

GROUPINGS = (
    "shuffle",
    "fields",
    "all",
    "global",
    "direct",
    "local_or_shuffle",
    "none",
    "partial_key",
    "custom",
)


class CustomGrouping:
    """Base for `custom_grouping`: decide the target tasks of each tuple yourself."""

    def prepare(self, context: Any, stream: str, target_tasks: Sequence[int]) -> None:
        """Called once per emitting task with the consumer's task ids (sorted)."""

    def choose_tasks(self, task_id: int, values: Sequence[Any]) -> list[int]:
        """Return the task ids (from `target_tasks`) that receive `values`."""
        raise NotImplementedError(f"{type(self).__name__} must implement choose_tasks")


@dataclass(frozen=True)
class Grouping:
    """One input of a bolt: which stream of which component, and how tuples are split."""

    kind: str
    source: str
    stream: str = "default"
    fields: tuple[str, ...] = ()
    custom: CustomGrouping | None = None


@dataclass
class ComponentSpec:
    """A spout or bolt as declared: the user's object (instance or class) and its wiring."""

    id: str
    kind: str  # "spout" or "bolt"
    obj: Any
    parallelism: int
    config: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    inputs: list[Grouping] = field(default_factory=list)

    def make_instance(self) -> Any:
        """A fresh object for one task: a class is instantiated, an instance is copied."""
        import copy

        if isinstance(self.obj, type):
            return self.obj()
        return copy.deepcopy(self.obj)


@dataclass
class Topology:
    """A validated topology. Task ids are assigned here, so every worker agrees on them."""

    name: str
    components: dict[str, ComponentSpec]
    config: dict[str, Any] = field(default_factory=dict)

    def spouts(self) -> list[ComponentSpec]:
        return [c for c in self.components.values() if c.kind == "spout"]

    def bolts(self) -> list[ComponentSpec]:
        return [c for c in self.components.values() if c.kind == "bolt"]

    def num_workers(self, conf: Mapping[str, Any] | None = None) -> int:
        merged = {**(conf or {}), **self.config}
        return max(1, int(merged.get("topology.workers") or 1))

    def num_ackers(self, conf: Mapping[str, Any] | None = None) -> int:
        merged = {**(conf or {}), **self.config}
        ackers = merged.get("topology.acker.executors")
        return self.num_workers(conf) if ackers is None else int(ackers)

    def component_tasks(self, conf: Mapping[str, Any] | None = None) -> dict[str, list[int]]:
        """Task ids per component (ackers under ACKER_COMPONENT), numbered from 1 by sorted id.

        Storm's numbering: stable for the same topology and parallelism on every host.
        """
        cap = {**(conf or {}), **self.config}.get("topology.max.task.parallelism")
        counts = {cid: min(spec.parallelism, cap) if cap else spec.parallelism
                  for cid, spec in self.components.items()}
        ackers = self.num_ackers(conf)
        if ackers > 0:
            counts[ACKER_COMPONENT] = ackers
        tasks: dict[str, list[int]] = {}
        next_id = 1
        for cid in sorted(counts):
            tasks[cid] = list(range(next_id, next_id + counts[cid]))
            next_id += counts[cid]
        return tasks

    def with_parallelism(self, parallelism: Mapping[str, int]) -> Topology:
        """A copy with some components' parallelism changed (rebalance)."""
        import copy

        changed = copy.copy(self)
        changed.components = dict(self.components)
        for cid, n in parallelism.items():
            changed.components[cid] = copy.copy(self.components[cid])
            changed.components[cid].parallelism = n
        return changed

    def describe(self, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A JSON-safe description of the components and their wiring (for state and UIs)."""
        tasks = self.component_tasks(conf)
        components: dict[str, Any] = {}
        for cid, spec in sorted(self.components.items()):
            components[cid] = {
                "type": spec.kind,
                "parallelism": len(tasks[cid]),
                "tasks": tasks[cid],
                "outputs": {s: list(f) for s, f in spec.outputs.items()},
                "inputs": [{"source": g.source, "stream": g.stream, "grouping": g.kind,
                            "fields": list(g.fields)} for g in spec.inputs],
                "class": f"{type(spec.obj).__module__}.{type(spec.obj).__qualname__}"
                if not isinstance(spec.obj, type)
                else f"{spec.obj.__module__}.{spec.obj.__qualname__}",
            }
        return {
            "components": components,
            "num_workers": self.num_workers(conf),
            "num_ackers": self.num_ackers(conf),
            "num_tasks": sum(len(t) for t in tasks.values()),
            "acker_tasks": tasks.get(ACKER_COMPONENT, []),
        }
