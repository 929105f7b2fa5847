"""Windowed bolts in a LocalCluster driven by hand: idle input tasks, the heartbeat's
"windowing" field, and a worker killed mid-window (real worker processes, SIGKILL)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from polling import wait_for

from cluster.records import component_progress
from topology import Bolt, Spout, TopologyBuilder
from topology.local import LocalCluster
from topology.windowing import Duration, WindowedBolt

FAST = Duration(seconds=0.05)
CONF = {"topology.testing.capture": True, "worker.heartbeat.frequency.secs": 0.05}


class FirstTaskOnly(Spout):
    """Task 0 emits `items` [(seconds after open, values)]; the other tasks stay silent."""

    outputs = ["key", "ts"]
    items: list[tuple[float, list[Any]]] = [(0.0, ["a", 1]), (0.0, ["b", 2]), (0.2, ["c", 15])]

    def open(self, conf: Any, context: Any) -> None:
        self.start = time.monotonic()
        self.todo = list(self.items) if context.task_index == 0 else []
        self.n = 0

    def next_tuple(self) -> None:
        if self.todo and time.monotonic() - self.start >= self.todo[0][0]:
            self.emit(self.todo.pop(0)[1], msg_id=self.n)
            self.n += 1


class Collect(WindowedBolt):
    outputs = ["start", "end", "keys"]

    def process_window(self, window: Any) -> None:
        self.emit([window.start, window.end, sorted(t["key"] for t in window.tuples)])


@pytest.fixture
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as c:
        yield c


def captured(cluster: LocalCluster, name: str, component: str) -> list[list[Any]]:
    dumps = cluster.request_dumps(name)
    return [values for d in dumps.values() for c, stream, values in d["emitted"]
            if c == component and stream == "default"]


def windowing(cluster: LocalCluster, name: str, component: str) -> list[dict[str, Any]]:
    return [e["windowing"] for hb in cluster.status(name)["workers"].values()
            for e in hb.get("executors", ()) if e["component"] == component]


def test_a_silent_input_task_stops_holding_the_watermark_after_the_idle_timeout(
        cluster: LocalCluster) -> None:
    b = TopologyBuilder("idle")
    b.set_spout("src", FirstTaskOnly(), parallelism=2)
    bolt = (Collect().with_tumbling_window(Duration(seconds=10)).with_timestamp_field("ts")
            .with_watermark_interval(FAST).with_idle_timeout(Duration(seconds=0.3)))
    b.set_bolt("w", bolt).shuffle_grouping("src")
    cluster.submit(b.build(), config=CONF)
    cluster.wait_running("idle")
    # No flush: the window [0, 10) fires because the silent task went idle.
    wait_for(lambda: [0.0, 10.0, ["a", "b"]] in captured(cluster, "idle", "w"), 20,
             "the first window to fire without a flush")
    status = wait_for(lambda: [s for s in windowing(cluster, "idle", "w")
                               if s["watermark"] == 15.0], 10, "the watermark in a heartbeat")
    assert status == [{"spec": "tumbling 10 s, event time on ts, lag 0 s, idle after 300 ms",
                       "watermark": 15.0, "late": 0}]
    # ... as the REST API and the dashboard read it (cluster.records)
    progress = component_progress(cluster.status("idle")["workers"].values())
    assert progress["w"]["windowing"] == {**status[0], "tasks": 1}


class Numbered(Spout):
    """Emits 0..N-1 paced, reliably, with a wall-clock `ts`; replays what fails."""

    outputs = ["key", "ts"]
    N = 40

    def open(self, conf: Any, context: Any) -> None:
        self.n = 0
        self.replay: list[int] = []
        self.last = 0.0

    def next_tuple(self) -> None:
        if self.replay:
            i = self.replay.pop()
            self.emit([f"k{i}", time.time()], msg_id=i)
        elif self.n < self.N and time.monotonic() - self.last >= 0.05:
            self.last = time.monotonic()
            self.emit([f"k{self.n}", time.time()], msg_id=self.n)
            self.n += 1

    def fail(self, msg_id: Any) -> None:
        self.replay.append(msg_id)


class Sink(Bolt):
    outputs = ["keys"]

    def process(self, tup: Any) -> None:
        self.emit([tup["keys"]])


def test_a_worker_killed_mid_window_loses_no_window(cluster: LocalCluster) -> None:
    """Processing-time windows: the tuples the dead task held time out and replay into the
    restarted task's windows; every spout tuple is acked in the end, and an ack means the
    window output anchored to it was processed downstream."""
    b = TopologyBuilder("killed")
    b.set_spout("src", Numbered())
    b.set_bolt("w", Collect().with_tumbling_window(Duration(seconds=1))).shuffle_grouping("src")
    b.set_bolt("sink", Sink()).shuffle_grouping("w")
    t = b.build(config={"topology.workers": 2, "topology.message.timeout.secs": 3})
    cluster.submit(t, config=CONF)
    cluster.wait_running("killed")

    def where(component: str) -> int:
        return next(port for port, hb in cluster.status("killed")["workers"].items()
                    for e in hb.get("executors", ()) if e["component"] == component)

    def spout(field: str) -> int:
        return sum(e[field] if isinstance(e[field], int) else sum(e[field].values())
                   for hb in cluster.status("killed")["workers"].values()
                   for e in hb.get("executors", ()) if e["component"] == "src")

    window_port, spout_port = where("w"), where("src")
    assert window_port != spout_port  # else the kill would restart the spout too
    wait_for(lambda: spout("emitted") >= 15, 20, "the spout to be mid-stream")
    os.kill(cluster.worker_pids("killed")[window_port], signal.SIGKILL)
    wait_for(lambda: spout("acked") == Numbered.N, 60, "every tuple to be acked")
    assert spout("failed") >= 1  # the kill lost some: they were replayed
    dumps = cluster.request_dumps("killed")
    assert sorted(dumps[spout_port]["acked"][next(iter(dumps[spout_port]["acked"]))]) == \
        list(range(Numbered.N))
