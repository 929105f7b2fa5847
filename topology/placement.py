"""Which tasks run in which worker: pure functions, no I/O."""

from collections.abc import Mapping, Sequence


def distribute_tasks(
    component_tasks: Mapping[str, Sequence[int]], num_workers: int
) -> list[list[int]]:
    """Spread tasks over `num_workers` workers so that every component is spread evenly.

    Tasks are dealt round-robin, component by component, continuing where the previous
    component stopped, so that both the total per worker and each component's share per
    worker differ by at most one. Returns one sorted task list per worker (some may be
    empty when there are fewer tasks than workers).
    """
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    workers: list[list[int]] = [[] for _ in range(num_workers)]
    slot = 0
    for component in sorted(component_tasks):
        for task in sorted(component_tasks[component]):
            workers[slot].append(task)
            slot = (slot + 1) % num_workers
    return [sorted(tasks) for tasks in workers]
