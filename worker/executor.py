"""Executors: one per task, wrapping a user spout or bolt (or an acker) and its collector.

An executor is built complete from a `TaskEnv` (its collector included), opened once every
executor of the worker exists, run in slices by the loop, and closed at shutdown.

Extension points, for executors that windowed, stateful or multilang components bring:

1. A component class names its executor: `executor = "package.module:ClassName"` (or the
   class itself) on a Spout or Bolt subclass; the worker builds that class with the task's
   TaskEnv instead of SpoutExecutor/BoltExecutor (worker.tasks.executor_class). The loop
   never asks which kind of executor it runs.
2. Timers: `env.services.schedule.at(due, fn)` / `.every(period, fn, first)` run `fn(now)`
   on the loop's thread (worker.schedule).
3. File descriptors and sockets: `env.services.watch(fd_or_socket, fn)` makes the loop call
   `fn(now)` when it is readable (a subprocess's stdout), without ever blocking on it;
   `unwatch` stops that.
4. Held acks. A bolt executor that overrides `execute(tup)` owns the acking of its inputs:
   it may keep a tuple and call `self.collector.ack(tup)` / `.fail(tup)` later. A spout
   executor sees every finished tree in `tree_acked(msg_id)` / `tree_failed(msg_id)` and may
   hold them, calling `deliver_ack(msg_id)` / `deliver_fail(msg_id)` later (a checkpoint
   committed or rolled back).
5. System streams: an executor class declares `system_streams = {"__name": [fields]}`; its
   tasks send them with `self.collector.emit_system(stream, values, tasks)` and the
   receiving bolt executors get them in `on_system(tup)`, ordered with the data from the
   same task. User `outputs` and `process` never see them.
6. Heartbeats: `extra_snapshot()` returns fields added to the executor's snapshot (a
   window's watermark, a checkpoint's txid).
7. Flush: `flush(now)` runs when the parent sends {"type": "flush"} (end of mocked input).
"""

from __future__ import annotations

import collections
import logging
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, ClassVar, Protocol

from topology.context import TopologyContext
from topology.errors import TopologyError
from topology.model import Topology
from topology.tuple import StreamInfo, Tuple
from worker.acking import AckOutbox
from worker.collector import BoltCollector, SpoutCollector
from worker.errors import ErrorLog
from worker.routing import Route
from worker.schedule import Schedule
from worker.stats import ExecutorStats, InputCounts, spout_figures

log = logging.getLogger(__name__)

class LoopServices(Protocol):
    """What the loop offers executors (extension points 2 and 3)."""

    schedule: Schedule

    def watch(self, source: Any, on_readable: Callable[[float], None]) -> None: ...

    def unwatch(self, source: Any) -> None: ...


@dataclass
class TaskEnv:
    """Everything an executor is built from, given by the worker."""

    component: str
    task: int
    obj: Any  # this task's own instance of the user's component (None for ackers)
    conf: Mapping[str, Any]  # the worker's conf with the component's config over it
    context: TopologyContext | None
    routes: dict[str, Route]
    system_codes: Mapping[str, int]  # this component's system streams -> codes
    infos: Sequence[StreamInfo]  # the stream table: code -> component, stream, fields
    first_system_code: int
    outbox: AckOutbox | None  # None: the topology has no ackers
    capture: list[Any] | None  # topology.testing.capture: every emit is recorded here
    errors: ErrorLog
    services: LoopServices
    topology: Topology | None = None  # the whole topology (a multilang handshake's context)


