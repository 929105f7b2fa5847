"""The same behaviour tests against both cluster-state implementations, plus ZooKeeper-only
tests (ACLs, server restart, session loss)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from kazoo.client import KazooClient
from polling import wait_for

from cluster.config import Config
from cluster.memstore import MemoryBackend, MemoryClusterState
from cluster.paths import CODE_CHUNK_BYTES, MANIFEST, Paths
from cluster.state import ClusterState, StateError, open_state
from cluster.zkserver import ZooKeeperServer
from cluster.zkstore import ZkClusterState

pytestmark = pytest.mark.timeout(60)

Factory = Callable[[], ClusterState]


@pytest.fixture(params=["memory", "zookeeper"])
def new_state(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """A factory of clients that all see the same state (one backend, or one ZK root)."""
    clients: list[ClusterState] = []
    if request.param == "memory":
        backend = MemoryBackend()

        def make() -> ClusterState:
            clients.append(MemoryClusterState(backend))
            return clients[-1]
    else:
        config = request.getfixturevalue("zk_config")

        def make() -> ClusterState:
            clients.append(ZkClusterState(config))
            return clients[-1]

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def state(new_state: Factory) -> ClusterState:
    return new_state()


# --- daemons ------------------------------------------------------------------------------------


def test_supervisors_register_update_and_list(state: ClusterState) -> None:
    assert state.supervisors() == {}
    state.register_supervisor("sup-1", {"host": "h1", "ports": [6700, 6701]})
    state.register_supervisor("sup/2", {"host": "h2", "ports": [6700]})
    state.register_supervisor("sup-1", {"host": "h1", "ports": [6700]})  # update
    assert state.supervisors() == {
        "sup-1": {"host": "h1", "ports": [6700]},
        "sup/2": {"host": "h2", "ports": [6700]},
    }


def test_ephemeral_registrations_vanish_when_client_closes(new_state: Factory) -> None:
    observer, daemon = new_state(), new_state()
    daemon.register_supervisor("sup-1", {"host": "h1"})
    daemon.register_nimbus("nimbus-1", {"host": "h1", "port": 6627})
    assert "sup-1" in observer.supervisors()
    assert observer.nimbuses() == {"nimbus-1": {"host": "h1", "port": 6627}}
    daemon.close()
    wait_for(lambda: observer.supervisors() == {} and observer.nimbuses() == {})


def test_reregistering_from_a_new_client_takes_over(new_state: Factory) -> None:
    old, new, observer = new_state(), new_state(), new_state()
    old.register_supervisor("sup-1", {"gen": 1})
    new.register_supervisor("sup-1", {"gen": 2})  # a restarted supervisor, same id
    old.close()
    time.sleep(0.2)
    assert observer.supervisors() == {"sup-1": {"gen": 2}}


def test_supervisor_heartbeats_outlive_the_session(new_state: Factory) -> None:
    observer, daemon = new_state(), new_state()
    daemon.supervisor_heartbeat("sup-1", {"host": "h1", "seq": 1})
    daemon.supervisor_heartbeat("sup-1", {"host": "h1", "seq": 2})
    daemon.supervisor_heartbeat("sup/2", {"host": "h2", "seq": 1})
    daemon.close()  # a restart: the heartbeat record stays for nimbus to judge
    assert observer.supervisor_heartbeats() == {"sup-1": {"host": "h1", "seq": 2},
                                                "sup/2": {"host": "h2", "seq": 1}}
    observer.remove_supervisor_heartbeat("sup-1")
    observer.remove_supervisor_heartbeat("sup-1")  # idempotent
    assert list(observer.supervisor_heartbeats()) == ["sup/2"]


def test_a_record_over_the_size_limit_is_refused_at_once(state: ClusterState) -> None:
    from cluster.paths import MAX_VALUE_BYTES
    from cluster.state import RecordError

    huge = {"tasks": "x" * MAX_VALUE_BYTES}
    started = time.monotonic()
    for write in (lambda: state.set_assignment("big", huge),
                  lambda: state.set_topology("big", huge),
                  lambda: state.worker_heartbeat("big", "h:1", huge),
                  lambda: state.supervisor_heartbeat("big", huge)):
        with pytest.raises(RecordError, match="bytes"):
            write()
    assert time.monotonic() - started < 5  # refused, not retried until a deadline
    state.set_assignment("small", {"tasks": "x" * 1000})  # the store still works
    assert state.assignment("big") is None and state.assignment("small") is not None


def test_leader_election_hands_over(new_state: Factory) -> None:
    events: list[str] = []
    first, second, observer = new_state(), new_state(), new_state()
    assert observer.leader() is None
    first.run_for_leader("n1", lambda: events.append("n1+"), lambda: events.append("n1-"))
    wait_for(lambda: events == ["n1+"])
    second.run_for_leader("n2", lambda: events.append("n2+"), lambda: events.append("n2-"))
    time.sleep(0.2)
    assert events == ["n1+"]
    assert observer.leader() == "n1"
    first.close()
    wait_for(lambda: events == ["n1+", "n2+"])
    assert observer.leader() == "n2"
    with pytest.raises(StateError):
        second.run_for_leader("n2", lambda: None, lambda: None)


# --- topologies, code, assignments ---------------------------------------------------------------


def test_topology_meta_roundtrip(state: ClusterState) -> None:
    meta = {"name": "wc", "status": "active", "workers": 2, "conf": {"topology.debug": True},
            "tuple": (1, 2), "ints": {1: "a"}}
    state.set_topology("wc-1", meta)
    # Values travel as JSON: tuples become lists and keys strings, in both stores.
    expected = dict(meta, tuple=[1, 2], ints={"1": "a"})
    assert state.topology("wc-1") == expected
    assert state.topologies() == {"wc-1": expected}
    state.set_topology("wc-1", {"status": "inactive"})
    assert state.topology("wc-1") == {"status": "inactive"}
    assert state.topology("missing") is None


def test_non_json_values_are_rejected(state: ClusterState) -> None:
    with pytest.raises(StateError, match="JSON"):
        state.set_topology("t", {"x": object()})


def test_remove_topology_removes_everything(state: ClusterState) -> None:
    state.set_topology("t1", {"name": "a"})
    state.set_topology("t2", {"name": "b"})
    state.set_assignment("t1", {"executors": {}})
    state.put_code("t1", b"code")
    state.worker_heartbeat("t1", "h:6700", {"time": 1})
    state.report_error("t1", "split", {"error": "boom"})
    state.remove_topology("t1")
    state.remove_topology("t1")  # idempotent
    assert state.topologies() == {"t2": {"name": "b"}}
    assert state.assignment("t1") is None
    assert state.get_code("t1") is None
    assert state.worker_heartbeats("t1") == {}
    assert state.errors("t1") == {}


def test_orphaned_records_are_heartbeats_and_errors_without_a_topology(
    state: ClusterState,
) -> None:
    state.set_topology("live", {"name": "a"})
    state.worker_heartbeat("live", "h:6700", {"time": 1})
    state.worker_heartbeat("gone/1", "h:6701", {"time": 1})  # a late heartbeat after a kill
    state.report_error("gone-2", "split", {"error": "boom"})
    assert state.orphaned_records() == {"gone/1", "gone-2"}
    for tid in state.orphaned_records():
        state.remove_topology(tid)
    assert state.orphaned_records() == set()
    assert state.worker_heartbeats("live") == {"h:6700": {"time": 1}}


def test_code_roundtrip_large_and_rewritten(state: ClusterState) -> None:
    assert state.get_code("t") is None
    blob = uuid.uuid4().bytes * (3 * 1024 * 1024 // 16) + b"tail"  # > 3 MB, > 1 MB node limit
    state.put_code("t", blob)
    assert state.get_code("t") == blob
    state.put_code("t", b"small")
    assert state.get_code("t") == b"small"
    state.put_code("t", b"")
    assert state.get_code("t") == b""


def test_assignments(state: ClusterState) -> None:
    a = {"executors": {"[1, 2]": "sup-1:6700"}, "workers": {"sup-1:6700": {"host": "h"}}}
    state.set_assignment("t1", a)
    state.set_assignment("t2", {})
    assert state.assignment("t1") == a
    assert state.assignments() == {"t1": a, "t2": {}}
    state.remove_assignment("t1")
    state.remove_assignment("t1")
    assert state.assignment("t1") is None
    assert state.assignments() == {"t2": {}}


# --- heartbeats, errors -------------------------------------------------------------------------


def test_worker_heartbeats(state: ClusterState) -> None:
    state.worker_heartbeat("t1", "h1:6700", {"time": 1})
    state.worker_heartbeat("t1", "h1:6700", {"time": 2})
    state.worker_heartbeat("t1", "h2:6701", {"time": 3})
    state.worker_heartbeat("t2", "h1:6702", {"time": 4})
    assert state.worker_heartbeats("t1") == {"h1:6700": {"time": 2}, "h2:6701": {"time": 3}}
    state.remove_worker_heartbeat("t1", "h1:6700")
    state.remove_worker_heartbeat("t1", "h1:6700")
    assert state.worker_heartbeats("t1") == {"h2:6701": {"time": 3}}
    assert state.worker_heartbeats("none") == {}


def test_errors_keep_the_last_ten_oldest_first(state: ClusterState) -> None:
    for i in range(13):
        state.report_error("t1", "split", {"n": i})
    state.report_error("t1", "count/x", {"n": 100})
    assert state.errors("t1", "split") == {"split": [{"n": i} for i in range(3, 13)]}
    assert state.errors("t1") == {
        "split": [{"n": i} for i in range(3, 13)],
        "count/x": [{"n": 100}],
    }
    assert state.errors("t1", "nothing") == {}
    assert state.errors("t2") == {}


# --- watch --------------------------------------------------------------------------------------


def test_a_nonce_is_claimed_once_across_clients_until_it_expires(new_state: Factory) -> None:
    first, second = new_state(), new_state()
    assert first.claim_nonce("1700000000.ab", 1000.0, 300)
    assert not first.claim_nonce("1700000000.ab", 1001.0, 300)
    assert not second.claim_nonce("1700000000.ab", 1200.0, 300)  # another nimbus: a replay
    assert second.claim_nonce("1700000000.cd", 1200.0, 300)
    assert second.claim_nonce("1700000000.ab", 1301.0, 300)  # older than the ttl: forgotten


def test_watch_hears_supervisors_topologies_and_assignments(new_state: Factory) -> None:
    watcher, writer = new_state(), new_state()
    calls = threading.Semaphore(0)
    threads: set[str] = set()

    def callback() -> None:
        threads.add(threading.current_thread().name)
        calls.release()

    watcher.watch(callback)
    assert calls.acquire(timeout=5)  # the initial call
    for change in (
        lambda: writer.register_supervisor("s", {"a": 1}),
        lambda: writer.register_supervisor("s", {"a": 2}),
        lambda: writer.set_topology("t", {"x": 1}),
        lambda: writer.set_assignment("t", {"y": 1}),
        lambda: writer.remove_assignment("t"),
    ):
        while calls.acquire(timeout=0.1):  # drain extra calls
            pass
        change()
        assert calls.acquire(timeout=5), "no callback after a change"
    assert threading.current_thread().name not in threads


def test_a_failing_watch_callback_does_not_stop_others(new_state: Factory) -> None:
    watcher, writer = new_state(), new_state()
    seen = threading.Event()

    def bad() -> None:
        raise RuntimeError("listener bug")

    watcher.watch(bad)
    watcher.watch(seen.set)
    assert seen.wait(5)
    seen.clear()
    writer.set_topology("t", {})
    assert seen.wait(5)


def test_context_manager_closes(new_state: Factory) -> None:
    observer = new_state()
    with new_state() as s:
        s.register_supervisor("ctx", {})
    wait_for(lambda: observer.supervisors() == {})


# --- ZooKeeper only -----------------------------------------------------------------------------


def test_open_state_gives_zookeeper(zk_config: Config) -> None:
    with open_state(zk_config) as s:
        assert isinstance(s, ZkClusterState)


def test_code_is_chunked_with_manifest_last(zk_config: Config) -> None:
    with ZkClusterState(zk_config) as s:
        blob = b"x" * (3 * CODE_CHUNK_BYTES + 10)
        s.put_code("t", blob)
        paths = Paths(zk_config["zookeeper.root"])
        children = sorted(s.client.get_children(paths.code("t")))
        assert children == [f"chunk-{i:06d}" for i in range(4)] + [MANIFEST]
        s.client.delete(paths.code_manifest("t"))  # as while a new package is being written
        assert s.get_code("t") is None


def expire_session(zookeeper: ZooKeeperServer, client: KazooClient) -> None:
    """Make ZooKeeper expire `client`'s session, as after a long partition."""
    assert client.client_id is not None
    twin = KazooClient(hosts=zookeeper.connect_string, client_id=client.client_id)
    twin.start(timeout=10)
    twin.stop()
    twin.close()


