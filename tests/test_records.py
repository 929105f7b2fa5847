"""cluster.records: typed heartbeat records (round trip, malformed input, unknown keys) and the
one aggregator, fed with what the worker's own stats code produces."""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.records import (
    ALL_TIME,
    WINDOW_10M,
    ExecutorSnapshot,
    Histogram,
    Mean,
    WorkerHeartbeat,
    aggregate_components,
    component_figures,
)
from worker import stats as worker_stats


def snapshot(component: str, task: int, kind: str, emitted: dict[str, int],
             executed: dict[str, dict[str, int]], acked: int = 0, latencies: tuple = (),
             execute_time: float = 0.0) -> dict[str, Any]:
    """An executor snapshot made by the worker's own code (worker.stats.ExecutorStats)."""
    s = worker_stats.ExecutorStats(component, task, kind)
    s.executed = sum(n for streams in executed.values() for n in streams.values())
    s.acked, s.execute_time = acked, execute_time
    for seconds in latencies:
        s.complete_latency.add(seconds)
    return s.snapshot(emitted, dict(emitted), executed)


def heartbeat(port: int, executors: list[dict[str, Any]], now: float = 100.0,
              windows: worker_stats.Windows | None = None) -> dict[str, Any]:
    """A worker heartbeat shaped as worker.process sends it, windows from worker.stats."""
    (windows or worker_stats.Windows()).add(now, executors)
    return {"type": "heartbeat", "topology_id": "t-1", "host": "h", "port": port, "pid": 42,
            "version": {"assignment": 3, "code": 1}, "time": 1.7e9, "uptime": 12.5,
            "state": "running", "active": True, "tasks": [e["task"] for e in executors],
            "executors": executors, "errors": [], "queued": 3, "parked": 0,
            "overloaded": False, "rejected": 0, "dropped": 0, "errors_suppressed": 0,
            "rss": 35_000_000, "sent_bytes": 10, "received_bytes": 20}


def word_count_beats() -> list[dict[str, Any]]:
    return [
        heartbeat(6700, [
            snapshot("sentences", 1, "spout", {"default": 10}, {}, acked=9,
                     latencies=(0.001, 0.002, 0.004), execute_time=0.5),
            snapshot("split", 3, "bolt", {"default": 40}, {"sentences": {"default": 6}},
                     acked=6, execute_time=0.25),
        ]),
        heartbeat(6701, [
            snapshot("sentences", 2, "spout", {"default": 5, "other": 2}, {}, acked=5,
                     latencies=(0.008,)),
            snapshot("split", 4, "bolt", {"default": 16}, {"sentences": {"default": 4}},
                     acked=4, execute_time=0.75),
        ]),
    ]


# --- round trip -----------------------------------------------------------------------------------


def test_a_worker_heartbeat_round_trips_exactly() -> None:
    for beat in word_count_beats():
        stored = json.loads(json.dumps(beat))  # what the cluster state hands back
        assert WorkerHeartbeat.from_dict(stored).to_dict() == stored


def test_typed_fields_read_what_the_worker_wrote() -> None:
    hb = WorkerHeartbeat.from_dict(word_count_beats()[0])
    assert (hb.host, hb.port, hb.key, hb.uptime, hb.rss, hb.active) == \
        ("h", 6700, "h:6700", 12.5, 35_000_000, True)
    spout, bolt = hb.executors
    assert (spout.component, spout.task, spout.kind, spout.spout) == ("sentences", 1, "spout", True)
    assert spout.totals.emitted == {"default": 10} and spout.totals.acked == 9
    assert spout.complete_latency.count == 3 and spout.totals.complete.count == 3
    assert bolt.totals.executed_streams == {("sentences", "default"): 6}
    assert bolt.window is not None and bolt.window.executed == 0  # the first look: empty


