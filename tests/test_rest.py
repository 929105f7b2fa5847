"""The dashboard's REST API on recorded cluster state: a real UiServer over HTTP reading a
cluster state whose records are written as nimbus, supervisors and workers write them, with
the clocks in the test's hands (supervisor liveness, error ages, the 3 h and 1 day windows),
and the heartbeat keys workers will add (per-stream acks, fails and latency; user metrics)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster.config import Config
from cluster.memstore import MemoryBackend, MemoryClusterState
from nimbus import submission as sub
from nimbus.lifecycle import ACTIVE, TopologyStatus
from topology import Bolt, Spout, TopologyBuilder
from ui.actions import Actions
from ui.server import UiServer
from worker import stats as worker_stats

TID = "words-1-abc"
START = 1_700_000_000.0


class Words(Spout):
    outputs = {"default": ["word"], "rare": ["word"]}

    def next_tuple(self) -> None:
        pass


class Count(Bolt):
    outputs = ["word", "n"]

    def process(self, tup: Any) -> None:
        pass


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class QuietUi(UiServer):
    """The dashboard without its sampling thread: the test samples, at times it chooses."""

    def _sample(self) -> None:
        pass


class Dashboard:
    def __init__(self, state: MemoryClusterState, server: UiServer, wall: Clock,
                 mono: Clock) -> None:
        self.state, self.server, self.wall, self.mono = state, server, wall, mono

    def get(self, path: str, status: int = 200) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        assert response.status == status, (path, response.status, data)
        kind = response.getheader("Content-Type", "")
        return json.loads(data) if kind.startswith("application/json") else data.decode()

    def advance(self, seconds: float) -> None:
        self.wall.t += seconds
        self.mono.t += seconds


def executor(component: str, task: int, kind: str, emitted: dict[str, int],
             executed: dict[str, dict[str, int]] | None = None, acked: int = 0,
             failed: int = 0, latencies: tuple = (), execute_time: float = 0.0,
             **extra: Any) -> dict[str, Any]:
    s = worker_stats.ExecutorStats(component, task, kind)
    s.executed = sum(n for st in (executed or {}).values() for n in st.values())
    s.acked, s.failed, s.execute_time = acked, failed, execute_time
    for seconds in latencies:
        s.complete_latency.add(seconds)
    return {**s.snapshot(emitted, dict(emitted), executed or {}), **extra}


def heartbeat(port: int, executors: list[dict[str, Any]], uptime: float,
              windows: worker_stats.Windows) -> dict[str, Any]:
    windows.add(uptime, executors)
    return {"topology_id": TID, "host": "10.0.0.1", "port": port, "pid": 7, "version": 1,
            "time": START, "uptime": uptime, "state": "running", "active": True,
            "tasks": [e["task"] for e in executors], "executors": executors, "errors": [],
            "queued": 0, "overloaded": False, "rss": 1 << 25}


@pytest.fixture
def dash() -> Iterator[Dashboard]:
    builder = TopologyBuilder("words")
    builder.set_spout("words", Words(), parallelism=1)
    builder.set_bolt("count", Count(), parallelism=1).shuffle_grouping("words") \
        .shuffle_grouping("words", stream="rare")
    topology = builder.build(config={"topology.workers": 2})
    conf = Config.from_mapping({}).to_dict()
    state = MemoryClusterState(MemoryBackend())
    state.set_topology(TID, sub.make_meta(TID, topology, conf, TopologyStatus(ACTIVE), START,
                                          "ana", 1))
    meta = state.topology(TID)
    assert meta is not None
    tasks = {cid: spec["tasks"] for cid, spec in meta["components"].items()}
    state.set_assignment(TID, {"version": 1, "workers": [
        {"host": "10.0.0.1", "port": 6700, "supervisor": "sup-a", "tasks": tasks["words"]},
        {"host": "10.0.0.2", "port": 6701, "supervisor": "sup-b", "tasks": tasks["count"]}]})
    state.register_supervisor("sup-a", {"host": "10.0.0.1", "hostname": "a", "ports": [6700],
                                        "started": START, "logviewer_port": 8000})
    state.register_supervisor("sup-b", {"host": "10.0.0.2", "hostname": "b", "ports": [6701],
                                        "started": START})
    wall, mono = Clock(START + 60), Clock(1000.0)
    server = QuietUi(state, _NoActions(), "127.0.0.1", 0, "s", clock=wall, monotonic=mono)
    server.start()
    try:
        yield Dashboard(state, server, wall, mono)
    finally:
        server.close()
        state.close()


class _NoActions(Actions):
    pass


def record_traffic(dash: Dashboard, uptime: float, words: int,
                   windows: tuple[worker_stats.Windows, worker_stats.Windows]) -> None:
    """Both workers' heartbeats after `words` words, with the keys workers will add."""
    spout = executor("words", 1, "spout", {"default": words, "rare": 1}, acked=words - 2,
                     failed=2, latencies=(0.002,) * 4, execute_time=0.5,
                     acked_streams={"default": words - 2}, failed_streams={"default": 2},
                     latency_streams={"default": {"total": 0.008, "count": 4}},
                     metrics={"lines": {"type": "counter", "value": words},
                              "backlog": {"type": "gauge", "value": 3}})
    bolt = executor("count", 2, "bolt", {"default": words},
                    {"words": {"default": words, "rare": 1}}, acked=words, execute_time=0.25,
                    acked_streams={"words": {"default": words, "rare": 1}},
                    latency_streams={"words": {"default": {"total": 0.25, "count": words}}},
                    execute_latency={"buckets": {"80": words}, "count": words, "total": 0.25})
    dash.state.worker_heartbeat(TID, "10.0.0.1:6700", heartbeat(6700, [spout], uptime,
                                                                windows[0]))
    hb = heartbeat(6701, [bolt], uptime, windows[1])
    hb["host"] = "10.0.0.2"
    dash.state.worker_heartbeat(TID, "10.0.0.2:6701", hb)


