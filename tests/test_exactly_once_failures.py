"""Exactly-once on real worker processes, beyond kill -9 of a log-file topology: a checkpoint
that fails to prepare on one task is rolled back on every task; a Redis Streams spout
replays by entry id; a stateful bolt's parallelism cannot change under its state; the
heartbeats show the last committed checkpoint and each replayable spout's source."""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from polling import wait_for
from redis_fixtures import RedisServer, redis_server  # noqa: F401  (a fixture, used by name)
from test_exactly_once import CONF, EXAMPLE, Writer, assert_every_txid_once, line, totals

from topology import TopologyBuilder
from topology.local import LocalCluster
from topology.spouts import LogFileSpout, RedisStreamSpout


class PoisonOnce:
    """A value that cannot be saved once: pickling it fails while `marker` exists, and
    removes it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        if os.path.exists(self.marker):
            os.unlink(self.marker)
            raise RuntimeError("this value cannot be saved (on purpose)")
        return (PoisonOnce, (self.marker,))


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("EXACTLY_ONCE_INPUT", str(tmp_path / "input.log"))
    monkeypatch.setenv("EXACTLY_ONCE_DB", str(tmp_path / "counts.sqlite3"))
    (tmp_path / "input.log").touch()
    spec = importlib.util.spec_from_file_location("exactly_once_count", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    this = sys.modules[__name__]
    for m in (module, this):
        cloudpickle.register_pickle_by_value(m)
    try:
        yield module
    finally:
        for m in (module, this):
            cloudpickle.unregister_pickle_by_value(m)
        del sys.modules[spec.name]


def snapshots(cluster: LocalCluster, name: str, field: str) -> list[dict[str, Any]]:
    """Every `field` of the executor snapshots in the workers' heartbeats."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get(field), dict):
                found.append(node[field])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(cluster.status(name)["workers"])
    return found


@pytest.mark.timeout(180)
def test_a_failed_prepare_on_one_task_rolls_back_everywhere(example: Any,
                                                           tmp_path: Path) -> None:
    marker = str(tmp_path / "poison")

    class PoisonedCount(example.CommitCounts):  # type: ignore[misc, name-defined]
        def prepare(self, conf: Any, context: Any) -> None:
            super().prepare(conf, context)
            self.index = context.task_index

        def process(self, tup: Any) -> None:
            super().process(tup)
            if self.index == 1 and os.path.exists(marker):
                self.counts["__poison__"] = PoisonOnce(marker)

    log_file, db = tmp_path / "input.log", tmp_path / "counts.sqlite3"
    builder = TopologyBuilder("eo-poison")
    builder.set_spout("lines", LogFileSpout(str(log_file)))
    builder.set_bolt("split", example.SplitLine, parallelism=2).shuffle_grouping("lines")
    builder.set_bolt("count", PoisonedCount(str(db)), parallelism=2) \
        .fields_grouping("split", ["word"])
    topology = builder.build(config={"topology.workers": 2})
    with LocalCluster({"local.dir": str(tmp_path / "local")}) as cluster:
        cluster.submit(topology, config=CONF)
        cluster.wait_running("eo-poison", 60)
        with Writer(log_file, lines=8_000) as writer:
            wait_for(lambda: sum(totals(db).values()) > 1000, 60, "some input committed")
            Path(marker).touch()  # the next checkpoint cannot prepare on count's task 1
            wait_for(lambda: not os.path.exists(marker), 30, "the poisoned prepare")
            writer.thread.join(60)
        expected = dict(writer.expected)
        wait_for(lambda: totals(db) == expected, 90, "the totals reaching the input's")
        checkpoint = wait_for(lambda: [c for c in snapshots(cluster, "eo-poison", "checkpoint")
                                       if c.get("failed")], 20, "a rolled-back checkpoint")[0]
        assert set(checkpoint) == {"txid", "time", "duration", "failed"}
        assert checkpoint["txid"] >= 1 and checkpoint["failed"] >= 1
        assert checkpoint["duration"] >= 0 and checkpoint["time"] > 0
        size = log_file.stat().st_size
        source = wait_for(lambda: [s for s in snapshots(cluster, "eo-poison", "source")
                                   if s.get("offset") == size], 20, "the source caught up")[0]
        assert source == {"kind": "logfile", "name": str(log_file), "offset": size,
                          "behind": 0}
    assert "__poison__" not in totals(db)
    assert_every_txid_once(db)


