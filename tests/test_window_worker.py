"""Windowed bolts on real workers (LocalCluster: real worker processes, real sockets).

Each test runs a small topology to completion (`complete_topology`, which flushes the
windows once the input is fed and quiet, or `run_to_completion` for spouts of our own) and
checks the windows fired, the late stream and the acks. Event time makes the windows
deterministic; processing-time tests check what holds whatever the timing.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from topology import Bolt, Spout, TopologyBuilder
from topology.errors import TopologyError
from topology.model import Topology
from topology.testing import complete_topology, run_to_completion
from topology.windowing import Count, Duration, WindowedBolt

FAST = Duration(seconds=0.05)  # watermark interval: windows fire soon after the input


class Src(Spout):
    outputs = ["key", "ts"]

    def next_tuple(self) -> None:  # replaced by complete_topology's feeder
        pass


class Collect(WindowedBolt):
    """Emits each window as [start, end, keys in window order]."""

    outputs = {"default": ["start", "end", "keys"], "late": ["key", "ts"]}

    def process_window(self, window: Any) -> None:
        self.emit([window.start, window.end, [t["key"] for t in window.tuples]])


def topology(bolt: WindowedBolt, parallelism: int = 1, name: str = "win",
             **config: Any) -> Topology:
    b = TopologyBuilder(name)
    b.set_spout("src", Src())
    b.set_bolt("w", bolt, parallelism=parallelism).shuffle_grouping("src")
    return b.build(config=config or None)


def event(bolt: WindowedBolt, lag: float = 100.0) -> WindowedBolt:
    return (bolt.with_timestamp_field("ts").with_lag(Duration(seconds=lag))
            .with_watermark_interval(FAST))


def windows(result: Any, component: str = "w") -> list[tuple[Any, Any, list[str]]]:
    return sorted((s, e, sorted(keys)) for s, e, keys in result.emitted(component))


INPUT = [["a", 1], ["b", 12], ["c", 5], ["d", 25], ["e", 9.5], ["f", 20]]


@pytest.mark.parametrize("shape, expected", [
    ("tumbling", [(0.0, 10.0, ["a", "c", "e"]), (10.0, 20.0, ["b"]), (20.0, 30.0, ["d", "f"])]),
    ("sliding", [(-10.0, 10.0, ["a", "c", "e"]), (0.0, 20.0, ["a", "b", "c", "e"]),
                 (10.0, 30.0, ["b", "d", "f"]), (20.0, 40.0, ["d", "f"])]),
])
def test_time_windows_in_event_time_out_of_order_within_the_lag(
        shape: str, expected: list[Any]) -> None:
    bolt = Collect()
    if shape == "tumbling":
        bolt.with_tumbling_window(Duration(seconds=10))
    else:
        bolt.with_window(Duration(seconds=20), Duration(seconds=10))
    result = complete_topology(topology(event(bolt)), {"src": INPUT})
    assert windows(result) == expected
    assert result.emitted("w", "late") == []
    assert result.acked == list(range(len(INPUT))) and result.failed == []


@pytest.mark.parametrize("shape, expected", [
    ("tumbling", [["a", "b", "c"], ["d", "e", "f"], ["g"]]),
    ("sliding", [["a", "b"], ["a", "b", "c", "d"], ["c", "d", "e", "f"], ["e", "f", "g"]]),
])
def test_count_windows_go_by_arrival(shape: str, expected: list[list[str]]) -> None:
    bolt = Collect()
    if shape == "tumbling":
        bolt.with_tumbling_window(Count(3))
    else:
        bolt.with_window(Count(4), Count(2))
    result = complete_topology(topology(bolt), {"src": [[k, 0] for k in "abcdefg"]})
    assert [keys for s, e, keys in result.emitted("w")] == expected  # one task: in order
    assert all(s is None and e is None for s, e, _ in result.emitted("w"))
    assert result.acked == list(range(7))


def test_processing_time_windows_partition_the_input_on_slide_aligned_bounds() -> None:
    bolt = Collect().with_tumbling_window(Duration(seconds=0.2))
    keys = [f"k{i}" for i in range(50)]
    result = complete_topology(topology(bolt), {"src": [[k, 0] for k in keys]})
    fired = result.emitted("w")
    assert sorted(k for _, _, ks in fired for k in ks) == sorted(keys)  # each in exactly one
    for start, end, _ in fired:
        assert end - start == pytest.approx(0.2)
        assert round(end * 1_000_000) % 200_000 == 0  # a multiple of the length
        assert abs(end - time.time()) < 120  # wall-clock seconds
    assert result.acked == list(range(50))


class Paced(Spout):
    """Emits `items` [(seconds after open, values)] reliably; a failed tuple is emitted again."""

    outputs = ["key", "ts"]
    items: list[tuple[float, list[Any]]] = []

    def open(self, conf: Any, context: Any) -> None:
        self.start = time.monotonic()
        self.next = 0
        self.replay: list[int] = []

    def next_tuple(self) -> None:
        if self.replay:
            i = self.replay.pop()
            self.emit(self.items[i][1], msg_id=i)
        elif self.next < len(self.items) and \
                time.monotonic() - self.start >= self.items[self.next][0]:
            self.emit(self.items[self.next][1], msg_id=self.next)
            self.next += 1

    def fail(self, msg_id: Any) -> None:
        self.replay.append(msg_id)


def paced_topology(items: list[tuple[float, list[Any]]], bolt: WindowedBolt,
                   parallelism: int = 1, **config: Any) -> Topology:
    spout = type("PacedItems", (Paced,), {"items": items})
    b = TopologyBuilder("paced")
    b.set_spout("src", spout, parallelism=parallelism)
    b.set_bolt("w", bolt).shuffle_grouping("src")
    return b.build(config=config or None)


def test_a_tuple_older_than_the_watermark_goes_to_the_late_stream_and_is_acked() -> None:
    items = [(0.0, ["a", 100]), (0.6, ["late", 1]), (0.6, ["c", 105])]
    bolt = event(Collect().with_tumbling_window(Duration(seconds=10)), lag=0)
    t = paced_topology(items, bolt.with_late_tuple_stream("late"))
    result = run_to_completion(t, {"src"}, len(items))
    assert result.emitted("w", "late") == [["late", 1]]  # the values it came in with
    assert windows(result) == [(100.0, 110.0, ["a", "c"])]
    assert result.acked == [0, 1, 2] and result.failed == []


class Sum(WindowedBolt):
    """The full form: sums the window's `ts` (as the incremental form folds them)."""

    outputs = ["start", "end", "sum", "n"]

    def process_window(self, window: Any) -> None:
        self.emit([window.start, window.end, sum(t["ts"] for t in window.tuples),
                   len(window.tuples)])


