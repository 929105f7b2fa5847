"""Whole workers in one process: real executors, dispatch, loop and codec over a
MemoryTransport, driven turn by turn on a fake clock (no sockets, no threads, no sleeps)."""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import pytest

from cluster.config import Config
from topology import Bolt, Spout, TopologyBuilder
from topology.model import Topology
from topology.placement import distribute_tasks
from worker.process import EXIT_TASKS_CHANGED, Worker
from worker.transport import MemoryNetwork
from worker.wire import DATA, Codec, secret_key, topology_tag, worker_id

HOST = "127.0.0.1"
KEY = secret_key("in-process")


class InProcess:
    """Workers of one topology over a MemoryNetwork; `turn()` advances the fake clock."""

    def __init__(self, topology: Topology, workers: int = 2, **conf: Any) -> None:
        self.conf = Config.from_mapping({}).with_overrides(
            {"topology.testing.capture": True, **topology.config, **conf}).to_dict()
        self.topology = topology
        self.topology_id = f"{topology.name}-1"
        self.network = MemoryNetwork()
        self.now = 100.0
        tasks = topology.component_tasks(self.conf)
        groups = [g for g in distribute_tasks(tasks, workers) if g]
        self.assignment = self.assign(groups)
        self.workers = [self.start(7000 + i) for i in range(len(groups))]

    def assign(self, groups: list[list[int]], version: int = 1) -> dict[str, Any]:
        tasks = {str(t): [HOST, 7000 + i] for i, group in enumerate(groups) for t in group}
        return {"version": version, "topology_id": self.topology_id, "active": True,
                "tasks": tasks}

    def start(self, port: int) -> Worker:
        codec = Codec(KEY, topology_tag(self.topology_id), worker_id(HOST, port))
        transport = self.network.transport(
            codec, HOST, port, max_message_bytes=int(self.conf["worker.max.message.bytes"]))
        worker = Worker(self.topology, self.conf, self.topology_id, HOST, port, KEY,
                        transport=transport, clock=lambda: self.now)
        worker.apply_assignment(self.assignment, self.now)
        return worker

    def turn(self, workers: list[Worker] | None = None, dt: float = 0.001) -> None:
        self.now += dt
        for worker in workers if workers is not None else self.workers:
            assert worker.loop is not None
            worker.loop.turn(self.now)

    def run_until(self, done: Callable[[], Any], turns: int = 20_000, **kwargs: Any) -> None:
        for _ in range(turns):
            if done():
                return
            self.turn(**kwargs)
        raise AssertionError(f"not done after {turns} turns")

    def executors(self, component: str) -> list[Any]:
        return [e for w in self.workers if w.executors is not None
                for e in w.executors.all() if e.component == component]

    def total(self, component: str, counter: str) -> int:
        return sum(getattr(e.stats, counter) for e in self.executors(component))

    def emitted(self, component: str) -> list[list[Any]]:
        return [values for w in self.workers for c, _, values in w.capture or [] if c == component]

    def acked(self) -> list[Any]:
        return sorted(m for e in self.executors("src") for m in e.captured[0])

    def failed(self) -> list[Any]:
        return sorted(m for e in self.executors("src") for m in e.captured[1])


# --- components ---------------------------------------------------------------------------------


class Lines(Spout):
    """Emits LINES[i] with msg id i, once each (and again when failed, if `replay`)."""

    outputs = ["line"]
    lines = ["a b c", "b c d", "c d e", "a a a", "e d c b a"] * 40
    replay = True

    def open(self, conf: Any, context: Any) -> None:
        self.next = 0
        self.replays: list[int] = []

    def next_tuple(self) -> None:
        if self.replays:
            i = self.replays.pop(0)
        elif self.next < len(self.lines):
            i = self.next
            self.next += 1
        else:
            return
        self.emit([self.lines[i]], msg_id=i)

    def fail(self, msg_id: Any) -> None:
        if self.replay:
            self.replays.append(msg_id)


class Split(Bolt):
    outputs = ["word"]

    def process(self, tup: Any) -> None:
        for word in tup["line"].split():
            self.emit([word])


class Count(Bolt):
    outputs = ["word", "count"]

    def prepare(self, conf: Any, context: Any) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def process(self, tup: Any) -> None:
        self.counts[tup["word"]] += 1
        self.emit([tup["word"], self.counts[tup["word"]]])


def word_count(**config: Any) -> Topology:
    b = TopologyBuilder("wc")
    b.set_spout("src", Lines(), parallelism=2)
    b.set_bolt("split", Split, parallelism=3).shuffle_grouping("src")
    b.set_bolt("count", Count, parallelism=3).fields_grouping("split", ["word"])
    return b.build(config={"topology.workers": 2, **config})


def expected_counts() -> collections.Counter[str]:
    once = collections.Counter(w for line in Lines.lines for w in line.split())
    return collections.Counter({w: 2 * n for w, n in once.items()})