def test_unknown_keys_are_kept_at_every_level() -> None:
    beat = word_count_beats()[0]
    beat["future"] = {"x": 1}
    beat["executors"][0]["watermark"] = 12.5
    beat["executors"][0]["window"]["late"] = 3
    out = WorkerHeartbeat.from_dict(beat).to_dict()
    assert out["future"] == {"x": 1} and out["executors"][0]["watermark"] == 12.5
    assert out["executors"][0]["window"]["late"] == 3
    assert WorkerHeartbeat.from_dict(beat).extra == {"type": "heartbeat", "future": {"x": 1}}


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_anything_reads_without_raising(value: Any) -> None:
    hb = WorkerHeartbeat.from_dict(value)
    json.dumps(hb.to_dict())
    component_figures([value], ALL_TIME)
    component_figures([value], WINDOW_10M)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_damaged_heartbeat_reads_without_raising(data: st.DataObject) -> None:
    """Any key of a real heartbeat (at any depth) replaced by any value."""
    beat = word_count_beats()[0]
    paths = list(_paths(beat))
    for _ in range(data.draw(st.integers(1, 4))):
        path = data.draw(st.sampled_from(paths))
        _set(beat, path, data.draw(JSON))
    hb = WorkerHeartbeat.from_dict(beat)
    text = json.dumps(hb.to_dict())
    assert WorkerHeartbeat.from_dict(json.loads(text)).to_dict() == json.loads(text)
    for window in (ALL_TIME, WINDOW_10M):
        for f in component_figures([beat], window).values():
            assert math.isfinite(f.emitted_total + f.executed + f.complete_latency_ms)


def _paths(value: Any, prefix: tuple = ()) -> Any:
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _set(root: Any, path: tuple, value: Any) -> None:
    try:
        for key in path[:-1]:
            root = root[key]
        root[path[-1]] = value
    except (KeyError, IndexError, TypeError):
        pass  # an earlier change removed this path


@pytest.mark.parametrize("bad", [None, 3, "x", [], {"executors": "no"}, {"executors": [1, {}]},
                                 {"executors": [{"component": 5}]}, {"port": float("nan")},
                                 {"port": True, "uptime": "long"}])
def test_malformed_heartbeats_read_as_empty(bad: Any) -> None:
    hb = WorkerHeartbeat.from_dict(bad)
    assert hb.executors == [] and hb.port == 0 and hb.uptime == 0


def test_a_snapshot_without_a_component_is_skipped_and_the_others_kept() -> None:
    beat = word_count_beats()[0]
    beat["executors"].insert(0, {"task": 9, "emitted": {"default": 1}})
    assert [e.component for e in WorkerHeartbeat.from_dict(beat).executors] == \
        ["sentences", "split"]


# --- the aggregator -------------------------------------------------------------------------------


def test_component_figures_sum_tasks_per_component_and_stream() -> None:
    figures = component_figures(word_count_beats(), ALL_TIME)
    spout, split = figures["sentences"], figures["split"]
    assert spout.emitted == {"default": 15, "other": 2} and spout.emitted_total == 17
    assert spout.acked == 14 and spout.executors == 2
    assert spout.complete == Mean(0.015, 4) and spout.complete_latency_ms == 3.75
    assert split.executed_streams == {("sentences", "default"): 10}
    assert split.execute_latency_ms == 100.0  # 1.0 s over 10 tuples


def test_the_ten_minute_window_is_the_difference_the_worker_keeps() -> None:
    windows = worker_stats.Windows(span=600)
    first = [snapshot("split", 3, "bolt", {"default": 40}, {"s": {"default": 10}})]
    heartbeat(6700, first, now=0.0, windows=windows)
    later = [snapshot("split", 3, "bolt", {"default": 100}, {"s": {"default": 25}},
                      execute_time=30.0)]
    beat = heartbeat(6700, later, now=700.0, windows=windows)
    (f,) = component_figures([beat], WINDOW_10M).values()
    assert f.executed == 15 and f.emitted == {"default": 60}
    assert f.capacity == round(30.0 / 700, 3)  # execute time over the window's length
    assert component_figures([beat], ALL_TIME)["split"].executed == 25


