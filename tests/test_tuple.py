"""Tuple field access and TopologyContext."""

from __future__ import annotations

import pytest

from topology import TopologyContext, Tuple
from topology.tuple import SYSTEM_COMPONENT, TICK_STREAM, StreamInfo


def make(values=("cow", 3), fields=("word", "count"), stream="default") -> Tuple:
    return Tuple(list(values), 7, StreamInfo("split", stream, fields), ids=(11, 22))


def test_values_fields_and_source() -> None:
    tup = make()
    assert tup.values == ["cow", 3]
    assert tup.fields == ("word", "count")
    assert tup.component == "split"
    assert tup.stream == "default"
    assert tup.task == 7
    assert tup.id == (11, 22)
    assert not tup.is_tick
    assert len(tup) == 2


def test_access_by_name_and_position() -> None:
    tup = make()
    assert tup["word"] == "cow"
    assert tup["count"] == 3
    assert tup[0] == "cow"
    assert tup[-1] == 3


def test_unknown_field_names_the_field_source_and_fields() -> None:
    with pytest.raises(KeyError) as info:
        make()["cnt"]
    msg = str(info.value)
    assert "'cnt'" in msg and "'split'" in msg and "'default'" in msg and "'count'" in msg


def test_position_out_of_range() -> None:
    with pytest.raises(IndexError):
        make()[5]


def test_tick_tuple() -> None:
    tick = Tuple([1.5], -1, StreamInfo(SYSTEM_COMPONENT, TICK_STREAM, ["freq"]))
    assert tick.is_tick
    assert tick["freq"] == 1.5
    assert tick.id == ()


def test_repr_shows_source_and_values() -> None:
    r = repr(make())
    assert "split" in r and "'cow'" in r and "task=7" in r


def context(task: int = 5) -> TopologyContext:
    return TopologyContext("topo", task, "count", {"count": [6, 4, 5], "split": [1, 2]},
                           worker_tasks=[5, 1], worker_port=6700)


def test_context_identity() -> None:
    ctx = context()
    assert ctx.topology_name == "topo"
    assert ctx.task_id == 5
    assert ctx.component_id == "count"
    assert ctx.worker_tasks == [1, 5]
    assert ctx.worker_port == 6700


def test_context_component_tasks_sorted_and_copied() -> None:
    ctx = context()
    assert ctx.component_tasks("count") == [4, 5, 6]
    ctx.component_tasks("count").append(99)
    assert ctx.component_tasks("count") == [4, 5, 6]
    assert ctx.component_tasks("nope") == []
    assert ctx.components == ["count", "split"]


@pytest.mark.parametrize("task,index", [(4, 0), (5, 1), (6, 2)])
def test_context_task_index(task: int, index: int) -> None:
    assert context(task).task_index == index


def test_the_worker_sets_every_slot_init_sets() -> None:
    # worker.executor.BoltExecutor._execute builds Tuples without __init__: if a slot is
    # added here, reading it on a tuple built that way must not fail.
    info = StreamInfo("split", "default", ("word",))
    built = object.__new__(Tuple)
    built.task, built._info, built.values, built.id, built._ackval = 3, info, ["w"], (), 0
    for name in Tuple.__slots__:
        assert getattr(built, name) == getattr(Tuple(["w"], 3, info), name)
