"""topology.placement.distribute_tasks: even spread of tasks over workers."""

from __future__ import annotations

import collections

import pytest

from topology.placement import distribute_tasks


def owner(workers: list[list[int]]) -> dict[int, int]:
    return {t: w for w, tasks in enumerate(workers) for t in tasks}


def test_every_task_placed_exactly_once() -> None:
    tasks = {"a": [1, 2, 3], "b": [4, 5], "c": [6, 7, 8, 9, 10]}
    workers = distribute_tasks(tasks, 3)
    placed = [t for w in workers for t in w]
    assert sorted(placed) == list(range(1, 11))
    assert all(w == sorted(w) for w in workers)


@pytest.mark.parametrize("num_workers", [1, 2, 3, 4, 7])
def test_totals_and_each_component_differ_by_at_most_one(num_workers: int) -> None:
    tasks = {"a": [1, 2, 3], "b": [4, 5, 6, 7, 8], "c": [9], "d": list(range(10, 17))}
    workers = distribute_tasks(tasks, num_workers)
    assert len(workers) == num_workers
    sizes = [len(w) for w in workers]
    assert max(sizes) - min(sizes) <= 1
    where = owner(workers)
    for component, ts in tasks.items():
        share = collections.Counter(where[t] for t in ts)
        per_worker = [share.get(w, 0) for w in range(num_workers)]
        assert max(per_worker) - min(per_worker) <= 1, component


def test_fewer_tasks_than_workers_leaves_empty_workers() -> None:
    workers = distribute_tasks({"a": [1], "b": [2]}, 4)
    assert workers == [[1], [2], [], []]


def test_stable_regardless_of_input_order() -> None:
    a = distribute_tasks({"x": [3, 1, 2], "y": [5, 4]}, 2)
    b = distribute_tasks({"y": [4, 5], "x": [1, 2, 3]}, 2)
    assert a == b


def test_a_component_with_two_tasks_over_two_workers_is_split() -> None:
    workers = distribute_tasks({"__acker": [1, 2], "bolt": [3, 4], "spout": [5]}, 2)
    where = owner(workers)
    assert where[1] != where[2] and where[3] != where[4]


@pytest.mark.parametrize("bad", [0, -2])
def test_needs_at_least_one_worker(bad: int) -> None:
    with pytest.raises(ValueError, match=f"num_workers must be >= 1, got {bad}"):
        distribute_tasks({"a": [1]}, bad)
