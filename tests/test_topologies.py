"""End to end: real worker processes, real ZeroMQ, through LocalCluster and complete_topology.

Spouts and bolts are module-level classes: workers unpickle them by importing this module
(LocalCluster hands its sys.path, which holds tests/, to the workers).
"""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from polling import wait_for

from cluster.records import aggregate_components
from topology import Bolt, CustomGrouping, LocalCluster, Spout, Topology, TopologyBuilder
from topology.testing import CompleteResult, complete_topology

pytestmark = pytest.mark.timeout(60)

# --- components ---------------------------------------------------------------------------------


class KeySpout(Spout):
    """Replaced by a feeder in complete_topology runs; only its outputs matter."""

    outputs = ["key", "n"]


class CountingSpout(Spout):
    """Emits [n] for n = 0, 1, ... (up to `limit`), reliably unless told otherwise."""

    outputs = ["n"]

    def __init__(self, limit: int | None = None, reliable: bool = True,
                 replay: bool = False) -> None:
        self.limit = limit
        self.reliable = reliable
        self.replay = replay

    def open(self, conf: Any, context: Any) -> None:
        self.next = 0
        self.replays: list[int] = []

    def next_tuple(self) -> None:
        if self.replays:
            n = self.replays.pop(0)
        elif self.limit is None or self.next < self.limit:
            n = self.next
            self.next += 1
        else:
            return
        self.emit([n], msg_id=n if self.reliable else None)

    def fail(self, msg_id: Any) -> None:
        if self.replay:
            self.replays.append(msg_id)


class PendingSpout(Spout):
    """Emits forever, reliably, with the number of its tuples in flight after each emit."""

    outputs = ["n", "in_flight"]

    def open(self, conf: Any, context: Any) -> None:
        self.next = 0
        self.in_flight = 0

    def next_tuple(self) -> None:
        self.in_flight += 1
        self.emit([self.next, self.in_flight], msg_id=self.next)
        self.next += 1

    def ack(self, msg_id: Any) -> None:
        self.in_flight -= 1

    def fail(self, msg_id: Any) -> None:
        self.in_flight -= 1


class PacedSpout(Spout):
    """Emits one unreliable tuple every 5 ms: [n, activations, deactivations]."""

    outputs = ["n", "activations", "deactivations"]

    def open(self, conf: Any, context: Any) -> None:
        self.next = 0
        self.last = 0.0
        self.activations = 0
        self.deactivations = 0

    def activate(self) -> None:
        self.activations += 1

    def deactivate(self) -> None:
        self.deactivations += 1

    def next_tuple(self) -> None:
        now = time.monotonic()
        if now - self.last >= 0.005:
            self.last = now
            self.emit([self.next, self.activations, self.deactivations])
            self.next += 1


class IdleSpout(Spout):
    outputs = ["n"]


class Recorder(Bolt):
    """Emits which task got each tuple and whether its source task runs in the same worker."""

    outputs = ["task", "local", "key", "n"]

    def prepare(self, conf: Any, context: Any) -> None:
        self.context = context

    def process(self, tup: Any) -> None:
        self.emit([self.context.task_id, tup.task in self.context.worker_tasks, tup["key"],
                   tup["n"]])


class Director(Bolt):
    """Sends each tuple straight to task n % 3 of "direct"; odd n also go out on "odd"."""

    outputs = {"default": ["key", "n"], "odd": ["key", "n"]}

    def prepare(self, conf: Any, context: Any) -> None:
        self.targets = context.component_tasks("direct")

    def process(self, tup: Any) -> None:
        n = tup["n"]
        self.emit_direct(self.targets[n % len(self.targets)], [tup["key"], n])
        if n % 2:
            self.emit([tup["key"], n], stream="odd")


class ByParity(CustomGrouping):
    """Even n to the lowest task, odd n to the highest."""

    def prepare(self, context: Any, stream: str, target_tasks: Sequence[int]) -> None:
        self.low, self.high = min(target_tasks), max(target_tasks)

    def choose_tasks(self, task_id: int, values: Sequence[Any]) -> list[int]:
        return [self.low if values[1] % 2 == 0 else self.high]


