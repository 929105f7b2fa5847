"""Real worker processes under a stand-in parent: heartbeats while user code blocks, stopping
while it blocks, orphans, and an unauthenticated peer announcing a huge frame.

The stand-in parent (`Parent`) is what a supervisor is to its workers on the control
channel: it answers every heartbeat with the assignment or {"type": "supervised"}, until a
test tells it to fall silent.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from polling import wait_for

from cluster.config import Config
from topology import Bolt, Spout, TopologyBuilder
from topology.model import Topology
from worker.control import ControlServer
from worker.launcher import free_ports, spawn_worker
from worker.wire import secret_key

pytestmark = pytest.mark.timeout(90)

HOST = "127.0.0.1"
SECRET = "worker-process-tests"


class Parent:
    """A ControlServer serving one worker process from a thread, recording its heartbeats."""

    def __init__(self, tmp: Path, topology: Topology, **conf: Any) -> None:
        self.tmp = tmp
        self.server = ControlServer(f"ipc://{tmp}/control.sock", secret_key(SECRET))
        config = Config.from_mapping({}).with_overrides({
            "worker.heartbeat.frequency.secs": 0.1, **topology.config, **conf}).to_dict()
        self.code = tmp / "topology.code"
        with open(self.code, "wb") as f:
            cloudpickle.dump({"topology": topology, "conf": config}, f)
        (self.port,) = free_ports(1)
        tasks = topology.component_tasks(config)
        self.topology_id = f"{topology.name}-1"
        self.assignment = {"version": 1, "topology_id": self.topology_id, "active": True,
                           "tasks": {str(t): [HOST, self.port] for ts in tasks.values()
                                     for t in ts}}
        self.answering = True
        self.heartbeats: list[tuple[float, dict[str, Any]]] = []
        self._outgoing: queue.Queue[dict[str, Any]] = queue.Queue()
        self._closed = False
        self.proc = spawn_worker(topology_id=self.topology_id, host=HOST, port=self.port,
                                 control=self.server.endpoint, code_path=str(self.code),
                                 secret=SECRET, log_path=str(self.log), sys_path=sys.path)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def log(self) -> Path:
        return self.tmp / "worker.log"

    def _serve(self) -> None:
        while not self._closed:
            for worker, message in self.server.poll(20):
                if message.get("type") != "heartbeat":
                    continue
                self.heartbeats.append((time.monotonic(), message))
                if not self.answering:
                    continue
                if message.get("version") != self.assignment["version"]:
                    self.server.send(worker, {"type": "assignment",
                                              "assignment": self.assignment})
                else:
                    self.server.send(worker, {"type": "supervised"})
            while not self._outgoing.empty():
                self.server.send(f"{HOST}:{self.port}", self._outgoing.get())

    def send(self, message: dict[str, Any]) -> None:
        self._outgoing.put(message)

    def last(self) -> dict[str, Any]:
        return self.heartbeats[-1][1] if self.heartbeats else {}

    def stat(self, component: str, key: str, heartbeat: dict[str, Any] | None = None) -> int:
        executors = (heartbeat or self.last()).get("executors", ())
        return sum(e[key] if isinstance(e[key], int) else sum(e[key].values())
                   for e in executors if e["component"] == component)

    def running(self) -> bool:
        return self.last().get("state") == "running"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._closed = True
        self._thread.join(5)
        self.server.close()


@contextlib.contextmanager
def parent(tmp_path: Path, topology: Topology, **conf: Any) -> Iterator[Parent]:
    p = Parent(tmp_path, topology, **conf)
    try:
        wait_for(p.running, 30, "the worker to run its assignment")
        yield p
    except BaseException:
        sys.stderr.write(p.log.read_text(errors="replace")[-5000:])
        raise
    finally:
        p.close()


# --- components ---------------------------------------------------------------------------------


class Numbers(Spout):
    """Emits 0, 1, ... (up to `limit`) reliably, replaying what fails; `pause` makes each
    call of next_tuple that slow."""

    outputs = ["n"]

    def __init__(self, limit: int | None = None, pause: float = 0.0) -> None:
        self.limit = limit
        self.pause = pause

    def open(self, conf: Any, context: Any) -> None:
        self.n = 0
        self.replays: list[int] = []

    def next_tuple(self) -> None:
        if self.pause:
            time.sleep(self.pause)  # a slow source, on purpose
        if self.replays:
            n = self.replays.pop()
            self.emit([n], msg_id=n)
        elif self.limit is None or self.n < self.limit:
            self.emit([self.n], msg_id=self.n)
            self.n += 1

    def fail(self, msg_id: Any) -> None:
        self.replays.append(msg_id)


class BlockOnce(Bolt):
    """Blocks `seconds` in process on the first tuple it sees, and is quick after."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def prepare(self, conf: Any, context: Any) -> None:
        self.blocked = False

    def process(self, tup: Any) -> None:
        if not self.blocked:
            self.blocked = True
            time.sleep(self.seconds)  # user code that blocks: the point of these tests


