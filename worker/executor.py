"""Executors: one per task, each wrapping a user spout or bolt (or an acker) and its collector.

The collectors hold the per-tuple hot path: choose targets, make edge ids for anchored
tuples, hand the tuple to its destination (a local queue or a peer's outgoing batch), and
fold acks into one XOR per root until the next flush.
"""

from __future__ import annotations

import collections
import logging
import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from acker.ledger import ACK, AckerLedger, Outcome
from acker.rotating import RotatingMap
from topology.errors import TopologyError
from topology.tuple import StreamInfo, Tuple
from worker.routing import Route
from worker.stats import ExecutorStats

log = logging.getLogger(__name__)

rand64 = random.getrandbits


class AckOutbox:
    """Acker traffic of the whole worker, combined until the next flush (one XOR per root)."""

    def __init__(self) -> None:
        self.inits: list[tuple[int, int, int]] = []
        self.acks: dict[int, int] = {}
        self.fails: list[int] = []

    def __bool__(self) -> bool:
        return bool(self.inits or self.acks or self.fails)


class ErrorLog:
    """The last errors of the worker's components, shipped with heartbeats.

    Every error is logged with its traceback; at most `per_interval` errors per task and
    `interval` seconds are reported to the cluster (a bolt failing on every tuple must not
    flood ZooKeeper), the rest are counted in "suppressed".
    """

    def __init__(self, host: str, port: int, keep: int = 10, per_interval: int = 5,
                 interval: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.unsent: list[dict[str, Any]] = []
        self.per_interval = per_interval
        self.interval = interval
        self.suppressed = 0
        self._window: dict[int, tuple[float, int]] = {}  # task -> (window start, reported)

    def report(self, component: str, task: int, what: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))
        log.error("worker %s:%d: %s task %d raised in %s:\n%s", self.host, self.port,
                  component, task, what, text)
        now = time.monotonic()
        start, count = self._window.get(task, (now, 0))
        if now - start >= self.interval:
            start, count = now, 0
        if count >= self.per_interval:
            self.suppressed += 1
            return
        self._window[task] = (start, count + 1)
        error = {
            "component": component,
            "task": task,
            "time": time.time(),
            "host": self.host,
            "port": self.port,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": text,
        }
        self.recent.append(error)
        self.unsent.append(error)
        del self.unsent[:-50]

    def take_unsent(self) -> list[dict[str, Any]]:
        out, self.unsent = self.unsent, []
        return out


class Executor:
    """What spout, bolt and acker executors share."""

    kind = "executor"

    def __init__(self, component: str, task: int) -> None:
        self.component = component
        self.task = task
        self.stats = ExecutorStats(component, task, self.kind)
        self.routes: dict[str, Route] = {}


    def snapshot(self) -> dict[str, Any]:
        routes = self.routes.values()
        return self.stats.snapshot({r.stream: r.emitted for r in routes},
                                   {r.stream: r.transferred() for r in routes},
                                   self.executed_streams())

    def executed_streams(self) -> dict[str, dict[str, int]]:
        return {}


class _Collector:
    """Target selection and delivery shared by the spout and bolt collectors."""

    def __init__(self, executor: Executor, dest: Mapping[int, Callable[[tuple], None]],
                 capture: list | None) -> None:
        self._executor = executor
        self._component = executor.component
        self._task = executor.task
        self._routes = executor.routes
        self._dest = dest
        self._capture = capture
        self.count = 0  # tuples emitted, all streams

    def _route(self, stream: str, values: Sequence[Any]) -> Route:
        route = self._routes.get(stream)
        if route is None:
            raise TopologyError(
                f"component {self._component!r} emitted on undeclared stream {stream!r} "
                f"(it declares {sorted(self._routes)})"
            )
        if len(values) != route.nfields:
            raise TopologyError(
                f"component {self._component!r} emitted {len(values)} values on stream "
                f"{stream!r}, which declares {route.nfields} fields"
            )
        route.emitted += 1
        self.count += 1
        if self._capture is not None:
            self._capture.append((self._component, stream, list(values)))
        return route

    def _direct_target(self, route: Route, task: int) -> list[int]:
        if task not in route.direct_tasks:
            raise TopologyError(
                f"component {self._component!r}: task {task} is not a direct-grouped consumer "
                f"of stream {route.stream!r} (direct consumers: {sorted(route.direct_tasks)})"
            )
        route.counted[0] += 1
        return [task]


