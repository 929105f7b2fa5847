"""`TopologyContext`: what a task knows about itself and the topology it runs in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class TopologyContext:
    """Given to `Spout.open` and `Bolt.prepare`."""

    def __init__(
        self,
        topology_name: str,
        task_id: int,
        component_id: str,
        component_tasks: Mapping[str, Sequence[int]],
        worker_tasks: Sequence[int] = (),
        worker_port: int | None = None,
    ) -> None:
        self.topology_name = topology_name
        self.task_id = task_id
        self.component_id = component_id
        self._component_tasks = {c: sorted(t) for c, t in component_tasks.items()}
        self.worker_tasks = sorted(worker_tasks)
        self.worker_port = worker_port

    def component_tasks(self, component_id: str) -> list[int]:
        """The task ids of a component, sorted (empty if there is no such component)."""
        return list(self._component_tasks.get(component_id, ()))

    @property
    def task_index(self) -> int:
        """This task's position among its component's tasks: 0 .. parallelism-1."""
        return self._component_tasks[self.component_id].index(self.task_id)

    @property
    def components(self) -> list[str]:
        return sorted(self._component_tasks)

    def __repr__(self) -> str:
        return (
            f"TopologyContext(topology={self.topology_name!r}, component={self.component_id!r}, "
            f"task={self.task_id})"
        )