class Join(Bolt):
    """Pairs the two tuples of each key and emits one tuple anchored to both."""

    outputs = ["key", "first", "second"]
    auto_ack = False

    def prepare(self, conf: Any, context: Any) -> None:
        self.waiting: dict[Any, Any] = {}

    def process(self, tup: Any) -> None:
        other = self.waiting.pop(tup["key"], None)
        if other is None:
            self.waiting[tup["key"]] = tup
            return
        self.emit([tup["key"], other["n"], tup["n"]], anchors=[other, tup])
        self.ack(other)
        self.ack(tup)


class Judge(Bolt):
    """Fails joined tuples whose key is a multiple of 3, acks the others."""

    def process(self, tup: Any) -> None:
        if tup["key"] % 3 == 0:
            self.fail(tup)


class Boom(Bolt):
    """Raises on n % 10 == 3."""

    def process(self, tup: Any) -> None:
        if tup["n"] % 10 == 3:
            raise ValueError(f"bad tuple {tup['n']}")


class AckSecondAttempt(Bolt):
    """Never acks the first attempt of a tuple; acks the replay."""

    auto_ack = False

    def prepare(self, conf: Any, context: Any) -> None:
        self.seen: set[int] = set()

    def process(self, tup: Any) -> None:
        if tup["n"] in self.seen:
            self.ack(tup)
        else:
            self.seen.add(tup["n"])


class Hold(Bolt):
    """Never acks anything."""

    auto_ack = False

    def process(self, tup: Any) -> None:
        pass


class AckOldestOnTick(Bolt):
    """Holds its tuples and acks the oldest one on every tick."""

    auto_ack = False

    def prepare(self, conf: Any, context: Any) -> None:
        self.held: collections.deque[Any] = collections.deque()

    def process(self, tup: Any) -> None:
        self.held.append(tup)

    def process_tick(self, tup: Any) -> None:
        if self.held:
            self.ack(self.held.popleft())


class TickRecorder(Bolt):
    outputs = ["time", "is_tick", "freq", "component", "stream"]

    def process(self, tup: Any) -> None:
        pass

    def process_tick(self, tup: Any) -> None:
        self.emit([time.monotonic(), tup.is_tick, tup["freq"], tup.component, tup.stream])


class IdCheck(Bolt):
    """Emits whether the input tuple is tracked by the acker."""

    outputs = ["tracked"]

    def process(self, tup: Any) -> None:
        self.emit([bool(tup.id)])


class Slow(Bolt):
    """Simulates an expensive operator."""

    delay = 0.0005

    def process(self, tup: Any) -> None:
        time.sleep(self.delay)


class SlowerStill(Slow):
    delay = 0.001


# --- helpers ------------------------------------------------------------------------------------


def stats(cluster: LocalCluster, name: str) -> dict[str, dict[str, Any]]:
    """Per-component totals from the workers' latest heartbeats."""
    return aggregate_components(cluster.status(name)["workers"].values())


def stat(cluster: LocalCluster, name: str, component: str, key: str) -> int:
    return stats(cluster, name).get(component, {}).get(key, 0)


def uptime(cluster: LocalCluster, name: str) -> float:
    workers = cluster.status(name)["workers"].values()
    return min((hb["uptime"] for hb in workers), default=0.0)


def wait_uptime(cluster: LocalCluster, name: str, seconds: float) -> None:
    """Let every worker run `seconds` more (measured by the workers' own heartbeats)."""
    target = uptime(cluster, name) + seconds
    wait_for(lambda: uptime(cluster, name) >= target, what=f"{seconds} s more of worker uptime")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster({"worker.heartbeat.frequency.secs": 0.05}) as c:
        yield c


@contextlib.contextmanager
def running(cluster: LocalCluster, topology: Topology, **config: Any) -> Iterator[str]:
    """Run `topology` (capturing emits) until the block ends; the workers go even on failure."""
    cluster.submit(topology, config={"topology.testing.capture": True, **config})
    try:
        cluster.wait_running(topology.name, 30)
        yield topology.name
    finally:
        cluster.kill(topology.name)


