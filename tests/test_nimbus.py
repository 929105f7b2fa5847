"""Nimbus against a real ZooKeeper: the API's actions change the stored state as they should,
authentication and limits, failure detection (stale heartbeats, lost supervisors) and leader
failover. Supervisors are faked by registering them with a second cluster-state client."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from polling import wait_for

from cli.loader import load_topology_file
from cluster.config import Config
from cluster.zkserver import free_port
from cluster.zkstore import ZkClusterState
from nimbus.client import NimbusClient
from nimbus.protocol import (
    AUTH_HEADER,
    AuthError,
    BadRequest,
    Conflict,
    NotFound,
    TooLarge,
    auth_header,
)

pytestmark = pytest.mark.timeout(60)

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def states(zk_config: Config) -> Iterator[Callable[..., ZkClusterState]]:
    """Extra cluster-state clients (fake supervisors, the test's own view); closed at the end."""
    made: list[ZkClusterState] = []

    def make(**overrides: Any) -> ZkClusterState:
        made.append(ZkClusterState(zk_config.with_overrides(overrides)))
        return made[-1]

    yield make
    for s in made:
        s.close()


@pytest.fixture
def package(topology_file: str) -> bytes:
    return bytes(cloudpickle.dumps({"topology": load_topology_file(topology_file),
                                    "overrides": {}}))


def slots(assignment: dict[str, Any]) -> dict[tuple[str, int], list[int]]:
    return {(w["supervisor"], w["port"]): w["tasks"] for w in assignment["workers"]}


def raw_request(endpoint: str, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


# --- the actions --------------------------------------------------------------------------------


def test_submit_stores_code_meta_and_an_even_assignment(start_nimbus, states, package) -> None:
    nimbus = start_nimbus()
    view = states()
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    view.register_supervisor("sup-b", {"host": "hb", "ports": [7000, 7001]})
    nimbus.wait_leading()
    client = nimbus.client()

    reply = client.submit(package, name="numbers", overrides={"topology.debug": True})
    tid = reply["id"]
    assert reply["name"] == "numbers" and reply["status"] == "ACTIVE"
    assert tid.startswith("numbers-") and len(tid.rsplit("-", 1)[1]) == 6

    meta = view.topology(tid)
    assert meta["status"] == "ACTIVE" and meta["lifecycle"] == {"name": "ACTIVE"}
    assert meta["code_version"] == 1 and meta["owner"] and meta["submitted"] > 0
    assert meta["num_workers"] == 2 and meta["num_ackers"] == 2 and meta["num_tasks"] == 7
    assert meta["components"]["double"]["parallelism"] == 3
    assert meta["conf"]["topology.debug"] is True and meta["conf"].get("cluster.secret") is None

    code = cloudpickle.loads(view.get_code(tid))
    assert code["topology"].name == "numbers" and code["conf"]["topology.debug"] is True
    assert code["conf"]["worker.batch.size"] == 1000  # the whole config, as workers expect

    a = view.assignment(tid)
    assert a["version"] == 1 and a["code_version"] == 1 and a["active"] is True
    assert sorted({sid for sid, _ in slots(a)}) == ["sup-a", "sup-b"]  # one worker each
    assert sorted(t for ts in slots(a).values() for t in ts) == list(range(1, 8))
    assert a["tasks"]["1"] in (["ha", 7000], ["hb", 7000])

    assert [t["name"] for t in client.list()] == ["numbers"]
    status = client.status("numbers")
    assert status["assignment_version"] == 1 and len(status["workers"]) == 2
    assert "kill" in status["allowed_actions"]


def test_duplicate_and_unknown_topologies(start_nimbus, states, package) -> None:
    nimbus = start_nimbus()
    states().register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    nimbus.wait_leading()
    client = nimbus.client()
    client.submit(package)
    with pytest.raises(Conflict, match="topology 'numbers' is already running"):
        client.submit(package)
    for call in (lambda: client.status("nope"), lambda: client.kill("nope", 0),
                 lambda: client.activate("nope"), lambda: client.deactivate("nope"),
                 lambda: client.rebalance("nope", 2)):
        with pytest.raises(NotFound, match="no topology named 'nope'"):
            call()
    assert len(client.list()) == 1


def test_deactivate_activate_bump_the_version_only_on_change(start_nimbus, states,
                                                             package) -> None:
    nimbus = start_nimbus()
    view = states()
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    nimbus.wait_leading()
    client = nimbus.client()
    tid = client.submit(package)["id"]

    assert client.deactivate("numbers")["status"] == "INACTIVE"
    a = view.assignment(tid)
    assert (a["version"], a["active"]) == (2, False)
    assert view.topology(tid)["status"] == "INACTIVE"
    client.deactivate("numbers")
    assert view.assignment(tid)["version"] == 2
    assert client.activate("numbers")["status"] == "ACTIVE"
    a = view.assignment(tid)
    assert (a["version"], a["active"]) == (3, True)


def test_kill_deactivates_then_removes_everything_after_the_wait(start_nimbus, states,
                                                                 package) -> None:
    nimbus = start_nimbus()
    view = states()
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    nimbus.wait_leading()
    client = nimbus.client()
    tid = client.submit(package)["id"]
    view.worker_heartbeat(tid, "ha:7000", {"time": 1, "version": 1})

    assert client.kill("numbers", wait=1.0)["status"] == "KILLED"
    meta = view.topology(tid)
    assert meta["status"] == "KILLED" and meta["lifecycle"]["wait_secs"] == 1.0
    assert view.assignment(tid)["active"] is False  # spouts deactivated during the wait
    with pytest.raises(BadRequest, match="cannot activate a killed topology"):
        client.activate("numbers")
    with pytest.raises(Conflict, match="being killed"):
        client.submit(package)

    wait_for(lambda: view.topology(tid) is None, what="topology removed")
    assert view.assignment(tid) is None and view.get_code(tid) is None
    assert view.worker_heartbeats(tid) == {}
    assert client.list() == []
    client.submit(package)  # the name is free again


def test_rebalance_changes_workers_and_parallelism(start_nimbus, states, package) -> None:
    nimbus = start_nimbus()
    view = states()
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    view.register_supervisor("sup-b", {"host": "hb", "ports": [7000, 7001]})
    nimbus.wait_leading()
    client = nimbus.client()
    tid = client.submit(package)["id"]

    with pytest.raises(BadRequest, match="no component 'nope'"):
        client.rebalance("numbers", parallelism={"nope": 2}, wait=0)
    with pytest.raises(BadRequest, match="workers must be an integer from 1 to 256, got 0"):
        client.rebalance("numbers", workers=0, wait=0)

    reply = client.rebalance("numbers", workers=3, parallelism={"double": 5}, wait=0)
    assert reply["status"] == "ACTIVE" and reply["code_version"] == 2
    meta = view.topology(tid)
    assert meta["num_workers"] == 3 and meta["components"]["double"]["parallelism"] == 5
    assert meta["num_tasks"] == 3 + 5 + 2 and "rebalance" not in meta
    code = cloudpickle.loads(view.get_code(tid))
    assert code["topology"].components["double"].parallelism == 5
    assert code["conf"]["topology.workers"] == 3
    a = view.assignment(tid)
    assert len(a["workers"]) == 3 and a["code_version"] == 2 and a["version"] == 2
    assert sorted(t for ts in slots(a).values() for t in ts) == list(range(1, 11))

    # with a wait: deactivated (REBALANCING) first, applied when the wait is over
    assert client.rebalance("numbers", workers=1, wait=0.5)["status"] == "REBALANCING"
    assert view.assignment(tid)["active"] is False
    a = wait_for(lambda: (a := view.assignment(tid))["code_version"] == 3 and a,
                 what="rebalance done")
    assert len(a["workers"]) == 1 and a["active"] is True
    assert view.topology(tid)["status"] == "ACTIVE"


STATEFUL_TOPOLOGY = '''
from topology import Spout, StatefulBolt, TopologyBuilder


class Words(Spout):
    outputs = ["word"]

    def next_tuple(self):
        self.emit(["a"], msg_id=1)


class Count(StatefulBolt):
    outputs = ["word", "n"]

    def init_state(self, state):
        self.counts = state

    def process(self, tup):
        self.counts[tup["word"]] = self.counts.get(tup["word"], 0) + 1


builder = TopologyBuilder("counts")
builder.set_spout("words", Words(), parallelism=2)
builder.set_bolt("count", Count(), parallelism=2).fields_grouping("words", ["word"])
topology = builder.build(config={"topology.workers": 2})
'''


def test_rebalance_refuses_to_change_a_stateful_bolts_parallelism(start_nimbus, states,
                                                                 tmp_path) -> None:
    path = tmp_path / "counts_topology.py"
    path.write_text(STATEFUL_TOPOLOGY)
    package = bytes(cloudpickle.dumps({"topology": load_topology_file(str(path)),
                                       "overrides": {}}))
    nimbus = start_nimbus()
    view = states()
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    nimbus.wait_leading()
    client = nimbus.client()
    tid = client.submit(package)["id"]
    with pytest.raises(BadRequest, match="cannot change the parallelism of stateful "
                                         "component.s. 'count' from 2 to 3"):
        client.rebalance("counts", parallelism={"count": 3}, wait=0)
    assert view.topology(tid)["components"]["count"]["parallelism"] == 2
    reply = client.rebalance("counts", parallelism={"words": 3}, wait=0)  # a spout may change
    assert reply["code_version"] == 2
    assert view.topology(tid)["components"]["words"]["parallelism"] == 3


# --- authentication, limits and malformed requests ----------------------------------------------


def test_wrong_or_missing_secret_is_refused_and_changes_nothing(start_nimbus, states,
                                                                package) -> None:
    nimbus = start_nimbus(**{"cluster.secret": "s3cret"})
    view = states(**{"cluster.secret": "s3cret"})
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000]})
    nimbus.wait_leading()
    with pytest.raises(AuthError, match="wrong cluster secret"):
        nimbus.client(secret="wrong").submit(package)
    with pytest.raises(AuthError, match="missing cluster secret"):
        nimbus.client(secret=None).list()
    assert view.topologies() == {}

    path = "/api/v1/topologies"
    stale = auth_header("s3cret", "GET", path, b"", now=time.time() - 600)
    status, reply = raw_request(nimbus.endpoint, "GET", path, headers={AUTH_HEADER: stale})
    assert status == 401 and "check the clocks" in reply["error"]
    signed_other = auth_header("s3cret", "GET", "/api/v1/nimbus", b"")
    status, _ = raw_request(nimbus.endpoint, "GET", path, headers={AUTH_HEADER: signed_other})
    assert status == 401
    # a captured request cannot be sent again
    once = auth_header("s3cret", "GET", path, b"")
    status, _ = raw_request(nimbus.endpoint, "GET", path, headers={AUTH_HEADER: once})
    assert status == 200
    status, reply = raw_request(nimbus.endpoint, "GET", path, headers={AUTH_HEADER: once})
    assert status == 401 and "replayed" in reply["error"]

    assert nimbus.client().submit(package)["status"] == "ACTIVE"