@pytest.mark.timeout(180)
def test_a_stateful_bolts_parallelism_cannot_change_under_its_state(example: Any,
                                                                    tmp_path: Path) -> None:
    log_file, db = tmp_path / "input.log", tmp_path / "counts.sqlite3"
    log_file.write_text("a b c\n" * 100)
    with LocalCluster({"local.dir": str(tmp_path / "local")}) as cluster:
        cluster.submit(example.build(str(log_file), str(db)), config=CONF)
        wait_for(lambda: sum(totals(db).values()) == 300, 60, "the input committed")
        cluster.kill("exactly-once-count")
        changed = example.build(str(log_file), str(db)).with_parallelism({"count": 3})
        cluster.submit(changed, config=CONF)
        error = wait_for(lambda: [e for e in cluster.status("exactly-once-count")["errors"]
                                  if "cannot change the parallelism" in str(e)], 60,
                         "the refusal reported")[0]
        assert "'count' from 2 to 3" in str(error)
        assert "submit the topology under a new name" in str(error)
    assert sum(totals(db).values()) == 300  # nothing counted twice, nothing lost


@pytest.mark.timeout(240)
def test_a_redis_stream_spout_replays_exactly_once_through_kill_9(
        example: Any, tmp_path: Path, redis_server: RedisServer) -> None:  # noqa: F811
    import redis

    stream = f"lines-{uuid.uuid4().hex[:8]}"
    db = tmp_path / "counts.sqlite3"
    builder = TopologyBuilder("eo-stream")
    builder.set_spout("lines", RedisStreamSpout(stream, fields=["line"]))
    builder.set_bolt("split", example.SplitLine, parallelism=2).shuffle_grouping("lines")
    builder.set_bolt("count", example.CommitCounts(str(db)), parallelism=2) \
        .fields_grouping("split", ["word"])
    topology = builder.build(config={"topology.workers": 2})
    client = redis.Redis.from_url(redis_server.url)
    expected: Counter[str] = Counter()
    try:
        with LocalCluster({"local.dir": str(tmp_path / "local"),
                           "topology.state.redis.url": redis_server.url}) as cluster:
            cluster.submit(topology, config=CONF)
            cluster.wait_running("eo-stream", 60)
            for round_ in range(3):
                # Progress is counted from before the round's entries: the topology may have
                # committed all of them by the time they are all added.
                floor = sum(totals(db).values()) + 500
                for i in range(round_ * 3000, (round_ + 1) * 3000):
                    expected.update(line(i).split())
                    client.xadd(stream, {"line": line(i)})
                wait_for(lambda f=floor: sum(totals(db).values()) >= f, 60, "progress")
                pids = cluster.worker_pids("eo-stream")
                port, pid = sorted(pids.items())[round_ % len(pids)]
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda p=port, old=pid: cluster.worker_pids("eo-stream").get(p)
                         not in (None, old), 30, f"worker on port {port} restarted")
            wait_for(lambda: totals(db) == dict(expected), 120,
                     f"the totals reaching the stream's {sum(expected.values())} words")
            source = wait_for(lambda: [s for s in snapshots(cluster, "eo-stream", "source")
                                       if s.get("behind") == 0], 20, "the spout caught up")[0]
            assert source["kind"] == "redis-stream" and source["name"] == stream
        assert totals(db) == dict(expected)
        assert_every_txid_once(db)
    finally:
        client.delete(stream)
        client.close()


@pytest.mark.timeout(180)
def test_a_state_store_that_cannot_be_opened_at_start_is_tried_again(example: Any,
                                                                     tmp_path: Path) -> None:
    """Every task that cannot open its state store says so once and tries again: once it
    can (here: a file stood where the sqlite directory goes), the topology checkpoints and
    counts every line exactly once. Before, a task that failed to open stayed out of every
    checkpoint and the topology never started."""
    log_file, db = tmp_path / "input.log", tmp_path / "counts.sqlite3"
    local = tmp_path / "local"
    local.mkdir()
    blocker = local / "state"  # where the sqlite provider makes its directory
    blocker.write_text("not a directory")
    topology = example.build(str(log_file), str(db))
    with LocalCluster({"local.dir": str(local)}) as cluster:
        cluster.submit(topology, config=CONF)
        cluster.wait_running(topology.name, 60)
        with Writer(log_file, lines=2_000) as writer:
            errors = wait_for(lambda: [e for e in cluster.status(topology.name)["errors"]
                                       if "cannot open its state database" in e["error"]],
                              30, "the tasks saying they cannot open their state")
            assert errors[0]["error"].startswith("StateError: topology 'exactly-once-count'")
            assert totals(db) == {}
            blocker.unlink()
            writer.thread.join(60)
        expected = dict(writer.expected)
        wait_for(lambda: totals(db) == expected, 90, "the totals reaching the input's")
    assert_every_txid_once(db)