def topology(spout: Spout, bolt: Bolt, **config: Any) -> Topology:
    b = TopologyBuilder("proc")
    b.set_spout("src", spout)
    b.set_bolt("block", bolt).shuffle_grouping("src")
    return b.build(config={"topology.workers": 1, **config})


# --- heartbeats and stopping while user code blocks (issue 7, item 12) --------------------------


def test_heartbeats_flow_while_a_bolt_blocks_and_its_tuples_replay(tmp_path: Path) -> None:
    t = topology(Numbers(limit=20), BlockOnce(3.0), **{"topology.message.timeout.secs": 1})
    with parent(tmp_path, t) as p:
        stalled = wait_for(lambda: next((hb for _, hb in p.heartbeats
                                         if hb.get("stalled_secs", 0) >= 1.5), None),
                           20, "a heartbeat sent while the loop is stuck in process")
        assert stalled["stalled_in"] == "block:2" and stalled["pid"] == p.proc.pid
        wait_for(lambda: p.stat("src", "acked") >= 20, 30, "every number acked")
        assert p.stat("src", "timed_out") >= 1  # the tuples behind the block timed out
        assert p.proc.poll() is None  # nobody restarted or killed it


def test_a_slow_next_tuple_does_not_freeze_the_worker(tmp_path: Path) -> None:
    t = topology(Numbers(pause=0.2), BlockOnce(0.0))
    with parent(tmp_path, t) as p:
        wait_for(lambda: p.stat("src", "emitted") >= 2, 20, "the spout to emit")
        p.assignment = {**p.assignment, "version": 2, "active": False}
        # 64 calls of 0.2 s per turn would take 13 s to hear the deactivation.
        wait_for(lambda: p.last().get("active") is False, 3, "the worker to deactivate")
        stopped = p.stat("src", "emitted")
        seen = len(p.heartbeats)
        wait_for(lambda: len(p.heartbeats) > seen + 5, 10, "more heartbeats")
        assert p.stat("src", "emitted") <= stopped + 1  # a call under way when it stopped


@pytest.mark.parametrize("how", ["SIGTERM", "stop message"])
def test_a_worker_stops_in_time_while_user_code_blocks(tmp_path: Path, how: str) -> None:
    t = topology(Numbers(), BlockOnce(60.0))
    with parent(tmp_path, t, **{"supervisor.worker.stop.timeout.secs": 2}) as p:
        wait_for(lambda: p.last().get("stalled_secs", 0) > 0.5, 20, "the bolt to block")
        asked = time.monotonic()
        if how == "SIGTERM":
            p.proc.send_signal(signal.SIGTERM)
        else:
            p.send({"type": "stop"})
        wait_for(lambda: p.proc.poll() is not None, 10, "the worker to exit")
        took = time.monotonic() - asked
        assert took < 2 + 1.0, f"took {took:.1f} s"  # the stop timeout, and a loaded box's slack
        assert "could not stop in time" in p.log.read_text()


def test_flush_from_the_parent_reaches_the_executors(tmp_path: Path) -> None:
    with parent(tmp_path, topology(Numbers(limit=5), BlockOnce(0.0))) as p:
        p.send({"type": "flush"})
        wait_for(lambda: p.last().get("flushes") == 1, 10, "a heartbeat after the flush")


# --- orphans (issue 7, item 8) ------------------------------------------------------------------


class Paced(Spout):
    outputs = ["n"]

    def open(self, conf: Any, context: Any) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        time.sleep(0.005)  # about 200 tuples a second
        self.emit([self.n])
        self.n += 1


