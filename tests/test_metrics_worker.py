"""The figures a worker writes per stream (acked, failed, complete and execute latency), its
execute-latency histogram and the metrics tasks register (TopologyContext.register_metric):
whole workers in one process (tests/test_worker_inprocess.py's harness), read back through
cluster.records as the REST API and the dashboard read them."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from test_worker_inprocess import InProcess, Lines

from cluster.records import ALL_TIME, WINDOW_10M, WorkerHeartbeat, component_figures
from topology import Bolt, Spout, TopologyBuilder
from topology.context import CountMetric, GaugeMetric, HistogramMetric, TopologyContext
from topology.errors import TopologyError
from topology.model import Topology
from worker.stats import Histogram


def heartbeats(cluster: InProcess) -> list[dict[str, Any]]:
    out = []
    for worker in cluster.workers:
        worker.heartbeat(cluster.now)
        assert worker.last_heartbeat is not None
        out.append(json.loads(json.dumps(worker.last_heartbeat)))  # as stored
    return out


def snapshots(beats: list[dict[str, Any]], component: str) -> list[dict[str, Any]]:
    return [e for hb in beats for e in hb["executors"] if e["component"] == component]


class Sentences(Spout):
    """Lines, each on "default" and every third one also on "loud" (its own msg id)."""

    outputs = {"default": ["line"], "loud": ["line"]}

    def open(self, conf: Any, context: Any) -> None:
        self.i = 0

    def next_tuple(self) -> None:
        if self.i < 60:
            self.emit([Lines.lines[self.i]], msg_id=("d", self.i))
            if self.i % 3 == 0:
                self.emit([Lines.lines[self.i].upper()], msg_id=("l", self.i), stream="loud")
            self.i += 1


class FailLoud(Bolt):
    """Acks and fails by hand (auto_ack off): fails what comes on "loud", acks the rest."""

    auto_ack = False
    outputs = ["word"]

    def process(self, tup: Any) -> None:
        if tup.stream == "loud":
            self.fail(tup)
        else:
            for word in tup["line"].split():
                self.emit([word])
            self.ack(tup)


class Sink(Bolt):
    def process(self, tup: Any) -> None:
        pass


def two_streams() -> Topology:
    b = TopologyBuilder("streams")
    b.set_spout("src", Sentences(), parallelism=2)
    b.set_bolt("split", FailLoud, parallelism=2).shuffle_grouping("src") \
        .shuffle_grouping("src", "loud")
    b.set_bolt("sink", Sink, parallelism=1).shuffle_grouping("split")
    return b.build(config={"topology.workers": 2})


def test_spouts_and_bolts_count_acks_fails_and_latency_per_stream() -> None:
    cluster = InProcess(two_streams())
    cluster.run_until(lambda: cluster.total("src", "acked") == 120
                      and cluster.total("src", "failed") == 40)
    beats = heartbeats(cluster)

    for e in snapshots(beats, "src"):
        assert e["acked_streams"] == {"default": e["acked"]}
        assert e["failed_streams"] == {"loud": e["failed"]}
        assert e["latency_streams"]["default"]["count"] == e["acked"]
        assert e["latency_streams"]["default"]["total"] == pytest.approx(
            e["complete_latency"]["total"])
        assert e["window"]["acked_streams"] == e["acked_streams"]  # all within 10 minutes
    for e in snapshots(beats, "split"):
        assert e["acked_streams"] == {"src": {"default": e["executed_streams"]["src"]["default"]}}
        assert e["failed_streams"] == {"src": {"loud": e["executed_streams"]["src"]["loud"]}}
        latency = e["latency_streams"]["src"]
        assert latency["default"]["count"] + latency["loud"]["count"] == e["executed"]
        assert e["execute_latency"]["count"] == e["executed"]
        assert e["execute_latency"]["total"] == pytest.approx(
            latency["default"]["total"] + latency["loud"]["total"])
    for e in snapshots(beats, "sink"):  # auto-acked: the fast path counts per stream too
        assert e["acked_streams"] == {"split": {"default": e["executed"]}} and e["executed"]

    # What cluster.records reads: per GlobalStream, summed over tasks, in both windows.
    for window in (ALL_TIME, WINDOW_10M):
        figures = component_figures(beats, window)
        assert figures["src"].acked_streams == {("src", "default"): 120}
        assert figures["src"].failed_streams == {("src", "loud"): 40}
        assert figures["src"].latency_streams[("src", "default")].count == 120
        assert figures["split"].acked_streams == {("src", "default"): 120}
        assert figures["split"].failed_streams == {("src", "loud"): 40}
        words = 2 * sum(len(line.split()) for line in Lines.lines[:60])
        assert figures["sink"].acked_streams == {("split", "default"): words}
    for hb in beats:
        assert WorkerHeartbeat.from_dict(hb).to_dict() == hb  # records keep every key


def test_timed_out_trees_count_as_failed_on_their_stream() -> None:
    class Never(Bolt):
        auto_ack = False

        def process(self, tup: Any) -> None:
            pass  # never acks: every tree times out

    b = TopologyBuilder("timeouts")
    b.set_spout("src", Sentences(), parallelism=1)
    b.set_bolt("hold", Never, parallelism=1).shuffle_grouping("src") \
        .shuffle_grouping("src", "loud")
    cluster = InProcess(b.build(config={"topology.workers": 1,
                                        "topology.message.timeout.secs": 1}), workers=1)
    cluster.run_until(lambda: cluster.total("src", "timed_out") == 80, dt=0.01)
    (e,) = snapshots(heartbeats(cluster), "src")
    assert e["failed_streams"] == {"default": 60, "loud": 20}
    assert "acked_streams" not in e and "latency_streams" not in e  # absent: none


def test_a_spout_without_ackers_counts_its_instant_acks_per_stream() -> None:
    b = TopologyBuilder("noack")
    b.set_spout("src", Sentences(), parallelism=1)
    b.set_bolt("sink", Sink, parallelism=1).shuffle_grouping("src")
    conf = {"topology.workers": 1, "topology.acker.executors": 0}
    cluster = InProcess(b.build(config=conf), workers=1)
    cluster.run_until(lambda: cluster.total("src", "acked") == 80)
    (e,) = snapshots(heartbeats(cluster), "src")
    assert e["acked_streams"] == {"default": 60, "loud": 20}
    assert e["execute_latency"]["count"] >= 60  # every next_tuple call, timed by slice


# --- registered metrics -------------------------------------------------------------------------


class Metered(Bolt):
    outputs = ["word"]

    def prepare(self, conf: Any, context: Any) -> None:
        self.words = context.register_metric("words", CountMetric())
        self.sizes = context.register_metric("line_length", HistogramMetric())
        self.last = context.register_metric("last_length", GaugeMetric())
        self.seen = 0
        context.register_metric("seen", lambda: self.seen)  # a function: a gauge

    def process(self, tup: Any) -> None:
        words = tup["line"].split()
        self.words.incr(len(words))
        self.sizes.update(len(tup["line"]))
        self.last.set(len(tup["line"]))
        self.seen += 1


def test_registered_metrics_reach_the_heartbeat_and_the_records() -> None:
    b = TopologyBuilder("metered")
    b.set_spout("src", Sentences(), parallelism=1)
    b.set_bolt("meter", Metered, parallelism=2).shuffle_grouping("src")
    cluster = InProcess(b.build(config={"topology.workers": 2}))
    cluster.run_until(lambda: cluster.total("meter", "executed") == 60)
    beats = heartbeats(cluster)
    mine = snapshots(beats, "meter")
    assert {e["metrics"]["seen"]["value"] for e in mine} == {e["executed"] for e in mine}
    for e in mine:
        assert e["metrics"]["seen"]["type"] == "gauge"
        assert e["metrics"]["words"]["type"] == "counter"
        assert e["metrics"]["line_length"]["count"] == e["executed"]
    assert all("metrics" not in e for e in snapshots(beats, "src"))  # none registered
    words = sum(len(line.split()) for line in Lines.lines[:60])
    figures = component_figures(beats, ALL_TIME)["meter"].metrics
    assert figures["words"].value == words  # counters sum over tasks
    assert figures["seen"].value == 60
    assert figures["line_length"].histogram is not None
    assert figures["line_length"].histogram.count == 60


def test_a_metric_that_raises_or_is_no_number_is_reported_and_left_out() -> None:
    class Broken(Bolt):
        def prepare(self, conf: Any, context: Any) -> None:
            context.register_metric("fine", CountMetric()).incr()
            context.register_metric("broken", lambda: 1 / 0)
            context.register_metric("nan", GaugeMetric()).set(math.nan)
            context.register_metric("text", lambda: "many")
            context.register_metric("object", lambda: object())
            context.register_metric("decimal", lambda: Decimal("2.5"))
            context.register_metric("fraction", lambda: Fraction(5, 2))

        def process(self, tup: Any) -> None:
            pass

    b = TopologyBuilder("broken")
    b.set_spout("src", Sentences(), parallelism=1)
    b.set_bolt("b", Broken, parallelism=1).shuffle_grouping("src")
    cluster = InProcess(b.build(config={"topology.workers": 1}), workers=1)
    cluster.turn()
    heartbeats(cluster)
    (hb,) = heartbeats(cluster)
    (e,) = snapshots([hb], "b")
    assert e["metrics"] == {"fine": {"type": "counter", "value": 1},
                            "fraction": {"type": "gauge", "value": 2.5}}
    (worker,) = cluster.workers
    said = [err["error"] for err in worker.errors.recent]
    assert len(said) == 5 and not worker.errors.suppressed  # once each, not every heartbeat
    assert any("metric 'broken'" in x and "ZeroDivisionError" in x for x in said), said
    for name in ("nan", "text", "object", "decimal"):
        assert any(f"metric {name!r}" in x and "not a finite number" in x for x in said), said


def context() -> TopologyContext:
    return TopologyContext("t", 3, "c", {"c": [3]})


@pytest.mark.parametrize("name, metric, bucket, says", [
    ("", CountMetric(), 60, "non-empty string"),
    (7, CountMetric(), 60, "non-empty string"),
    ("m", object(), 60, "must be a CountMetric"),
    ("m", CountMetric(), 0, "positive number"),
    ("m", CountMetric(), math.nan, "positive number"),
    ("m", CountMetric(), "60", "positive number"),
])
def test_register_metric_refuses_bad_input_in_one_line(name: Any, metric: Any, bucket: Any,
                                                        says: str) -> None:
    with pytest.raises(TopologyError, match=says) as e:
        context().register_metric(name, metric, bucket)
    assert "component 'c' task 3" in str(e.value)


def test_register_metric_refuses_a_name_twice_and_past_the_bound() -> None:
    c = context()
    counter = c.register_metric("m", CountMetric())
    with pytest.raises(TopologyError, match="'m' is registered already"):
        c.register_metric("m", CountMetric())
    assert c.metrics["m"] is counter
    for i in range(99):
        c.register_metric(f"g{i}", GaugeMetric())
    with pytest.raises(TopologyError, match="at most 100 metrics"):
        c.register_metric("one too many", CountMetric())


def test_a_histogram_metric_takes_finite_numbers_only() -> None:
    h = HistogramMetric()
    h.update(0.25)
    for bad in (math.inf, math.nan, "1", None):
        with pytest.raises(TypeError, match="is not a finite number"):
            h.update(bad)
    assert h.report()["count"] == 1 and h.report()["total"] == 0.25


def test_adding_a_value_n_times_is_adding_it_repeatedly() -> None:
    one, many = Histogram(), Histogram()
    for value in (0.0, 3e-7, 2e-6, 0.0123, 4.5):
        for _ in range(7):
            one.add(value)
        many.add(value, 7)
    many.add(1.0, 0)
    assert many.buckets == one.buckets and many.count == one.count
    assert many.total == pytest.approx(one.total)
