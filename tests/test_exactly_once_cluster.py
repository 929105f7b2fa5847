"""Exactly-once state on a real cluster (ZooKeeper, nimbus, two supervisors) with the redis
state provider on a real redis-server: workers killed with kill -9 several times mid-run,
and a whole supervisor host lost mid-run, end with totals exactly equal to the input's and
every txid committed once per committer task."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from cluster_fixtures import ProcessCluster, wait_for
from redis_fixtures import RedisServer, redis_server  # noqa: F401  (a fixture, used by name)
from test_exactly_once import EXAMPLE, Writer, assert_every_txid_once, commits, totals

CONF = ("topology.state.checkpoint.interval.ms=200", "topology.message.timeout.secs=6",
        "topology.state.provider='redis'")


def submit(c: ProcessCluster, redis: RedisServer, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[str, Path, Path]:
    log_file, db = tmp_path / "input.log", tmp_path / "counts.sqlite3"
    log_file.touch()
    monkeypatch.setenv("EXACTLY_ONCE_INPUT", str(log_file))  # read by the CLI loading the file
    monkeypatch.setenv("EXACTLY_ONCE_DB", str(db))
    args = [a for item in (*CONF, f"topology.state.redis.url='{redis.url}'") for a in ("-c", item)]
    reply = c.cli_json("submit", str(EXAMPLE), "--name", name, "--wait", "--timeout", "60", *args)
    return str(reply["id"]), log_file, db


def progress(db: Path, more: int = 500) -> None:
    floor = sum(totals(db).values()) + more
    wait_for(lambda: sum(totals(db).values()) >= floor, 60, "more of the input committed")


def record_on_redis(redis: RedisServer, name: str) -> dict[str, Any]:
    from topology.state.redisstore import RedisProvider

    provider = RedisProvider(name, redis.url)
    try:
        return provider.read_record() or {}
    finally:
        provider.close()


def finish(writer: Writer, db: Path) -> None:
    writer.thread.join(120)
    assert writer.written == writer.lines
    expected = dict(writer.expected)
    wait_for(lambda: totals(db) == expected, 120,
             f"the totals reaching the input's {sum(expected.values())} words")
    last = max((t for _, t in commits(db)), default=0)
    wait_for(lambda: max((t for _, t in commits(db)), default=0) >= last + 2, 30,
             "two more checkpoints")
    assert totals(db) == expected
    assert_every_txid_once(db)


@pytest.mark.timeout(300)
def test_kill_9_workers_on_a_cluster_with_redis_state(
        make_cluster: Any, redis_server: RedisServer, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    _, log_file, db = submit(c, redis_server, tmp_path, monkeypatch, "eo-kill9")
    with Writer(log_file, lines=12_000) as writer:
        for victim in range(3):
            progress(db)
            pids = c.worker_pids()
            port, pid = sorted(pids.items())[victim % len(pids)]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda p=port, old=pid: c.worker_pids().get(p) not in (None, old), 30,
                     f"worker on port {port} restarted")
        finish(writer, db)
    record = record_on_redis(redis_server, "eo-kill9")  # the checkpoints were kept there
    assert record["txid"] >= max(t for _, t in commits(db))
    assert record["failed"] >= 1  # the kills rolled checkpoints back


@pytest.mark.timeout(300)
def test_a_supervisor_host_lost_mid_run_loses_nothing_with_redis_state(
        make_cluster: Any, redis_server: RedisServer, tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    c = make_cluster(nimbuses=1, supervisors=2)
    tid, log_file, db = submit(c, redis_server, tmp_path, monkeypatch, "eo-host")
    with Writer(log_file, lines=12_000) as writer:
        progress(db)
        victim = next(s for s in c.supervisors if c.worker_pids(s))
        victim_workers = c.worker_pids(victim)
        victim.kill()  # the whole host: the supervisor and its workers
        for pid in victim_workers.values():
            os.kill(pid, signal.SIGKILL)
        survivor = c.supervisor_id(next(s for s in c.supervisors if s is not victim))
        wait_for(lambda: [w["supervisor"] for w in (c.view.assignment(tid) or {})
                          .get("workers", [])] == [survivor] * 2, 30, "work moved")
        finish(writer, db)
    assert record_on_redis(redis_server, "eo-host")["txid"] >= max(t for _, t in commits(db))