def final_counts(cluster: InProcess) -> dict[str, int]:
    out: dict[str, int] = {}
    for word, n in cluster.emitted("count"):
        out[word] = max(out.get(word, 0), n)
    return out


# --- tests --------------------------------------------------------------------------------------


def test_two_workers_count_every_word_once_and_ack_every_line() -> None:
    cluster = InProcess(word_count())
    cluster.run_until(lambda: len(cluster.acked()) == 2 * len(Lines.lines))
    assert final_counts(cluster) == expected_counts()
    assert cluster.failed() == []
    assert cluster.acked() == sorted(list(range(len(Lines.lines))) * 2)
    assert cluster.total("count", "executed") == sum(expected_counts().values())
    for worker in cluster.workers:
        hb = worker.last_heartbeat
        assert hb is not None and hb["rejected"] == 0 and hb["dropped"] == 0


class Endless(Lines):
    lines = Lines.lines * 100


def test_a_worker_that_is_not_read_pauses_the_spouts_and_nothing_is_lost() -> None:
    b = TopologyBuilder("endless")
    b.set_spout("src", Endless(), parallelism=2)
    b.set_bolt("split", Split, parallelism=3).shuffle_grouping("src")
    b.set_bolt("count", Count, parallelism=3).fields_grouping("split", ["word"])
    cluster = InProcess(b.build(config={"topology.workers": 2}))
    first, second = cluster.workers
    assert first.loop is not None
    cluster.run_until(lambda: cluster.total("count", "executed") > 0)
    for _ in range(3000):  # `second` reads nothing: `first` backs up
        cluster.turn([first])
    assert first.loop.backpressure.overloaded and first.transport.backlog() > 0

    def emitted() -> int:
        return sum(s.collector.emits for s in cluster.executors("src"))

    before = emitted()
    for _ in range(500):
        cluster.turn([first])
    assert emitted() == before  # its spouts pause (and `second`'s would on its word)
    for worker in cluster.workers:
        worker.apply_assignment({**cluster.assignment, "version": 2, "active": False},
                                cluster.now)
    cluster.run_until(lambda: all(len(s.pending) == 0 for s in cluster.executors("src")))
    assert cluster.failed() == [] and len(cluster.acked()) == emitted()
    assert cluster.total("count", "executed") == sum(
        r.emitted for e in cluster.executors("split") for r in e.routes.values())


def test_data_over_the_high_watermark_is_parked_not_dropped() -> None:
    cluster = InProcess(word_count(), **{"worker.queue.high.watermark": 5})
    first, second = cluster.workers
    parked = []

    def done() -> bool:
        for _ in range(4):  # `second` reads several batches at once: those beyond the first
            cluster.turn([first])  # wait, still encoded
        assert second.loop is not None
        parked.append(len(second.loop.parked))
        return len(cluster.acked()) == 2 * len(Lines.lines)

    cluster.run_until(done, workers=[second])
    assert max(parked) > 0
    assert final_counts(cluster) == expected_counts() and cluster.failed() == []


class Stubborn(Bolt):
    """Never acks the first attempt of a line; acks its replay."""

    auto_ack = False

    def prepare(self, conf: Any, context: Any) -> None:
        self.seen: set[str] = set()

    def process(self, tup: Any) -> None:
        if tup["line"] in self.seen:
            self.ack(tup)
        else:
            self.seen.add(tup["line"])


def test_a_tree_that_times_out_fails_and_its_replay_is_acked() -> None:
    b = TopologyBuilder("stubborn")
    b.set_spout("src", Lines())
    b.set_bolt("stubborn", Stubborn).fields_grouping("src", ["line"])
    cluster = InProcess(b.build(config={"topology.workers": 2,
                                        "topology.message.timeout.secs": 0.3}))
    distinct = len(set(Lines.lines))
    cluster.run_until(lambda: len(cluster.acked()) == len(Lines.lines))
    assert sorted(set(cluster.failed())) == list(range(distinct))  # each first attempt
    assert cluster.total("src", "timed_out") == len(cluster.failed()) == distinct


class Picky(Split):
    def process(self, tup: Any) -> None:
        if tup["line"] == "a a a":
            raise ValueError("no triples")
        super().process(tup)


class Once(Lines):
    replay = False


def test_an_exception_in_process_fails_the_tuple_and_is_reported() -> None:
    b = TopologyBuilder("picky")
    b.set_spout("src", Once())
    b.set_bolt("split", Picky, parallelism=2).shuffle_grouping("src")
    cluster = InProcess(b.build(config={"topology.workers": 2}))
    cluster.run_until(lambda: len(cluster.acked()) + len(cluster.failed()) == len(Lines.lines))
    assert {Lines.lines[i] for i in cluster.failed()} == {"a a a"}
    assert len(cluster.failed()) == Lines.lines.count("a a a")
    errors = [e for w in cluster.workers for e in w.errors.recent]
    assert errors and {e["error"] for e in errors} == {"ValueError: no triples"}
    assert {e["component"] for e in errors} == {"split"}