class Executor:
    """What spout, bolt and acker executors share."""

    kind: ClassVar[str] = "executor"
    system_streams: ClassVar[Mapping[str, Sequence[str]]] = {}

    def __init__(self, env: TaskEnv) -> None:
        self.component = env.component
        self.task = env.task
        self.conf = env.conf
        self.context = env.context
        self.errors = env.errors
        self.services = env.services
        self.routes = env.routes
        self.stats = ExecutorStats(env.component, env.task, self.kind)

    def call_user(self, what: str, fn: Callable[..., Any], *args: Any) -> bool:
        """Call user code; an exception is reported, never raised. True if it returned."""
        try:
            fn(*args)
            return True
        except Exception as e:  # a user error must not stop the worker
            self.errors.report(self.component, self.task, what, e)
            return False

    def open(self) -> None:
        """Called once every executor of the worker has been built."""

    def close(self) -> None:
        """Called at shutdown, before the last flush."""

    def flush(self, now: float) -> None:
        """The parent's "flush": the input is over (complete_topology); emit what is held."""

    def snapshot(self) -> dict[str, Any]:
        routes = self.routes.values()
        snap = self.stats.snapshot({r.stream: r.emitted for r in routes},
                                   {r.stream: r.transferred() for r in routes},
                                   self.executed_streams(), *self.stream_figures())
        if self.context is not None and self.context.metrics:
            snap["metrics"] = self.context.report_metrics(self._metric_failed)
        snap.update(self.extra_snapshot())
        return snap

    def _metric_failed(self, name: str, error: Exception) -> None:
        wrapped = TopologyError(f"metric {name!r} could not be read: "
                                f"{type(error).__name__}: {error}")
        wrapped.__cause__ = error
        self.errors.report(self.component, self.task, f"metric {name!r}", wrapped)

    def extra_snapshot(self) -> dict[str, Any]:
        """Fields this executor adds to its heartbeat snapshot."""
        return {}

    def executed_streams(self) -> dict[str, dict[str, int]]:
        return {}

    def stream_figures(self) -> tuple[dict[Any, int], dict[Any, list[float]]]:
        """(acked, [latency total, count]) per stream key (see worker.stats)."""
        return self.stats.acked_streams, self.stats.latency_streams


