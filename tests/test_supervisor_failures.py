"""What happens to a topology when a supervisor is restarted or stopped, when one worker hangs,
and when ZooKeeper goes away for longer than every timeout (issue 7, items 8-11): real nimbus
and supervisor processes, real workers, the session's real ZooKeeper.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
from cluster_fixtures import ProcessCluster, wait_for
from cluster_topologies import acked_by_worker, spout_runs, spout_totals, write_topology_file

from cluster.zkserver import ZooKeeperServer
from worker.launcher import free_ports

HOST = "127.0.0.1"


def submit(c: ProcessCluster, tmp_path: Path, name: str, *conf: str) -> dict[str, Any]:
    path = write_topology_file(tmp_path / f"topo-{name}", "endless", name=name)
    args = [a for item in conf for a in ("-c", item)]
    return c.cli_json("submit", path, "--wait", "--timeout", "60", *args)  # type: ignore[no-any-return]


def acked(c: ProcessCluster, tid: str, key: str | None = None) -> int:
    hbs = c.heartbeats(tid)
    return acked_by_worker(hbs).get(key, 0) if key else spout_totals(hbs.values(), "acked")


def wait_acking(c: ProcessCluster, tid: str, key: str | None = None, by: int = 30,
                timeout: float = 30.0) -> None:
    start = acked(c, tid, key)
    wait_for(lambda: acked(c, tid, key) >= start + by, timeout,
             f"acks growing on {key or 'the topology'}")


def placement(c: ProcessCluster, tid: str) -> dict[tuple[str, int], list[int]]:
    a = c.view.assignment(tid) or {}
    return {(w["supervisor"], w["port"]): w["tasks"] for w in a.get("workers", [])}


def holds_for(seconds: float, check: Callable[[], None], every: float = 0.1) -> None:
    """Run `check` (which asserts) every `every` s for `seconds`: nothing may change."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check()
        time.sleep(every)  # watching that nothing happens for a while is the point here
    check()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


# --- item 9: a graceful restart keeps the workers and their work --------------------------------


@pytest.mark.timeout(120)
def test_a_supervisor_restart_keeps_its_workers_and_their_work(make_cluster, tmp_path) -> None:
    # Production timeouts for liveness: a restart has 5 s, as on a real host.
    c = make_cluster(nimbuses=1, supervisors=1, settings={
        "nimbus.supervisor.timeout.secs": 5, "nimbus.worker.timeout.secs": 5})
    ports = free_ports(2)
    victim = c.start_supervisor(ports, False)  # as on real hosts: workers outlive it
    c.wait_registered()
    tid = submit(c, tmp_path, "wc-restart")["id"]
    sid = c.supervisor_id(victim)
    assert sid in {s for s, _ in placement(c, tid)}
    version = c.view.assignment(tid)["version"]
    pids = c.worker_pids()
    (key,) = [f"{HOST}:{p}" for s, p in placement(c, tid) if s == sid]
    wait_acking(c, tid, key)

    victim.terminate()  # systemctl restart: SIGTERM, then start again
    assert victim.wait(15), "the supervisor did not stop on SIGTERM"
    again = c.start_supervisor(ports, False)
    wait_for(lambda: c.view.supervisors().get(sid, {}).get("pid") == again.pid, 20,
             "the same supervisor re-registered")
    wait_acking(c, tid, key, timeout=20)  # its adopted worker reports through it

    def nothing_moved() -> None:
        assert c.view.assignment(tid)["version"] == version, "nimbus reassigned work"
        assert c.worker_pids() == pids, "a worker was restarted"

    holds_for(6, nothing_moved)  # longer than every liveness timeout
    wait_acking(c, tid, key)
    assert "taking it for lost" not in c.nimbuses[0].log_tail(400)


# --- item 11: one hung worker costs only its own slot -------------------------------------------


