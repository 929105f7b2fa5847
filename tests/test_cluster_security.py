"""A cluster with a secret against a writable ZooKeeper and a curious log reader (issue 7,
items 1 and 2): real nimbus, supervisor and ui processes, the session's real ZooKeeper."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import cluster_topologies
import pytest
from cluster_fixtures import ROOT, ProcessCluster, wait_for
from cluster_topologies import finite, read_counts, spout_totals, write_topology_file
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from cli.daemons import Daemon
from cluster.assignment import Assignment
from cluster.config import Config
from cluster.zkserver import ZooKeeperServer, free_port
from cluster.zkstore import ZkClusterState
from nimbus import submission as sub
from nimbus.lifecycle import ACTIVE, TopologyStatus
from worker.launcher import free_ports

SUPERVISOR_ID = "target"


@pytest.fixture
def cluster(zookeeper: ZooKeeperServer, request: pytest.FixtureRequest
            ) -> Iterator[ProcessCluster]:
    """A cluster not started yet (the test prepares its ZooKeeper root first)."""
    c = ProcessCluster(zookeeper, log_level=getattr(request, "param", "INFO"))
    failed_before = request.session.testsfailed
    try:
        yield c
    finally:
        if request.session.testsfailed > failed_before:
            print(f"\n===== cluster logs ({c.dir}) =====\n{c.logs()}")
        c.stop(remove=request.session.testsfailed == failed_before)


def holds_for(seconds: float, check) -> None:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check()
        time.sleep(0.1)  # watching that nothing happens for a while is the point here
    check()


def stranger_writes_a_topology(config: Config, ports: list[int], out: Path) -> None:
    """What a client with no credentials can do to a root that was made with open ACLs:
    write a topology record, its (unsigned) code and an assignment on our supervisor."""
    topology = finite(name="evil", workers=1)
    cloudpickle.register_pickle_by_value(cluster_topologies)
    try:
        topology, conf = sub.prepare(topology, None, {"topology.wc.output.dir": str(out),
                                                      "topology.wc.sentences": 20}, config)
        code = bytes(cloudpickle.dumps({"topology": topology, "conf": conf}))
    finally:
        cloudpickle.unregister_pickle_by_value(cluster_topologies)
    open_config = config.with_overrides({"cluster.secret": None})
    with ZkClusterState(open_config) as stranger:  # creates the root: open to anyone
        meta = sub.make_meta("evil-1", topology, conf, TopologyStatus(ACTIVE), time.time(),
                             "stranger", 1)
        stranger.put_code("evil-1", code)
        stranger.set_topology("evil-1", meta)
        tasks = sorted(t for c in meta["components"].values() for t in c["tasks"])
        tasks += meta.get("acker_tasks", [])
        a = Assignment("evil-1", {(SUPERVISOR_ID, ports[0]): tasks},
                       {SUPERVISOR_ID: "127.0.0.1"}).to_dict()
        stranger.set_assignment("evil-1", {**a, "version": 1, "code_version": 1,
                                           "active": True})


@pytest.mark.timeout(120)
def test_code_a_stranger_wrote_into_an_open_zookeeper_never_runs(cluster: ProcessCluster,
                                                                tmp_path: Path) -> None:
    c = cluster
    ports = free_ports(2)
    home = c.dir / f"supervisor-127.0.0.1-{ports[0]}"  # the stranger knows its id
    home.mkdir()
    (home / "id").write_text(f"{SUPERVISOR_ID}\n")
    evil_out = tmp_path / "evil"
    evil_out.mkdir()
    stranger_writes_a_topology(c.config, ports, evil_out)

    c.start_nimbus()
    c.start_supervisor(ports, True)
    c.wait_registered()
    refused = wait_for(lambda: c.view.errors("evil-1").get("__supervisor"), 20,
                       "the refusal reported as the topology's error")
    assert "not signed" in refused[0]["error"]

    def never_ran() -> None:
        assert c.worker_pids() == {}, "a worker runs the stranger's code"
        assert read_counts(evil_out) == {}

    holds_for(3, never_ran)  # many refreshes: refused once, never retried in a loop
    log = c.supervisors[0].log_path.read_text()
    assert log.count("not signed by nimbus") == 1, log[-2000:]
    assert len(c.view.errors("evil-1")["__supervisor"]) == 1

    # The daemons protected the tree when they started: the stranger can do no more.
    stranger = KazooClient(hosts=c.zookeeper.connect_string)
    stranger.start(timeout=10)
    try:
        with pytest.raises(NoAuthError):
            stranger.set(f"{c.values['zookeeper.root']}/topologies/evil-1", b"{}")
        with pytest.raises(NoAuthError):
            stranger.create(f"{c.values['zookeeper.root']}/topologies/evil-2", b"{}")
    finally:
        stranger.stop()
        stranger.close()

    # What nimbus signed runs on the same supervisor.
    out = tmp_path / "counts"
    out.mkdir()
    path = write_topology_file(tmp_path / "topo", "finite", name="good", workers=1)
    st = c.cli_json("submit", path, "--wait", "--timeout", "60",
                    "-c", "topology.wc.sentences=20", "-c", f"topology.wc.output.dir={out}")
    wait_for(lambda: spout_totals(c.heartbeats(st["id"]).values(), "acked") == 20, 30,
             "the signed topology done")
    wait_for(lambda: read_counts(out), 10, "its counts written")
    assert read_counts(evil_out) == {}
    assert c.view.worker_heartbeats("evil-1") == {}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("cluster", ["DEBUG"], indirect=True)
def test_the_secret_is_in_no_log_at_debug(cluster: ProcessCluster, tmp_path: Path) -> None:
    c = cluster
    c.start(nimbuses=1, supervisors=1)
    ui = Daemon("ui", c._argv("ui", "-c", f"ui.port={free_port()}"), c.dir / "ui.log", cwd=ROOT)
    try:
        path = write_topology_file(tmp_path / "topo", "finite", name="logged", workers=1)
        st = c.cli_json("submit", path, "--wait", "--timeout", "60",
                        "-c", "topology.wc.sentences=20")
        wait_for(lambda: spout_totals(c.heartbeats(st["id"]).values(), "acked") == 20, 30,
                 "the topology done")
        wait_for(lambda: "Auth(" in (c.dir / "ui.log").read_text(), 20, "the ui connected")
    finally:
        ui.stop()
    logs = {p: p.read_text(errors="replace") for p in c.dir.rglob("*.log")}
    daemons = [p for p in logs if p.parent == c.dir]
    assert len(daemons) == 3 and any("worker-" in p.name for p in logs)  # and the workers'
    for p in daemons:
        assert "Auth(" in logs[p], f"{p.name}: kazoo's auth packet is not logged at DEBUG"
    for p, text in logs.items():
        assert c.secret not in text, f"the secret is in {p}"
