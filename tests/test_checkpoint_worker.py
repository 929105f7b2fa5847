"""The pure pieces of the checkpoint protocol's worker side: the coordinator's directive to
the spouts, and how the builder wires a topology with stateful bolts."""

from __future__ import annotations

import pickle
from typing import Any

import cloudpickle
import pytest

from acker.checkpoint import Commit, Prepare, Recover, Start
from topology import Bolt, Spout, TopologyBuilder
from topology.errors import TopologyError
from topology.spouts import LogFileSpout
from topology.state import CommitterBolt, StatefulBolt
from topology.state.plan import SPOUT_EXECUTOR, STATEFUL_EXECUTOR, CheckpointPlan, plan_of
from worker.checkpoint import KEEP_COMMITS, Directive
from worker.executor import BoltExecutor
from worker.tasks import executor_class


def test_the_directive_follows_recover_start_and_commit() -> None:
    d = Directive()
    d.apply(Recover(4, 100, {"lines": {"/a": 5}}))
    assert d.changed and d.doc == {"recover": [4, 100, {"lines": {"/a": 5}}],
                                   "phase": "recovering", "starts": [], "commits": []}
    d.changed = False
    d.apply(Recover(4, 100, {"lines": {"/a": 5}}))  # a resend to who did not answer
    assert not d.changed
    d.apply(Start(5, 100))
    d.apply(Start(6, 101))
    assert d.doc["phase"] == "running" and d.doc["starts"] == [[5, 100], [6, 101]]
    d.apply(Commit(5, 100))
    assert d.doc["starts"] == [[6, 101]] and d.doc["commits"] == [[5, 100]]
    d.apply(Prepare(6, 101))  # not for spouts: ignored
    assert d.doc["starts"] == [[6, 101]]
    d.apply(Recover(5, 102, {}))  # a rollback forgets the open checkpoints
    assert d.doc == {"recover": [5, 102, {}], "phase": "recovering", "starts": [],
                     "commits": []}


def test_the_directive_keeps_a_bounded_tail_of_commits() -> None:
    d = Directive()
    d.apply(Recover(0, 1, {}))
    for txid in range(1, 3 * KEEP_COMMITS):
        d.apply(Start(txid, txid))
        d.apply(Commit(txid, txid))
    assert len(d.doc["commits"]) == KEEP_COMMITS
    assert d.doc["commits"][-1] == [3 * KEEP_COMMITS - 1] * 2 and d.doc["starts"] == []


class Words(Spout):
    outputs = ["word"]

    def next_tuple(self) -> None:
        """Nothing: never run here."""


class Count(StatefulBolt):
    def process(self, tup: Any) -> None:
        """Nothing: never run here."""


class Sink(CommitterBolt):
    def commit(self, txid: int, changes: Any) -> None:
        """Nothing: never run here."""


class Plain(Bolt):
    outputs = ["word"]

    def process(self, tup: Any) -> None:
        """Nothing: never run here."""


def build(config: dict[str, Any] | None = None) -> Any:
    b = TopologyBuilder("plan")
    b.set_spout("words", Words, parallelism=2)
    b.set_spout("log", LogFileSpout("/tmp/x-{index}.log"))
    b.set_bolt("plain", Plain).shuffle_grouping("words")
    b.set_bolt("count", Count(), parallelism=3).fields_grouping("plain", ["word"])
    b.set_bolt("sink", Sink).shuffle_grouping("log")
    return b.build(config=config)


def test_a_stateful_topology_runs_the_protocols_executors() -> None:
    topology = build()
    spec = topology.components
    plan = CheckpointPlan(("log", "words"), ("count", "sink"), ("sink",), ("plain",))
    for cid in ("words", "log", "count", "sink", "plain"):
        assert plan_of(spec[cid].obj) == plan, cid
    assert spec["words"].obj.executor_factory == SPOUT_EXECUTOR
    assert spec["count"].obj.executor_factory == STATEFUL_EXECUTOR
    assert executor_class(spec["log"]).__name__ == "CheckpointSpoutExecutor"
    assert executor_class(spec["sink"]).__name__ == "StatefulBoltExecutor"
    # A stateless bolt only says HELLO when it (re)starts: its tuples run as any bolt's.
    assert executor_class(spec["plain"]).__name__ == "WatchedBoltExecutor"
    assert executor_class(spec["plain"]).execute is BoltExecutor.execute
    # The user's classes are left alone, and what the worker gets still is theirs.
    assert Words.executor_factory is None and plan_of(Words) is None
    assert isinstance(spec["count"].obj, Count) and spec["words"].obj.__name__ == "Words"
    assert plan.coordinator_task(topology.component_tasks()) == topology.component_tasks()[
        "count"][0]
    copy = pickle.loads(cloudpickle.dumps(topology))  # as it travels to the workers
    assert plan_of(copy.components["count"].obj) == plan
    assert issubclass(type(copy.components["words"].make_instance()), Spout)


def test_a_topology_without_stateful_bolts_is_untouched() -> None:
    b = TopologyBuilder("plain")
    b.set_spout("words", Words)
    b.set_bolt("plain", Plain).shuffle_grouping("words")
    topology = b.build()
    assert topology.components["words"].obj is Words


def test_stateful_bolts_need_the_acker() -> None:
    with pytest.raises(TopologyError, match="topology.acker.executors 0"):
        build({"topology.acker.executors": 0})


class OwnSpout(Words):
    executor_factory = "worker.executor:SpoutExecutor"


class OwnBolt(Plain):
    executor_factory = "worker.executor:BoltExecutor"


def test_components_with_executors_of_their_own() -> None:
    b = TopologyBuilder("own")
    b.set_spout("words", Words)
    b.set_bolt("own", OwnBolt).shuffle_grouping("words")
    b.set_bolt("count", Count).fields_grouping("own", ["word"])
    topology = b.build()
    assert topology.components["own"].obj is OwnBolt  # left alone: not watched
    assert plan_of(topology.components["count"].obj).watched == ()  # type: ignore[union-attr]
    b = TopologyBuilder("own-spout")
    b.set_spout("words", OwnSpout)
    b.set_bolt("count", Count).shuffle_grouping("words")
    with pytest.raises(TopologyError, match="spout 'words' runs its own executor"):
        b.build()
