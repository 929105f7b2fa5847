"""`squall submit|list|status|kill|activate|deactivate|rebalance` as subprocesses against a
nimbus running in this process (supervisors faked in ZooKeeper)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.assignment import worker_version
from cluster.config import Config
from cluster.zkserver import free_port
from cluster.zkstore import ZkClusterState

pytestmark = pytest.mark.timeout(60)

ROOT = str(Path(__file__).resolve().parent.parent)


def squall(*args: str, endpoint: str, secret: str | None = None) -> subprocess.CompletedProcess:
    host, _, port = endpoint.rpartition(":")
    conf = ["-c", f"nimbus.host={host}", "-c", f"nimbus.port={port}"]
    if secret:
        conf += ["-c", f"cluster.secret={secret}"]
    return subprocess.run([sys.executable, "-m", "cli.main", *args, *conf], check=False, cwd=ROOT,
                          env={**os.environ, "SQUALL_CONF": ""}, capture_output=True,
                          text=True, timeout=30)


def ok_json(result: subprocess.CompletedProcess) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess, command: str, text: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"squall {command}: error: ") and text in lines[0], lines[0]


@pytest.fixture
def view(zk_config: Config) -> Iterator[ZkClusterState]:
    state = ZkClusterState(zk_config.with_overrides({"cluster.secret": "pw"}))
    state.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    state.register_supervisor("sup-b", {"host": "hb", "ports": [7000, 7001]})
    yield state
    state.close()


@pytest.fixture
def nimbus(start_nimbus: Any, view: ZkClusterState) -> Any:
    running = start_nimbus(**{"cluster.secret": "pw"})
    running.wait_leading()
    return running


def test_the_commands_change_the_cluster(nimbus: Any, view: ZkClusterState,
                                         topology_file: str) -> None:
    ep = nimbus.endpoint
    reply = ok_json(squall("submit", topology_file, "--name", "demo", "--json",
                           "-c", "topology.workers=1", endpoint=ep, secret="pw"))
    assert reply["name"] == "demo" and reply["status"] == "ACTIVE"
    assert reply["num_workers"] == 1 and reply["assigned_workers"] == 1
    tid = reply["id"]
    assert view.topology(tid)["conf"]["topology.workers"] == 1

    listed = ok_json(squall("list", "--json", endpoint=ep, secret="pw"))
    assert [t["id"] for t in listed] == [tid]
    table = squall("list", endpoint=ep, secret="pw")
    assert table.returncode == 0 and "demo" in table.stdout and "ACTIVE" in table.stdout

    status = ok_json(squall("status", "demo", "--json", endpoint=ep, secret="pw"))
    assert set(status["components"]) == {"numbers", "double"} and len(status["workers"]) == 1
    text = squall("status", "demo", endpoint=ep, secret="pw")
    assert text.returncode == 0 and "parallelism 3" in text.stdout

    assert ok_json(squall("deactivate", "demo", "--json", endpoint=ep,
                          secret="pw"))["status"] == "INACTIVE"
    assert view.assignment(tid)["active"] is False
    assert ok_json(squall("activate", "demo", "--json", endpoint=ep,
                          secret="pw"))["status"] == "ACTIVE"

    reply = ok_json(squall("rebalance", "demo", "-n", "2", "-e", "double=4", "--wait", "0",
                           "--json", endpoint=ep, secret="pw"))
    assert reply["num_workers"] == 2 and reply["num_tasks"] == 2 + 4 + 2
    assert len(view.assignment(tid)["workers"]) == 2

    plain = squall("kill", "demo", "--wait", "0", endpoint=ep, secret="pw")
    assert plain.returncode == 0 and "killed 'demo'" in plain.stdout
    assert ok_json(squall("list", "--json", endpoint=ep, secret="pw")) == []
    assert view.topology(tid) is None


def test_errors_are_one_line_and_exit_1(nimbus: Any, topology_file: str,
                                        tmp_path: Path) -> None:
    ep = nimbus.endpoint
    ok_json(squall("submit", topology_file, "--json", endpoint=ep, secret="pw"))
    one_line_error(squall("submit", topology_file, endpoint=ep, secret="pw"), "submit",
                   "topology 'numbers' is already running")
    one_line_error(squall("status", "nope", endpoint=ep, secret="pw"), "status",
                   "no topology named 'nope'")
    one_line_error(squall("kill", "nope", "--json", endpoint=ep, secret="pw"), "kill",
                   "no topology named 'nope'")
    one_line_error(squall("list", endpoint=ep, secret="wrong"), "list", "wrong cluster secret")
    one_line_error(squall("rebalance", "numbers", "-e", "double=x", endpoint=ep, secret="pw"),
                   "rebalance", "expected COMPONENT=N")
    bad = tmp_path / "bad.py"
    bad.write_text("topology = 1 +\n")
    one_line_error(squall("submit", str(bad), endpoint=ep, secret="pw"), "submit",
                   "syntax error")
    one_line_error(squall("submit", str(tmp_path / "missing.py"), endpoint=ep, secret="pw"),
                   "submit", "no such file")
    one_line_error(squall("list", endpoint=f"127.0.0.1:{free_port()}", secret="pw"), "list",
                   "cannot reach nimbus")


def test_submit_wait_returns_when_every_worker_runs_the_assignment(
    nimbus: Any, view: ZkClusterState, topology_file: str
) -> None:
    stop = threading.Event()

    def supervisors() -> None:  # heartbeat every assigned worker with the current version
        n = 0
        while not stop.wait(0.1):
            n += 1
            for tid, a in view.assignments().items():
                for w in a["workers"]:
                    view.worker_heartbeat(tid, f"{w['host']}:{w['port']}",
                                          {"time": n, "version": worker_version(a)})

    thread = threading.Thread(target=supervisors, daemon=True)
    thread.start()
    try:
        status = ok_json(squall("submit", topology_file, "--wait", "--timeout", "20", "--json",
                                endpoint=nimbus.endpoint, secret="pw"))
    finally:
        stop.set()
        thread.join(timeout=5)
    assert status["workers"] and all(w["heartbeat_version"]["assignment"] ==
                                     status["assignment_version"]
                                     for w in status["workers"])


def test_submit_requirements_sets_the_topology_requirements(
    nimbus: Any, view: ZkClusterState, topology_file: str, tmp_path: Path
) -> None:
    ep = nimbus.endpoint
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# what the bolts import\ntomli-w==1.0.0\n\nsix>=1.16\n")
    reply = ok_json(squall("submit", topology_file, "--requirements", str(requirements),
                           "--json", endpoint=ep, secret="pw"))
    conf = view.topology(reply["id"])["conf"]
    assert conf["topology.requirements"] == ["tomli-w==1.0.0", "six>=1.16"]

    one_line_error(squall("submit", topology_file, "--name", "other", "--requirements",
                          str(tmp_path / "absent.txt"), endpoint=ep, secret="pw"),
                   "submit", "absent.txt: cannot read the requirements file")
    options = tmp_path / "options.txt"
    options.write_text("--index-url https://example.com/simple\n")
    one_line_error(squall("submit", topology_file, "--name", "other", "--requirements",
                          str(options), endpoint=ep, secret="pw"), "submit", "options.txt")
    assert [t["name"] for t in ok_json(squall("list", "--json", endpoint=ep,
                                              secret="pw"))] == ["numbers"]


def test_status_and_list_show_windows_checkpoints_and_sources(
    nimbus: Any, view: ZkClusterState, topology_file: str
) -> None:
    ep = nimbus.endpoint
    tid = ok_json(squall("submit", topology_file, "--json", endpoint=ep, secret="pw"))["id"]
    checkpoint = {"txid": 12, "time": 1_700_000_000.0, "duration": 0.25, "failed": 0}
    executors = [
        {"component": "numbers", "task": 1, "type": "spout",
         "source": {"kind": "file", "name": "/data/n.log", "offset": 300, "behind": 40}},
        {"component": "double", "task": 3, "type": "bolt", "checkpoint": checkpoint,
         "windowing": {"spec": "tumbling 5 s", "watermark": None, "late": 3}}]
    w = view.assignment(tid)["workers"][0]
    view.worker_heartbeat(tid, f"{w['host']}:{w['port']}",
                          {"host": w["host"], "port": w["port"], "executors": executors})

    status = ok_json(squall("status", "numbers", "--json", endpoint=ep, secret="pw"))
    assert status["checkpoint"] == checkpoint
    assert status["progress"]["numbers"]["source"]["behind"] == 40
    assert status["progress"]["double"]["windowing"]["late"] == 3
    text = squall("status", "numbers", endpoint=ep, secret="pw").stdout
    assert "source file: /data/n.log at 300, 40 behind" in text, text
    assert "window tumbling 5 s: watermark none yet" in text and "3 late" in text, text
    assert "last committed checkpoint: txid 12, " in text and "took 250 ms" in text, text
    table = squall("list", endpoint=ep, secret="pw").stdout
    assert "CHECKPOINT" in table and "txid 12" in table, table
    assert ok_json(squall("list", "--json", endpoint=ep, secret="pw"))[0]["checkpoint"] == \
        checkpoint
