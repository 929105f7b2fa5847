"""The operator's commands: `squall --version`, Storm's `kill -w` / `rebalance -w`,
`rebalance -t key=value` through nimbus (refusing what a running topology may not change, in
one line), and `submit --wait` telling its progress. On a real cluster: the rebalanced config
reaches the restarted workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

from cli.cluster_cmds import conf_changes, wait_running
from cli.main import build_parser
from cluster.config import Config
from cluster.zkstore import ZkClusterState
from topology.errors import SquallError

ROOT = str(Path(__file__).resolve().parent.parent)


def squall(*args: str, endpoint: str, secret: str = "pw") -> subprocess.CompletedProcess:
    host, _, port = endpoint.rpartition(":")
    return subprocess.run([sys.executable, "-m", "cli.main", *args, "-c", f"nimbus.host={host}",
                           "-c", f"nimbus.port={port}", "-c", f"cluster.secret={secret}"],
                          check=False, cwd=ROOT, env={**os.environ, "SQUALL_CONF": ""},
                          capture_output=True, text=True, timeout=30)


def one_line_error(result: subprocess.CompletedProcess, command: str, text: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"squall {command}: error: ") and text in lines[0], lines[0]


# --- parsing -------------------------------------------------------------------------------------


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "cli.main", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and re.fullmatch(r"squall \d+\.\d+\.\d+\n", done.stdout)


def test_storms_short_wait_options() -> None:
    parser = build_parser()
    assert parser.parse_args(["kill", "t", "-w", "5"]).wait == 5.0
    assert parser.parse_args(["kill", "t", "--wait", "5"]).wait == 5.0
    args = parser.parse_args(["rebalance", "t", "-w", "0", "-n", "2", "-t", "topology.debug=true",
                              "-t", '{"topology.max.spout.pending": 10}'])
    assert (args.wait, args.num_workers) == (0.0, 2)
    assert conf_changes(args.conf) == {"topology.debug": True, "topology.max.spout.pending": 10}


@pytest.mark.parametrize("item, message", [
    ("nokey", "-t 'nokey': expected KEY=VALUE or a JSON object"),
    ("=3", "-t '=3': expected KEY=VALUE or a JSON object"),
    ("{not json", "malformed JSON"),
    ('{"topology.x": NaN}', "topology.x must be a finite number"),
])
def test_malformed_conf_changes_are_named(item: str, message: str) -> None:
    with pytest.raises(SquallError, match=re.escape(message)):
        conf_changes([item])


# --- submit --wait: progress ---------------------------------------------------------------------


class Statuses:
    """A nimbus client whose status goes through the steps of a start."""

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.steps = steps

    def status(self, name: str) -> dict[str, Any]:
        return self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]


def _worker(port: int, running: bool) -> dict[str, Any]:
    return {"host": "h1", "port": port, "heartbeat_version": {"assignment": 2} if running
            else None}


def test_submit_wait_tells_each_step_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cli.cluster_cmds.time.sleep", lambda s: None)
    client = Statuses([
        {"assignment_version": None, "workers": []},
        {"assignment_version": 2, "workers": [_worker(6700, False), _worker(6701, False)]},
        {"assignment_version": 2, "workers": [_worker(6700, False), _worker(6701, False)],
         "errors": {"__worker": [{"error": "worker could not start: ImportError: x"}]}},
        {"assignment_version": 2, "workers": [_worker(6700, True), _worker(6701, False)]},
        {"assignment_version": 2, "workers": [_worker(6700, True), _worker(6701, True)]},
    ])
    said: list[str] = []
    wait_running(client, "numbers", 10, said.append)
    assert said == [
        "numbers: waiting for an assignment (are supervisors with free slots registered?)",
        "numbers: assigned 2 worker(s) on h1",
        "numbers: workers starting: 0 of 2 running",
        "numbers: worker could not start: ImportError: x",
        "numbers: workers starting: 1 of 2 running",
        "numbers: running: 2 of 2 workers",
    ]


# --- rebalance -t through nimbus (supervisors faked in ZooKeeper) --------------------------------


@pytest.fixture
def nimbus(start_nimbus: Any, zk_config: Config) -> Iterator[Any]:
    view = ZkClusterState(zk_config.with_overrides({"cluster.secret": "pw"}))
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    running = start_nimbus(**{"cluster.secret": "pw"})
    running.wait_leading()
    running.view = view
    yield running
    view.close()


@pytest.mark.parametrize("item, message", [
    ("topology.workers=3", "rebalance 'numbers': topology.workers cannot change on a running "
                           "topology: give the number of workers with -n"),
    ("topology.acker.executors=0", "topology.acker.executors cannot change on a running "
                                   "topology: the ackers are part of the task layout"),
    ("worker.batch.size=10", "worker.batch.size cannot change on a running topology (only "
                             "topology.* keys can)"),
    ("topology.max.spout.pendin=10", "topology.max.spout.pendin is not a Squall key; did you "
                                     "mean topology.max.spout.pending?"),
    ("topology.max.spout.pending=0", "config key 'topology.max.spout.pending' (from overrides): "
                                     "expected an integer >= 1, got 0"),
    ("topology.debug=maybe", "config key 'topology.debug' (from overrides): expected true or "
                             "false, got 'maybe'"),
])
def test_rebalance_refuses_what_a_running_topology_may_not_change(
        nimbus: Any, topology_file: str, item: str, message: str) -> None:
    assert squall("submit", topology_file, endpoint=nimbus.endpoint).returncode == 0
    one_line_error(squall("rebalance", "numbers", "-t", item, "-w", "0",
                          endpoint=nimbus.endpoint), "rebalance", message)
    meta = next(iter(nimbus.view.topologies().values()))
    assert meta["status"] == "ACTIVE" and meta["code_version"] == 1  # nothing happened


def test_rebalance_changes_safe_keys_in_a_new_code_version(nimbus: Any,
                                                          topology_file: str) -> None:
    ep = nimbus.endpoint
    assert squall("submit", topology_file, endpoint=ep).returncode == 0
    done = squall("rebalance", "numbers", "-t", "topology.max.spout.pending=500",
                  "-t", "topology.myapp.greeting='hi'", "-w", "0", "--json", endpoint=ep)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)
    assert reply["code_version"] == 2 and reply["num_workers"] == 2
    meta = next(iter(nimbus.view.topologies().values()))
    assert meta["conf"]["topology.max.spout.pending"] == 500
    assert meta["conf"]["topology.myapp.greeting"] == "hi"
    assert "rebalance" not in meta and meta["status"] == "ACTIVE"
    one_line_error(squall("rebalance", "numbers", endpoint=ep), "rebalance",
                   "give -n WORKERS, -e COMPONENT=N and/or -t KEY=VALUE")


# --- on a real cluster ---------------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_submit_shows_progress_and_a_rebalanced_config_reaches_the_workers(
        make_cluster: Any, topology_file: str) -> None:
    cluster = make_cluster(supervisors=1, slots=2)
    done = cluster.cli("submit", topology_file, "--wait", "--timeout", "60")
    progress = done.stderr.strip().splitlines()
    assert progress[0].startswith("squall submit: numbers: ")
    assert any("assigned 2 worker(s) on 127.0.0.1" in line for line in progress)
    assert progress[-1] == "squall submit: numbers: running: 2 of 2 workers", progress
    assert "running" in done.stdout

    def tuples_logged() -> bool:  # "worker h:p: numbers task 3 emit ([7],) -> tasks [5]"
        return any(re.search(r"numbers task \d+ emit \(\[\d+\],\)",
                             p.read_text(errors="replace"))
                   for p in cluster.dir.glob("supervisor-*/**/*.log"))

    assert not tuples_logged()  # topology.debug is off
    cluster.cli("rebalance", "numbers", "-t", "topology.debug=true", "-w", "0")
    (tid,) = cluster.view.topologies()

    def restarted_with_debug() -> bool:
        beats = cluster.current_heartbeats(tid)
        a = cluster.view.assignment(tid) or {}
        return a.get("code_version") == 2 and len(beats) == 2

    wait_for(restarted_with_debug, 60, "the workers to run code version 2")
    wait_for(tuples_logged, 30, "the workers to log every tuple (topology.debug)")
    assert cluster.cli_json("status", "numbers")["conf"]["topology.debug"] is True
