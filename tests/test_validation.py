"""TopologyBuilder.build(): each validation rule, and the message naming what is wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from topology import Bolt, CustomGrouping, Spout, Topology, TopologyBuilder, TopologyError
from topology.builder import MAX_PARALLELISM, MAX_TASKS, MAX_WORKERS, name_problem


class Words(Spout):
    outputs = ["word", "n"]


class Multi(Spout):
    outputs = {"default": ["word"], "numbers": ["n", "square"]}


class Sink(Bolt):
    outputs = ["word"]

    def process(self, tup: Any) -> None:
        pass


class NoOutputs(Bolt):
    def process(self, tup: Any) -> None:
        pass


class First(CustomGrouping):
    def choose_tasks(self, task_id: int, values: Sequence[Any]) -> list[int]:
        return [1]


def builder() -> TopologyBuilder:
    b = TopologyBuilder("t")
    b.set_spout("words", Words())
    return b


def build_error(b: TopologyBuilder, config: dict[str, Any] | None = None) -> str:
    with pytest.raises(TopologyError) as info:
        b.build(config=config)
    return str(info.value)


def test_unknown_component() -> None:
    b = builder()
    b.set_bolt("sink", Sink).shuffle_grouping("wordz")
    msg = build_error(b)
    assert "'sink'" in msg and "unknown component 'wordz'" in msg


def test_unknown_stream() -> None:
    b = builder()
    b.set_bolt("sink", Sink).shuffle_grouping("words", stream="numbers")
    msg = build_error(b)
    assert "'sink'" in msg and "'numbers'" in msg and "'words'" in msg


def test_fields_grouping_on_undeclared_field() -> None:
    b = builder()
    b.set_bolt("sink", Sink).fields_grouping("words", ["wrod"])
    msg = build_error(b)
    assert "'sink'" in msg and "'wrod'" in msg and "'word'" in msg


def test_partial_key_grouping_on_undeclared_field() -> None:
    b = builder()
    b.set_bolt("sink", Sink).partial_key_grouping("words", ["count"])
    msg = build_error(b)
    assert "'sink'" in msg and "'count'" in msg and "partial_key" in msg


def test_fields_grouping_needs_a_field() -> None:
    b = builder()
    b.set_bolt("sink", Sink).fields_grouping("words", [])
    msg = build_error(b)
    assert "'sink'" in msg and "at least one field" in msg


def test_field_on_a_named_stream_is_checked_against_that_stream() -> None:
    b = TopologyBuilder("t")
    b.set_spout("multi", Multi())
    b.set_bolt("sink", Sink).fields_grouping("multi", ["word"], stream="numbers")
    msg = build_error(b)
    assert "'numbers'" in msg and "'word'" in msg and "['n', 'square']" in msg


def test_cycle() -> None:
    b = builder()
    b.set_bolt("a", Sink).shuffle_grouping("words").shuffle_grouping("c")
    b.set_bolt("b", Sink).shuffle_grouping("a")
    b.set_bolt("c", Sink).shuffle_grouping("b")
    msg = build_error(b)
    assert "cycle" in msg
    for cid in ("'a'", "'b'", "'c'"):
        assert cid.strip("'") in msg


def test_self_loop_is_a_cycle() -> None:
    b = builder()
    b.set_bolt("a", Sink).shuffle_grouping("words").shuffle_grouping("a")
    msg = build_error(b)
    assert "cycle" in msg and "a <- a" in msg


def test_duplicate_component_ids() -> None:
    b = builder()
    b.set_bolt("words", Sink).shuffle_grouping("words")
    msg = build_error(b)
    assert "'words'" in msg and "declared twice" in msg


def test_same_stream_subscribed_twice() -> None:
    b = builder()
    b.set_bolt("sink", Sink).shuffle_grouping("words").all_grouping("words")
    msg = build_error(b)
    assert "'sink'" in msg and "subscribed twice" in msg


@pytest.mark.parametrize("parallelism", [0, -1])
def test_parallelism_below_one(parallelism: int) -> None:
    b = builder()
    b.set_bolt("sink", Sink, parallelism=parallelism).shuffle_grouping("words")
    msg = build_error(b)
    assert "'sink'" in msg and f"parallelism {parallelism}" in msg


@pytest.mark.parametrize("parallelism", [2.0, "2", True, None])
def test_parallelism_not_an_int(parallelism: Any) -> None:
    b = TopologyBuilder("t")
    b.set_spout("words", Words(), parallelism=parallelism)
    msg = build_error(b)
    assert "'words'" in msg and f"parallelism {parallelism!r}" in msg


def test_spout_used_as_bolt() -> None:
    b = builder()
    b.set_bolt("sink", Words).shuffle_grouping("words")
    msg = build_error(b)
    assert "'sink'" in msg and "a Spout, not a Bolt" in msg


def test_bolt_used_as_spout() -> None:
    b = TopologyBuilder("t")
    b.set_spout("words", Sink())
    msg = build_error(b)
    assert "'words'" in msg and "a Bolt, not a Spout" in msg


def test_something_else_used_as_bolt() -> None:
    b = builder()
    b.set_bolt("sink", object()).shuffle_grouping("words")  # type: ignore[arg-type]
    msg = build_error(b)
    assert "'sink'" in msg and "object" in msg and "not a Bolt" in msg


@pytest.mark.parametrize("cid", ["__acker", "__mine", "has space", "", "-dash"])
def test_reserved_or_bad_component_ids(cid: str) -> None:
    b = TopologyBuilder("t")
    b.set_spout(cid, Words())
    msg = build_error(b)
    assert f"component id {cid!r} is not valid" in msg


def test_reserved_stream_name() -> None:
    class Ticky(Spout):
        outputs = {"__tick": ["x"]}

    b = TopologyBuilder("t")
    b.set_spout("s", Ticky())
    msg = build_error(b)
    assert "'s'" in msg and "'__tick'" in msg and "reserved" in msg


def test_outputs_as_a_string() -> None:
    class Stringy(Spout):
        outputs = "word"  # type: ignore[assignment]

    b = TopologyBuilder("t")
    b.set_spout("s", Stringy())
    msg = build_error(b)
    assert "'s'" in msg and "string 'word'" in msg


def test_repeated_field() -> None:
    class Twice(Spout):
        outputs = ["a", "a"]

    b = TopologyBuilder("t")
    b.set_spout("s", Twice())
    msg = build_error(b)
    assert "'s'" in msg and "repeats a field" in msg


def test_bad_topology_name() -> None:
    b = TopologyBuilder("my topology")
    b.set_spout("words", Words())
    msg = build_error(b)
    assert "'my topology'" in msg and "not valid" in msg


@pytest.mark.parametrize("name", ["evil\n", "ok\n", "x" * 101, "", "a/b", "..", ".hidden",
                                  "tab\t", "é", "x" * 300])
def test_names_are_bounded_and_matched_whole(name: str) -> None:
    b = TopologyBuilder(name)
    b.set_spout("words", Words())
    msg = build_error(b)
    assert "is not valid (1-100 letters, digits, '_', '.', '-'" in msg
    assert (repr(name) if len(name) <= 120 else f"({len(name)} characters)") in msg


@pytest.mark.parametrize("cid", ["spout\n", "c" * 101])
def test_component_ids_are_bounded_and_matched_whole(cid: str) -> None:
    b = TopologyBuilder("t")
    b.set_spout(cid, Words())
    msg = build_error(b)
    assert f"component id {cid!r} is not valid (1-100 letters" in msg


def test_the_longest_names_are_valid() -> None:
    b = TopologyBuilder("t" * 100)
    b.set_spout("s" * 100, Words())
    topology = b.build()
    assert topology.name == "t" * 100 and list(topology.components) == ["s" * 100]


def test_name_problem_names_the_value() -> None:
    assert name_problem("word-count.v2_1") is None
    assert name_problem("x\n") == ("topology name 'x\\n' is not valid (1-100 letters, digits, "
                                   "'_', '.', '-', starting with a letter or digit)")
    assert name_problem(7, "component id") == ("component id 7 is not valid (1-100 letters, "
                                               "digits, '_', '.', '-', starting with a letter "
                                               "or digit)")


@pytest.mark.parametrize("parallelism", [MAX_PARALLELISM + 1, 10**6])
def test_parallelism_is_bounded(parallelism: int) -> None:
    b = TopologyBuilder("t")
    b.set_spout("words", Words(), parallelism=parallelism)
    msg = build_error(b)
    assert f"parallelism {parallelism}; it must be an integer from 1 to 4096" in msg


def test_tasks_in_all_are_bounded() -> None:
    b = TopologyBuilder("t")
    b.set_spout("words", Words(), parallelism=4000)
    b.set_bolt("sink", Sink, parallelism=90).shuffle_grouping("words")
    msg = build_error(b, config={"topology.workers": 7})  # + 7 ackers
    assert "it has 4097 tasks (executors and ackers); at most 4096 are allowed" in msg
    b.build(config={"topology.workers": 6})  # 4096: just fits


@pytest.mark.parametrize("key,value,bound", [
    ("topology.workers", MAX_WORKERS + 1, "an integer from 1 to 256"),
    ("topology.workers", 10**6, "an integer from 1 to 256"),
    ("topology.acker.executors", MAX_TASKS + 1, "an integer from 0 to 4096"),
    ("topology.message.timeout.secs", float("inf"), "a finite number of seconds > 0"),
    ("topology.message.timeout.secs", float("nan"), "a finite number of seconds > 0"),
    ("topology.tick.tuple.freq.secs", float("inf"), "a finite number of seconds > 0"),
])
def test_config_numbers_are_bounded_and_finite(key: str, value: Any, bound: str) -> None:
    msg = build_error(builder(), config={key: value})
    assert f"{key} = {value!r}; it must be {bound}" in msg


@pytest.mark.parametrize("key,value", [
    ("topology.workers", 0),
    ("topology.workers", "2"),
    ("topology.workers", True),
    ("topology.acker.executors", -1),
    ("topology.message.timeout.secs", 0),
    ("topology.workers", 2.5),
    ("topology.max.spout.pending", 0),
    ("topology.max.spout.pending", 10.5),
    ("topology.message.timeout.secs", -1),
    ("topology.tick.tuple.freq.secs", "often"),
    ("topology.tick.tuple.freq.secs", 0),
])
def test_bad_topology_config_values(key: str, value: Any) -> None:
    msg = build_error(builder(), config={key: value})
    assert key in msg and repr(value) in msg


def test_bad_component_config_value_names_the_component() -> None:
    b = builder()
    b.set_bolt("sink", Sink, config={"topology.tick.tuple.freq.secs": -1}).shuffle_grouping(
        "words")
    msg = build_error(b)
    assert "'sink'" in msg and "topology.tick.tuple.freq.secs" in msg and "-1" in msg


def test_config_key_not_a_string() -> None:
    msg = build_error(builder(), config={1: 2})
    assert "key 1 is not a string" in msg


def test_zero_ackers_is_valid() -> None:
    topology = builder().build(config={"topology.acker.executors": 0})
    assert topology.num_ackers() == 0


def test_fractional_seconds_are_valid() -> None:
    # The config registry allows sub-second timeouts and ticks; build() must agree with it.
    b = builder()
    b.set_bolt("sink", Sink, config={"topology.tick.tuple.freq.secs": 0.1}).shuffle_grouping(
        "words")
    topology = b.build(config={"topology.message.timeout.secs": 0.5})
    assert topology.config["topology.message.timeout.secs"] == 0.5


def test_no_spouts() -> None:
    b = TopologyBuilder("t")
    msg = build_error(b)
    assert "'t'" in msg and "no spout" in msg


def test_bolt_with_no_inputs() -> None:
    b = builder()
    b.set_bolt("lonely", Sink)
    msg = build_error(b)
    assert "'lonely'" in msg and "subscribes to no stream" in msg


def test_custom_grouping_must_be_a_custom_grouping() -> None:
    b = builder()
    b.set_bolt("sink", Sink).custom_grouping("words", object())  # type: ignore[arg-type]
    msg = build_error(b)
    assert "'sink'" in msg and "CustomGrouping" in msg


def test_every_problem_is_reported_at_once() -> None:
    b = TopologyBuilder("t")
    b.set_spout("words", Words(), parallelism=0)
    b.set_bolt("sink", Sink).shuffle_grouping("nowhere")
    msg = build_error(b)
    assert "parallelism 0" in msg and "'nowhere'" in msg


def test_valid_topology_with_all_groupings_and_named_streams_builds() -> None:
    b = TopologyBuilder("all-groupings")
    b.set_spout("multi", Multi(), parallelism=2)
    b.set_bolt("shuffle", Sink, 2).shuffle_grouping("multi")
    b.set_bolt("fields", Sink, 2).fields_grouping("multi", ["n"], stream="numbers")
    b.set_bolt("all", Sink, 2).all_grouping("multi")
    b.set_bolt("global", Sink, 2).global_grouping("multi", stream="numbers")
    b.set_bolt("direct", Sink, 2).direct_grouping("multi")
    b.set_bolt("local", Sink, 2).local_or_shuffle_grouping("shuffle")
    b.set_bolt("none", NoOutputs, 2).none_grouping("fields")
    b.set_bolt("pk", Sink, 2).partial_key_grouping("multi", ["n", "square"], stream="numbers")
    b.set_bolt("custom", NoOutputs, 2).custom_grouping("pk", First()) \
        .shuffle_grouping("multi", stream="numbers")
    topology = b.build(config={"topology.workers": 2, "topology.message.timeout.secs": 5})
    assert isinstance(topology, Topology)
    kinds = {g.kind for spec in topology.bolts() for g in spec.inputs}
    assert kinds == {"shuffle", "fields", "all", "global", "direct", "local_or_shuffle", "none",
                     "partial_key", "custom"}
    tasks = topology.component_tasks()
    assert tasks["__acker"] == [1, 2]  # one acker per worker, sorted first
    assert sum(len(t) for t in tasks.values()) == 2 + 9 * 2 + 2


def test_component_class_or_instance() -> None:
    b = TopologyBuilder("t")
    b.set_spout("words", Words)
    b.set_bolt("sink", Sink()).shuffle_grouping("words")
    topology = b.build()
    a = topology.components["sink"].make_instance()
    c = topology.components["sink"].make_instance()
    assert isinstance(a, Sink) and a is not c
    assert isinstance(topology.components["words"].make_instance(), Words)