def two_windows() -> tuple[worker_stats.Windows, worker_stats.Windows]:
    return worker_stats.Windows(), worker_stats.Windows()


# --- Storm's endpoints ----------------------------------------------------------------------------


def test_worker_log_links_come_from_each_supervisors_log_server(dash: Dashboard) -> None:
    record_traffic(dash, 10.0, 100, two_windows())
    link = "http://10.0.0.1:8000/api/v1/log?file=words-1-abc/6700/worker.log"
    workers = dash.get(f"/api/v1/topology-workers/{TID}")
    assert workers["hostPortList"] == [
        {"host": "10.0.0.1", "port": 6700, "logviewerPort": 8000, "workerLogLink": link},
        {"host": "10.0.0.2", "port": 6701, "logviewerPort": None, "workerLogLink": None}]
    assert workers["logviewerPort"] is None  # they differ
    page = dash.get(f"/api/v1/topology/{TID}")
    assert [w["workerLogLink"] for w in page["workers"]] == [link, None]
    spout = dash.get(f"/api/v1/topology/{TID}/component/words")
    assert [e["workerLogLink"] for e in spout["executorStats"]] == [link]


def test_per_stream_acks_fails_and_latency_reach_every_view(dash: Dashboard) -> None:
    record_traffic(dash, 10.0, 100, two_windows())
    spout = dash.get(f"/api/v1/topology/{TID}/component/words")
    outputs = {o["stream"]: o for o in spout["outputStats"]}
    assert outputs["default"] == {"stream": "default", "emitted": 100, "transferred": 100,
                                  "completeLatency": 2.0, "acked": 98, "failed": 2}
    assert (outputs["rare"]["acked"], outputs["rare"]["completeLatency"]) == (0, 0.0)
    bolt = dash.get(f"/api/v1/topology/{TID}/component/count")
    inputs = {i["stream"]: i for i in bolt["inputStats"]}
    assert inputs["default"]["acked"] == 100 and inputs["default"]["executeLatency"] == 2.5
    assert inputs["rare"]["executed"] == 1 and inputs["rare"]["executeLatency"] == 0.0
    metrics = dash.get(f"/api/v1/topology/{TID}/metrics")
    assert metrics["window"] == ":all-time" and metrics["window-hint"] == "All time"
    (s,) = metrics["spouts"]
    assert s["acked"] == [{"stream_id": "default", "value": 98}]
    assert s["complete_ms_avg"] == [{"stream_id": "default", "value": "2.000"}]
    (b,) = metrics["bolts"]
    assert {"component_id": "words", "stream_id": "rare", "value": 1} in b["executed"]
    assert {"component_id": "words", "stream_id": "default", "value": "2.500"} in \
        b["process_ms_avg"]