class SpoutCollector(_Collector):
    def __init__(self, executor: SpoutExecutor, dest: Mapping[int, Callable[[tuple], None]],
                 outbox: AckOutbox | None, capture: list | None) -> None:
        super().__init__(executor, dest, capture)
        self._spout_executor = executor
        self._outbox = outbox
        self._pending = executor.pending
        self.now = 0.0
        self.tracked = 0  # tuples emitted with a msg id that the acker tracks

    def emit(self, values: Sequence[Any], msg_id: Any = None, stream: str = "default") -> list[int]:
        route = self._routes.get(stream)
        if route is None or len(values) != route.nfields:
            return self._route(stream, values).targets(values)  # raises the clear error
        route.emitted += 1
        self.count += 1
        if self._capture is not None:
            self._capture.append((self._component, stream, list(values)))
        single = route.single
        targets = single(values) if single is not None else route.targets(values)
        self._send(targets, route.code, values, msg_id)
        return targets

    def emit_direct(self, task: int, values: Sequence[Any], msg_id: Any = None,
                    stream: str = "default") -> list[int]:
        route = self._route(stream, values)
        targets = self._direct_target(route, task)
        self._send(targets, route.code, values, msg_id)
        return targets

    def _send(self, targets: list[int], code: int, values: Sequence[Any], msg_id: Any) -> None:
        dest = self._dest
        outbox = self._outbox
        if msg_id is None:
            item = (self._task, code, values, ())
            for t in targets:
                dest[t](item)
            return
        if outbox is None or not targets:
            # Nothing will track this tree (no ackers, or no consumer): it is complete now.
            self._spout_executor.instant.append(msg_id)
            for t in targets:
                dest[t]((self._task, code, values, ()))
            return
        root = rand64(64)
        xor = 0
        task = self._task
        for t in targets:
            edge = rand64(64)
            xor ^= edge
            dest[t]((task, code, values, (root, edge)))
        self._pending.put_new(root, (msg_id, self.now))
        self.tracked += 1
        outbox.inits.append((root, xor, task))


class BoltCollector(_Collector):
    def __init__(self, executor: BoltExecutor, dest: Mapping[int, Callable[[tuple], None]],
                 outbox: AckOutbox, capture: list | None, auto_anchor: bool) -> None:
        super().__init__(executor, dest, capture)
        self._acks = outbox.acks
        self._fails = outbox.fails
        self._stats = executor.stats
        self._auto_anchor = auto_anchor
        self.current: Tuple | None = None

    def emit(self, values: Sequence[Any], anchors: Sequence[Tuple] | None = None,
             stream: str = "default") -> list[int]:
        # The hot path: route lookup, target choice and the common "anchored to the one
        # input tuple, which has one root" case are inlined to save calls per tuple.
        route = self._routes.get(stream)
        if route is None or len(values) != route.nfields:
            return self._route(stream, values).targets(values)  # raises the clear error
        route.emitted += 1
        if self._capture is not None:
            self._capture.append((self._component, stream, list(values)))
        single = route.single
        targets = single(values) if single is not None else route.targets(values)
        if anchors is None:
            current = self.current
            dest = self._dest
            if current is None or not current.id or not self._auto_anchor:
                item = (self._task, route.code, values, ())
                for t in targets:
                    dest[t](item)
                return targets
            ids = current.id
            if len(ids) == 2 and current._ackval is not None:
                root = ids[0]
                task = self._task
                code = route.code
                for t in targets:
                    edge = rand64(64)
                    current._ackval ^= edge
                    dest[t]((task, code, values, (root, edge)))
                return targets
        self._send(targets, route.code, values, anchors)
        return targets

    def emit_direct(self, task: int, values: Sequence[Any], anchors: Sequence[Tuple] | None = None,
                    stream: str = "default") -> list[int]:
        route = self._route(stream, values)
        targets = self._direct_target(route, task)
        self._send(targets, route.code, values, anchors)
        return targets

    def _send(self, targets: list[int], code: int, values: Sequence[Any],
              anchors: Sequence[Tuple] | None) -> None:
        dest = self._dest
        task = self._task
        if anchors is None:
            current = self.current
            if current is None or not self._auto_anchor or not current.id:
                item = (task, code, values, ())
                for t in targets:
                    dest[t](item)
                return
            ids = current.id
            if len(ids) == 2 and current._ackval is not None:
                # The common case: one anchor with one root.
                root = ids[0]
                for t in targets:
                    edge = rand64(64)
                    current._ackval ^= edge
                    dest[t]((task, code, values, (root, edge)))
                return
            anchors = (current,)
        tracked = [a for a in anchors if a.id]
        for a in tracked:
            if a._ackval is None:
                raise TopologyError(
                    f"component {self._component!r} anchored a tuple to {a!r}, which was "
                    "already acked or failed"
                )
        for t in targets:
            dest[t]((task, code, values, self._child_ids(tracked)))

    @staticmethod
    def _child_ids(anchors: Sequence[Tuple]) -> tuple:
        if not anchors:
            return ()
        child: dict[int, int] = {}
        for a in anchors:
            edge = rand64(64)
            a._ackval ^= edge  # type: ignore[operator]  # the caller checked it is not None
            ids = a.id
            for i in range(0, len(ids), 2):
                root = ids[i]
                child[root] = child.get(root, 0) ^ edge
        flat: list[int] = []
        for root, val in child.items():
            flat += (root, val)
        return tuple(flat)

    def ack(self, tup: Tuple) -> None:
        ackval = tup._ackval
        if ackval is None:
            return
        tup._ackval = None
        ids = tup.id
        acks = self._acks
        if len(ids) == 2:
            root = ids[0]
            acks[root] = acks.get(root, 0) ^ ids[1] ^ ackval
        else:
            for i in range(0, len(ids), 2):
                root = ids[i]
                acks[root] = acks.get(root, 0) ^ ids[i + 1] ^ ackval
        self._stats.acked += 1

    def fail(self, tup: Tuple) -> None:
        if tup._ackval is None:
            return
        tup._ackval = None
        ids = tup.id
        for i in range(0, len(ids), 2):
            self._fails.append(ids[i])
        self._stats.failed += 1