class IncrementalSum(WindowedBolt):
    outputs = ["start", "end", "sum", "n"]

    def initial(self) -> list[float]:
        return [0, 0]

    def add(self, acc: list[float], tup: Any) -> list[float]:
        return [acc[0] + tup["ts"], acc[1] + 1]

    def merge(self, a: list[float], b: list[float]) -> list[float]:
        return [a[0] + b[0], a[1] + b[1]]

    def process_window(self, window: Any) -> None:
        total, n = window.result
        self.emit([window.start, window.end, total, n])


@pytest.mark.parametrize("length, slide, event_time", [
    (Duration(seconds=6), Duration(seconds=2), True),
    (Count(5), Count(5), False),
])
def test_the_incremental_form_gives_the_full_forms_result(length: Any, slide: Any,
                                                          event_time: bool) -> None:
    b = TopologyBuilder("fold")
    b.set_spout("src", Src())
    for cid, cls in (("full", Sum), ("inc", IncrementalSum)):
        bolt = cls().with_window(length, slide)
        b.set_bolt(cid, event(bolt) if event_time else bolt).shuffle_grouping("src")
    data = [[f"k{i}", (i * 7) % 23] for i in range(40)]
    result = complete_topology(b.build(), {"src": data})
    full, inc = sorted(result.emitted("full")), sorted(result.emitted("inc"))
    assert full and full == inc
    assert sum(n for *_, n in full) >= len(data)  # sliding: a tuple is in several windows


class Split(Bolt):
    outputs = ["key", "ts"]

    def process(self, tup: Any) -> None:
        self.emit(list(tup.values))


class PerKey(WindowedBolt):
    outputs = ["key", "start", "end", "n"]

    def process_window(self, window: Any) -> None:
        for key, n in sorted(Counter(t["key"] for t in window.tuples).items()):
            self.emit([key, window.start, window.end, n])


def keyed(split: int, windows: int) -> Topology:
    b = TopologyBuilder(f"keyed{split}x{windows}")
    b.set_spout("src", Src())
    b.set_bolt("split", Split(), parallelism=split).shuffle_grouping("src")
    bolt = event(PerKey().with_window(Duration(seconds=4), Duration(seconds=2)), lag=1000)
    b.set_bolt("w", bolt, parallelism=windows).fields_grouping("split", ["key"])
    return b.build(config={"topology.workers": 2})


def test_several_input_tasks_and_window_tasks_give_what_one_of_each_gives() -> None:
    data = [[f"k{i % 5}", (i * 13) % 31 + 0.5] for i in range(60)]
    one = complete_topology(keyed(1, 1), {"src": data})
    many = complete_topology(keyed(3, 2), {"src": data})
    assert sorted(one.emitted("w")) == sorted(many.emitted("w"))
    assert sum(n for *_, n in one.emitted("w")) == 2 * len(data)  # every tuple in 2 windows


class Fragile(Bolt):
    """Fails what the window sent it: the window's spout tuples must replay (anchoring)."""

    outputs: list[str] = []

    def process(self, tup: Any) -> None:
        raise RuntimeError("no")


