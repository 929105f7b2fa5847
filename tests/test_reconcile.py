"""nimbus.reconcile: one topology's bad record or failed write never stops the round for the
others (issue 7, items 7 and 13); against the in-memory state and a real ZooKeeper."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import cloudpickle
import pytest

from cluster.codesign import sign_code
from cluster.config import Config
from cluster.memstore import MemoryClusterState
from cluster.state import ClusterState
from cluster.zkstore import ZkClusterState
from nimbus import submission as sub
from nimbus.lifecycle import ACTIVE, REBALANCE, TopologyStatus, transition
from nimbus.liveness import Liveness
from nimbus.reconcile import ERROR_COMPONENT, Reconciler
from topology import Bolt, Spout, TopologyBuilder

pytestmark = pytest.mark.timeout(120)

SECRET = "reconcile-secret"
HUGE_TASKS = 60_000  # an assignment of that many tasks is over ZooKeeper's 1 MiB


class _Spout(Spout):
    outputs = ["n"]


class _Bolt(Bolt):
    def process(self, tup: Any) -> None:
        pass


def small_meta(tid: str, name: str) -> dict[str, Any]:
    b = TopologyBuilder(name)
    b.set_spout("s", _Spout(), parallelism=1)
    b.set_bolt("b", _Bolt(), parallelism=1).shuffle_grouping("s")
    topology = b.build(config={"topology.workers": 1})
    conf = {"topology.workers": 1, "topology.acker.executors": 0}
    return sub.make_meta(tid, topology, conf, TopologyStatus(ACTIVE), 0, "me", 1)


def huge_meta(tid: str) -> dict[str, Any]:
    """A record as an older nimbus (or a rebalance before bounds existed) left it: fine to
    store, but its assignment is too large for ZooKeeper."""
    return {"id": tid, "name": "huge", "status": "ACTIVE", "lifecycle": {"name": "active"},
            "submitted": 0, "code_version": 1, "num_workers": 1,
            "components": {"s": {"type": "spout", "tasks": list(range(1, HUGE_TASKS + 1))}}}


@pytest.fixture(params=["memory", "zookeeper"])
def state(request: pytest.FixtureRequest) -> Iterator[ClusterState]:
    if request.param == "memory":
        s: ClusterState = MemoryClusterState()
    else:
        zk_config: Config = request.getfixturevalue("zk_config")
        s = ZkClusterState(zk_config.with_overrides({"cluster.secret": SECRET}))
    s.register_supervisor("sup", {"host": "h", "ports": [1, 2, 3]})
    try:
        yield s
    finally:
        s.close()


def reconciler() -> Reconciler:
    return Reconciler("n", Liveness(5, 30, 5, blind_after=3), SECRET)


def nimbus_errors(state: ClusterState, tid: str) -> list[str]:
    return [e["error"] for e in state.errors(tid).get(ERROR_COMPONENT, [])]


def test_an_assignment_too_large_to_store_does_not_stop_the_others(state: ClusterState) -> None:
    state.set_topology("a-huge-1", huge_meta("a-huge-1"))  # sorted first: written first
    state.set_topology("b-fine-1", small_meta("b-fine-1", "fine"))
    r = reconciler()
    started = time.monotonic()
    r.run(state, 0.0)
    took = time.monotonic() - started
    assert state.assignment("b-fine-1") is not None  # scheduled all the same
    assert state.assignment("a-huge-1") is None
    (error,) = nimbus_errors(state, "a-huge-1")
    assert "assignment failed" in error and "bytes" in error
    r.run(state, 1.0)
    r.run(state, 2.0)
    assert len(nimbus_errors(state, "a-huge-1")) == 1  # reported once, not every round
    print(f"round with an oversized assignment: {took:.2f} s")


def test_a_rebalance_that_cannot_be_stored_is_abandoned(state: ClusterState) -> None:
    b = TopologyBuilder("grow")
    b.set_spout("s", _Spout(), parallelism=1)
    topology = b.build(config={"topology.workers": 1})
    conf = {"topology.workers": 1, "topology.acker.executors": 0}
    meta = sub.make_meta("g-1", topology, conf, TopologyStatus(ACTIVE), 0, "me", 1)
    code = sign_code(sub.code_blob(topology, conf), SECRET)
    state.put_code("g-1", code)
    r = reconciler()
    state.set_topology("g-1", meta)
    r.run(state, 0.0)
    version = state.assignment("g-1")["version"]
    # rebalance -e s=150000: the record itself would be over ZooKeeper's limit
    status = transition(TopologyStatus(ACTIVE), REBALANCE, 1.0, 0)
    state.set_topology("g-1", {**sub.with_status(meta, status),
                               "rebalance": {"workers": None, "parallelism": {"s": 150_000}}})
    r.run(state, 2.0)
    after = state.topology("g-1")
    assert after["status"] == "ACTIVE" and "rebalance" not in after  # not stuck REBALANCING
    assert after["code_version"] == 1 and after["num_tasks"] == meta["num_tasks"]
    assert state.get_code("g-1") == code  # the code still matches the record
    assert state.assignment("g-1")["active"] is True  # its spouts run
    assert state.assignment("g-1")["version"] == version  # no worker restarted
    assert any("rebalance abandoned" in e for e in nimbus_errors(state, "g-1"))


def test_unsigned_code_is_never_unpickled_by_nimbus(state: ClusterState, tmp_path) -> None:
    marker = tmp_path / "ran"

    class Bomb:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (open, (str(marker), "w"))

    meta = small_meta("u-1", "unsigned")
    state.put_code("u-1", cloudpickle.dumps({"topology": Bomb(), "conf": {}}))
    status = transition(TopologyStatus(ACTIVE), REBALANCE, 0.0, 0)
    state.set_topology("u-1", {**sub.with_status(meta, status),
                               "rebalance": {"workers": 2, "parallelism": {}}})
    reconciler().run(state, 1.0)
    assert not marker.exists()
    assert state.topology("u-1")["status"] == "ACTIVE"
    assert any("not signed" in e for e in nimbus_errors(state, "u-1"))
