"""`squall set-log-level` on real daemons: nimbus -> supervisor -> the running workers, the
level put back when its time is over, and a worker started later getting the level too."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from cluster_fixtures import ProcessCluster
from polling import wait_for

pytestmark = pytest.mark.timeout(180)

SETTINGS = {"supervisor.logviewer.port": 0}

TOPOLOGY = """\
import logging
import time

from topology import Bolt, Spout, TopologyBuilder

chatty = logging.getLogger("chatty")


class Ticks(Spout):
    outputs = ["n"]

    def open(self, conf, context):
        self.n, self.next = 0, 0.0

    def next_tuple(self):
        if time.monotonic() >= self.next:
            self.next = time.monotonic() + 0.05
            self.n += 1
            self.emit([self.n])


class Chatty(Bolt):
    def process(self, tup):
        chatty.info("tick %d", tup.values[0])
        chatty.debug("detail %d", tup.values[0])


b = TopologyBuilder("chatty")
b.set_spout("ticks", Ticks())
b.set_bolt("talk", Chatty()).shuffle_grouping("ticks")
topology = b.build(config={"topology.workers": 1, "topology.acker.executors": 0})
"""


def worker_log(cluster: ProcessCluster) -> str:
    return "".join(p.read_text(errors="replace")
                   for p in sorted(cluster.dir.glob("supervisor-*/logs/*/worker-*.log*")))


def numbers(text: str, word: str) -> list[int]:
    return [int(n) for n in re.findall(rf"\b{word} (\d+)", text)]


def test_set_log_level_reaches_running_workers_and_is_put_back(
        make_cluster: Callable[..., ProcessCluster], tmp_path: Path) -> None:
    cluster = make_cluster(supervisors=1, settings=SETTINGS)
    path = tmp_path / "chatty_topology.py"
    path.write_text(TOPOLOGY)
    cluster.cli("submit", str(path), "--wait")
    wait_for(lambda: len(numbers(worker_log(cluster), "tick")) >= 5, 30, "ticks logged")
    assert "detail" not in worker_log(cluster)  # DEBUG is below the workers' INFO
    pids = cluster.worker_pids()

    done = cluster.cli("set-log-level", "chatty", "chatty=DEBUG", "-t", "3")
    assert "'chatty': chatty=DEBUG for 3 s" in done.stdout, done.stdout
    wait_for(lambda: numbers(worker_log(cluster), "detail"), 20, "DEBUG lines of chatty")
    assert "log level of chatty set to DEBUG for" in worker_log(cluster)
    assert cluster.worker_pids() == pids  # the running worker changed it, not a new one

    # Its time over, the worker puts the logger back by itself: no more DEBUG lines.
    text = wait_for(lambda: (t := worker_log(cluster)) and "log level of chatty back to" in t
                    and t, 20, "the level put back")
    last_tick = max(numbers(text, "tick"))
    wait_for(lambda: max(numbers(worker_log(cluster), "tick")) >= last_tick + 10, 20,
             "ten more ticks")
    assert max(numbers(worker_log(cluster), "detail")) <= last_tick + 2
    wait_for(lambda: cluster.cli_json("status", "chatty")["log_levels"] == {}, 20,
             "nimbus dropping the level that is over")

    # Until reset: also a worker started later (here: after a crash) gets the level.
    cluster.cli("set-log-level", "chatty", "-l", "ROOT=WARN")
    assert cluster.cli_json("status", "chatty")["log_levels"] == {
        "ROOT": {"level": "WARN", "until": None}}
    wait_for(lambda: "log level of ROOT set to WARN" in worker_log(cluster), 20,
             "ROOT at WARN")
    pid = next(iter(cluster.worker_pids().values()))
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: worker_log(cluster).count("log level of ROOT set to WARN") == 2, 60,
             "the restarted worker at WARN too")
    done = cluster.cli("set-log-level", "chatty", "-r", "ROOT")
    assert "every logger at its own level" in done.stdout, done.stdout
    wait_for(lambda: "log level of ROOT back to INFO" in worker_log(cluster), 20,
             "ROOT back to INFO")