def test_oversized_package_is_refused_with_413(start_nimbus, package) -> None:
    nimbus = start_nimbus(**{"nimbus.code.max.bytes": len(package) + 100})
    nimbus.wait_leading()
    with pytest.raises(TooLarge, match=rf"of {len(package) + 5000} bytes .* {len(package) + 100}"):
        nimbus.client().submit(package + b"\0" * 5000)
    assert nimbus.client().list() == []


def test_malformed_requests_get_4xx_json_and_nimbus_keeps_serving(start_nimbus,
                                                                  package) -> None:
    nimbus = start_nimbus()
    nimbus.wait_leading()
    client = nimbus.client()
    client.submit(package)
    ep = nimbus.endpoint
    status, reply = raw_request(ep, "POST", "/api/v1/topologies/numbers/kill", b"{not json")
    assert status == 400 and "malformed JSON" in reply["error"]
    status, reply = raw_request(ep, "POST", "/api/v1/topologies/numbers/kill", b"[1]")
    assert status == 400
    status, reply = raw_request(ep, "POST", "/api/v1/topologies/numbers/kill", b'{"wait": "x"}')
    assert status == 400 and "wait must be a number" in reply["error"]
    status, reply = raw_request(ep, "POST", "/api/v1/topologies", b"not a pickle")
    assert status == 400 and "cannot unpickle" in reply["error"]
    status, reply = raw_request(ep, "POST", "/api/v1/topologies",
                                cloudpickle.dumps({"topology": 42}))
    assert status == 400
    status, reply = raw_request(ep, "POST", "/api/v1/topologies?overrides=%7Bx", package)
    assert status == 400 and "overrides" in reply["error"]
    status, reply = raw_request(ep, "GET", "/api/v1/elsewhere")
    assert status == 404
    status, reply = raw_request(ep, "GET", "/api/v1/topologies/numbers/explode")
    assert status == 404
    status, reply = raw_request(ep, "GET", "/api/v1/topologies/numbers/kill")
    assert status == 405
    with pytest.raises(BadRequest, match="unknown config key 'nimbus.prot'"):
        client.submit(package, name="other", overrides={"nimbus.prot": 1})
    with pytest.raises(BadRequest, match="topology name 'bad name!' is not valid"):
        client.submit(package, name="bad name!")
    assert [t["status"] for t in client.list()] == ["ACTIVE"]


