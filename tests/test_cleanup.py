"""No worker process outlives its LocalCluster: normal exit, an exception, a SIGKILLed parent."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import psutil
import pytest

from cluster.processes import stop_processes
from topology import LocalCluster, Spout, Topology, TopologyBuilder
from topology.testing import complete_topology

pytestmark = pytest.mark.timeout(60)

TESTS = Path(__file__).resolve().parent
FAST = {"worker.heartbeat.frequency.secs": 0.05}  # wait_running sees the workers sooner


class Quiet(Spout):
    outputs = ["n"]


def quiet_topology(name: str = "cleanup") -> Topology:
    b = TopologyBuilder(name)
    b.set_spout("quiet", Quiet(), parallelism=2)
    return b.build(config={"topology.workers": 2})


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: Iterable[int], timeout: float = 10.0) -> list[int]:
    """Poll until none of `pids` runs; return those still running at the deadline."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def kill_leftovers(pids: Iterable[int]) -> None:
    procs = []
    for pid in pids:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    stop_processes(procs, 0, "leftover worker")


def port_is_free(port: int) -> bool:
    """No process holds the port (connections it closed may linger in TIME_WAIT, which a
    server binding with SO_REUSEADDR, as ZeroMQ does, does not mind)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def start(cluster: LocalCluster, name: str) -> dict[int, int]:
    cluster.submit(quiet_topology(name))
    cluster.wait_running(name, 30)
    pids = cluster.worker_pids(name)
    assert len(pids) == 2 and all(alive(p) for p in pids.values())
    return pids


def test_workers_stop_when_the_cluster_exits() -> None:
    pids: dict[int, int] = {}
    try:
        with LocalCluster(FAST) as cluster:
            pids = start(cluster, "normal-exit")
        assert [p for p in pids.values() if alive(p)] == []  # stopped before __exit__ returned
        assert all(port_is_free(port) for port in pids)
    finally:
        kill_leftovers(pids.values())


def test_workers_stop_when_the_block_raises() -> None:
    pids: dict[int, int] = {}
    cluster = LocalCluster(FAST)
    try:
        with pytest.raises(RuntimeError, match="user code failed"):
            with cluster:
                pids = start(cluster, "raising")
                raise RuntimeError("user code failed")
        assert [p for p in pids.values() if alive(p)] == []
        assert all(port_is_free(port) for port in pids)
        assert os.path.isdir(cluster.logs_dir)  # a failed run keeps its logs
    finally:
        kill_leftovers(pids.values())
        shutil.rmtree(cluster.dir, ignore_errors=True)


def test_kill_stops_only_that_topology() -> None:
    pids_a: dict[int, int] = {}
    pids_b: dict[int, int] = {}
    try:
        with LocalCluster(FAST) as cluster:
            pids_a = start(cluster, "first")
            pids_b = start(cluster, "second")
            cluster.kill("first")
            assert [p for p in pids_a.values() if alive(p)] == []
            assert all(alive(p) for p in pids_b.values())
            assert cluster.topologies() == ["second"]
        assert wait_gone(pids_b.values(), 0) == []
    finally:
        kill_leftovers([*pids_a.values(), *pids_b.values()])


def test_complete_topology_leaves_no_worker() -> None:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    complete_topology(quiet_topology("complete"), mock_sources={"quiet": [[1], [2]]},
                      timeout=30)
    after = {p.pid for p in me.children(recursive=True) if alive(p.pid)}
    assert after - before == set()


CHILD = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {tests!r})
    from test_cleanup import quiet_topology
    from topology import LocalCluster

    cluster = LocalCluster({{"worker.heartbeat.frequency.secs": 0.05}})
    cluster.submit(quiet_topology("orphans"))
    cluster.wait_running("orphans", 30)
    print(json.dumps(list(cluster.worker_pids("orphans").values())), flush=True)
    while True:
        time.sleep(1)  # wait to be killed
""")


def test_workers_stop_when_the_parent_is_killed(tmp_path: Path) -> None:
    # The killed cluster cannot remove its directory: it goes under tmp_path, not /tmp.
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=str(TESTS))],
                             stdout=subprocess.PIPE, text=True, cwd=TESTS.parent,
                             env={**os.environ, "TMPDIR": str(tmp_path)})
    pids: list[int] = []
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # the child prints once its workers run
        pids = json.loads(line)
        assert len(pids) == 2 and all(alive(p) for p in pids)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert wait_gone(pids, 10.0) == []
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        kill_leftovers(pids)