class SpoutExecutor(Executor):
    kind = "spout"

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        self.spout = env.obj
        self.max_pending = int(env.conf.get("topology.max.spout.pending") or 0)
        self.timeout = float(env.conf["topology.message.timeout.secs"])
        # root -> (msg id, emit time, stream), oldest first: a dict keeps insertion order,
        # and tuples are inserted in emit order, so expiry stops at the first young one.
        self.pending: dict[int, tuple[Any, float, str]] = {}
        self.collector = SpoutCollector(env.component, env.task, env.routes, env.system_codes,
                                        env.capture, env.outbox, self.pending)
        self.captured: tuple[list[Any], list[Any]] | None = \
            ([], []) if env.capture is not None else None  # (acked, failed) msg ids
        self.spout._attach(self.collector)

    def open(self) -> None:
        self.call_user("open", self.spout.open, self.conf, self.context)

    def close(self) -> None:
        self.call_user("close", self.spout.close)

    def activate(self, active: bool) -> None:
        if active:
            self.call_user("activate", self.spout.activate)
        else:
            self.call_user("deactivate", self.spout.deactivate)

    def run(self, now: float, calls: int, until: float) -> int:
        """Call next_tuple up to `calls` times, and not after perf_counter() passes `until`
        (a slow next_tuple gets a call per turn); return how many tuples were emitted."""
        collector = self.collector
        collector.now = now
        next_tuple = self.spout.next_tuple
        clock = time.perf_counter
        pending = self.pending  # a tracked emit adds an entry: max.spout.pending bounds it
        max_pending = self.max_pending or sys.maxsize
        emitted_before = count = collector.emits
        made = 0
        start = clock()
        for _ in range(calls):
            if len(pending) >= max_pending:
                break
            made += 1
            try:
                next_tuple()
            except Exception as e:
                self.errors.report(self.component, self.task, "next_tuple", e)
                break
            if collector.emits == count:
                break
            count = collector.emits
            if clock() >= until:
                break
        took = clock() - start
        stats = self.stats
        stats.execute_time += took
        if made:
            stats.execute_latency.add(took / made, made)
        if collector.instant:
            done, collector.instant = collector.instant, []
            for msg_id, stream in done:
                stats.acked_on(stream)
                self.tree_acked(msg_id)
        return count - emitted_before

    def outcomes(self, acked: Sequence[int], failed: Sequence[int], now: float) -> None:
        """The acker's verdicts on roots of this task (unknown roots timed out already). A
        tree that completed after its timeout is failed: it did, it was only not yet
        expired (the loop was stuck, in user code, say, when its timeout came)."""
        pop = self.pending.pop
        stats = self.stats
        latency = stats.complete_latency
        per_stream = stats.latency_streams  # its counts are the acked trees (worker.stats)
        timeout = self.timeout
        for root in acked:
            entry = pop(root, None)
            if entry is None:
                continue
            took = now - entry[1]
            if took < timeout:
                latency.add(took)
                pair = per_stream.get(entry[2])
                if pair is None:
                    per_stream[entry[2]] = [took, 1]
                else:
                    pair[0] += took
                    pair[1] += 1
                self.tree_acked(entry[0])
            else:
                stats.timed_out += 1
                stats.failed_on(entry[2])
                self.tree_failed(entry[0])
        for root in failed:
            entry = pop(root, None)
            if entry is not None:
                stats.failed_on(entry[2])
                self.tree_failed(entry[0])

    def expire(self, now: float) -> None:
        """Fail the tuples emitted `topology.message.timeout.secs` ago or more (the loop
        calls this every third of the timeout, and at once after a stall)."""
        pending = self.pending
        cutoff = now - self.timeout
        late = []
        for root, entry in pending.items():
            if entry[1] > cutoff:
                break
            late.append(root)
        for root in late:
            msg_id, _, stream = pending.pop(root)
            self.stats.timed_out += 1
            self.stats.failed_on(stream)
            self.tree_failed(msg_id)

    def stream_figures(self) -> tuple[dict[Any, int], dict[Any, list[float]]]:
        return spout_figures(self.stats)

    def tree_acked(self, msg_id: Any) -> None:
        """A tree completed. Override to hold the ack (then call deliver_ack later)."""
        self.deliver_ack(msg_id)

    def tree_failed(self, msg_id: Any) -> None:
        """A tree failed or timed out. Override to hold it (then call deliver_fail)."""
        self.deliver_fail(msg_id)

    def deliver_ack(self, msg_id: Any) -> None:
        self.stats.acked += 1
        if self.captured is not None:
            self.captured[0].append(msg_id)
        self.call_user("ack", self.spout.ack, msg_id)

    def deliver_fail(self, msg_id: Any) -> None:
        self.stats.failed += 1
        if self.captured is not None:
            self.captured[1].append(msg_id)
        self.call_user("fail", self.spout.fail, msg_id)