class SpoutExecutor(Executor):
    kind = "spout"

    def __init__(self, component: str, task: int, spout: Any, max_pending: int | None,
                 errors: ErrorLog, pending_buckets: int = 4) -> None:
        super().__init__(component, task)
        self.spout = spout
        self.max_pending = max_pending or 0
        self.errors = errors
        self.pending: RotatingMap[int, tuple[Any, float]] = RotatingMap(pending_buckets)
        self.instant: list[Any] = []  # msg ids complete at emit (nothing tracks them)
        self.collector: SpoutCollector | None = None
        self.capture_acked: list | None = None
        self.capture_failed: list | None = None

    def _call(self, what: str, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as e:  # a user error must not stop the worker
            self.errors.report(self.component, self.task, what, e)

    def run(self, now: float, calls: int) -> int:
        """Call next_tuple up to `calls` times; return how many tuples were emitted."""
        collector = self.collector
        assert collector is not None
        collector.now = now
        next_tuple = self.spout.next_tuple
        # Only this loop adds to `pending` (each tracked emit adds one entry), so the room
        # left under max.spout.pending is computed once rather than per call.
        room = self.max_pending - len(self.pending) if self.max_pending else -1
        tracked_before = collector.tracked
        emitted_before = count = collector.count
        start = time.perf_counter()
        for _ in range(calls):
            if room >= 0 and collector.tracked - tracked_before >= room:
                break
            try:
                next_tuple()
            except Exception as e:
                self.errors.report(self.component, self.task, "next_tuple", e)
                break
            if collector.count == count:
                break
            count = collector.count
        self.stats.execute_time += time.perf_counter() - start
        if self.instant:
            self._ack_instant()
        return count - emitted_before

    def _ack_instant(self) -> None:
        done, self.instant = self.instant, []
        for msg_id in done:
            self.stats.acked += 1
            if self.capture_acked is not None:
                self.capture_acked.append(msg_id)
            self._call("ack", self.spout.ack, msg_id)

    def outcomes(self, acked: Sequence[int], failed: Sequence[int], now: float) -> None:
        pending = self.pending
        latency = self.stats.complete_latency
        for root in acked:
            entry = pending.pop(root)
            if entry is None:
                continue  # timed out already
            msg_id, started = entry
            latency.add(now - started)
            self.stats.acked += 1
            if self.capture_acked is not None:
                self.capture_acked.append(msg_id)
            self._call("ack", self.spout.ack, msg_id)
        for root in failed:
            entry = pending.pop(root)
            if entry is not None:
                self._fail(entry[0])

    def _fail(self, msg_id: Any) -> None:
        self.stats.failed += 1
        if self.capture_failed is not None:
            self.capture_failed.append(msg_id)
        self._call("fail", self.spout.fail, msg_id)

    def expire(self) -> None:
        """Rotate the pending map: what falls out timed out and is failed."""
        for msg_id, _ in self.pending.rotate().values():
            self.stats.timed_out += 1
            self._fail(msg_id)


class BoltExecutor(Executor):
    kind = "bolt"

    def __init__(self, component: str, task: int, bolt: Any, infos: Sequence[StreamInfo],
                 errors: ErrorLog) -> None:
        super().__init__(component, task)
        self.bolt = bolt
        self.infos = infos
        self.errors = errors
        self.queue: collections.deque[tuple] = collections.deque()
        self.executed_by_code = [0] * len(infos)  # per input stream
        self.collector: BoltCollector | None = None
        self.auto_ack = bool(getattr(bolt, "auto_ack", True))
        self.auto_fail = bool(getattr(bolt, "auto_fail", True))

    def run(self, budget: int) -> int:
        """Process up to `budget` queued tuples; return how many were processed."""
        queue = self.queue
        n = min(budget, len(queue))
        if not n:
            return 0
        collector = self.collector
        assert collector is not None
        popleft = queue.popleft
        infos = self.infos
        process = self.bolt.process
        ack = collector.ack
        acks = collector._acks
        auto_ack = self.auto_ack
        by_code = self.executed_by_code
        acked = 0
        start = time.perf_counter()
        for _ in range(n):
            src, code, values, ids = popleft()
            by_code[code] += 1
            tup = Tuple(values, src, infos[code], ids)
            collector.current = tup
            try:
                process(tup)
            except Exception as e:
                self._failed(tup, e)
                continue
            if auto_ack:
                ackval = tup._ackval
                if ackval is None:
                    continue
                if not ids:  # untracked: nothing to tell the acker
                    acked += 1
                elif len(ids) == 2:  # inlined BoltCollector.ack for one root
                    tup._ackval = None
                    root = ids[0]
                    acks[root] = acks.get(root, 0) ^ ids[1] ^ ackval
                    acked += 1
                else:
                    ack(tup)
        collector.current = None
        stats = self.stats
        stats.execute_time += time.perf_counter() - start
        stats.executed += n
        stats.acked += acked
        return n

    def _failed(self, tup: Tuple, exc: Exception) -> None:
        assert self.collector is not None
        self.collector.current = None
        self.errors.report(self.component, self.task, "process", exc)
        if self.auto_fail:
            self.collector.fail(tup)

    def executed_streams(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for code, n in enumerate(self.executed_by_code):
            if n:
                info = self.infos[code]
                out.setdefault(info.component, {})[info.stream] = n
        return out

    def tick(self, info: StreamInfo, freq: float) -> None:
        tup = Tuple([freq], -1, info)
        try:
            self.bolt.process_tick(tup)
        except Exception as e:
            self.errors.report(self.component, self.task, "process_tick", e)


class AckerExecutor(Executor):
    """Hosts one acker task: feeds its ledger and returns what to tell the spouts."""

    kind = "acker"

    def __init__(self, component: str, task: int, buckets: int = 4) -> None:
        super().__init__(component, task)
        self.ledger = AckerLedger(buckets)

    def handle(self, inits: Sequence[tuple[int, int, int]], acks: Mapping[int, int],
               fails: Sequence[int]) -> list[Outcome]:
        ledger = self.ledger
        out: list[Outcome] = []
        for root, val, spout_task in inits:
            outcome = ledger.init(root, val, spout_task)
            if outcome is not None:
                out.append(outcome)
        ack = ledger.ack
        for root, val in acks.items():
            outcome = ack(root, val)
            if outcome is not None:
                out.append(outcome)
        for root in fails:
            outcome = ledger.fail(root)
            if outcome is not None:
                out.append(outcome)
        stats = self.stats
        stats.executed += len(inits) + len(acks) + len(fails)
        for o in out:
            if o.kind == ACK:
                stats.acked += 1
            else:
                stats.failed += 1
        return out