def captured(dumps: dict[int, dict[str, Any]], component: str,
             stream: str = "default") -> list[list[Any]]:
    return [values for dump in dumps.values() for c, s, values in dump["emitted"]
            if c == component and s == stream]


def spout_outcomes(dumps: dict[int, dict[str, Any]]) -> tuple[list[Any], list[Any]]:
    acked = sorted(i for dump in dumps.values() for ids in dump["acked"].values() for i in ids)
    failed = sorted(i for dump in dumps.values() for ids in dump["failed"].values() for i in ids)
    return acked, failed


# --- every grouping, named streams, direct emits (one run, many checks) --------------------------

N = 60
KEYS_IN = [["hot" if i % 2 == 0 else f"k{i % 19}", i] for i in range(N)]


def grouping_topology() -> Topology:
    b = TopologyBuilder("groupings")
    b.set_spout("src", KeySpout())
    b.set_bolt("shuffle", Recorder, 3).shuffle_grouping("src")
    b.set_bolt("fields", Recorder, 3).fields_grouping("src", ["key"])
    b.set_bolt("all", Recorder, 3).all_grouping("src")
    b.set_bolt("global", Recorder, 3).global_grouping("src")
    b.set_bolt("local", Recorder, 3).local_or_shuffle_grouping("src")
    b.set_bolt("none", Recorder, 3).none_grouping("src")
    b.set_bolt("pk", Recorder, 3).partial_key_grouping("src", ["key"])
    b.set_bolt("custom", Recorder, 3).custom_grouping("src", ByParity())
    b.set_bolt("director", Director, 2).shuffle_grouping("src")
    b.set_bolt("direct", Recorder, 3).direct_grouping("director")
    b.set_bolt("odd_only", Recorder, 2).shuffle_grouping("director", stream="odd")
    return b.build(config={"topology.workers": 2})


@pytest.fixture(scope="module")
def groupings() -> tuple[dict[str, list[int]], CompleteResult]:
    topology = grouping_topology()
    result = complete_topology(topology, mock_sources={"src": KEYS_IN}, timeout=30)
    return topology.component_tasks(), result


def per_task(result: CompleteResult, component: str) -> dict[int, list[int]]:
    out: dict[int, list[int]] = collections.defaultdict(list)
    for task, _local, _key, n in result.emitted(component):
        out[task].append(n)
    return out


def test_every_mocked_tuple_is_acked(groupings: Any) -> None:
    _, result = groupings
    assert result.acked == list(range(N))
    assert result.failed == []