def test_a_worker_whose_parent_falls_silent_pauses_its_spouts_then_exits(
        tmp_path: Path) -> None:
    t = topology(Paced(), BlockOnce(0.0))
    conf = {"nimbus.supervisor.timeout.secs": 1.0, "worker.orphan.timeout.secs": 4.0}
    with parent(tmp_path, t, **conf) as p:
        wait_for(lambda: p.stat("src", "emitted") > 20, 20, "the spout to emit")
        p.answering = False
        paused = wait_for(lambda: p.last() if p.last().get("spouts_paused") else None, 5,
                          "the spouts to pause")
        count = p.stat("src", "emitted", paused)
        wait_for(lambda: p.last()["uptime"] > paused["uptime"] + 1.0, 5, "a second of pause")
        assert p.stat("src", "emitted") <= count + 1  # a call under way when it paused
        assert p.stat("block", "executed") == p.stat("src", "emitted")  # bolts kept working
        p.answering = True
        wait_for(lambda: not p.last().get("spouts_paused")
                 and p.stat("src", "emitted") > count + 20, 10, "the spouts to resume")
        p.answering = False
        wait_for(lambda: p.proc.poll() is not None, 15, "the orphan to exit")
        assert p.proc.returncode == 4
        assert "orphaned" in p.log.read_text()


# --- a huge frame from an unauthenticated peer (issue 7, item 3) --------------------------------


def zmtp_push(port: int) -> socket.socket:
    """A raw TCP connection that has done ZMTP 3.0's NULL handshake as a PUSH socket."""
    s = socket.create_connection((HOST, port))
    greeting = b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\0"
    s.sendall(greeting.ljust(64, b"\0"))
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack("!I", 4) + b"PUSH"
    s.sendall(b"\x04" + bytes([len(body)]) + body)
    return s


def test_a_frame_announced_at_a_gigabyte_does_not_grow_the_worker(tmp_path: Path) -> None:
    t = topology(Paced(), BlockOnce(0.0))
    with parent(tmp_path, t, **{"worker.max.message.bytes": 1024 * 1024}) as p:
        worker = psutil.Process(p.proc.pid)
        before = worker.memory_info().rss
        conn = zmtp_push(p.port)
        grown = 0
        sent = 0
        chunk = b"\0" * (1024 * 1024)
        try:
            conn.sendall(b"\x02" + struct.pack("!Q", 1 << 30))  # one frame of 1 GiB
            conn.settimeout(5)
            while sent < 256 * len(chunk):
                conn.sendall(chunk)
                sent += len(chunk)
                grown = max(grown, worker.memory_info().rss - before)
        except OSError:
            pass  # the worker dropped the connection: what it should do
        finally:
            conn.close()
        grown = max(grown, worker.memory_info().rss - before)
        assert grown < 32 * 1024 * 1024, f"grew {grown >> 20} MiB after {sent >> 20} MiB sent"
        emitted = p.stat("src", "emitted")
        wait_for(lambda: p.stat("block", "executed") > emitted + 20, 10, "more work done")
        assert p.proc.poll() is None


HELPER = """
import os, sys, time
from worker.launcher import spawn_worker
proc = spawn_worker(topology_id=sys.argv[1], host=sys.argv[2], port=int(sys.argv[3]),
                    control=sys.argv[4], code_path=sys.argv[5], secret=sys.argv[6],
                    log_path=sys.argv[7], parent_pid=os.getpid(), sys_path=sys.path)
print(proc.pid, flush=True)
time.sleep(60)
"""


def test_a_local_worker_exits_soon_after_its_parent_process_dies(tmp_path: Path) -> None:
    server = ControlServer(f"ipc://{tmp_path}/control.sock", secret_key(SECRET))
    code = tmp_path / "topology.code"
    t = topology(Paced(), BlockOnce(0.0))
    with open(code, "wb") as f:
        conf = Config.from_mapping({}).to_dict()  # orphan timeout 10 s: not what stops it
        cloudpickle.dump({"topology": t, "conf": conf}, f)
    (port,) = free_ports(1)
    helper = subprocess.Popen(
        [sys.executable, "-c", HELPER, "proc-1", HOST, str(port), server.endpoint, str(code),
         SECRET, str(tmp_path / "worker.log")],
        stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    worker = None
    try:
        assert helper.stdout is not None
        worker = psutil.Process(int(helper.stdout.readline()))
        helper.kill()  # like kill -9 of a LocalCluster's process
        helper.wait(10)
        worker.wait(5)  # psutil.TimeoutExpired if it did not notice
        assert "parent" in (tmp_path / "worker.log").read_text()
    finally:
        if helper.poll() is None:
            helper.kill()
        helper.wait(10)
        if worker is not None and worker.is_running():
            worker.kill()
        server.close()
