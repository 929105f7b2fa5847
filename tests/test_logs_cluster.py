"""`squall logs` against a real cluster (ZooKeeper, nimbus and supervisor processes): each
supervisor serves its workers' logs, the command finds them through nimbus and shows or
follows them, also across a worker restart; its errors are one clear line."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_fixtures import ProcessCluster
from polling import wait_for

pytestmark = pytest.mark.timeout(120)

ROOT = str(Path(__file__).resolve().parent.parent)
# `squall logs` until cli.main lists the command (a no-op once it does).
RUNNER = ("import sys, cli.main as m\n"
          "if 'cli.logs_cmd' not in m.COMMAND_MODULES: m.COMMAND_MODULES.append('cli.logs_cmd')\n"
          "sys.exit(m.main(sys.argv[1:]))")
SETTINGS = {"supervisor.logviewer.port": 0}

TOPOLOGY = '''
import os
import time

from topology import Bolt, Spout, TopologyBuilder


class Ticks(Spout):
    outputs = ["n"]

    def open(self, conf, context):
        self.n = 0
        self.last = 0.0

    def next_tuple(self):
        if time.monotonic() - self.last >= 0.2:
            self.last = time.monotonic()
            self.n += 1
            self.emit([self.n])


class Echo(Bolt):
    def prepare(self, conf, context):
        print("echo ready in pid", os.getpid(), flush=True)

    def process(self, tup):
        print("echo got", tup.values[0], flush=True)


b = TopologyBuilder("echoes")
b.set_spout("ticks", Ticks())
b.set_bolt("echo", Echo()).shuffle_grouping("ticks")
topology = b.build(config={"topology.workers": 2, "topology.acker.executors": 0})
'''


def logs_cmd(cluster: ProcessCluster, *args: str, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUNNER, "logs", *args, "--config",
                           str(cluster.config_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def echoes(make_cluster: Callable[..., ProcessCluster], tmp_path: Path
           ) -> tuple[ProcessCluster, dict[str, Any]]:
    cluster = make_cluster(supervisors=2, settings=SETTINGS)
    path = tmp_path / "echo_topology.py"
    path.write_text(TOPOLOGY)
    cluster.cli("submit", str(path), "--wait")
    status = cluster.cli_json("status", "echoes")
    return cluster, status


def echo_worker(cluster: ProcessCluster) -> dict[str, Any]:
    """The worker running the echo bolt, with its pid once it heartbeats."""
    status = cluster.cli_json("status", "echoes")
    task = status["components"]["echo"]["tasks"][0]
    return next(w for w in status["workers"] if task in w["tasks"])


def shown(lines: list[str]) -> list[tuple[str, str]]:
    """(label, text) of each line `squall logs` printed: `[label] DATE TIME text`."""
    out = []
    for line in lines:
        label, rest = line[1:].split("] ", 1)
        parts = rest.split(" ", 2)
        timed = len(parts) == 3 and parts[0][:2] == "20" and parts[1][2:3] == ":"
        out.append((label, parts[2] if timed else rest))
    return out


def test_shows_the_last_lines_of_each_worker_prefixed(echoes: Any) -> None:
    cluster, status = echoes
    echo_task = status["components"]["echo"]["tasks"][0]
    wait_for(lambda: "echo got 3" in logs_cmd(cluster, "echoes", "-n", "50").stdout,
             30, "the echo bolt's output in its log")
    done = logs_cmd(cluster, "echoes", "-n", "50")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert (f"echo:{echo_task}", "echo got 3") in shown(lines)  # a print, as printed
    assert any(label == f"echo:{echo_task}" and text.startswith("echo ready in pid")
               for label, text in shown(lines))
    spout_worker = next(w for w in status["workers"] if echo_task not in w["tasks"])
    assert f"[worker 127.0.0.1:{spout_worker['port']}] " in done.stdout  # the other one too
    one = logs_cmd(cluster, "echoes", "--component", "echo", "-n", "3")
    assert one.returncode == 0 and len(one.stdout.splitlines()) == 3, one.stdout
    assert all(line.startswith(f"[echo:{echo_task}] ") for line in one.stdout.splitlines())
    by_task = logs_cmd(cluster, "echoes", "--task", str(echo_task), "-n", "2")
    assert all(f"echo:{echo_task}" in line for line in by_task.stdout.splitlines())
    # Both supervisors registered a port of their own, and serve only with the secret.
    ports = {info["logviewer_port"] for info in cluster.view.supervisors().values()}
    assert len(ports) == 2 and all(isinstance(p, int) and p > 0 for p in ports)


@pytest.mark.parametrize("args, words", [
    (("nothing-here",), ["no topology named 'nothing-here'"]),
    (("echoes", "--component", "nope"), ["no component 'nope'", "echo", "ticks"]),
    (("echoes", "--task", "999"), ["no task 999"]),
    (("echoes", "--component", "ticks", "--task", "ECHO"), ["is a task of 'echo'"]),
    (("echoes", "-n", "-1"), ["-n", "'-1'"]),
])
def test_errors_are_one_clear_line(echoes: Any, args: tuple[str, ...],
                                   words: list[str]) -> None:
    cluster, status = echoes
    echo_task = str(status["components"]["echo"]["tasks"][0])
    done = logs_cmd(cluster, *(echo_task if a == "ECHO" else a for a in args))
    assert done.returncode != 0 and done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_the_log_servers_want_the_clusters_secret(echoes: Any) -> None:
    from cli.logs_cmd import HttpSource, LogServerError
    from cluster.logfiles import public_name

    cluster, status = echoes
    worker = status["workers"][0]
    port = cluster.view.supervisors()[worker["supervisor"]]["logviewer_port"]
    name = public_name(status["id"], worker["port"])
    chunk = HttpSource("127.0.0.1", port, cluster.secret).read(name, 0, 100)
    assert chunk.start == 0 and chunk.size > 0
    for secret in ("wrong", None):
        with pytest.raises(LogServerError, match="40[13]"):
            HttpSource("127.0.0.1", port, secret).read(name, 0, 100)


@pytest.fixture
def follow(echoes: Any) -> Iterator[Callable[..., queue.Queue[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> queue.Queue[str]:
        cluster, _ = echoes
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, "logs", *args, "--config",
                                 str(cluster.config_path)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()
        return lines

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_line(lines: queue.Queue[str], pred: Callable[[str], bool], what: str,
              timeout: float = 30) -> str:
    seen: list[str] = []

    def found() -> str | None:
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return None
            seen.append(line)
            if pred(line):
                return line

    try:
        return wait_for(found, timeout, what)
    except AssertionError:
        raise AssertionError(f"{what}; saw:\n" + "\n".join(seen[-30:])) from None


def test_follows_across_a_worker_restart(echoes: Any, follow: Any) -> None:
    cluster, status = echoes
    worker = wait_for(lambda: echo_worker(cluster).get("pid") and echo_worker(cluster),
                      30, "the echo worker's pid")
    lines = follow("echoes", "--component", "echo", "-f", "-n", "1")
    wait_line(lines, lambda s: "echo got" in s, "the echo bolt's lines, followed")
    os.kill(worker["pid"], signal.SIGKILL)
    restarted = wait_line(lines, lambda s: "echo ready in pid" in s
                          and not s.endswith(f" {worker['pid']}"), "the restarted worker")
    assert restarted.startswith("[echo:")
    new_pid = int(restarted.rsplit(" ", 1)[1])
    assert new_pid != worker["pid"]
    wait_line(lines, lambda s: "echo got" in s, "its lines after the restart")
