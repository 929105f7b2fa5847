"""The multilang executors: ShellBolt and ShellSpout tasks on the worker's loop.

Each task runs its component's subprocess through a `topology.multilang.runner` runner and
puts it on the loop with the executor extension points (see worker.executor): the
subprocess's stdout and stderr are watched file descriptors (`env.services.watch`), its
heartbeats, hang checks and restarts a timer (`env.services.schedule`), and nothing ever
waits on it, so a slow or hung subprocess stalls neither the other tasks of its worker nor
the worker's heartbeats.

A shell bolt holds the acks of its inputs (extension point 4): a tuple is acked or failed
when the subprocess says so, or failed when the subprocess dies with it in flight. At most
`topology.shellbolt.max.pending` tuples are in flight; the rest wait in the bolt's queue
(where the worker's backpressure sees them). A shell spout forwards the acker's verdicts to
its subprocess as `ack`/`fail` commands.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from topology.errors import SquallError
from topology.multilang.components import ShellComponent, ShellSettings
from topology.multilang.handshake import component_conf, context_from_streams, setup_info
from topology.multilang.protocol import SYSTEM_TASK, TupleEncoder
from topology.multilang.runner import BoltRunner, ShellRunner, SpoutRunner
from topology.tuple import StreamInfo, Tuple
from worker.collector import BoltCollector, SpoutCollector
from worker.executor import BoltExecutor, LoopServices, SpoutExecutor, TaskEnv
from worker.schedule import Timer

log = logging.getLogger(__name__)

# Where the topology's code package was unpacked, if the worker says (set by whoever
# extracts it); else a component runs where it was declared (ShellComponent.working_dir).
CODE_DIR_KEY = "topology.code.dir"

LIVE: set[RunnerDriver] = set()  # the drivers started in this worker and not yet stopped

# A component that writes each message as it goes (pystorm flushes after every one) would
# wake the loop for every message: after a read of some but less than SNOOZE_BELOW bytes,
# its pipes are not watched for SNOOZE_SECS (what it writes meanwhile waits in the pipe and
# is read in one go; a quiet pipe is watched again). Without it, most wake-ups read one to
# three messages and a saturated worker spends up to twice the CPU per tuple; it costs up
# to a loop's timer tick (about a millisecond) of latency on a trickle of output.
SNOOZE_BELOW = 4096
SNOOZE_SECS = 0.0005


class ShellComponentError(SquallError):
    """What a shell component reported (an `error` message, a crash, a hang)."""


class RunnerDriver:
    """Puts one runner on the loop: watches its subprocess's pipes and keeps a timer for its
    `tick`. Call `sync(now)` after anything that may have started or lost the subprocess."""

    def __init__(self, runner: ShellRunner, services: LoopServices,
                 after_io: Callable[[float], None]) -> None:
        self.runner = runner
        self.services = services
        self.after_io = after_io  # the executor's follow-up to what the subprocess said
        self.watched: tuple[int, ...] = ()
        self.generation = -1
        self.timer: Timer | None = None
        self.due = 0.0
        self.snooze: Timer | None = None  # while set, the pipes are not watched

    def start(self, now: float) -> None:
        LIVE.add(self)
        self.runner.start(now)
        self.sync(now)

    def readable(self, now: float) -> None:
        proc = self.runner.proc
        before = proc.bytes_read if proc is not None else 0
        try:
            self.runner.on_readable(now)
            self.after_io(now)
        finally:  # even after a bug: never leave a closed pipe on the loop's poller
            if (proc is not None and proc is self.runner.proc and proc.stdout_open
                    and 0 < proc.bytes_read - before < SNOOZE_BELOW):
                self.snooze = self.services.schedule.at(now + SNOOZE_SECS, self._wake,
                                                        f"{self.runner.label} snooze")
            self.sync(now)

    def _wake(self, now: float) -> None:
        self.snooze = None
        self.readable(now)

    def _tick(self, now: float) -> None:
        self.timer = None
        try:
            self.runner.tick(now)
            self.after_io(now)
        finally:
            self.sync(now)

    def sync(self, now: float) -> None:
        """Watch exactly the runner's open pipes (none while snoozing), and have a timer by
        its next tick."""
        runner = self.runner
        fds = runner.fds() if self.snooze is None else ()
        if fds != self.watched or runner.generation != self.generation:
            for fd in self.watched:
                self.services.unwatch(fd)
            for fd in fds:
                self.services.watch(fd, self.readable)
            self.watched = fds
            self.generation = runner.generation
        if runner.stopped:
            return
        due = runner.next_tick(now)
        if self.timer is not None and due < self.due - 0.001:
            self.timer.cancel()
            self.timer = None
        if self.timer is None:
            self.due = due
            self.timer = self.services.schedule.at(due, self._tick, f"{runner.label} tick")

    def stop(self) -> None:
        """Stop watching (before the pipes close), then stop the subprocess (bounded wait).
        Every other live driver of this worker is told to stop first: the worker closes its
        executors one by one, and their subprocesses then exit together."""
        LIVE.discard(self)
        for other in list(LIVE):
            other.runner.terminate()
        for fd in self.watched:
            self.services.unwatch(fd)
        self.watched = ()
        for timer in (self.timer, self.snooze):
            if timer is not None:
                timer.cancel()
        self.timer = self.snooze = None
        self.runner.stop()


def _setup(env: TaskEnv) -> Callable[[str], dict[str, Any]]:
    """The handshake message of `env`'s task, given its pid directory."""
    topology = env.topology  # None in unit tests that build a TaskEnv by hand
    component_tasks = {c: env.context.component_tasks(c) for c in env.context.components} \
        if env.context is not None else {env.component: [env.task]}
    if topology is not None:
        return lambda pid_dir: setup_info(topology, env.component, env.task, component_tasks,
                                          env.conf, pid_dir)
    streams = [(i.component, i.stream, i.fields) for i in env.infos[:env.first_system_code]]
    context = context_from_streams(env.component, env.task, component_tasks, streams)
    name = env.context.topology_name if env.context is not None else ""
    conf = component_conf(env.conf, name)
    return lambda pid_dir: {"conf": conf, "pidDir": pid_dir, "context": context}