def test_tasks_that_move_are_followed_and_a_worker_whose_tasks_change_exits() -> None:
    topology = word_count()
    cluster = InProcess(topology, workers=2)
    cluster.run_until(lambda: cluster.total("count", "executed") > 50)
    # Move every task of the second worker to a third one.
    groups = [[int(t) for t, loc in cluster.assignment["tasks"].items() if loc[1] == port]
              for port in (7000, 7001)]
    moved = cluster.assign([groups[0], [], groups[1]], version=2)
    first, second = cluster.workers
    cluster.assignment = moved
    third = cluster.start(7002)
    second.apply_assignment(moved, cluster.now)
    assert second.stop_requested and second.exit_code == EXIT_TASKS_CHANGED
    first.apply_assignment(moved, cluster.now)
    assert not first.stop_requested
    cluster.workers = [first, third]
    before = third.transport.received_messages
    cluster.run_until(lambda: third.transport.received_messages > before + 10)
    assert first.loop is not None and ("127.0.0.1", 7002) in first.loop.peers


def test_forged_and_malformed_messages_are_dropped_and_counted() -> None:
    cluster = InProcess(word_count())
    first, second = cluster.workers
    second.transport.deliver_raw(b"\0" * 200)  # no MAC
    nonsense = first.transport.codec.encode(DATA, [["not", "a", "lane"]])  # authenticated
    second.transport.deliver_raw(nonsense)
    cluster.run_until(lambda: len(cluster.acked()) == 2 * len(Lines.lines))
    second.heartbeat(cluster.now)
    assert second.last_heartbeat is not None and second.last_heartbeat["rejected"] == 2
    assert final_counts(cluster) == expected_counts()


class Big(Spout):
    """Emits one tuple bigger than the message limit among small ones."""

    outputs = ["blob"]

    def open(self, conf: Any, context: Any) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        if self.n < 60:
            self.emit(["x" * (5000 if self.n == 30 else 100)], msg_id=self.n)
            self.n += 1


class Sink(Bolt):
    def process(self, tup: Any) -> None:
        pass


def test_batches_are_split_under_the_size_limit_and_an_oversized_tuple_is_not_sent() -> None:
    b = TopologyBuilder("big")
    b.set_spout("src", Big())
    b.set_bolt("sink", Sink).shuffle_grouping("src")
    topology = b.build(config={"topology.workers": 2, "topology.message.timeout.secs": 0.3})
    cluster = InProcess(topology, **{"worker.max.message.bytes": 2048})
    sender = next(w for w in cluster.workers if w.executors and w.executors.spouts)
    receiver = next(w for w in cluster.workers if w is not sender)
    assert receiver.executors is not None and receiver.executors.bolts  # the sink is remote
    cluster.run_until(lambda: len(cluster.acked()) + len(cluster.failed()) == 60)
    assert cluster.failed() == [30] and cluster.acked() == [n for n in range(60) if n != 30]
    assert sender.loop is not None and sender.loop.dispatcher.too_big == 1
    assert cluster.total("sink", "executed") == 59
    assert sender.transport.sent_messages >= 4  # 59 x 100 bytes in batches of at most 2 KiB


def test_the_heartbeat_keeps_its_keys_and_adds_the_new_ones() -> None:
    cluster = InProcess(word_count())
    cluster.run_until(lambda: cluster.total("count", "executed") > 10)
    worker = cluster.workers[0]
    worker.heartbeat(cluster.now)
    hb = worker.last_heartbeat
    assert hb is not None
    assert {"type", "topology_id", "host", "port", "pid", "version", "time", "uptime", "state",
            "active", "tasks", "executors", "errors", "queued", "parked", "overloaded",
            "rejected", "dropped", "errors_suppressed", "rss", "sent_bytes",
            "received_bytes"} <= set(hb)
    assert {"spouts_paused", "flushes", "stalled_secs", "stalled_in", "too_big",
            "sent_messages", "received_messages"} <= set(hb)
    assert hb["version"] == 1 and hb["state"] == "running"
    assert {e["component"] for e in hb["executors"]} <= {"src", "split", "count", "__acker"}


@pytest.mark.parametrize("version", [{"assignment": 3, "code": "abc"}, 7])
def test_the_assignment_version_is_opaque_and_echoed(version: Any) -> None:
    cluster = InProcess(word_count())
    worker = cluster.workers[0]
    worker.apply_assignment({**cluster.assignment, "version": version}, cluster.now)
    assert worker.last_heartbeat is not None and worker.last_heartbeat["version"] == version