class BoltExecutor(Executor):
    """Runs a bolt: each input tuple goes to `process`, then is acked (auto_ack), or failed
    if `process` raised (auto_fail). Inputs wait in `queue` as lanes
    [tuples left, source task, stream code, iterator of (values, ids)] (see worker.wire)."""

    kind = "bolt"

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        self.bolt = env.obj
        self.infos = env.infos
        self.first_system_code = env.first_system_code
        self.outbox = env.outbox if env.outbox is not None else AckOutbox()
        self.collector = BoltCollector(env.component, env.task, env.routes, env.system_codes,
                                       env.capture, self.outbox, self.stats,
                                       bool(getattr(self.bolt, "auto_anchor", True)))
        self.queue: collections.deque[list[Any]] = collections.deque()
        self.inputs = InputCounts(env.infos, env.first_system_code)
        custom = type(self).execute is not BoltExecutor.execute
        self._handle = self.execute if custom else self.bolt.process
        self.auto_ack = bool(getattr(self.bolt, "auto_ack", True)) and not custom
        self.auto_fail = bool(getattr(self.bolt, "auto_fail", True))
        self.bolt._attach(self.collector)

    def open(self) -> None:
        self.call_user("prepare", self.bolt.prepare, self.conf, self.context)

    def close(self) -> None:
        self.call_user("cleanup", self.bolt.cleanup)

    def execute(self, tup: Tuple) -> None:
        """Handle one input tuple. An executor that overrides this owns the acking of its
        inputs: nothing is acked for it, and it acks or fails each tuple when it likes."""
        self.bolt.process(tup)

    def on_system(self, tup: Tuple) -> None:
        """A tuple on a system stream (see routing): ignored unless overridden."""
        log.debug("%s task %d: ignored %r", self.component, self.task, tup)

    def put(self, src: int, code: int, n: int, rows: Any) -> None:
        """Queue `n` tuples from task `src` on stream `code`: an iterator of (values, ids)."""
        self.queue.append([n, src, code, rows])

    def run(self, budget: int) -> int:
        """Process up to `budget` queued tuples; return how many were processed."""
        queue = self.queue
        stats = self.stats
        executed, auto_acked, times = self.inputs.by_code()
        clock = time.perf_counter
        done = 0
        data = 0  # tuples of data streams among them
        data_time = 0.0
        first = start = clock()
        while queue and done < budget:
            lane = queue[0]
            take = min(lane[0], budget - done)
            code = lane[2]
            executed[code] += take
            info = self.infos[code]
            if code < self.first_system_code:
                auto_acked[code] += self._execute(lane[1], info, islice(lane[3], take))
                end = clock()  # a run of one source and stream, timed as one (worker.stats)
                times[code] += end - start
                data_time += end - start
                data += take
            else:
                self._system(lane[1], info, islice(lane[3], take))
                end = clock()
            start = end
            done += take
            lane[0] -= take
            if not lane[0]:
                queue.popleft()
        stats.execute_time += start - first
        if data:
            stats.execute_latency.add(data_time / data, data)
        stats.executed += done
        return done

    def _execute(self, src: int, info: StreamInfo, rows: Any) -> int:
        """Run the bolt on `rows`; return how many it auto-acked."""
        handle = self._handle
        collector = self.collector
        ack = self.outbox.ack
        auto_ack = self.auto_ack
        anchoring = collector.auto_anchor
        new = object.__new__
        refcount = sys.getrefcount
        # References to a Tuple nothing kept: `tup`, getrefcount's argument, and
        # collector.current if the bolt anchors.
        alone = 3 if anchoring else 2
        acked = 0
        tup: Any = None
        for values, ids in rows:
            # Tuple.__init__ without its call, and the last Tuple again when nothing else
            # refers to it: building a Tuple is otherwise a third of what this loop costs.
            # One that a bolt kept stays as it is.
            if tup is None or refcount(tup) > alone:
                tup = new(Tuple)
                tup.task = src
                tup._info = info
            tup.values = values
            tup.id = ids
            tup._ackval = 0
            if anchoring:
                collector.current = tup
            try:
                handle(tup)
            except Exception as e:
                self._failed(tup, e)
                tup = None
                continue
            if auto_ack and tup._ackval is not None:
                acked += 1
                if ids:
                    ack(tup)
        collector.current = None
        self.stats.acked += acked
        return acked

    def _system(self, src: int, info: StreamInfo, rows: Any) -> None:
        for values, ids in rows:
            self.call_user("on_system", self.on_system, Tuple(values, src, info, ids))

    def _failed(self, tup: Tuple, exc: Exception) -> None:
        self.collector.current = None
        self.errors.report(self.component, self.task, "process", exc)
        if self.auto_fail:
            self.collector.fail(tup)

    def tick(self, info: StreamInfo, freq: float) -> None:
        self.call_user("process_tick", self.bolt.process_tick, Tuple([freq], -1, info))

    def stream_figures(self) -> tuple[dict[Any, int], dict[Any, list[float]]]:
        return self.inputs.figures(self.stats.acked_streams)

    def executed_streams(self) -> dict[str, dict[str, int]]:
        return self.inputs.executed_streams()
