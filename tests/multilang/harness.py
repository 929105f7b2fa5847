"""Drives one shell task as the worker's multilang executor does: a poll loop over the
runner's file descriptors and a collector that records what the component did.

The topology around the task is real (built with TopologyBuilder, so the handshake is the
one a worker sends): a native spout "source" -> the shell component "shell" -> a native bolt
"sink" (shuffle on every stream, and direct on "default").
"""

from __future__ import annotations

import collections
import os
import select
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from topology import Bolt, Spout, TopologyBuilder
from topology.errors import TopologyError
from topology.multilang import ShellBolt, ShellSettings, ShellSpout
from topology.multilang.handshake import setup_info
from topology.multilang.protocol import TupleEncoder
from topology.multilang.runner import BoltRunner, SpoutRunner
from topology.tuple import SYSTEM_COMPONENT, TICK_STREAM

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


class Source(Spout):
    outputs = ["sentence"]


class Sink(Bolt):
    def process(self, tup: Any) -> None:
        pass


class Handle:
    """Stands in for the worker's Tuple: what the runner hands back on ack, fail, anchors."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


@dataclass
class Emit:
    stream: str
    values: list[Any]
    anchors: list[Any]
    msg_id: Any
    task: int | None
    targets: list[int]


class Harness:
    """One shell bolt or spout task, its subprocess started, driven by `run_until`."""

    def __init__(self, command: Sequence[str], outputs: Any = ("word",), kind: str = "bolt",
                 conf: dict[str, Any] | None = None, settings: ShellSettings | None = None,
                 cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        component_cls = ShellBolt if kind == "bolt" else ShellSpout
        self.component = component_cls(list(command), outputs=list(outputs) if isinstance(
            outputs, tuple) else outputs, cwd=cwd, env=env)
        b = TopologyBuilder("probe-topology")
        if kind == "bolt":
            b.set_spout("source", Source())
            b.set_bolt("shell", self.component, parallelism=2).shuffle_grouping("source")
        else:
            b.set_spout("shell", self.component, parallelism=2)
        sink = b.set_bolt("sink", Sink(), parallelism=3)
        streams = self.component.outputs if isinstance(self.component.outputs, dict) else {
            "default": self.component.outputs}
        for stream in streams:
            sink.shuffle_grouping("shell", stream)
        if "default" in streams:
            b.set_bolt("direct-sink", Sink(), parallelism=2).direct_grouping("shell")
        self.topology = b.build(config=conf or {})
        self.conf = {**(conf or {}), "cluster.secret": "not for components"}
        self.tasks = self.topology.component_tasks()
        self.task = self.tasks["shell"][0]
        self.direct_tasks = self.tasks.get("direct-sink", [])
        self.sink_tasks = self.tasks["sink"]
        self.kind = kind
        self.emitted: list[Emit] = []
        self.acked: list[Any] = []
        self.failed: list[Any] = []
        self.errors: list[str] = []
        self.queue: collections.deque[tuple[Handle, TupleEncoder, int, list[Any]]] = \
            collections.deque()
        self.encoders: dict[tuple[str, str], TupleEncoder] = {}
        self.nexts = 0  # next commands a spout may get per turn
        self.pids: set[int] = set()
        self._count = 0
        runner_cls = BoltRunner if kind == "bolt" else SpoutRunner
        self.settings = settings or ShellSettings(timeout=5.0, heartbeat_every=0.5)
        self.runner: Any = runner_cls(
            self.component, f"shell {kind} 'shell' task {self.task}", self._setup, self,
            self.settings, code_dir=str(HERE))
        self.runner.start(time.monotonic())
        self.pid_dir = self.runner.pid_dir

    def _setup(self, pid_dir: str) -> dict[str, Any]:
        return setup_info(self.topology, "shell", self.task, self.tasks, self.conf, pid_dir)

    # ------------------------------------------------------------ the collector (sink)

    def emit(self, stream: str, values: list[Any], extra: Any, task: int | None) -> list[int]:
        declared = self.topology.components["shell"].outputs
        if stream not in declared:
            raise TopologyError(f"component 'shell' emitted on undeclared stream {stream!r}")
        if len(values) != len(declared[stream]):
            raise TopologyError(f"component 'shell' emitted {len(values)} values on {stream!r}")
        if task is not None:
            if task not in self.direct_tasks or stream != "default":
                raise TopologyError(f"task {task} is not a direct consumer of {stream!r}")
            targets = [task]
        else:
            self._count += 1
            targets = [self.sink_tasks[self._count % len(self.sink_tasks)]]
        anchors, msg_id = (extra, None) if self.kind == "bolt" else ([], extra)
        self.emitted.append(Emit(stream, values, list(anchors), msg_id, task, targets))
        return targets

    def ack(self, handle: Any) -> None:
        self.acked.append(handle)

    def fail(self, handle: Any) -> None:
        self.failed.append(handle)

    def error(self, text: str) -> None:
        self.errors.append(text)

    # ------------------------------------------------------------ driving

    def send(self, value: Any, *more: Any, stream: str = "default", source: str = "source",
             task: int = 1, name: str | None = None) -> Handle:
        handle = Handle(name or str(value))
        encoder = self.encoders.get((source, stream))
        if encoder is None:
            encoder = self.encoders[(source, stream)] = TupleEncoder(source, stream)
        self.queue.append((handle, encoder, task, [value, *more]))
        return handle

    def tick(self, freq: float) -> Handle:
        return self.send(freq, source=SYSTEM_COMPONENT, stream=TICK_STREAM, task=-1,
                         name=f"tick {freq}")

    def turn(self, wait: float = 0.02) -> None:
        runner = self.runner
        if runner.proc is not None and runner.proc.pid:
            self.pids.add(runner.proc.pid)
        fds = runner.fds()
        now = time.monotonic()
        wait = max(0.0, min(wait, runner.next_tick(now) - now))
        if fds:
            readable = select.select(fds, [], [], wait)[0]
        else:
            time.sleep(wait)
            readable = []
        now = time.monotonic()
        if readable:
            runner.on_readable(now)
        runner.tick(now)
        if self.kind == "bolt":
            while self.queue and runner.room() > 0:
                runner.send(*self.queue.popleft())
            runner.flush()
        else:
            runner.run(now, self.nexts)

    def run_until(self, pred: Callable[[], Any], timeout: float = 20.0,
                  what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = pred()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not met within {timeout:g} s "
                                     f"(errors: {self.errors[-3:]})")
            self.turn()

    def values(self, stream: str = "default") -> list[list[Any]]:
        return [e.values for e in self.emitted if e.stream == stream]

    def close(self) -> None:
        self.runner.stop(grace=1.0)
        for pid in self.pids:
            assert not _alive(pid), f"subprocess {pid} outlived its runner"
        assert not os.path.exists(self.pid_dir), "pid directory left behind"

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _alive(pid: int) -> bool:
    """Running or a zombie (not reaped): either way, a leak."""
    return psutil.pid_exists(pid)


def python(script: str) -> list[str]:
    return [PYTHON, script]