# --- failure detection --------------------------------------------------------------------------


class Heartbeats:
    """Writes a changing heartbeat for some workers, like supervisors do, until stopped."""

    def __init__(self, state: ZkClusterState, topology_id: str, workers: set[str]) -> None:
        self.state, self.topology_id, self.workers = state, topology_id, set(workers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(0.1):
            n += 1
            for key in sorted(self.workers):
                self.state.worker_heartbeat(self.topology_id, key, {"time": n, "version": 1})

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def test_a_worker_whose_heartbeat_stops_has_its_tasks_reassigned(start_nimbus, states,
                                                                 package) -> None:
    nimbus = start_nimbus(**{"nimbus.worker.timeout.secs": 1.0, "nimbus.task.launch.secs": 1.5})
    view = states()
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    view.register_supervisor("sup-b", {"host": "hb", "ports": [7000, 7001]})
    nimbus.wait_leading()
    tid = nimbus.client().submit(package)["id"]
    before = slots(view.assignment(tid))
    keys = {f"{'ha' if sid == 'sup-a' else 'hb'}:{port}" for sid, port in before}
    beats = Heartbeats(view, tid, keys)
    try:
        time.sleep(2.0)  # past the launch grace: everyone heartbeats, nothing moves
        assert view.assignment(tid)["version"] == 1
        beats.workers.discard("hb:7000")  # sup-b's worker goes silent
        after = wait_for(lambda: (a := view.assignment(tid)) and a["version"] > 1 and a,
                         what="reassignment")
    finally:
        beats.stop()
    moved = slots(after)
    assert ("sup-b", 7000) not in moved
    assert moved[("sup-a", 7000)] == before[("sup-a", 7000)]  # the healthy worker stays
    new_slot = next(s for s in moved if s != ("sup-a", 7000))
    assert moved[new_slot] == before[("sup-b", 7000)]  # the dead one's tasks move intact
    assert "hb:7000" not in view.worker_heartbeats(tid)


def test_a_lost_supervisor_has_its_work_moved(start_nimbus, states, package) -> None:
    nimbus = start_nimbus()
    sup_a, sup_b, view = states(), states(), states()
    sup_a.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    sup_b.register_supervisor("sup-b", {"host": "hb", "ports": [7000, 7001]})
    nimbus.wait_leading()
    tid = nimbus.client().submit(package)["id"]
    assert {sid for sid, _ in slots(view.assignment(tid))} == {"sup-a", "sup-b"}
    sup_b.close()  # its session ends: the registration goes
    after = wait_for(lambda: (a := view.assignment(tid)) and a["version"] > 1 and a,
                     what="work moved off sup-b")
    assert {sid for sid, _ in slots(after)} == {"sup-a"} and len(after["workers"]) == 2
    assert sorted(t for ts in slots(after).values() for t in ts) == list(range(1, 8))


# --- leader election and failover ---------------------------------------------------------------


def test_standby_redirects_and_takes_over_when_the_leader_stops(start_nimbus, states,
                                                               package) -> None:
    view = states()
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001, 7002]})
    first = start_nimbus()
    first.wait_leading()
    second = start_nimbus()
    wait_for(lambda: len(view.nimbuses()) == 2, what="both registered")
    assert not second.nimbus.leading

    # a standby refuses writes and names the leader
    status, reply = raw_request(second.endpoint, "POST", "/api/v1/topologies/x/deactivate")
    assert status == 503 and reply["leader"] == first.endpoint
    assert "not the leader" in reply["error"]
    both = NimbusClient([second.endpoint, first.endpoint])
    tid = both.submit(package)["id"]  # followed to the leader
    assert both.list()[0]["id"] == tid  # reads are served by the standby
    version = view.assignment(tid)["version"]

    first.stop()
    started = time.monotonic()
    reply = NimbusClient([first.endpoint, second.endpoint]).submit(package, name="numbers2")
    took = time.monotonic() - started
    assert reply["status"] == "ACTIVE" and second.nimbus.leading and took < 10
    assert view.topology(tid) is not None and view.assignment(tid)["version"] == version
    assert {t["name"] for t in both.list()} == {"numbers", "numbers2"}


