"""Multilang components on a real cluster: `squall submit` of a topology file whose pystorm
spout and bolt and storm.js bolt sit next to it, run by supervisors' workers as
subprocesses."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cluster_fixtures import ProcessCluster
from multilang.harness import HERE
from polling import wait_for

pytestmark = pytest.mark.timeout(180)

TOPOLOGY = """\
import sys

from topology import Bolt, TopologyBuilder
from topology.multilang import ShellBolt, ShellSpout


class FailFirstMultiplesOf3(Bolt):
    outputs = ["sentence"]

    def prepare(self, conf, context):
        self.seen = set()

    def process(self, tup):
        n = tup.values[0]
        if n % 3 == 0 and n not in self.seen:
            self.seen.add(n)
            self.fail(tup)
            return
        self.emit([f"{n} twice {n}"])


b = TopologyBuilder("ml-cluster")
b.set_spout("numbers", ShellSpout([sys.executable, "numbers_spout.py"], outputs=["n"]))
b.set_bolt("picky", FailFirstMultiplesOf3()).shuffle_grouping("numbers")
b.set_bolt("split", ShellBolt([sys.executable, "split_bolt.py"], outputs=["word"]),
           parallelism=2).shuffle_grouping("picky")
b.set_bolt("node-split", ShellBolt(["node", "splitsentence.js"], outputs=["word"]),
           parallelism=2).shuffle_grouping("picky")
topology = b.build(config={"topology.workers": 2, "topology.probe.limit": 50})
"""


def totals(heartbeats: dict[str, dict[str, Any]], component: str) -> dict[str, int]:
    out = {"acked": 0, "failed": 0, "executed": 0, "restarts": 0}
    for hb in heartbeats.values():
        for e in hb.get("executors", []):
            if e.get("component") == component:
                for key in ("acked", "failed", "executed"):
                    out[key] += int(e.get(key) or 0)
                out["restarts"] += int(e.get("shell", {}).get("restarts") or 0)
    return out


def test_pystorm_components_on_a_cluster(make_cluster: Callable[..., ProcessCluster],
                                         tmp_path: Path) -> None:
    for script in ("numbers_spout.py", "split_bolt.py", "splitsentence.js", "storm.js"):
        shutil.copy(HERE / script, tmp_path / script)  # shipped next to the topology file
    path = tmp_path / "ml_cluster.py"
    path.write_text(textwrap.dedent(TOPOLOGY))
    cluster = make_cluster(supervisors=2)
    cluster.cli("submit", str(path), "--wait", "--timeout", "90", timeout=120)
    tid = cluster.cli_json("status", "ml-cluster")["id"]

    def settled() -> dict[str, int] | None:
        spout = totals(cluster.current_heartbeats(tid), "numbers")
        return spout if spout["acked"] == 50 else None

    spout = wait_for(settled, 90, "the 50 numbers acked by the pystorm spout's acker")
    assert spout["failed"] == 16  # 3, 6, ..., 48: failed once each, replayed, then acked
    for bolt in ("split", "node-split"):  # pystorm and storm.js, each sentence acked once
        done = wait_for(lambda b=bolt: (t := totals(cluster.current_heartbeats(tid), b))[
            "acked"] >= 50 and t, 30, f"{bolt}'s acks in its worker's heartbeat")
        assert done["acked"] == 50 and done["restarts"] == 0, (bolt, done)
    status = cluster.cli_json("status", "ml-cluster")
    assert not status["errors"], status["errors"]