def test_user_metrics_in_the_api_and_in_prometheus(dash: Dashboard) -> None:
    record_traffic(dash, 10.0, 100, two_windows())
    spout = dash.get(f"/api/v1/topology/{TID}/component/words")
    assert spout["metrics"] == [
        {"name": "backlog", "type": "gauge", "value": 3, "min": 3, "max": 3},
        {"name": "lines", "type": "counter", "value": 100}]
    assert spout["executorStats"][0]["metrics"][1] == {"name": "lines", "type": "counter",
                                                       "value": 100}
    families = {f.name: f for f in text_string_to_metric_families(dash.get("/metrics"))}
    (lines,) = families["squall_user_lines"].samples
    assert families["squall_user_lines"].type == "counter" and lines.value == 100
    assert lines.labels == {"topology": "words", "component": "words", "task": "1"}
    assert families["squall_user_backlog"].type == "gauge"
    execute = [s for s in families["squall_execute_latency_seconds"].samples
               if s.labels["component"] == "count"]
    buckets = {s.labels["le"]: s.value for s in execute if s.name.endswith("_bucket")}
    assert buckets["0.001"] == 0 and buckets["0.005"] == buckets["+Inf"] == 100  # 2**(81/8) us


def test_visualization_in_storms_shape(dash: Dashboard) -> None:
    record_traffic(dash, 10.0, 100, two_windows())
    vis = dash.get(f"/api/v1/topology/{TID}/visualization?window=600")
    assert set(vis) == {"words", "count"}
    count = vis["count"]
    assert count[":type"] == "bolt" and count[":link"] == f"/#/topology/{TID}/component/count"
    assert count[":inputs"] == [
        {":component": "words", ":stream": "default", ":sani-stream": "default",
         ":grouping": "shuffle"},
        {":component": "words", ":stream": "rare", ":sani-stream": "rare",
         ":grouping": "shuffle"}]
    (stats,) = vis["words"][":stats"]
    assert stats[":host"] == "10.0.0.1" and stats[":transferred"][":all-time"]["default"] == 100
    assert "__acker" in dash.get(f"/api/v1/topology/{TID}/visualization?sys=true")


def test_history_summary_lists_the_running_topologies(dash: Dashboard) -> None:
    assert dash.get("/api/v1/history/summary") == {"topo-history": [TID]}


def test_errors_carry_storms_time_fields_and_the_whole_traceback(dash: Dashboard) -> None:
    trace = 'Traceback (most recent call last):\n  File "x.py", line 3\nKeyError: \'w\'\n'
    dash.state.report_error(TID, "words", {"component": "words", "task": 1, "time": START,
                                           "host": "10.0.0.1", "port": 6700,
                                           "error": "KeyError: 'w'", "traceback": trace})
    dash.wall.t = START + 75
    (e,) = dash.get(f"/api/v1/topology/{TID}/component/words")["componentErrors"]
    assert (e["errorTime"], e["errorLapsedSecs"], e["error"], e["errorTraceback"]) == \
        (START, 75, "KeyError: 'w'", trace)
    assert e["errorWorkerLogLink"].endswith("/api/v1/log?file=words-1-abc/6700/worker.log")
    (spout,) = dash.get(f"/api/v1/topology/{TID}")["spouts"]
    assert (spout["errorTime"], spout["errorLapsedSecs"], spout["lastErrorTraceback"]) == \
        (START, 75, trace)


# --- supervisors, judged on the dashboard's own clock ---------------------------------------------


