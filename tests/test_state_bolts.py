"""The user API of topology.state (StatefulBolt, CommitterBolt), the rebalance rule, and the
commit record."""

from __future__ import annotations

from typing import Any

import pytest

from acker.checkpoint import CommitRecord, check_layout, checkpoint_snapshot
from topology import Bolt, Spout, TopologyBuilder
from topology.state import (
    CommitterBolt,
    KeyValueState,
    StateError,
    StatefulBolt,
    is_stateful,
    rebalance_problem,
    stateful_layout,
)


class Lines(Spout):
    outputs = ["line"]


class Count(StatefulBolt):
    outputs = ["word", "count"]

    def init_state(self, state: KeyValueState) -> None:
        self.counts = state

    def process(self, tup: Any) -> None:
        self.counts[tup[0]] = self.counts.get(tup[0], 0) + 1


class Totals(CommitterBolt):
    def process(self, tup: Any) -> None:
        pass


class Split(Bolt):
    outputs = ["word"]


def word_count() -> Any:
    b = TopologyBuilder("wc")
    b.set_spout("lines", Lines, parallelism=2)
    b.set_bolt("split", Split, parallelism=3).shuffle_grouping("lines")
    b.set_bolt("count", Count(), parallelism=4).fields_grouping("split", ["word"])
    b.set_bolt("totals", Totals, parallelism=1).global_grouping("count")
    return b.build()


def test_stateful_bolts_are_bolts_with_an_init_state() -> None:
    count = Count()
    state = KeyValueState({"a": 1})
    count.init_state(state)
    assert count.counts is state
    assert StatefulBolt().init_state(state) is None  # the default does nothing
    assert issubclass(CommitterBolt, StatefulBolt) and issubclass(StatefulBolt, Bolt)


def test_a_committer_must_implement_commit() -> None:
    with pytest.raises(NotImplementedError, match=r"Totals must implement commit\(txid, changes"):
        Totals().commit(1, {})


def test_stateful_components_are_recognised_as_class_or_instance() -> None:
    assert is_stateful(Count) and is_stateful(Count()) and is_stateful(Totals)
    assert not is_stateful(Split) and not is_stateful(Split()) and not is_stateful(Lines)
    assert stateful_layout(word_count()) == {"count": 4, "totals": 1}


def test_a_rebalance_that_changes_a_stateful_parallelism_is_refused_by_name() -> None:
    topology = word_count()
    problem = rebalance_problem(topology, {"count": 6, "split": 5})
    assert problem is not None
    assert problem.startswith("topology 'wc': cannot change the parallelism of stateful "
                              "component(s) 'count' from 4 to 6: ")
    assert "cannot be redistributed" in problem and "new name" in problem


def test_rebalancing_spouts_stateless_bolts_or_the_same_parallelism_is_allowed() -> None:
    topology = word_count()
    assert rebalance_problem(topology, {"lines": 4, "split": 1, "count": 4}) is None
    assert rebalance_problem(topology, {"nosuch": 3}) is None
    assert rebalance_problem(topology, {}) is None


def test_a_record_written_with_another_layout_is_refused_at_start() -> None:
    record = CommitRecord(txid=3, layout={"count": 4, "totals": 1})
    check_layout("wc", record, {"count": 4, "totals": 1, "new": 2})
    with pytest.raises(StateError, match="'count' from 4 to 2, 'totals' from 1 to 3"):
        check_layout("wc", record, {"count": 2, "totals": 3})


def test_the_commit_record_round_trips_through_a_dict() -> None:
    record = CommitRecord(txid=3, epoch=9, next_epoch=12, time=5.5, duration=0.25, failed=1,
                          sources={"lines": {"a.log": 10}}, layout={"count": 4})
    assert CommitRecord.from_dict(record.to_dict()) == record
    assert CommitRecord.from_dict({"txid": 2}) == CommitRecord(txid=2)
    assert checkpoint_snapshot(record) == {"txid": 3, "time": 5.5, "duration": 0.25,
                                           "failed": 1}


@pytest.mark.parametrize("damaged", [{"txid": "3"}, {"txid": -1}, {"sources": []},
                                     {"failed": None}])
def test_a_damaged_record_is_named(damaged: dict[str, Any]) -> None:
    with pytest.raises(StateError, match="checkpoint record .* is damaged"):
        CommitRecord.from_dict(damaged)
