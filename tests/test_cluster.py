"""The whole cluster as processes: `squall nimbus`, `squall supervisor`, workers, the CLI, and
the session's real ZooKeeper. Exact word counts, every CLI action, and the failures the
cluster must survive: a killed worker, a dead supervisor host, the leader nimbus, ZooKeeper
restarting. Progress is read from the worker heartbeats in ZooKeeper, never from sleeping.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from cluster_fixtures import ProcessCluster, wait_for
from cluster_topologies import (
    acked_by_worker,
    expected_counts,
    read_counts,
    spout_totals,
    write_topology_file,
)

HOST = "127.0.0.1"


# --- helpers ------------------------------------------------------------------------------------


def submit(c: ProcessCluster, tmp_path: Path, kind: str, name: str, *conf: str,
           **kwargs: Any) -> dict[str, Any]:
    path = write_topology_file(tmp_path / f"topo-{name}", kind, name=name, **kwargs)
    args = [a for item in conf for a in ("-c", item)]
    return c.cli_json("submit", path, "--wait", "--timeout", "60", *args)  # type: ignore[no-any-return]


def total_acked(c: ProcessCluster, tid: str) -> int:
    return spout_totals(c.heartbeats(tid).values(), "acked")


def wait_acked_growing(c: ProcessCluster, tid: str, by: int = 50, timeout: float = 20.0,
                       what: str = "acked counts growing") -> None:
    start = total_acked(c, tid)
    wait_for(lambda: total_acked(c, tid) >= start + by, timeout, what)


def worker_supervisors(c: ProcessCluster, tid: str) -> list[str]:
    return sorted(w["supervisor"] for w in (c.view.assignment(tid) or {}).get("workers", []))


def wait_heartbeat_changes(c: ProcessCluster, tid: str, n: int = 3) -> None:
    """Wait until every current worker has written `n` newer heartbeats."""
    first = {k: hb["time"] for k, hb in c.current_heartbeats(tid).items()}
    for _ in range(n):
        seen = {k: hb["time"] for k, hb in c.current_heartbeats(tid).items()}
        wait_for(lambda seen=seen: all(
            c.current_heartbeats(tid).get(k, {}).get("time", t) > t for k, t in seen.items()),
            10, "new heartbeats")
    assert first


# --- healthy cluster ----------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_exact_word_count_spread_over_both_supervisors(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    out = tmp_path / "counts"
    out.mkdir()
    n = 300
    st = submit(c, tmp_path, "finite", "wc-exact",
                f"topology.wc.sentences={n}", f"topology.wc.output.dir={out}")
    tid = st["id"]
    assert st["status"] == "ACTIVE" and len(st["workers"]) == 2
    assert sorted({w["supervisor"] for w in st["workers"]}) == sorted(c.view.supervisors())

    wait_for(lambda: total_acked(c, tid) == n, 40, f"all {n} sentences acked")
    expected = expected_counts(n)
    wait_for(lambda: read_counts(out) == expected, 10, "count files equal to the expected")
    hbs = c.heartbeats(tid).values()
    assert spout_totals(hbs, "failed") == 0
    assert spout_totals(hbs, "emitted") == n  # no replay, so no duplicates

    listed = c.cli_json("list")
    assert [(t["name"], t["status"], t["assigned_workers"]) for t in listed] == \
        [("wc-exact", "ACTIVE", 2)]
    text = c.cli("status", "wc-exact").stdout
    assert "wc-exact" in text and "ACTIVE" in text and "running v" in text
    stats = c.cli_json("status", "wc-exact")["stats"]
    wait_for(lambda: c.cli_json("status", "wc-exact")["stats"]["sentences"]["acked"] == n, 10,
             "status to count every sentence acked")
    assert stats["split"]["executed"] <= n and stats["sentences"]["failed"] == 0
    assert "acked" in text and "complete latency" in text


@pytest.mark.timeout(120)
def test_cli_actions_change_what_they_should(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    st = submit(c, tmp_path, "endless", "wc-life")
    tid = st["id"]
    wait_acked_growing(c, tid)

    # deactivate: spouts stop emitting
    assert c.cli_json("deactivate", "wc-life")["status"] == "INACTIVE"
    wait_for(lambda: (hbs := c.current_heartbeats(tid)) and len(hbs) == 2 and
             not any(hb["active"] for hb in hbs.values()), 10, "workers inactive")
    emitted = spout_totals(c.heartbeats(tid).values(), "emitted")
    wait_heartbeat_changes(c, tid, 3)
    assert spout_totals(c.heartbeats(tid).values(), "emitted") == emitted
    assert c.cli_json("status", "wc-life")["status"] == "INACTIVE"

    # activate: they start again
    assert c.cli_json("activate", "wc-life")["status"] == "ACTIVE"
    wait_for(lambda: spout_totals(c.heartbeats(tid).values(), "emitted") > emitted + 50, 15,
             "emitting again")

    # rebalance -n 1: one worker
    c.cli("rebalance", "wc-life", "-n", "1", "--wait", "0")
    wait_for(lambda: len((c.view.assignment(tid) or {}).get("workers", [])) == 1, 15,
             "one worker")
    st = c.cli_json("status", "wc-life")
    assert st["num_workers"] == 1 and st["status"] == "ACTIVE"
    wait_for(lambda: len(c.current_heartbeats(tid)) == 1, 20, "the one worker running")
    wait_acked_growing(c, tid, what="acked growing on one worker")
    wait_for(lambda: len(c.worker_pids()) == 1, 15, "the other worker stopped")

    # rebalance -e split=3: one more split task
    tasks = st["num_tasks"]
    c.cli("rebalance", "wc-life", "-e", "split=3", "--wait", "0")
    wait_for(lambda: c.cli_json("status", "wc-life")["num_tasks"] == tasks + 1, 15,
             "a new split task")
    st = c.cli_json("status", "wc-life")
    assert st["components"]["split"]["parallelism"] == 3
    wait_for(lambda: {t for hb in c.current_heartbeats(tid).values() for t in hb["tasks"]}
             == {int(t) for t in c.view.assignment(tid)["tasks"]}, 20,
             "every task running")
    split_tasks = {e["task"] for hb in c.current_heartbeats(tid).values()
                   for e in hb["executors"] if e["component"] == "split"}
    assert len(split_tasks) == 3
    wait_acked_growing(c, tid, what="acked growing after rebalance -e")

    # kill: workers and state go
    assert c.cli_json("kill", "wc-life", "--wait", "0")["status"] == "KILLED"
    wait_for(lambda: c.view.topology(tid) is None and c.view.assignment(tid) is None, 15,
             "topology removed")
    wait_for(lambda: not c.worker_pids(), 15, "workers stopped")
    assert c.cli_json("list") == []
    assert c.view.get_code(tid) is None and not c.view.errors(tid)
    assert c.cli("status", "wc-life", check=False).returncode == 1


@pytest.mark.timeout(60)
def test_killed_topology_leaves_no_heartbeats_behind(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    tid = submit(c, tmp_path, "endless", "wc-gone")["id"]
    c.cli("kill", "wc-gone", "--wait", "0")
    wait_for(lambda: c.view.topology(tid) is None and not c.worker_pids(), 15, "killed")
    wait_for(lambda: not c.view.worker_heartbeats(tid), 5, "no heartbeats left")


# --- failures -----------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_killed_worker_is_restarted_and_flows_again(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    tid = submit(c, tmp_path, "endless", "wc-restart")["id"]
    wait_acked_growing(c, tid)
    port, pid = sorted(c.worker_pids().items())[0]
    key = f"{HOST}:{port}"
    wait_for(lambda: acked_by_worker(c.heartbeats(tid)).get(key, 0) > 0, 10,
             "the victim acking")
    killed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)

    new_pid = wait_for(lambda: (p := c.worker_pids().get(port)) != pid and p, 10,
                       "a new worker on the port")
    wait_for(lambda: c.heartbeats(tid).get(key, {}).get("pid") == new_pid and
             acked_by_worker(c.heartbeats(tid)).get(key, 0) > 10, 15,
             "the restarted worker acking")
    flowing = time.monotonic() - killed_at
    print(f"worker kill -9 -> restarted worker acking: {flowing:.2f} s")
    assert flowing < 10
    assert psutil.Process(new_pid).is_running()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.timeout(90)
def test_dead_supervisor_host_work_moves_to_the_other(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    tid = submit(c, tmp_path, "endless", "wc-host")["id"]
    wait_acked_growing(c, tid)
    victim, survivor = c.supervisors
    victim_id, survivor_id = c.supervisor_id(victim), c.supervisor_id(survivor)
    assert worker_supervisors(c, tid) == sorted([victim_id, survivor_id])
    victim_workers = c.worker_pids(victim)
    assert victim_workers

    died_at = time.monotonic()
    victim.kill()  # the whole host: the supervisor and its workers
    for pid in victim_workers.values():
        os.kill(pid, signal.SIGKILL)

    wait_for(lambda: worker_supervisors(c, tid) == [survivor_id] * 2, 20,
             "work moved to the survivor")
    moved = time.monotonic() - died_at
    wait_for(lambda: len(c.current_heartbeats(tid)) == 2, 20, "both workers running")
    ports = sorted(w["port"] for w in c.view.assignment(tid)["workers"])
    wait_for(lambda: all(acked_by_worker(c.current_heartbeats(tid)).get(f"{HOST}:{p}", 0) > 10
                         for p in ports), 20, "both workers acking")
    flowing = time.monotonic() - died_at
    print(f"supervisor kill -9 -> reassigned {moved:.2f} s, acking {flowing:.2f} s")
    # nimbus.worker.timeout.secs is 2 here; the supervisor's ZooKeeper session lasts 4 s
    assert moved < 4


@pytest.mark.timeout(120)
def test_standby_nimbus_takes_over_and_accepts_submissions(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=2, supervisors=2, slots=3)
    tid = submit(c, tmp_path, "endless", "wc-keep")["id"]
    wait_acked_growing(c, tid)
    leader = c.leader_daemon()
    old_leader = c.view.leader()
    worker_pids = c.worker_pids()

    killed_at = time.monotonic()
    leader.kill()
    wait_acked_growing(c, tid, what="topology running without a leader")
    wait_for(lambda: c.view.leader() not in (None, old_leader), 15, "a new leader")
    st = submit(c, tmp_path, "finite", "wc-after", "topology.wc.sentences=20")
    accepted = time.monotonic() - killed_at
    print(f"leader nimbus SIGKILL -> standby accepted a submission: {accepted:.2f} s")
    assert st["status"] == "ACTIVE"
    wait_for(lambda: total_acked(c, st["id"]) == 20, 30, "the new topology done")
    assert c.worker_pids().items() >= worker_pids.items()  # the old workers never restarted
    wait_acked_growing(c, tid, what="the first topology still running")
    names = {t["name"]: t["status"] for t in c.cli_json("list")}
    assert names == {"wc-keep": "ACTIVE", "wc-after": "ACTIVE"}


@pytest.mark.timeout(120)
def test_zookeeper_restart_does_not_stop_a_topology(make_cluster, zookeeper, tmp_path) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    tid = submit(c, tmp_path, "endless", "wc-zk")["id"]
    wait_acked_growing(c, tid)
    pids = c.worker_pids()
    assert len(pids) == 2

    zookeeper.restart()
    wait_acked_growing(c, tid, timeout=30, what="acked growing after the restart")
    assert c.worker_pids() == pids  # nobody restarted a worker
    assert all(d.alive() for d in c.nimbuses + c.supervisors)

    assert c.cli_json("deactivate", "wc-zk")["status"] == "INACTIVE"
    assert c.cli_json("activate", "wc-zk")["status"] == "ACTIVE"
    st = submit(c, tmp_path, "finite", "wc-zk-after", "topology.wc.sentences=20",
                workers=1)
    wait_for(lambda: total_acked(c, st["id"]) == 20, 30, "a topology submitted after")


@pytest.mark.timeout(90)
def test_nothing_is_left_running_at_the_end(make_cluster, tmp_path) -> None:
    c = make_cluster(nimbuses=2, supervisors=2)
    submit(c, tmp_path, "endless", "wc-end")
    daemons = [d.pid for d in c.nimbuses + c.supervisors]
    workers = list(c.worker_pids().values())
    assert len(workers) == 2 and all(psutil.pid_exists(p) for p in daemons + workers)

    killed = c.stop(remove=False)
    assert killed == [], f"stop() had to kill strays: {killed}"
    assert c.leftovers() == []
    for pid in daemons + workers:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == \
            psutil.STATUS_ZOMBIE, f"pid {pid} still running"