def test_window_output_is_anchored_to_every_root_of_the_window() -> None:
    b = TopologyBuilder("anchored")
    b.set_spout("src", Src())
    b.set_bolt("w", event(Collect().with_tumbling_window(Duration(seconds=10)))) \
        .shuffle_grouping("src")
    b.set_bolt("fragile", Fragile()).shuffle_grouping("w")
    result = complete_topology(b.build(), {"src": INPUT})
    assert result.failed == list(range(len(INPUT))) and result.acked == []


class Broken(WindowedBolt):
    outputs = ["n"]

    def process_window(self, window: Any) -> None:
        if any(t["key"] == "bad" for t in window.tuples):
            raise ValueError("a bad window")
        self.emit([len(window.tuples)])


def test_a_window_that_raises_fails_its_tuples_and_the_others_are_acked() -> None:
    bolt = event(Broken().with_tumbling_window(Duration(seconds=10)))
    result = complete_topology(topology(bolt), {"src": [["x", 1], ["bad", 2], ["y", 15]]})
    assert result.failed == [0, 1] and result.acked == [2]
    assert result.emitted("w") == [[1]]


def test_a_window_longer_than_the_message_timeout_is_refused_on_submit_too() -> None:
    from topology.local import LocalCluster

    ok = topology(Collect().with_tumbling_window(Duration(seconds=10)))
    spec = ok.components["w"]
    too_long = Collect().with_window(Duration(seconds=30), Duration(seconds=5))
    spec.obj = too_long
    with LocalCluster() as cluster, pytest.raises(TopologyError, match="windowed bolt 'w'"):
        cluster.submit(ok)


class Sum3(WindowedBolt):
    outputs = ["total"]

    def process_window(self, window: Any) -> None:
        self.emit([sum(t["ts"] for t in window.tuples)])


class Pairs(WindowedBolt):
    outputs = ["totals"]

    def process_window(self, window: Any) -> None:
        self.emit([[t["total"] for t in window.tuples]])


def test_a_chain_of_windows_is_flushed_to_the_end() -> None:
    b = TopologyBuilder("chain")
    b.set_spout("src", Src())
    b.set_bolt("sums", Sum3().with_tumbling_window(Count(3))).shuffle_grouping("src")
    b.set_bolt("pairs", Pairs().with_tumbling_window(Count(2))).shuffle_grouping("sums")
    result = complete_topology(b.build(), {"src": [["k", n] for n in range(7)]})
    assert result.emitted("sums") == [[3], [12], [6]]  # the last by the first flush
    assert result.emitted("pairs") == [[[3, 12]], [[6]]]  # the last by the second
    assert result.acked == list(range(7))


class Stamps(WindowedBolt):
    outputs = ["start", "end", "ts"]

    def process_window(self, window: Any) -> None:
        self.emit([window.start, window.end, [t["ts"] for t in window.tuples]])


@pytest.mark.parametrize("length, slide, expected", [
    (Count(3), Duration(seconds=10), [[None, None, [2, 3, 4]], [None, None, [4, 12, 13]],
                                      [None, None, [12, 13, 25]]]),
    (Duration(seconds=10), Count(2), [[-8.0, 2.0, [1, 2]], [2.0, 12.0, [3, 12]],
                                      [15.0, 25.0, [25]]]),
])
def test_windows_of_a_count_and_a_time(length: Any, slide: Any, expected: list[Any]) -> None:
    bolt = event(Stamps().with_window(length, slide))
    ts = [4, 1, 3, 2, 12, 13, 25] if isinstance(length, Count) else [2, 1, 12, 3, 13, 25]
    result = complete_topology(topology(bolt), {"src": [["k", t] for t in ts]})
    assert result.emitted("w") == expected
    assert result.acked == list(range(len(ts)))


class Share(Spout):
    """Task i of n emits every n-th item of DATA (from i), reliably."""

    outputs = ["key", "ts"]
    DATA = [[f"k{i % 4}", (i * 17) % 41 + 0.25] for i in range(48)]

    def open(self, conf: Any, context: Any) -> None:
        n = len(context.component_tasks(context.component_id))
        self.todo = [(i, v) for i, v in enumerate(self.DATA) if i % n == context.task_index]

    def next_tuple(self) -> None:
        if self.todo:
            i, values = self.todo.pop(0)
            self.emit(values, msg_id=i)


def test_several_spout_tasks_give_the_windows_one_spout_task_gives() -> None:
    def run(spouts: int, windows: int) -> list[Any]:
        b = TopologyBuilder(f"share{spouts}x{windows}")
        b.set_spout("src", Share(), parallelism=spouts)
        bolt = event(PerKey().with_window(Duration(seconds=6), Duration(seconds=3)), lag=1000)
        b.set_bolt("w", bolt, parallelism=windows).fields_grouping("src", ["key"])
        t = b.build(config={"topology.workers": 2})
        return sorted(run_to_completion(t, {"src"}, len(Share.DATA)).emitted("w"))

    one = run(1, 1)
    assert one and one == run(3, 2)
    assert sum(n for *_, n in one) == 2 * len(Share.DATA)
