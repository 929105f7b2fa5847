"""topology.groupings.make_chooser: every grouping kind as a pure function."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

import pytest

from topology import CustomGrouping, TopologyError
from topology.groupings import make_chooser
from topology.model import Grouping

FIELDS = ("word", "n")
TASKS = [4, 5, 6, 7]


def chooser(kind: str, fields: Sequence[str] = (), tasks: Sequence[int] = TASKS,
            emitter: int = 1, local: Sequence[int] = (), custom: Any = None,
            context: Any = None):
    return make_chooser(Grouping(kind, "src", "default", tuple(fields), custom), FIELDS,
                        tasks, emitter, local, context)


def counts(choose, values_list) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for values in values_list:
        targets = choose(values)
        assert len(targets) == 1
        c[targets[0]] += 1
    return c


@pytest.mark.parametrize("kind", ["shuffle", "none"])
def test_shuffle_is_even(kind: str) -> None:
    c = counts(chooser(kind), [["w", i] for i in range(400)])
    assert set(c) == set(TASKS)
    assert max(c.values()) - min(c.values()) <= 1


def test_shuffle_emitters_start_at_different_tasks() -> None:
    firsts = {chooser("shuffle", emitter=e)(["w", 0])[0] for e in range(1, 30)}
    assert len(firsts) > 1


def test_shuffle_single_task() -> None:
    choose = chooser("shuffle", tasks=[9])
    assert {tuple(choose(["w", i])) for i in range(5)} == {(9,)}


def test_fields_grouping_is_consistent_and_spread() -> None:
    choose = chooser("fields", ["word"])
    words = [f"word{i}" for i in range(200)]
    first = {w: choose([w, 0]) for w in words}
    for i, w in enumerate(words * 3):
        assert choose([w, i]) == first[w]  # the other field does not matter
    spread = collections.Counter(t[0] for t in first.values())
    assert set(spread) == set(TASKS)
    assert min(spread.values()) >= 20  # 200 keys over 4 tasks: none starves


def test_fields_grouping_same_for_every_emitter_and_target_order() -> None:
    a = chooser("fields", ["word"], tasks=[4, 5, 6, 7], emitter=1)
    b = chooser("fields", ["word"], tasks=[7, 6, 5, 4], emitter=2)
    for i in range(50):
        assert a([f"k{i}", 0]) == b([f"k{i}", 0])


def test_fields_grouping_on_several_fields() -> None:
    choose = chooser("fields", ["word", "n"])
    assert choose(["a", 1]) == choose(["a", 1])
    targets = {choose(["a", i])[0] for i in range(40)}
    assert len(targets) > 1  # the second field counts


def test_fields_grouping_on_undeclared_field_names_it() -> None:
    with pytest.raises(TopologyError, match="'nope'.*'src'"):
        chooser("fields", ["nope"])


def test_all_grouping_reaches_every_task() -> None:
    choose = chooser("all", tasks=[7, 4, 6, 5])
    assert choose(["x", 1]) == [4, 5, 6, 7]


def test_global_grouping_picks_the_lowest_task_id() -> None:
    choose = chooser("global", tasks=[9, 3, 12])
    assert {tuple(choose(["x", i])) for i in range(10)} == {(3,)}


def test_local_or_shuffle_prefers_local_tasks() -> None:
    choose = chooser("local_or_shuffle", local=[5, 7])
    c = counts(choose, [["w", i] for i in range(100)])
    assert set(c) == {5, 7}
    assert abs(c[5] - c[7]) <= 1


def test_local_or_shuffle_ignores_local_tasks_of_other_components() -> None:
    choose = chooser("local_or_shuffle", local=[99])
    assert set(counts(choose, [["w", i] for i in range(40)])) == set(TASKS)


def test_local_or_shuffle_without_local_tasks_shuffles_over_all() -> None:
    c = counts(chooser("local_or_shuffle"), [["w", i] for i in range(40)])
    assert c == {t: 10 for t in TASKS}


def test_partial_key_spreads_a_hot_key_over_at_most_two_tasks() -> None:
    choose = chooser("partial_key", ["word"])
    c = counts(choose, [["hot", i] for i in range(1000)])
    assert 1 <= len(c) <= 2
    if len(c) == 2:
        assert max(c.values()) - min(c.values()) <= 1  # the two candidates share the load


def test_partial_key_balances_many_keys() -> None:
    choose = chooser("partial_key", ["word"])
    values = [[f"k{i % 50}", i] for i in range(2000)]
    c = counts(choose, values)
    assert set(c) == set(TASKS)
    assert max(c.values()) <= 1.2 * min(c.values())


def test_partial_key_a_key_never_uses_more_than_two_tasks() -> None:
    choose = chooser("partial_key", ["word"])
    seen: dict[str, set[int]] = collections.defaultdict(set)
    for i in range(3000):
        key = f"k{i % 30}"
        seen[key].add(choose([key, i])[0])
    assert all(len(tasks) <= 2 for tasks in seen.values())


class EvenOdd(CustomGrouping):
    """Sends even n to the first task, odd n to the last; records what it was given."""

    def __init__(self) -> None:
        self.prepared: list[tuple[Any, str, list[int]]] = []

    def prepare(self, context: Any, stream: str, target_tasks: Sequence[int]) -> None:
        self.prepared.append((context, stream, list(target_tasks)))
        self.tasks = list(target_tasks)

    def choose_tasks(self, task_id: int, values: Sequence[Any]) -> list[int]:
        return [self.tasks[0] if values[1] % 2 == 0 else self.tasks[-1]]


class EmitterTask(CustomGrouping):
    def choose_tasks(self, task_id: int, values: Sequence[Any]) -> list[int]:
        return [task_id]


def test_custom_grouping_is_prepared_and_chooses() -> None:
    grouping = EvenOdd()
    choose = chooser("custom", custom=grouping, tasks=[6, 4, 5], context="ctx")
    assert choose(["a", 2]) == [4]
    assert choose(["a", 3]) == [6]
    # Each emitter gets its own prepared copy; the declared object stays untouched.
    assert grouping.prepared == []


def test_custom_grouping_gets_context_stream_and_sorted_tasks() -> None:
    seen: list[Any] = []

    class Recording(EvenOdd):
        def prepare(self, context: Any, stream: str, target_tasks: Sequence[int]) -> None:
            seen.append((context, stream, list(target_tasks)))
            super().prepare(context, stream, target_tasks)

    chooser("custom", custom=Recording(), tasks=[6, 4, 5], context="ctx")
    assert seen == [("ctx", "default", [4, 5, 6])]


def test_custom_grouping_is_told_the_emitter_task() -> None:
    choose = chooser("custom", custom=EmitterTask(), emitter=42)
    assert choose(["a", 1]) == [42]


def test_direct_grouping_has_no_chooser() -> None:
    with pytest.raises(TopologyError, match="direct grouping from 'src'"):
        chooser("direct")


def test_unknown_grouping_kind_is_named() -> None:
    with pytest.raises(TopologyError, match="unknown grouping 'sideways'"):
        chooser("sideways")


def test_no_target_tasks_is_an_error() -> None:
    with pytest.raises(TopologyError, match="'src' has no target tasks"):
        chooser("shuffle", tasks=[])


def test_a_one_field_fields_chooser_says_how_to_inline_it() -> None:
    choose = chooser("fields", fields=["word"])
    key, by_hash = choose.key, choose.by_hash  # type: ignore[attr-defined]
    for word in (f"w{i}" for i in range(200)):
        values = [word, 1]
        assert by_hash[hash(values[key]) % len(by_hash)] == choose(values)
    assert not hasattr(chooser("fields", fields=["word", "n"]), "key")  # two fields: no
