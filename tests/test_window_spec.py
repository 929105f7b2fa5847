"""Windowed bolts as declared: Count, Duration, the with_* settings, and build()'s checks.

Each rule has its own test, and each message is checked for the value or bolt it names.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from typing import Any

import pytest

from topology import Bolt, Spout, TopologyBuilder, TopologyError
from topology.windowing import Count, Duration, Window, WindowedBolt, windowing_status


class Events(Spout):
    outputs = ["user", "ts"]


class Other(Spout):
    outputs = ["user", "time"]


class Top(WindowedBolt):
    outputs = {"default": ["user", "n"], "late": ["user", "ts"], "short": ["user"]}

    def process_window(self, window: Window) -> None:
        pass


class Distinct(Top):
    def initial(self) -> int:
        return 0

    def add(self, acc: int, tup: Any) -> int:
        return acc + 1

    def merge(self, a: int, b: int) -> int:
        return a + b


class HalfIncremental(Top):
    def add(self, acc: int, tup: Any) -> int:
        return acc + 1


def build(bolt: Any, config: dict[str, Any] | None = None, source: str = "events") -> Any:
    b = TopologyBuilder("t")
    b.set_spout("events", Events())
    b.set_spout("other", Other())
    b.set_bolt("top", bolt).shuffle_grouping(source)
    return b.build(config=config)


def build_error(bolt: Any, config: dict[str, Any] | None = None, source: str = "events") -> str:
    with pytest.raises(TopologyError) as info:
        build(bolt, config, source)
    return str(info.value)


# --- Count and Duration ----------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, -1, 2.5, True, "3", None])
def test_count_must_be_a_positive_integer(n: Any) -> None:
    with pytest.raises(TopologyError, match=rf"Count\({n!r}\)".replace("'", "'")):
        Count(n)


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "10", True])
def test_duration_must_be_a_finite_number(value: Any) -> None:
    with pytest.raises(TopologyError, match="finite number >= 0"):
        Duration(seconds=value)


def test_duration_is_exact_to_the_microsecond_and_reads_well() -> None:
    assert Duration(seconds=0.1).micros == 100_000
    assert Duration(minutes=1) == Duration(seconds=60) != Duration(seconds=61)
    assert Duration(seconds=90, milliseconds=500).seconds == 90.5
    assert [Duration(**kw).describe() for kw in (
        {"seconds": 10}, {"minutes": 2}, {"hours": 1}, {"milliseconds": 250}, {"seconds": 1.5})
    ] == ["10 s", "2 min", "1 h", "250 ms", "1.5 s"]
    with pytest.raises(TopologyError, match="shorter than a microsecond"):
        Duration(seconds=1e-9)
    assert repr(Duration(seconds=2)) == "Duration(seconds=2)" and repr(Count(3)) == "Count(3)"


# --- the with_* settings ---------------------------------------------------------------------

def test_settings_chain_and_build_one_spec_per_instance() -> None:
    a = Top().with_window(Duration(seconds=10), Duration(seconds=2)).with_timestamp_field("ts")
    b = Top().with_tumbling_window(Count(5))
    assert a.window_spec.length == Duration(seconds=10) and a.window_spec.event_time
    assert b.window_spec.length == b.window_spec.slide == Count(5)
    assert not b.window_spec.event_time and Top().window_spec.length is None
    copy = pickle.loads(pickle.dumps(a))
    assert copy.window_spec == a.window_spec


def test_describe_says_what_the_window_is() -> None:
    bolt = (Top().with_window(Duration(seconds=10), Duration(seconds=2))
            .with_timestamp_field("ts").with_lag(Duration(seconds=5)))
    assert bolt.window_spec.describe() == "sliding 10 s every 2 s, event time on ts, lag 5 s"
    assert Top().with_tumbling_window(Duration(minutes=1)).window_spec.describe() == \
        "tumbling 1 min, processing time"
    counted = Top().with_window(Count(100), Count(10)).window_spec
    assert counted.describe(incremental=True) == \
        "sliding 100 tuples every 10 tuples, processing time, incremental"
    every = (Top().with_window(Duration(seconds=3)).with_timestamp_extractor(lambda t: 0)
             .with_idle_timeout(Duration(seconds=30)).with_late_tuple_stream("late"))
    assert every.window_spec.describe() == ("sliding 3 s every tuple, event time by extractor, "
                                            "lag 0 s, idle after 30 s, late tuples to 'late'")


def test_heartbeat_fields_have_the_dashboards_shape() -> None:
    s = Top().with_tumbling_window(Duration(seconds=5)).with_timestamp_field("ts").window_spec
    assert windowing_status(s, 12.5, 3) == {"windowing": {
        "spec": "tumbling 5 s, event time on ts, lag 0 s", "watermark": 12.5, "late": 3}}


@pytest.mark.parametrize("call, message", [
    (lambda b: b.with_window(10, Count(1)), r"with_window: the window length must be Count\(n\)"),
    (lambda b: b.with_window(Count(3), "1s"), "with_window: the window slide must be"),
    (lambda b: b.with_window(Duration(seconds=0)), "length must be longer than 0 s"),
    (lambda b: b.with_tumbling_window(None), "with_tumbling_window: the window length"),
    (lambda b: b.with_timestamp_field(""), "with_timestamp_field"),
    (lambda b: b.with_timestamp_extractor("ts"), "with_timestamp_extractor"),
    (lambda b: b.with_lag(5), r"with_lag: give a Duration\(seconds=...\), not 5"),
    (lambda b: b.with_watermark_interval(Duration(seconds=0)), "longer than 0 s"),
    (lambda b: b.with_idle_timeout(None), "with_idle_timeout"),
    (lambda b: b.with_late_tuple_stream(3), r"with_late_tuple_stream\(3\)"),
    (lambda b: b.with_timestamp_field("ts").with_timestamp_extractor(len),
     "already has timestamp field 'ts'"),
    (lambda b: b.with_timestamp_extractor(len).with_timestamp_field("ts"),
     "already has a timestamp extractor"),
])
def test_each_setting_refuses_a_bad_value_where_it_is_given(call: Any, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        call(Top())


def test_lag_may_be_zero() -> None:
    assert Top().with_lag(Duration(seconds=0)).window_spec.lag_micros == 0


def test_timestamps_are_read_and_checked() -> None:
    class Tup(dict[str, Any]):
        pass

    s = Top().with_tumbling_window(Count(1)).with_timestamp_field("ts").window_spec
    assert s.timestamp(Tup(ts=12)) == 12
    for bad in ("12", None, float("nan"), True):
        with pytest.raises(ValueError, match=f"field 'ts' is {bad!r}"):
            s.timestamp(Tup(ts=bad))
    by_fn = Top().with_timestamp_extractor(lambda t: t["ts"] * 2).window_spec
    assert by_fn.timestamp(Tup(ts=2.5)) == 5.0


def test_a_windowed_bolt_is_not_given_single_tuples() -> None:
    with pytest.raises(TopologyError, match="process_window"):
        Top().process(None)  # type: ignore[arg-type]


# --- build() ---------------------------------------------------------------------------------

def test_a_good_windowed_topology_builds() -> None:
    bolt = (Top().with_window(Duration(seconds=10), Duration(seconds=2))
            .with_timestamp_field("ts").with_lag(Duration(seconds=5))
            .with_late_tuple_stream("late"))
    assert build(bolt).components["top"].obj is bolt
    assert build(Distinct().with_window(Count(10), Count(2)))
    assert build(Top().with_window(Count(10), Duration(seconds=5)))


def test_a_windowed_bolt_needs_a_window() -> None:
    assert "windowed bolt 'top' has no window: call with_window" in build_error(Top())


def test_a_windowed_bolt_given_as_a_class_is_read_from_an_instance() -> None:
    class Configured(Top):
        def __init__(self) -> None:
            self.with_tumbling_window(Duration(seconds=40))

    assert "windowed bolt 'top'" in build_error(Configured)  # 40 s > the 30 s default timeout

    class Broken(Top):
        def __init__(self) -> None:
            raise RuntimeError("no config")

    assert "'top': creating it to read its window raised RuntimeError: no config" in \
        build_error(Broken)


def test_length_plus_slide_must_fit_in_the_message_timeout() -> None:
    sliding = Top().with_window(Duration(seconds=20), Duration(seconds=10))
    assert build(sliding)  # 30 s: exactly the default timeout
    msg = build_error(Top().with_window(Duration(seconds=20), Duration(seconds=11)))
    assert "windowed bolt 'top'" in msg and "31 s (length plus slide)" in msg
    assert "topology.message.timeout.secs = 30" in msg
    assert build(Top().with_window(Duration(seconds=20), Duration(seconds=11)),
                 {"topology.message.timeout.secs": 31})
    msg = build_error(sliding, {"topology.message.timeout.secs": 29.5})
    assert "topology.message.timeout.secs = 29.5" in msg


def test_a_mixed_window_counts_only_its_time_part_against_the_timeout() -> None:
    assert build(Top().with_window(Duration(seconds=30), Count(1000)))
    assert "40 s (length)" in build_error(Top().with_window(Duration(seconds=40), Count(1)))
    assert "35 s (slide)" in build_error(Top().with_window(Count(5), Duration(seconds=35)))
    assert build(Top().with_window(Count(10 ** 6), Count(10 ** 6)))


def test_a_bad_timeout_is_reported_once() -> None:
    msg = build_error(Top().with_tumbling_window(Duration(seconds=5)),
                      {"topology.message.timeout.secs": "30"})
    assert msg.count("topology.message.timeout.secs") == 1


def test_incremental_form_needs_all_three_methods() -> None:
    msg = build_error(HalfIncremental().with_tumbling_window(Count(3)))
    assert "windowed bolt 'top' defines add but not initial, merge" in msg


def test_incremental_form_needs_length_and_slide_of_one_kind() -> None:
    msg = build_error(Distinct().with_window(Count(3), Duration(seconds=1)))
    assert "incremental form needs a length and a slide of one kind" in msg
    assert "Count(3) and Duration(seconds=1)" in msg


@pytest.mark.parametrize("setting", ["with_lag", "with_idle_timeout", "with_watermark_interval",
                                     "with_late_tuple_stream"])
def test_event_time_settings_need_event_time(setting: str) -> None:
    bolt = Top().with_tumbling_window(Duration(seconds=5))
    getattr(bolt, setting)("late" if setting == "with_late_tuple_stream"
                           else Duration(seconds=1))
    msg = build_error(bolt)
    assert f"windowed bolt 'top' sets {setting}(" in msg and "has no event time" in msg


def test_the_timestamp_field_must_be_in_every_input() -> None:
    bolt = Top().with_tumbling_window(Duration(seconds=5)).with_timestamp_field("ts")
    msg = build_error(bolt, source="other")
    assert "timestamp field 'ts' is not a field of input 'other' stream 'default'" in msg
    assert "['user', 'time']" in msg


def test_the_late_stream_must_be_declared_with_the_inputs_arity() -> None:
    def bolt(stream: str) -> Top:
        return (Top().with_tumbling_window(Duration(seconds=5)).with_timestamp_field("ts")
                .with_late_tuple_stream(stream))

    assert "late tuple stream 'tardy' is not declared" in build_error(bolt("tardy"))
    msg = build_error(bolt("short"))
    assert "late tuple stream 'short' has 1 fields but input 'events' stream 'default' has 2" \
        in msg


def test_plain_bolts_are_not_checked_as_windows() -> None:
    class Plain(Bolt):
        def process(self, tup: Any) -> None:
            pass

    assert build(Plain())


def test_importing_topology_loads_neither_numpy_nor_datasketches() -> None:
    code = ("import sys, topology, topology.windowing, topology.sketches; "
            "print(sorted(m for m in ('numpy', 'datasketches') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
