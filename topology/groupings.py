"""Groupings at run time: for one emitting task and one consumer, values -> target task ids.

Pure functions. Field hashing uses Python's `hash`, which is only the same in every worker
because the worker launcher gives all workers of a topology the same PYTHONHASHSEED; grouping
values must therefore be of types whose hash depends on the value (str, bytes, int, float,
bool, None-free tuples of those).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Any

from topology.errors import TopologyError
from topology.model import Grouping

Chooser = Callable[[Sequence[Any]], list[int]]


def make_chooser(
    grouping: Grouping,
    source_fields: Sequence[str],
    target_tasks: Sequence[int],
    emitter_task: int,
    local_tasks: Sequence[int] = (),
    context: Any = None,
) -> Chooser:
    """Build the function that picks target tasks for each emitted value list.

    `target_tasks` are the consumer's task ids, `local_tasks` those of them that run in
    the emitter's own worker (for local-or-shuffle).
    """
    tasks = sorted(target_tasks)
    if not tasks:
        raise TopologyError(f"grouping from {grouping.source!r} has no target tasks")
    kind = grouping.kind
    if kind in ("shuffle", "none"):
        return _round_robin(tasks, emitter_task)
    if kind == "local_or_shuffle":
        local = sorted(set(local_tasks) & set(tasks))
        return _round_robin(local or tasks, emitter_task)
    if kind == "fields":
        return _fields(tasks, _field_indexes(grouping, source_fields))
    if kind == "partial_key":
        return _partial_key(tasks, _field_indexes(grouping, source_fields))
    if kind == "all":
        return lambda values: list(tasks)
    if kind == "global":
        first = [tasks[0]]
        return lambda values: first
    if kind == "direct":
        raise TopologyError(
            f"direct grouping from {grouping.source!r} has no chooser: the emitter picks the task"
        )
    if kind == "custom":
        custom = copy.deepcopy(grouping.custom)
        assert custom is not None
        custom.prepare(context, grouping.stream, tasks)
        return lambda values: custom.choose_tasks(emitter_task, values)
    raise TopologyError(f"unknown grouping {kind!r} from {grouping.source!r}")


def _field_indexes(grouping: Grouping, source_fields: Sequence[str]) -> list[int]:
    try:
        return [list(source_fields).index(f) for f in grouping.fields]
    except ValueError:
        raise TopologyError(
            f"grouping on {list(grouping.fields)} from {grouping.source!r} stream "
            f"{grouping.stream!r}: the stream declares {list(source_fields)}"
        ) from None


def _round_robin(tasks: list[int], emitter_task: int) -> Chooser:
    n = len(tasks)
    if n == 1:
        only = [tasks[0]]
        return lambda values: only
    singles = [[t] for t in tasks]
    # Start each emitter at a different place so that many emitters do not move in step.
    state = [random.Random(emitter_task).randrange(n)]

    def choose(values: Sequence[Any]) -> list[int]:
        i = state[0] + 1
        if i == n:
            i = 0
        state[0] = i
        return singles[i]

    return choose


def _fields(tasks: list[int], indexes: list[int]) -> Chooser:
    n = len(tasks)
    singles = [[t] for t in tasks]
    if n == 1:
        only = singles[0]
        return lambda values: only
    if len(indexes) == 1:
        (i,) = indexes

        def choose_one(values: Sequence[Any]) -> list[int]:
            return singles[hash(values[i]) % n]

        return keyed(choose_one, i, singles)

    def choose_many(values: Sequence[Any]) -> list[int]:
        return singles[hash(tuple([values[i] for i in indexes])) % n]

    return choose_many


def keyed(chooser: Chooser, key: int, by_hash: list[list[int]]) -> Chooser:
    """Mark a one-field fields chooser, so that a caller may inline it (the worker's emit
    does): its targets for `values` are `by_hash[hash(values[key]) % len(by_hash)]`."""
    chooser.key = key  # type: ignore[attr-defined]
    chooser.by_hash = by_hash  # type: ignore[attr-defined]
    return chooser


def _partial_key(tasks: list[int], indexes: list[int]) -> Chooser:
    """Partial key grouping: each key may go to one of two tasks, the less loaded one."""
    n = len(tasks)
    singles = [[t] for t in tasks]
    load = [0] * n

    def choose(values: Sequence[Any]) -> list[int]:
        key = tuple([values[i] for i in indexes])
        a = hash(key) % n
        b = hash((key, "second-choice")) % n
        pick = a if load[a] <= load[b] else b
        load[pick] += 1
        return singles[pick]

    return choose