@pytest.mark.timeout(90)
def test_one_hung_worker_does_not_make_its_supervisor_lost(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=2, slots=2)
    tid = submit(c, tmp_path, "wc-hung")["id"]
    before = placement(c, tid)
    victim, other = c.supervisors
    victim_id, other_id = c.supervisor_id(victim), c.supervisor_id(other)
    assert sorted(s for s, _ in before) == sorted([victim_id, other_id])  # one worker each
    (hung_slot,) = [slot for slot in before if slot[0] == victim_id]
    (other_slot,) = [slot for slot in before if slot[0] == other_id]
    other_pid = c.worker_pids(other)[other_slot[1]]
    hung_pid = c.worker_pids(victim)[hung_slot[1]]
    wait_acking(c, tid)

    os.kill(hung_pid, signal.SIGSTOP)  # alive, silent
    try:
        after = wait_for(lambda: (p := placement(c, tid)) and hung_slot not in p and p, 20,
                         "the hung worker's tasks reassigned")
    finally:
        if alive(hung_pid):
            os.kill(hung_pid, signal.SIGCONT)
    # Its supervisor kept heartbeating, so it was not taken for lost: the least loaded
    # supervisor, it gets the tasks back on its other slot; the other worker never moved.
    (moved,) = [slot for slot in after if slot != other_slot]
    assert moved[0] == victim_id and after[moved] == before[hung_slot]
    assert after[other_slot] == before[other_slot]
    assert c.worker_pids(other)[other_slot[1]] == other_pid
    wait_acking(c, tid, f"{HOST}:{moved[1]}")
    assert "taking it for lost" not in c.nimbuses[0].log_tail(400)


# --- item 10: a ZooKeeper outage restarts nothing -----------------------------------------------


@pytest.mark.timeout(150)
def test_a_zookeeper_outage_longer_than_the_timeouts_restarts_nothing(
        make_cluster, zookeeper: ZooKeeperServer, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    tid = submit(c, tmp_path, "wc-outage")["id"]
    wait_acking(c, tid)
    pids = c.worker_pids()
    version = c.view.assignment(tid)["version"]
    assert len(pids) == 2

    zookeeper.stop()
    try:
        # Longer than nimbus.worker.timeout (2), nimbus.supervisor.timeout (2) and the
        # sessions' timeouts (2, 4): everyone is cut off from everyone for that long.
        holds_for(5, lambda: None)
    finally:
        zookeeper.start()
    wait_acking(c, tid, timeout=40)

    def nothing_moved() -> None:
        assert c.worker_pids() == pids, "a worker was restarted"
        assert c.view.assignment(tid)["version"] == version, "nimbus reassigned work"

    holds_for(4, nothing_moved)  # twice the liveness timeouts, from when acks flow again
    assert all(d.alive() for d in c.nimbuses + c.supervisors)
    assert "taking it for lost" not in c.nimbuses[0].log_tail(400)


# --- item 8: what orphaned workers do -----------

@pytest.mark.timeout(120)
def test_orphaned_workers_pause_their_spouts_then_exit(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=1, settings={"worker.orphan.timeout.secs": 6})
    victim = c.start_supervisor(free_ports(2), False)
    c.wait_registered()
    out = tmp_path / "runs"
    out.mkdir()
    tid = submit(c, tmp_path, "wc-orphans", f"topology.wc.progress.dir={out}")["id"]
    victim_id = c.supervisor_id(victim)
    (orphan_pid,) = c.worker_pids(victim).values()
    wait_for(lambda: any(pid == orphan_pid for _, pid in spout_runs(out)), 20,
             "the victim's spout emitting")
    (task,) = [t for t, pid in spout_runs(out) if pid == orphan_pid]

    stopped_at = time.time()
    victim.terminate()  # stopped for good (systemctl stop)
    assert victim.wait(15)
    wait_for(lambda: all(s != victim_id for s, _ in placement(c, tid)), 20,
             "nimbus moving the work off the stopped supervisor")
    moved_at = time.time()
    wait_for(lambda: any(t == task and pid != orphan_pid for t, pid in spout_runs(out)), 30,
             "the spout task running elsewhere")
    wait_for(lambda: not alive(orphan_pid), 12, "the orphan exiting")  # orphan timeout 6 s
    exited_at = time.time()

    runs = spout_runs(out)
    orphan_last = max(runs[(task, orphan_pid)])
    successor_first = min(min(ts) for (t, pid), ts in runs.items()
                          if t == task and pid != orphan_pid)
    print(f"supervisor SIGTERM -> orphan's spout paused {orphan_last - stopped_at:.2f} s, "
          f"work moved {moved_at - stopped_at:.2f} s, orphan exited "
          f"{exited_at - stopped_at:.2f} s")
    assert orphan_last < successor_first, "the same spout task ran in two places"
    assert successor_first >= stopped_at