def test_supervisors_alive_then_lost_then_forgotten(dash: Dashboard) -> None:
    def statuses() -> dict[str, str]:
        return {s["id"]: s["status"]
                for s in dash.get("/api/v1/supervisor/summary")["supervisors"]}

    beat = {"host": "10.0.0.1", "ports": [6700], "started": START, "seq": 1}
    dash.state.supervisor_heartbeat("sup-a", beat)
    assert statuses() == {"sup-a": "alive", "sup-b": "alive"}
    dash.advance(4)
    dash.state.supervisor_heartbeat("sup-a", {**beat, "seq": 2})  # it changes: alive
    assert statuses()["sup-a"] == "alive"
    dash.advance(4)
    assert statuses()["sup-a"] == "alive"  # 4 s silent of 5
    dash.advance(2)
    assert statuses() == {"sup-a": "lost", "sup-b": "alive"}  # b writes no record: registered
    (a,) = [s for s in dash.get("/api/v1/supervisor/summary")["supervisors"]
            if s["id"] == "sup-a"]
    assert a["silentSecs"] == 6.0
    summary = dash.get("/api/v1/cluster/summary")
    assert (summary["supervisors"], summary["supervisorsLost"]) == (1, 1)
    families = {f.name: f for f in text_string_to_metric_families(dash.get("/metrics"))}
    assert {s.labels["status"]: s.value for s in families["squall_supervisors"].samples} == \
        {"alive": 1, "lost": 1}
    dash.state.supervisor_heartbeat("sup-a", {**beat, "seq": 3})
    assert statuses()["sup-a"] == "alive"  # back


def test_a_record_left_by_a_dead_supervisor_shows_lost_until_nimbus_deletes_it(
        dash: Dashboard) -> None:
    dash.state.supervisor_heartbeat("sup-gone", {"host": "10.0.0.9", "ports": [6702],
                                                 "started": START, "seq": 40})
    sups = {s["id"]: s for s in dash.get("/api/v1/supervisor/summary")["supervisors"]}
    assert sups["sup-gone"]["status"] == "lost" and sups["sup-gone"]["slotsTotal"] == 1
    dash.state.remove_supervisor_heartbeat("sup-gone")
    assert "sup-gone" not in {s["id"] for s in
                              dash.get("/api/v1/supervisor/summary")["supervisors"]}


# --- Storm's long windows -------------------------------------------------------------------------


def test_three_hour_and_one_day_windows_survive_a_worker_restart(dash: Dashboard) -> None:
    windows = two_windows()
    record_traffic(dash, 10.0, 100, windows)
    dash.server.sample_once()
    for i in range(1, 200):  # 200 minutes at 10 words a second
        dash.advance(60)
        record_traffic(dash, 10.0 + 60 * i, 100 + 600 * i, windows)
        dash.server.sample_once()
    total = 100 + 600 * 199 + 1  # and one on stream "rare"

    def executed(window: str) -> int:
        (b,) = [b for b in dash.get(f"/api/v1/topology/{TID}?window={window}")["bolts"]]
        return int(b["executed"])

    assert executed(":all-time") == total
    assert executed("86400") == total  # watched for less than a day: since first seen
    assert abs(executed("10800") - 180 * 600) <= 2 * 600  # 3 h, within one 2-minute step
    # the bolt's worker restarts: its totals start again from 0, the windows keep counting
    restarted = two_windows()
    dash.advance(60)
    record_traffic(dash, 5.0, 300, restarted)
    dash.server.sample_once()
    assert executed(":all-time") == 301
    assert executed("86400") == total + 301
    stats = {s["window"]: s for s in dash.get(f"/api/v1/topology/{TID}")["topologyStats"]}
    assert stats["86400"]["windowPretty"] == "1d 0h 0m 0s"
    assert stats["86400"]["acked"] > stats[":all-time"]["acked"]  # spouts restarted too


