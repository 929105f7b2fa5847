"""The executor extension points (worker.executor's docstring), each used by a small test
executor and driven in one process: a component that names its executor, timers, watched
file descriptors, held acks (bolt and spout), system streams, heartbeat fields, flush."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from test_worker_inprocess import InProcess

from topology import Bolt, Spout, TopologyBuilder
from topology.errors import TopologyError
from topology.model import Topology
from worker.executor import BoltExecutor, Executor, SpoutExecutor, TaskEnv
from worker.loop import WATCH_EVERY
from worker.tasks import executor_class

# --- executors ----------------------------------------------------------------------------------


class HoldingExecutor(BoltExecutor):
    """Holds every input and acks what it holds every "topology.test.release.secs" seconds
    and on flush."""

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        self.held: list[Any] = []
        self.releases = 0
        every = float(env.conf.get("topology.test.release.secs", 0.05))
        env.services.schedule.every(every, self.release, every, "release held")

    def execute(self, tup: Any) -> None:
        self.bolt.process(tup)
        self.held.append(tup)

    def release(self, now: float) -> None:
        if self.held:
            self.releases += 1
        for tup in self.held:
            self.collector.ack(tup)
        self.held.clear()

    def flush(self, now: float) -> None:
        self.release(now)

    def extra_snapshot(self) -> dict[str, Any]:
        return {"held": len(self.held), "releases": self.releases}


class Holder(Bolt):
    executor_factory = "test_executor_extensions:HoldingExecutor"

    def process(self, tup: Any) -> None:
        pass


class Numbers(Spout):
    outputs = ["n"]
    limit = 20

    def open(self, conf: Any, context: Any) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        if self.n < self.limit:
            self.emit([self.n], msg_id=self.n)
            self.n += 1


def held_topology(**config: Any) -> Topology:
    b = TopologyBuilder("held")
    b.set_spout("src", Numbers())
    b.set_bolt("hold", Holder, parallelism=2).shuffle_grouping("src")
    return b.build(config={"topology.workers": 2, **config})


# --- tests --------------------------------------------------------------------------------------


def test_a_component_names_its_executor() -> None:
    cluster = InProcess(held_topology())
    assert all(isinstance(e, HoldingExecutor) for e in cluster.executors("hold"))
    assert all(type(e) is SpoutExecutor for e in cluster.executors("src"))


def test_a_bolt_executor_holds_acks_until_its_timer_releases_them() -> None:
    cluster = InProcess(held_topology())
    holders = cluster.executors("hold")
    cluster.run_until(lambda: sum(e.stats.executed for e in holders) == Numbers.limit, dt=0.0001)
    assert cluster.acked() == []  # all processed, none acked: the acks are held
    assert sum(len(e.held) for e in holders) == Numbers.limit
    cluster.run_until(lambda: len(cluster.acked()) == Numbers.limit)  # the timer fires
    assert cluster.acked() == list(range(Numbers.limit)) and cluster.failed() == []
    assert all(e.held == [] for e in holders)


def test_executors_add_fields_to_their_heartbeat_snapshot() -> None:
    cluster = InProcess(held_topology())
    cluster.run_until(lambda: len(cluster.acked()) == Numbers.limit)
    worker = cluster.workers[0]
    worker.heartbeat(cluster.now)
    assert worker.last_heartbeat is not None
    snapshots = [e for e in worker.last_heartbeat["executors"] if e["component"] == "hold"]
    assert snapshots and all(s["held"] == 0 and s["releases"] >= 1 for s in snapshots)


def test_flush_reaches_every_executor() -> None:
    cluster = InProcess(held_topology(**{"topology.test.release.secs": 1000}))
    holders = cluster.executors("hold")
    cluster.run_until(lambda: sum(e.stats.executed for e in holders) == Numbers.limit, dt=0.0001)
    for worker in cluster.workers:
        worker.flush(cluster.now)
    cluster.run_until(lambda: len(cluster.acked()) == Numbers.limit, dt=0.0001)
    assert all(w.flushes == 1 for w in cluster.workers)


class HoldingSpoutExecutor(SpoutExecutor):
    """Holds the verdicts of its trees until flushed (commit) or rolled back."""

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        self.held: list[Any] = []

    def tree_acked(self, msg_id: Any) -> None:
        self.held.append(msg_id)

    def flush(self, now: float) -> None:  # "the checkpoint committed"
        for msg_id in self.held:
            self.deliver_ack(msg_id)
        self.held.clear()

    def roll_back(self) -> None:
        for msg_id in self.held:
            self.deliver_fail(msg_id)
        self.held.clear()


class HeldNumbers(Numbers):
    executor_factory = HoldingSpoutExecutor  # a class works as well as its dotted name


class Sink(Bolt):
    def process(self, tup: Any) -> None:
        pass


def test_a_spout_executor_holds_verdicts_then_delivers_or_fails_them() -> None:
    b = TopologyBuilder("held-spout")
    b.set_spout("src", HeldNumbers())
    b.set_bolt("sink", Sink, parallelism=2).shuffle_grouping("src")
    topology = b.build(config={"topology.workers": 2})
    cluster = InProcess(topology)
    (spout,) = cluster.executors("src")
    cluster.run_until(lambda: len(spout.held) == Numbers.limit)
    assert cluster.acked() == cluster.failed() == []
    spout.roll_back()
    assert cluster.failed() == list(range(Numbers.limit)) and cluster.acked() == []
    cluster = InProcess(topology)
    (spout,) = cluster.executors("src")
    cluster.run_until(lambda: len(spout.held) == Numbers.limit)
    spout.flush(cluster.now)
    assert cluster.acked() == list(range(Numbers.limit)) and cluster.failed() == []


class MarkingExecutor(BoltExecutor):
    """After each input, sends a "__mark" system tuple to every task of "record"."""

    system_streams = {"__mark": ["n"]}

    def execute(self, tup: Any) -> None:
        self.bolt.process(tup)
        assert self.context is not None
        self.collector.emit_system("__mark", [tup["n"]], self.context.component_tasks("record"))
        self.collector.ack(tup)


class Marker(Bolt):
    outputs = ["n"]
    executor_factory = "test_executor_extensions:MarkingExecutor"

    def process(self, tup: Any) -> None:
        self.emit([tup["n"]])


class RecordingExecutor(BoltExecutor):
    """Records data and system tuples in the order they arrive."""

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        self.arrivals: list[tuple[str, int, str]] = []

    def execute(self, tup: Any) -> None:
        self.arrivals.append(("data", tup["n"], tup.stream))
        self.bolt.process(tup)
        self.collector.ack(tup)

    def on_system(self, tup: Any) -> None:
        self.arrivals.append(("mark", tup["n"], tup.stream))


class Record(Bolt):
    executor_factory = "test_executor_extensions:RecordingExecutor"
    seen: list[Any] = []

    def process(self, tup: Any) -> None:
        assert tup.stream == "default"  # user code never sees the system stream


def test_system_streams_reach_every_task_in_order_and_never_user_code() -> None:
    b = TopologyBuilder("marks")
    b.set_spout("src", Numbers())
    b.set_bolt("mark", Marker).shuffle_grouping("src")
    b.set_bolt("record", Record, parallelism=2).global_grouping("mark")
    cluster = InProcess(b.build(config={"topology.workers": 2}))
    cluster.run_until(lambda: len(cluster.acked()) == Numbers.limit)
    first, second = sorted(cluster.executors("record"), key=lambda e: e.task)
    # global grouping: the data goes to the lowest task, each right before its mark
    assert first.arrivals == [(kind, n, "__mark" if kind == "mark" else "default")
                              for n in range(Numbers.limit) for kind in ("data", "mark")]
    assert second.arrivals == [("mark", n, "__mark") for n in range(Numbers.limit)]
    assert cluster.executors("mark")[0].collector.count == 2 * Numbers.limit  # data + marks


class WatchingExecutor(BoltExecutor):
    """Watches a socket (a subprocess's stdout, say) and emits a tuple per line on it."""

    def open(self) -> None:
        super().open()
        self.inside, self.outside = socket.socketpair()
        self.inside.setblocking(False)
        self.services.watch(self.inside.fileno(), self.readable)
        self.buffer = b""

    def readable(self, now: float) -> None:
        self.buffer += self.inside.recv(65536)
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.collector.emit([int(line)])

    def close(self) -> None:
        self.services.unwatch(self.inside.fileno())
        self.inside.close()
        self.outside.close()


class Watcher(Bolt):
    outputs = ["n"]
    executor_factory = "test_executor_extensions:WatchingExecutor"


class Collect(Bolt):
    def prepare(self, conf: Any, context: Any) -> None:
        self.got: list[int] = []

    def process(self, tup: Any) -> None:
        self.got.append(tup["n"])


class Idle(Spout):
    outputs = ["n"]


def test_an_executor_is_called_when_a_watched_descriptor_is_readable() -> None:
    b = TopologyBuilder("watch")
    b.set_spout("src", Idle())
    b.set_bolt("watch", Watcher).shuffle_grouping("src")
    b.set_bolt("collect", Collect).shuffle_grouping("watch")
    cluster = InProcess(b.build(config={"topology.workers": 1}), workers=1)
    (watcher,) = cluster.executors("watch")
    (collect,) = cluster.executors("collect")
    watcher.outside.sendall(b"1\n2\n3")
    cluster.run_until(lambda: collect.bolt.got == [1, 2], dt=WATCH_EVERY)
    watcher.outside.sendall(b"\n")
    cluster.run_until(lambda: collect.bolt.got == [1, 2, 3], dt=WATCH_EVERY)
    cluster.workers[0].shutdown()
    assert watcher.inside.fileno() == -1  # closed at shutdown, and no longer watched
    assert not cluster.workers[0].services.watched


class NotAnExecutor(Bolt):
    executor_factory = "test_executor_extensions:Collect"


class Missing(Bolt):
    executor_factory = "no_such_module:Executor"


@pytest.mark.parametrize("component,message", [
    (NotAnExecutor, "is not an Executor subclass"),
    (Missing, "cannot be loaded: No module named 'no_such_module'"),
])
def test_a_bad_executor_factory_is_named(component: type, message: str) -> None:
    b = TopologyBuilder("bad")
    b.set_spout("src", Numbers())
    b.set_bolt("bad", component).shuffle_grouping("src")
    with pytest.raises(TopologyError, match=f"component 'bad': executor_factory .*{message}"):
        executor_class(b.build().components["bad"])


def test_an_executor_knows_its_task() -> None:
    cluster = InProcess(held_topology(), workers=1)
    for executor in cluster.workers[0].executors.all():
        assert isinstance(executor, Executor)
        assert executor.task in cluster.workers[0].tasks


class Faulty(BoltExecutor):
    """A timer that raises every time, and one that counts."""

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        self.ticks = 0
        env.services.schedule.every(0.01, self.boom, 0.0, "boom")
        env.services.schedule.every(0.01, self.count, 0.0, "count")

    def boom(self, now: float) -> None:
        raise RuntimeError("a bug in an executor's timer")

    def count(self, now: float) -> None:
        self.ticks += 1


class FaultyBolt(Bolt):
    executor_factory = "test_executor_extensions:Faulty"

    def process(self, tup: Any) -> None:
        pass


def test_a_timer_that_raises_is_logged_and_the_loop_goes_on(caplog: Any) -> None:
    b = TopologyBuilder("faulty")
    b.set_spout("src", Numbers())
    b.set_bolt("faulty", FaultyBolt).shuffle_grouping("src")
    cluster = InProcess(b.build(config={"topology.workers": 1}), workers=1)
    (faulty,) = cluster.executors("faulty")
    cluster.run_until(lambda: faulty.ticks >= 5 and len(cluster.acked()) == Numbers.limit)
    assert "worker loop: boom raised" in caplog.text
