"""When a windowed task acks: whole workers in one process (tests/test_worker_inprocess's
InProcess: real executors, loop and acker, a fake clock), stepped turn by turn."""

from __future__ import annotations

from typing import Any

from test_worker_inprocess import InProcess

from topology import Spout, TopologyBuilder
from topology.model import Topology
from topology.windowing import Duration, WindowedBolt
from worker.windowed import WindowedBoltExecutor

FAST = Duration(seconds=0.01)


class Stamps(Spout):
    """Emits [n, ts=n] for n in 0..19, reliably, msg id n."""

    outputs = ["n", "ts"]

    def open(self, conf: Any, context: Any) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        if self.n < 20:
            self.emit([self.n, self.n], msg_id=self.n)
            self.n += 1


class Ends(WindowedBolt):
    outputs = ["end", "ns"]

    def process_window(self, window: Any) -> None:
        self.emit([window.end, [t["n"] for t in window.tuples]])


def stamped(length: float, slide: float) -> Topology:
    b = TopologyBuilder("acks")
    b.set_spout("src", Stamps())
    bolt = (Ends().with_window(Duration(seconds=length), Duration(seconds=slide))
            .with_timestamp_field("ts").with_watermark_interval(FAST))
    b.set_bolt("w", bolt).shuffle_grouping("src")
    return b.build()


def fired(cluster: InProcess) -> int:
    return sum(e.windows_fired for e in cluster.executors("w"))


def test_a_tuple_is_acked_once_its_last_window_fired_and_not_before() -> None:
    cluster = InProcess(stamped(10, 5))  # windows [-5, 5), [0, 10), [5, 15), [10, 20), ...
    assert all(isinstance(e, WindowedBoltExecutor) for e in cluster.executors("w"))
    # The watermark reaches 19: windows ending at 5, 10 and 15 fire; 0..9 left their last
    # window (the one ending at 10 or 5), 10..19 are still in [10, 20) or [15, 25).
    cluster.run_until(lambda: fired(cluster) == 3 and len(cluster.acked()) == 10)
    for _ in range(200):  # and nothing more is acked while the watermark stays at 19
        cluster.turn()
    assert cluster.acked() == list(range(10)) and cluster.failed() == []
    assert sorted(map(tuple, cluster.emitted("w"))) == [
        (5.0, [0, 1, 2, 3, 4]), (10.0, list(range(10))), (15.0, list(range(5, 15)))]
    for worker in cluster.workers:  # the end of the input: a final watermark
        worker.flush(cluster.now)
    cluster.run_until(lambda: len(cluster.acked()) == 20)
    assert cluster.failed() == [] and fired(cluster) == 5  # [10, 20) and [15, 25) too


def test_the_heartbeat_carries_the_windowing_status() -> None:
    cluster = InProcess(stamped(10, 10))
    cluster.run_until(lambda: fired(cluster) == 1)
    snapshots = [s for w in cluster.workers for s in (e.snapshot() for e in w.executors.all())
                 if s["component"] == "w"]
    assert [s["windowing"] for s in snapshots] == [
        {"spec": "tumbling 10 s, event time on ts, lag 0 s", "watermark": 19.0, "late": 0}]