def test_aggregate_components_sums_every_executor_since_start() -> None:
    out = aggregate_components(json.loads(json.dumps(word_count_beats())))
    spout, split = out["sentences"], out["split"]
    assert (spout["type"], spout["tasks"], spout["emitted"], spout["acked"]) == ("spout", 2, 17, 14)
    assert spout["execute_time"] == 0.5 and spout["complete_latency"].count == 4
    assert (split["type"], split["emitted"], split["executed"], split["acked"]) == \
        ("bolt", 56, 10, 10)
    assert split["execute_time"] == 1.0


# --- keys the worker will add: per-stream acks, fails, latency; user metrics ---------------------


def test_per_stream_acks_fails_and_latency_of_spouts_and_bolts() -> None:
    beat = word_count_beats()[0]
    spout, bolt = beat["executors"]
    spout.update(acked_streams={"default": 9}, failed_streams={"default": 1},
                 latency_streams={"default": {"total": 0.007, "count": 3}})
    bolt.update(acked_streams={"sentences": {"default": 6}},
                failed_streams={"sentences": {"default": 0}},
                latency_streams={"sentences": {"default": {"total": 0.25, "count": 6}}})
    spout["window"]["acked_streams"] = {"default": 2}
    hb = WorkerHeartbeat.from_dict(beat)
    s, b = hb.executors
    assert s.totals.acked_streams == {("sentences", "default"): 9}
    assert s.totals.latency_streams == {("sentences", "default"): Mean(0.007, 3)}
    assert b.totals.acked_streams == {("sentences", "default"): 6}
    assert b.totals.latency_streams[("sentences", "default")].ms == round(0.25 / 6 * 1000, 3)
    assert s.window is not None and s.window.acked_streams == {("sentences", "default"): 2}
    assert hb.to_dict() == beat  # written back in the shape they came in


def test_a_spout_stream_named_like_a_latency_field_is_still_a_stream() -> None:
    e = ExecutorSnapshot.from_dict({"component": "s", "type": "spout", "latency_streams": {
        "total": {"total": 1.0, "count": 2}}, "acked_streams": {"count": 4}})
    assert e is not None
    assert e.totals.latency_streams == {("s", "total"): Mean(1.0, 2)}
    assert e.totals.acked_streams == {("s", "count"): 4}


def test_user_metrics_are_read_and_summed_per_component() -> None:
    beats = word_count_beats()
    h = Histogram()
    for v in (0.001, 0.002):
        h.add(v)
    beats[0]["executors"][1]["metrics"] = {
        "words": {"type": "counter", "value": 5}, "queue": {"type": "gauge", "value": 2},
        "sizes": {"type": "histogram", **h.to_dict()}, "bad": {"type": "meter"}}
    beats[1]["executors"][1]["metrics"] = {
        "words": {"type": "counter", "value": 7}, "queue": {"type": "gauge", "value": 9}}
    (e0,) = [e for e in WorkerHeartbeat.from_dict(beats[0]).executors if e.component == "split"]
    assert set(e0.metrics) == {"words", "queue", "sizes"}  # an unknown type is left out
    metrics = component_figures(beats, ALL_TIME)["split"].metrics
    assert metrics["words"].value == 12
    assert (metrics["queue"].value, metrics["queue"].low, metrics["queue"].high) == (11, 2, 9)
    sizes = metrics["sizes"].histogram
    assert sizes is not None and sizes.count == 2


def test_histogram_percentiles_and_counts_under_bounds() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(-6, 1.5) for _ in range(2000)]
    ours = Histogram()
    for v in values:
        ours.add(v)
    ordered = sorted(values)
    for p in (1, 50, 90, 99, 100):  # the bucket's upper edge: at most ~9% above the exact one
        exact = ordered[max(0, int(p / 100 * len(values)) - 1)]
        assert exact <= ours.percentile(p) <= exact * 1.1
    bounds = [0.0005, 0.001, 0.005, 0.05, math.inf]
    counts = ours.cumulative(bounds)
    assert counts == sorted(counts) and counts[-1] == len(values)
    for bound, n in zip(bounds, counts, strict=True):
        exact = sum(v <= bound for v in values)
        assert n <= exact and exact - n <= max(ours.buckets.values())  # one bucket at most
    merged = Histogram()
    merged.merge(copy.deepcopy(ours.to_dict()))
    assert merged == ours