def test_shuffle_spreads_evenly(groupings: Any) -> None:
    tasks, result = groupings
    got = per_task(result, "shuffle")
    assert sorted(n for ns in got.values() for n in ns) == list(range(N))
    assert set(got) == set(tasks["shuffle"])
    assert {len(ns) for ns in got.values()} == {N // 3}


def test_none_grouping_delivers_each_tuple_once(groupings: Any) -> None:
    tasks, result = groupings
    got = per_task(result, "none")
    assert sorted(n for ns in got.values() for n in ns) == list(range(N))
    assert set(got) <= set(tasks["none"])


def test_fields_puts_each_key_on_exactly_one_task(groupings: Any) -> None:
    tasks, result = groupings
    where: dict[str, set[int]] = collections.defaultdict(set)
    for task, _local, key, _n in result.emitted("fields"):
        where[key].add(task)
    assert len(result.emitted("fields")) == N
    assert all(len(ts) == 1 for ts in where.values()), where
    used = set().union(*where.values())
    assert used <= set(tasks["fields"]) and len(used) > 1


def test_all_reaches_every_task(groupings: Any) -> None:
    tasks, result = groupings
    got = {(task, n) for task, _local, _key, n in result.emitted("all")}
    assert len(result.emitted("all")) == 3 * N
    assert got == {(t, n) for t in tasks["all"] for n in range(N)}


def test_global_goes_to_the_lowest_task(groupings: Any) -> None:
    tasks, result = groupings
    got = per_task(result, "global")
    assert list(got) == [min(tasks["global"])]
    assert sorted(got[min(tasks["global"])]) == list(range(N))


def test_local_or_shuffle_stays_in_the_worker(groupings: Any) -> None:
    _, result = groupings
    records = result.emitted("local")
    assert len(records) == N
    assert all(local for _task, local, _key, _n in records)


def test_partial_key_spreads_the_hot_key_over_at_most_two_tasks(groupings: Any) -> None:
    tasks, result = groupings
    hot = {task for task, _local, key, _n in result.emitted("pk") if key == "hot"}
    assert 1 <= len(hot) <= 2 and hot <= set(tasks["pk"])
    assert len(result.emitted("pk")) == N


def test_custom_grouping_chooses(groupings: Any) -> None:
    tasks, result = groupings
    low, high = min(tasks["custom"]), max(tasks["custom"])
    records = result.emitted("custom")
    assert len(records) == N
    assert all(task == (low if n % 2 == 0 else high) for task, _local, _key, n in records)


def test_emit_direct_reaches_the_chosen_task(groupings: Any) -> None:
    tasks, result = groupings
    direct = tasks["direct"]
    records = result.emitted("direct")
    assert sorted(n for *_, n in records) == list(range(N))
    assert all(task == direct[n % 3] for task, _local, _key, n in records)


def test_named_stream_only_reaches_its_subscriber(groupings: Any) -> None:
    _, result = groupings
    odd = sorted(n for *_, n in result.emitted("odd_only"))
    assert odd == list(range(1, N, 2))
    assert sorted(values[1] for values in result.emitted("director", stream="odd")) == odd
    assert len(result.emitted("director")) == N  # the direct emits, on "default"


# --- reliability --------------------------------------------------------------------------------


def test_multi_anchored_child_decides_both_spout_tuples() -> None:
    b = TopologyBuilder("join")
    b.set_spout("src", KeySpout())
    b.set_bolt("join", Join, 2).fields_grouping("src", ["key"])
    b.set_bolt("judge", Judge, 2).shuffle_grouping("join")
    topology = b.build(config={"topology.workers": 2})
    pairs = [[i // 2, i] for i in range(20)]  # key k pairs n = 2k and 2k + 1
    result = complete_topology(topology, mock_sources={"src": pairs}, timeout=30)
    joined = sorted(result.emitted("join"))
    assert joined == [[k, 2 * k, 2 * k + 1] for k in range(10)]
    # The judge fails keys 0, 3, 6, 9: both spout tuples of each fail, the rest are acked.
    expected_failed = [n for n in range(20) if (n // 2) % 3 == 0]
    assert result.failed == expected_failed
    assert result.acked == [n for n in range(20) if n not in expected_failed]


def test_exception_in_process_fails_the_tuple_and_is_reported(cluster: LocalCluster) -> None:
    b = TopologyBuilder("boom")
    b.set_spout("src", CountingSpout(limit=50))
    b.set_bolt("boom", Boom, 2).shuffle_grouping("src")
    with running(cluster, b.build(config={"topology.workers": 2})) as name:
        pids = cluster.worker_pids(name)
        wait_for(lambda: stat(cluster, name, "src", "acked") + stat(cluster, name, "src",
                                                                    "failed") >= 50,
                 what="50 spout outcomes")
        wait_for(lambda: len(cluster.status(name)["errors"]) >= 5, what="5 errors reported")
        acked, failed = spout_outcomes(cluster.request_dumps(name))
        status = cluster.status(name)
        assert failed == [3, 13, 23, 33, 43]
        assert acked == [n for n in range(50) if n % 10 != 3]  # later tuples still processed
        errors = status["errors"]
        assert len(errors) == 5
        assert {e["component"] for e in errors} == {"boom"}
        assert {e["error"] for e in errors} == {f"ValueError: bad tuple {n}" for n in failed}
        assert all("Traceback" in e["traceback"] and "in process" in e["traceback"]
                   and "ValueError" in e["traceback"] for e in errors)
        assert status["restarts"] == 0 and cluster.worker_pids(name) == pids


def test_timed_out_tuple_fails_and_its_replay_is_acked(cluster: LocalCluster) -> None:
    b = TopologyBuilder("timeout")
    b.set_spout("src", CountingSpout(limit=3, replay=True))
    b.set_bolt("stubborn", AckSecondAttempt).shuffle_grouping("src")
    topology = b.build(config={"topology.workers": 2, "topology.message.timeout.secs": 1})
    with running(cluster, topology) as name:
        wait_for(lambda: stat(cluster, name, "src", "acked") >= 3, what="3 acks after replays")
        acked, failed = spout_outcomes(cluster.request_dumps(name))
        assert acked == [0, 1, 2]
        assert failed == [0, 1, 2]
        assert stat(cluster, name, "src", "timed_out") == 3
        wait_for(lambda: stat(cluster, name, "stubborn", "executed") >= 6, what="6 executions")
        wait_uptime(cluster, name, 0.2)
        assert stat(cluster, name, "stubborn", "executed") == 6  # two attempts each, no more


def test_unreliable_emits_are_not_tracked(cluster: LocalCluster) -> None:
    b = TopologyBuilder("unreliable")
    b.set_spout("src", CountingSpout(limit=100, reliable=False))
    b.set_bolt("check", IdCheck, 2).shuffle_grouping("src")
    with running(cluster, b.build(config={"topology.workers": 2})) as name:
        wait_for(lambda: stat(cluster, name, "check", "executed") >= 100,
                 what="100 tuples processed")
        dumps = cluster.request_dumps(name)
        components = stats(cluster, name)
        assert captured(dumps, "check") == [[False]] * 100
        assert components["src"]["acked"] == components["src"]["failed"] == 0
        assert components["__acker"]["executed"] == 0  # no init, ack or fail reached an acker
        assert spout_outcomes(dumps) == ([], [])


def test_without_ackers_spout_tuples_are_acked_at_once(cluster: LocalCluster) -> None:
    b = TopologyBuilder("no-ackers")
    b.set_spout("src", CountingSpout(limit=20))
    b.set_bolt("hold", Hold, 2).shuffle_grouping("src")  # would never complete a tree
    topology = b.build(config={"topology.workers": 2, "topology.acker.executors": 0})
    with running(cluster, topology) as name:
        wait_for(lambda: stat(cluster, name, "src", "acked") >= 20, what="20 immediate acks")
        wait_for(lambda: stat(cluster, name, "hold", "executed") >= 20, what="20 tuples delivered")
        acked, failed = spout_outcomes(cluster.request_dumps(name))
        assert acked == list(range(20)) and failed == []
        assert "__acker" not in stats(cluster, name)


def test_max_spout_pending_bounds_tuples_in_flight(cluster: LocalCluster) -> None:
    b = TopologyBuilder("pending")
    b.set_spout("src", PendingSpout(), config={"topology.max.spout.pending": 5})
    b.set_bolt("slow", AckOldestOnTick, config={"topology.tick.tuple.freq.secs": 0.02}) \
        .shuffle_grouping("src")
    with running(cluster, b.build(config={"topology.workers": 2})) as name:
        wait_for(lambda: stat(cluster, name, "src", "acked") >= 15, what="15 acks")
        in_flight = [values[1] for values in captured(cluster.request_dumps(name), "src")]
        assert len(in_flight) >= 20  # it went on emitting as acks freed room
        assert max(in_flight) == 5


def test_tick_tuples_follow_the_component_config(cluster: LocalCluster) -> None:
    b = TopologyBuilder("ticks")
    b.set_spout("src", IdleSpout())
    b.set_bolt("ticked", TickRecorder, config={"topology.tick.tuple.freq.secs": 0.1}) \
        .shuffle_grouping("src")
    b.set_bolt("quiet", TickRecorder).shuffle_grouping("src")
    with running(cluster, b.build()) as name:
        wait_for(lambda: stat(cluster, name, "ticked", "emitted") >= 6, what="6 ticks")
        dumps = cluster.request_dumps(name)
        ticks = captured(dumps, "ticked")
        assert captured(dumps, "quiet") == []
        assert all(t[1:] == [True, 0.1, "__system", "__tick"] for t in ticks)
        times = [t[0] for t in ticks]
        gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
        assert 0.08 <= gaps[len(gaps) // 2] <= 0.2, gaps


def test_deactivate_stops_next_tuple_and_activate_resumes_it(cluster: LocalCluster) -> None:
    b = TopologyBuilder("activation")
    b.set_spout("src", PacedSpout())
    b.set_bolt("sink", Hold).shuffle_grouping("src")
    with running(cluster, b.build(config={"topology.workers": 2})) as name:
        wait_for(lambda: stat(cluster, name, "src", "emitted") >= 5, what="5 emits")

        def all_workers(active: bool) -> bool:
            workers = cluster.status(name)["workers"].values()
            return all(hb["active"] is active for hb in workers)

        cluster.deactivate(name)
        wait_for(lambda: all_workers(False), what="workers to report inactive")
        assert cluster.status(name)["status"] == "INACTIVE"
        stopped_at = stat(cluster, name, "src", "emitted")
        wait_uptime(cluster, name, 0.3)  # ~60 emits' worth of time
        assert stat(cluster, name, "src", "emitted") == stopped_at

        cluster.activate(name)
        wait_for(lambda: stat(cluster, name, "src", "emitted") >= stopped_at + 5,
                 what="emits after activation")
        assert cluster.status(name)["status"] == "ACTIVE"
        last = captured(cluster.request_dumps(name), "src")[-1]
        assert last[1:] == [2, 1]  # activate() twice (start, resume), deactivate() once


# --- backpressure -------------------------------------------------------------------------------


def watch_queue(cluster: LocalCluster, name: str, seconds: float,
                executed_seen: list[int] | None = None) -> list[tuple[int, int]]:
    """(most queued in any worker, spout emits not yet executed) seen every 50 ms."""
    seen = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # watching for a while is the point here
        status = cluster.status(name)
        queued = max((hb["queued"] for hb in status["workers"].values()), default=0)
        components = aggregate_components(status["workers"].values())
        behind = (components.get("src", {}).get("emitted", 0)
                  - components.get("slow", {}).get("executed", 0))
        seen.append((queued, behind))
        if executed_seen is not None:
            executed_seen.append(components.get("slow", {}).get("executed", 0))
        time.sleep(0.05)
    return seen


def test_backpressure_pauses_a_fast_spout_feeding_a_slow_bolt(cluster: LocalCluster) -> None:
    b = TopologyBuilder("backpressure")
    b.set_spout("src", CountingSpout(reliable=False))
    b.set_bolt("slow", SlowerStill).shuffle_grouping("src")
    topology = b.build(config={"topology.workers": 2})
    with running(cluster, topology, **{"worker.queue.high.watermark": 500}) as name:
        executed_seen: list[int] = []
        seen = watch_queue(cluster, name, 2.0, executed_seen)
        executed = stat(cluster, name, "slow", "executed")
        assert executed > 200  # the bolt ran all along
        # The spout was paused: its emits stood still for 0.3 s while the bolt kept working.
        # (An unthrottled spout emits ~100k+ tuples a second here.)
        emitted = [behind + done for (_, behind), done in zip(seen, executed_seen, strict=True)]
        assert any(len(set(emitted[i:i + 6])) == 1 for i in range(len(emitted) - 6)), emitted
        # The queue never goes far over the watermark: the spout pauses first.
        assert max(q for q, _ in seen) <= 10 * 500, seen


class SlowStart(Slow):
    def prepare(self, conf: Any, context: Any) -> None:
        time.sleep(0.5)  # e.g. loading a model


def test_backpressure_bounds_the_queue_while_a_consumer_starts(cluster: LocalCluster) -> None:
    b = TopologyBuilder("slow-start")
    b.set_spout("src", CountingSpout(reliable=False))
    b.set_bolt("slow", SlowStart).shuffle_grouping("src")
    topology = b.build(config={"topology.workers": 2})
    with running(cluster, topology, **{"worker.queue.high.watermark": 500}) as name:
        wait_for(lambda: stat(cluster, name, "slow", "executed") > 50, what="the bolt to run")
        seen = watch_queue(cluster, name, 0.5)
        assert max(q for q, _ in seen) <= 10 * 500, seen


def test_backpressure_loses_nothing_with_a_reliable_spout(cluster: LocalCluster) -> None:
    b = TopologyBuilder("no-loss")
    b.set_spout("src", CountingSpout(limit=2000, replay=True))
    b.set_bolt("slow", Slow, 2).shuffle_grouping("src")
    topology = b.build(config={"topology.workers": 2})
    with running(cluster, topology, **{"worker.queue.high.watermark": 100}) as name:
        wait_for(lambda: stat(cluster, name, "src", "acked") >= 2000, 40, "2000 acks")
        acked, failed = spout_outcomes(cluster.request_dumps(name))
        status = cluster.status(name)
        assert acked == list(range(2000)) and failed == []
        wait_for(lambda: stat(cluster, name, "slow", "executed") >= 2000, what="2000 executions")
        assert stat(cluster, name, "slow", "executed") == 2000  # each tuple once
        assert all(hb["dropped"] == 0 and hb["rejected"] == 0
                   for hb in status["workers"].values())


class Pad(Bolt):
    """Does nothing: it only takes a task id so that the placement below comes out right."""

    def process(self, tup: Any) -> None:
        pass


class Slowest(Slow):
    delay = 0.005


def test_acks_keep_flowing_while_a_worker_is_overloaded(cluster: LocalCluster) -> None:
    # Tasks are dealt round-robin in component order: __acker(1) and c_slow(3) share worker
    # 0, b_pad(2) and d_src(4) worker 1. So the only acker sits in the worker whose slow bolt
    # is flooded: the spout's inits (and so every ack) must get through while that worker
    # holds more data than its high watermark (the excess parked, still encoded).
    b = TopologyBuilder("acks-under-load")
    b.set_spout("d_src", CountingSpout())
    b.set_bolt("b_pad", Pad).shuffle_grouping("d_src")
    b.set_bolt("c_slow", Slowest).shuffle_grouping("d_src")
    topology = b.build(config={"topology.workers": 2, "topology.acker.executors": 1,
                               "topology.max.spout.pending": 1000})
    with running(cluster, topology, **{"worker.queue.high.watermark": 50}) as name:
        tasks = topology.component_tasks(cluster.conf)
        assert tasks["__acker"] == [1] and tasks["c_slow"] == [3]
        samples: list[tuple[int, int]] = []

        def acked_while_full() -> bool:
            status = cluster.status(name)
            slow = next(hb for hb in status["workers"].values() if 3 in hb["tasks"])
            samples.append((slow["parked"], stat(cluster, name, "d_src", "acked")))
            pairs = zip(samples, samples[1:], strict=False)
            return any(a[0] and b[0] and b[1] > a[1] for a, b in pairs)

        wait_for(acked_while_full, 20, "spout acks growing while the acker's worker has data "
                 "parked over its high watermark", every=0.05)


class Unloadable:
    """Unpickles by importing a module that does not exist: a dependency missing on a host."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (__import__, ("no_such_module_for_squall_tests",))


class SpoutNeedingAMissingModule(CountingSpout):
    def __init__(self) -> None:
        super().__init__()
        self.model = Unloadable()


def test_a_worker_that_cannot_load_the_topology_says_why(cluster: LocalCluster) -> None:
    b = TopologyBuilder("unloadable")
    b.set_spout("src", SpoutNeedingAMissingModule())
    b.set_bolt("pad", Pad).shuffle_grouping("src")
    cluster.submit(b.build())
    try:
        errors = wait_for(lambda: cluster.status("unloadable")["errors"], 15, "an error")
        assert errors[0]["component"] == "__worker"
        assert "No module named 'no_such_module_for_squall_tests'" in errors[0]["error"]
        # It is restarted with a growing delay, not in a tight loop.
        restarts = cluster.status("unloadable")["restarts"]
        time.sleep(2.0)  # watching the restart rate over a period is the point here
        assert cluster.status("unloadable")["restarts"] - restarts <= 3
    finally:
        cluster.kill("unloadable")