def test_standby_takes_over_after_the_leader_process_is_killed(zk_config, start_nimbus, states,
                                                               package) -> None:
    """The leader is a real `squall nimbus` process, SIGKILLed: its session must expire."""
    view = states()
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001, 7002]})
    port = free_port()
    cmd = [sys.executable, "-m", "cli.main", "nimbus", "-c",
           f"zookeeper.servers={zk_config['zookeeper.servers'][0]}",
           "-c", f"zookeeper.root={zk_config['zookeeper.root']}",
           "-c", f"nimbus.port={port}", "-c", "nimbus.session.timeout.secs=2",
           "-c", "nimbus.monitor.freq.secs=0.1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "SQUALL_CONF": ""},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        leader = NimbusClient([f"127.0.0.1:{port}"], leader_wait=0)

        def leading() -> bool:
            try:
                return bool(leader.nimbus_info()["leader"])
            except Exception:  # noqa: BLE001 - not up yet
                return False

        wait_for(leading, timeout=15, what="subprocess nimbus leading")
        tid = leader.submit(package)["id"]
        standby = start_nimbus()
        wait_for(lambda: len(view.nimbuses()) == 2, what="standby registered")

        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=5)
        started = time.monotonic()
        client = NimbusClient([f"127.0.0.1:{port}", standby.endpoint], leader_wait=15)
        reply = client.submit(package, name="after-crash")
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
    print(f"failover after SIGKILL: {took:.2f}s")
    assert reply["status"] == "ACTIVE" and took < 10
    assert view.topology(tid)["status"] == "ACTIVE" and view.assignment(tid) is not None