def _label(kind: str, env: TaskEnv) -> str:
    port = env.context.worker_port if env.context is not None else None
    where = f"worker {port}: " if port is not None else ""
    return f"{where}shell {kind} {env.component!r} task {env.task}"


class _Reporter:
    """What the bolt and spout sinks share: emits go through the component object's emit
    methods (the collector's, or the wrappers topology.debug puts around them, bound at
    open once the worker has put them there), and a runner's error texts become the task's
    reported errors."""

    def __init__(self, executor: ShellBoltExecutor | ShellSpoutExecutor) -> None:
        self.executor = executor
        self.collector = executor.collector
        self._emit = self.collector.emit
        self._emit_direct = self.collector.emit_direct

    def bind(self, obj: Any) -> None:
        self._emit = obj.emit
        self._emit_direct = obj.emit_direct

    def error(self, text: str) -> None:
        ex = self.executor
        ex.errors.report(ex.component, ex.task, "subprocess", ShellComponentError(text))


class _BoltSink(_Reporter):
    collector: BoltCollector

    def emit(self, stream: str, values: list[Any], anchors: list[Any],
             task: int | None) -> list[int]:
        if task is not None:
            return self._emit_direct(task, values, anchors, stream)
        if len(anchors) != 1:
            return self._emit(values, anchors, stream)
        # Anchored to one input (nearly every emit): as the input being processed, which is
        # the collector's inline path, a third of the cost of an explicit anchor list.
        collector = self.collector
        collector.current = anchors[0]
        try:
            return self._emit(values, None, stream)
        finally:
            collector.current = None

    def ack(self, handle: Any) -> None:
        self.collector.ack(handle)

    def fail(self, handle: Any) -> None:
        self.collector.fail(handle)


class _SpoutSink(_Reporter):
    executor: ShellSpoutExecutor
    collector: SpoutCollector

    def emit(self, stream: str, values: list[Any], msg_id: Any, task: int | None) -> list[int]:
        self.collector.now = self.executor.runner.now  # the emit time of a tracked tuple
        if task is None:
            return self._emit(values, msg_id, stream)
        return self._emit_direct(task, values, msg_id, stream)