def test_session_loss_reregisters_and_reelects(zookeeper: ZooKeeperServer,
                                               zk_config: Config) -> None:
    events: list[str] = []
    with ZkClusterState(zk_config) as s, ZkClusterState(zk_config) as observer:
        s.register_supervisor("sup-1", {"host": "h"})
        s.run_for_leader("n1", lambda: events.append("+"), lambda: events.append("-"))
        wait_for(lambda: events == ["+"])
        expire_session(zookeeper, s.client)
        wait_for(lambda: events == ["+", "-", "+"])
        wait_for(lambda: observer.supervisors() == {"sup-1": {"host": "h"}})
        assert observer.leader() == "n1"


@pytest.mark.timeout(120)
def test_zookeeper_restart_keeps_state_and_registrations(zookeeper: ZooKeeperServer,
                                                         zk_config: Config) -> None:
    with ZkClusterState(zk_config) as s:
        s.register_supervisor("sup-1", {"host": "h"})
        s.set_topology("t", {"status": "active"})
        zookeeper.restart()
        wait_for(lambda: s.client.connected, timeout=30)
        s.set_assignment("t", {"a": 1})  # writes work again
        with ZkClusterState(zk_config) as observer:
            wait_for(lambda: observer.supervisors() == {"sup-1": {"host": "h"}})
            assert observer.topology("t") == {"status": "active"}
            assert observer.assignment("t") == {"a": 1}


def test_records_that_are_not_objects_are_skipped_not_fatal(zk_config: Config) -> None:
    with ZkClusterState(zk_config) as s:
        s.set_assignment("good", {"topology_id": "good"})
        s.set_topology("good", {"id": "good"})
        paths = s.paths
        for path, data in ((paths.assignment("list-1"), b"[1, 2]"),
                           (paths.assignment("junk-1"), b"{not json"),
                           (paths.topology("junk-1"), b"\xff\xfe"),
                           (paths.heartbeat("good", "h:1"), b"null"),
                           (paths.supervisor_heartbeat("s"), b"7")):
            s.client.create(path, data, makepath=True)
        assert s.assignments() == {"good": {"topology_id": "good"}}
        assert s.topologies() == {"good": {"id": "good"}}
        assert s.assignment("junk-1") is None and s.topology("junk-1") is None
        assert s.worker_heartbeats("good") == {} and s.supervisor_heartbeats() == {}