def test_long_windows_hold_bounded_copies_and_count_a_returning_task_once() -> None:
    from ui.stats import LongWindows

    keeper = LongWindows()
    w = worker_stats.Windows()
    t = 0.0
    for minute in range(2 * 24 * 60):  # two days, a look every minute
        t = minute * 60.0
        beat = heartbeat(6700, [executor("count", 2, "bolt", {"default": minute},
                                         {"words": {"default": minute}})], t + 1, w)
        if minute % 50 == 7:
            continue  # the record is missing at this look: not a new task when it is back
        keeper.add(TID, t, [beat])
    assert keeper.samples_held(TID) <= 91 + 97
    last = 2 * 24 * 60 - 1
    day = keeper.figures(TID, "86400", t)["count"].executed
    assert abs(day - 24 * 60) <= 15  # one coarse step
    three = keeper.figures(TID, "10800", t)["count"].executed
    assert abs(three - 180) <= 2
    assert keeper.figures(TID, "10800", t)["count"].executed <= last
    keeper.keep_only([])
    assert keeper.samples_held(TID) == 0 and keeper.figures(TID, "86400", t) == {}


def test_windows_checkpoints_and_sources_reach_the_topology_and_component_views(
        dash: Dashboard) -> None:
    source = {"kind": "file", "name": "/var/log/words.log", "offset": 4096, "behind": 512}
    windowing = {"spec": "sliding 10 s every 5 s (event time)", "watermark": START - 3.0,
                 "late": 7}
    checkpoint = {"txid": 42, "time": START + 50, "duration": 0.012, "failed": 1}
    spout = executor("words", 1, "spout", {"default": 5}, source=source)
    bolt = executor("count", 2, "bolt", {"default": 5}, windowing=windowing,
                    checkpoint=checkpoint)
    windows = two_windows()
    dash.state.worker_heartbeat(TID, "10.0.0.1:6700", heartbeat(6700, [spout], 10.0, windows[0]))
    hb = heartbeat(6701, [bolt], 10.0, windows[1])
    hb["host"] = "10.0.0.2"
    dash.state.worker_heartbeat(TID, "10.0.0.2:6701", hb)

    page = dash.get(f"/api/v1/topology/{TID}")
    assert page["checkpoint"] == checkpoint
    (s,) = page["spouts"]
    assert s["source"] == {"kind": "file", "behind": 512,
                           "tasks": [{"task": 1, **source}]}
    (b,) = page["bolts"]
    assert b["windowing"] == {**windowing, "tasks": 1}

    words = dash.get(f"/api/v1/topology/{TID}/component/words")
    assert words["source"] == s["source"] and words["windowing"] is None
    assert words["checkpoint"] is None
    assert words["executorStats"][0]["source"] == source
    count = dash.get(f"/api/v1/topology/{TID}/component/count")
    assert count["windowing"] == b["windowing"] and count["checkpoint"] == checkpoint
    assert count["executorStats"][0]["checkpoint"] == checkpoint
    assert "source" not in count["executorStats"][0]

    families = {f.name: f for f in text_string_to_metric_families(dash.get("/metrics"))}
    values = {name: [(s.labels["component"], s.labels["task"], s.value) for s in f.samples]
              for name, f in families.items()
              if name.startswith(("squall_source", "squall_window", "squall_checkpoint"))}
    assert values["squall_source_behind"] == [("words", "1", 512)]
    assert values["squall_window_watermark_seconds"] == [("count", "2", START - 3.0)]
    assert values["squall_window_late_tuples"] == [("count", "2", 7)]
    assert values["squall_checkpoint_txid"] == [("count", "2", 42)]
    assert values["squall_checkpoint_duration_seconds"] == [("count", "2", 0.012)]
    assert values["squall_checkpoint_failed"] == [("count", "2", 1)]
    assert families["squall_source_behind"].type == "gauge"


def test_a_topology_without_them_shows_none(dash: Dashboard) -> None:
    record_traffic(dash, 10.0, 100, two_windows())
    page = dash.get(f"/api/v1/topology/{TID}")
    assert page["checkpoint"] is None
    assert page["spouts"][0]["source"] is None and page["bolts"][0]["windowing"] is None
    exposition = dash.get("/metrics")
    assert "squall_source_behind" not in exposition and "squall_checkpoint" not in exposition
