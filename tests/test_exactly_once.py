"""Exactly-once state on real worker processes: the stateful word count of
examples/exactly_once_count.py over a growing log file, with workers killed with kill -9
several times mid-run, ends with totals exactly equal to the input's (not one more), and its
committer's store has every txid of every task once, in order, with no gap."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

from cli.loader import load_topology_file
from topology.local import LocalCluster

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "exactly_once_count.py"
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
CONF = {"topology.state.checkpoint.interval.ms": 200, "topology.message.timeout.secs": 6}


def line(i: int) -> str:
    return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(i % 5 + 1))


class Writer:
    """Appends lines to the input log while the topology runs, as a service's log grows."""

    def __init__(self, path: Path, lines: int, per_tick: int = 200) -> None:
        self.path = path
        self.lines = lines
        self.per_tick = per_tick
        self.written = 0
        self.expected: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with open(self.path, "a") as f:
            while self.written < self.lines and not self.stop.is_set():
                chunk = [line(self.written + k) for k in range(self.per_tick)]
                for text in chunk:
                    self.expected.update(text.split())
                f.write("".join(text + "\n" for text in chunk))
                f.flush()
                self.written += len(chunk)
                self.stop.wait(0.05)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def totals(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return dict(conn.execute("SELECT word, count FROM counts").fetchall())
        except sqlite3.OperationalError:  # the committers have not created it yet
            return {}


def commits(db: Path) -> list[tuple[int, int]]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=30) as conn:
        try:
            return conn.execute("SELECT task, txid FROM commits ORDER BY task, txid").fetchall()
        except sqlite3.OperationalError:
            return []


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Path, Path]]:
    log_file, db = tmp_path / "input.log", tmp_path / "counts.sqlite3"
    log_file.touch()
    monkeypatch.setenv("EXACTLY_ONCE_INPUT", str(log_file))
    monkeypatch.setenv("EXACTLY_ONCE_DB", str(db))
    yield load_topology_file(str(EXAMPLE)), log_file, db


def assert_every_txid_once(db: Path) -> None:
    rows = commits(db)
    by_task: dict[int, list[int]] = {}
    for task, txid in rows:
        by_task.setdefault(task, []).append(txid)
    assert len(by_task) == 2, rows  # both committer tasks committed
    for task, txids in by_task.items():
        assert txids == list(range(1, len(txids) + 1)), (task, txids)


@pytest.mark.timeout(240)
def test_kill_9_mid_run_counts_exactly_once_in_local_cluster(example: Any,
                                                            tmp_path: Path) -> None:
    topology, log_file, db = example
    name = topology.name
    with LocalCluster({"local.dir": str(tmp_path / "local")}) as cluster:
        cluster.submit(topology, config=CONF)
        cluster.wait_running(name, 60)
        with Writer(log_file, lines=12_000) as writer:
            for victim in range(3):
                # Kill mid-run: once more of the input was committed since the last kill (or
                # all of it, if the writer has finished: then 500 more may never come).
                floor = sum(totals(db).values()) + 500
                wait_for(lambda f=floor: sum(totals(db).values()) >= f
                         or (writer.written == writer.lines
                             and totals(db) == dict(writer.expected)), 60,
                         f"progress before kill {victim + 1}")
                pids = cluster.worker_pids(name)
                port, pid = sorted(pids.items())[victim % len(pids)]
                os.kill(pid, signal.SIGKILL)
                wait_for(lambda p=port, old=pid: cluster.worker_pids(name).get(p) not in
                         (None, old), 30, f"worker on port {port} restarted")
            writer.thread.join(120)
            assert writer.written == writer.lines
        expected = dict(writer.expected)
        wait_for(lambda: totals(db) == expected, 120,
                 f"the totals reaching the input's {sum(expected.values())} words")
        # Stays exact: later checkpoints commit and change nothing.
        last = max((t for _, t in commits(db)), default=0)
        wait_for(lambda: max((t for _, t in commits(db)), default=0) >= last + 2, 30,
                 "two more checkpoints")
        assert totals(db) == expected
    assert_every_txid_once(db)