def test_executors_are_built_complete_and_bound_to_their_components() -> None:
    cluster = InProcess(word_count(), workers=1)
    executors = cluster.workers[0].executors
    assert executors is not None
    for executor in [*executors.spouts, *executors.bolts]:
        obj = executor.spout if executor.kind == "spout" else executor.bolt  # type: ignore
        assert obj.emit == executor.collector.emit  # type: ignore[union-attr]
        assert executor.collector.routes is executor.routes  # type: ignore[union-attr]


class Hold(Bolt):
    auto_ack = False

    def process(self, tup: Any) -> None:
        pass


def test_after_a_stall_what_waited_longer_than_the_timeout_fails_at_the_next_turn() -> None:
    b = TopologyBuilder("stall")
    b.set_spout("src", Once())
    b.set_bolt("hold", Hold).shuffle_grouping("src")
    cluster = InProcess(b.build(config={"topology.workers": 1,
                                        "topology.message.timeout.secs": 1}), workers=1)
    (spout,) = cluster.executors("src")
    cluster.run_until(lambda: len(spout.pending) == len(Lines.lines), dt=0.0001)
    assert cluster.failed() == []
    cluster.turn(dt=5.0)  # the loop was stuck (in user code, say) for five seconds
    assert cluster.failed() == list(range(len(Lines.lines)))
    assert spout.stats.timed_out == len(Lines.lines) and not spout.pending


class KeepEveryThird(Bolt):
    """Keeps every third tuple it gets (the executor may reuse the others' objects)."""

    def prepare(self, conf: Any, context: Any) -> None:
        self.kept: list[tuple[Any, list[Any], Any]] = []
        self.seen = 0

    def process(self, tup: Any) -> None:
        self.seen += 1
        if self.seen % 3 == 0:
            self.kept.append((tup, list(tup.values), tup.id))


def test_a_tuple_a_bolt_keeps_is_never_changed_by_later_tuples() -> None:
    b = TopologyBuilder("keep")
    b.set_spout("src", Once())
    b.set_bolt("keep", KeepEveryThird).shuffle_grouping("src")
    cluster = InProcess(b.build(config={"topology.workers": 1}), workers=1)
    cluster.run_until(lambda: len(cluster.acked()) == len(Lines.lines))
    (keep,) = cluster.executors("keep")
    kept = keep.bolt.kept
    assert len(kept) == len(Lines.lines) // 3
    assert len({id(tup) for tup, _, _ in kept}) == len(kept)
    assert all(tup.values == values and tup.id == ids for tup, values, ids in kept)


class Unbuildable(Bolt):
    executor_factory = "no_such_module:Executor"


def test_a_worker_whose_tasks_cannot_be_built_says_why_and_exits() -> None:
    b = TopologyBuilder("unbuildable")
    b.set_spout("src", Once())
    b.set_bolt("bad", Unbuildable).shuffle_grouping("src")
    topology = b.build(config={"topology.workers": 1})
    conf = Config.from_mapping({}).with_overrides(topology.config).to_dict()
    codec = Codec(KEY, topology_tag("u-1"), worker_id(HOST, 7000))
    worker = Worker(topology, conf, "u-1", HOST, 7000, KEY,
                    transport=MemoryNetwork().transport(codec, HOST, 7000), clock=lambda: 1.0)
    tasks = {str(t): [HOST, 7000] for ts in topology.component_tasks(conf).values() for t in ts}
    worker.apply_assignment({"version": 1, "active": True, "tasks": tasks}, 1.0)
    assert worker.stop_requested and worker.exit_code == 1
    hb = worker.last_heartbeat
    assert hb is not None and hb["state"] == "failed"
    (error,) = hb["errors"]
    assert error["component"] == "__worker" and "no_such_module" in error["error"]


class SlowFirst(Bolt):
    """Its first `process` takes five (fake) seconds."""

    advance: Callable[[float], None] = staticmethod(lambda seconds: None)

    def prepare(self, conf: Any, context: Any) -> None:
        self.slow = True

    def process(self, tup: Any) -> None:
        if self.slow:
            self.slow = False
            SlowFirst.advance(5.0)


def test_a_tree_that_completes_after_its_timeout_is_failed_and_replayed() -> None:
    b = TopologyBuilder("late")
    b.set_spout("src", Lines())
    b.set_bolt("slow", SlowFirst).shuffle_grouping("src")
    cluster = InProcess(b.build(config={"topology.workers": 1,
                                        "topology.message.timeout.secs": 1}), workers=1)
    SlowFirst.advance = lambda seconds: setattr(cluster, "now", cluster.now + seconds)
    cluster.run_until(lambda: len(cluster.acked()) == len(Lines.lines))
    assert cluster.failed() and set(cluster.failed()) <= set(cluster.acked())
    assert cluster.total("src", "timed_out") == len(cluster.failed())