class ShellBoltExecutor(BoltExecutor):
    """Runs a ShellBolt task: input tuples go to the subprocess; its emits, acks and fails
    come back through the watched stdout."""

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        shell: ShellComponent = env.obj
        self.settings = ShellSettings.from_conf(env.conf)
        self.encoders: dict[int, TupleEncoder] = {}  # id(StreamInfo) -> its encoder
        self.sink = _BoltSink(self)
        self.runner = BoltRunner(shell, _label("bolt", env), _setup(env), self.sink,
                                 self.settings, code_dir=env.conf.get(CODE_DIR_KEY))
        self.driver = RunnerDriver(self.runner, env.services, _nothing)

    def open(self) -> None:
        self.sink.bind(self.bolt)
        self.driver.start(time.monotonic())

    def close(self) -> None:
        self.driver.stop()

    def run(self, budget: int) -> int:
        """Hand the subprocess up to `budget` queued tuples, as many as it has room for."""
        runner = self.runner
        if runner.up:
            runner.on_readable(time.monotonic())  # its replies first: they make room
        room = runner.room()
        done = super().run(min(budget, room)) if room > 0 else 0
        runner.flush()
        self.driver.sync(runner.now)
        return done

    def execute(self, tup: Tuple) -> None:
        info = tup._info
        encoder = self.encoders.get(id(info))
        if encoder is None:
            encoder = self.encoders[id(info)] = TupleEncoder(info.component, info.stream)
        self.runner.send(tup, encoder, tup.task, tup.values)

    def tick(self, info: StreamInfo, freq: float) -> None:
        """A tick tuple goes to the subprocess as Storm sends it (__system, __tick, task -1)."""
        if not self.runner.up:
            return
        tup = Tuple([freq], SYSTEM_TASK, info)
        self.execute(tup)
        self.runner.flush()

    def extra_snapshot(self) -> dict[str, Any]:
        return {"shell": self.runner.snapshot()}


class ShellSpoutExecutor(SpoutExecutor):
    """Runs a ShellSpout task: `next` commands while the loop lets spouts run (and
    `topology.max.spout.pending` allows), the acker's verdicts as `ack`/`fail` commands."""

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        shell: ShellComponent = env.obj
        self.settings = ShellSettings.from_conf(env.conf)
        self.sink = _SpoutSink(self)
        self.runner = SpoutRunner(shell, _label("spout", env), _setup(env), self.sink,
                                  self.settings, code_dir=env.conf.get(CODE_DIR_KEY))
        self.driver = RunnerDriver(self.runner, env.services, self._after_io)

    def open(self) -> None:
        self.sink.bind(self.spout)
        self.driver.start(time.monotonic())

    def close(self) -> None:
        self.driver.stop()

    def activate(self, active: bool) -> None:
        if active:
            self.runner.activate()
        else:
            self.runner.deactivate()
        self._pump()

    def run(self, now: float, calls: int, until: float) -> int:
        """Read what the subprocess said, then ask for up to `calls` tuples (within the
        command pipeline); its emits arrive as it answers, here or in the watcher."""
        collector = self.collector
        collector.now = now
        before = collector.emits
        runner = self.runner
        if runner.up:
            runner.on_readable(now)
        room = calls if len(self.pending) < (self.max_pending or len(self.pending) + 1) else 0
        runner.run(now, room)
        self._after_io(now)
        self.driver.sync(runner.now)
        return collector.emits - before

    def _after_io(self, now: float) -> None:
        collector = self.collector
        if collector.instant:  # reliable emits that nothing tracks: complete at once
            done, collector.instant = collector.instant, []
            for msg_id, stream in done:
                self.stats.acked_on(stream)
                self.tree_acked(msg_id)

    def deliver_ack(self, msg_id: Any) -> None:
        self.stats.acked += 1
        if self.captured is not None:
            self.captured[0].append(msg_id)
        self.runner.ack(msg_id)
        self._pump()

    def deliver_fail(self, msg_id: Any) -> None:
        self.stats.failed += 1
        if self.captured is not None:
            self.captured[1].append(msg_id)
        self.runner.fail(msg_id)
        self._pump()

    def _pump(self) -> None:
        """Write the queued commands the pipeline has room for (no `next`)."""
        runner = self.runner
        if runner.up:
            runner.run(time.monotonic(), 0)
            self.driver.sync(runner.now)

    def extra_snapshot(self) -> dict[str, Any]:
        return {"shell": self.runner.snapshot()}


def _nothing(now: float) -> None:
    pass
