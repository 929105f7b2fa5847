"""The worker: the executors of one slot, their loop, and the link to the parent.

    Worker(...)     bind the slot port; nothing runs yet
    run()           wait for the first assignment (heartbeating "waiting"), build and open the
                    executors (worker.tasks), run the loop (worker.loop) until stopped, shut
                    down: close the executors, flush, a last heartbeat, close the sockets
    request_stop()  only sets flags (safe from a signal handler or the parent link's thread)

Later assignments only move tasks of other workers (the batches follow them) or switch the
topology on and off; an assignment that changes this worker's own tasks makes it exit
(code 3) so that its parent starts it afresh.

Unit tests build a Worker over a MemoryTransport with no parent link and drive it with
`apply_assignment(assignment, now)` and `loop.turn(now)`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import psutil

from cluster.config import KEYS
from topology.model import Topology
from topology.tuple import StreamInfo
from worker.backpressure import Backpressure
from worker.dispatch import Dispatcher
from worker.errors import ErrorLog
from worker.executor import BoltExecutor
from worker.loop import Loop, Services
from worker.parent import ParentLink
from worker.stats import Windows
from worker.tasks import TaskSet, build_tasks
from worker.transport import Address, Transport, ZmqTransport
from worker.wire import Codec, topology_tag, worker_id

log = logging.getLogger(__name__)

EXIT_STOPPED, EXIT_FAILED, EXIT_TASKS_CHANGED = 0, 1, 3
CONTROL_EVERY = 0.05  # how often the loop follows the parent link's "spouts paused"
WAIT_POLL_MS = 50  # how long a worker waiting for its assignment sleeps between looks


def setting(conf: Mapping[str, Any], key: str) -> Any:
    """A cluster key from the worker's conf, or its default (a package from an older nimbus)."""
    return conf[key] if key in conf else KEYS[key].default_value()


class Worker:
    def __init__(self, topology: Topology, conf: Mapping[str, Any], topology_id: str,
                 host: str, port: int, key: bytes, link: ParentLink | None = None, *,
                 transport: Transport | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.topology = topology
        self.conf = conf
        self.topology_id = topology_id
        self.host = host
        self.port = port
        self.me: Address = (host, port)
        self.link = link
        self.clock = clock
        self.transport = transport or ZmqTransport(
            Codec(key, topology_tag(topology_id), worker_id(host, port)), host, port,
            max_message_bytes=int(setting(conf, "worker.max.message.bytes")))
        self.errors = ErrorLog(host, port,
                               per_interval=int(conf["topology.max.error.report.per.interval"]),
                               interval=float(conf["topology.error.throttle.interval.secs"]))
        self.services = Services(self.transport)
        self.capture: list[Any] | None = [] if conf.get("topology.testing.capture") else None
        self.started = clock()
        self.version: Any = None
        self.active = False
        self.tasks: list[int] = []
        self.locations: dict[int, Address] = {}  # every task's worker; shared with dispatch
        self.executors: TaskSet | None = None
        self.loop: Loop | None = None
        self.stop_requested = False
        self.exit_code = EXIT_STOPPED
        self.flushes = 0  # "flush" requests served
        self.failed = False  # the assigned tasks could not be built
        self.last_heartbeat: dict[str, Any] | None = None
        self._windows = Windows()
        self._process = psutil.Process()
        heartbeat_every = float(conf["worker.heartbeat.frequency.secs"])
        self.services.schedule.every(heartbeat_every, self.heartbeat, self.started)
        if link is not None:
            self.services.watch(link.socket, self.on_control)

    # --- run -----------------------------------------------------------------------------

    def run(self) -> int:
        """Wait for an assignment, then run until stopped. Returns the exit code."""
        schedule = self.services.schedule
        while self.loop is None and not self.stop_requested:
            now = self.clock()
            for timer in schedule.pop_due(now):
                timer.callback(now)
            self.services.poll(WAIT_POLL_MS, now)
        if self.loop is not None and not self.stop_requested:
            self.loop.run()
        self.shutdown()
        return self.exit_code

    def request_stop(self, code: int = EXIT_STOPPED, why: str = "") -> None:
        if not self.stop_requested:
            self.exit_code = code
        self.stop_requested = True
        if self.loop is not None:
            self.loop.stopping = True

    def stall(self) -> tuple[float, str | None]:
        """How long the loop has been in its current turn, and in which task (for the
        parent link's thread: reads two attributes, changes nothing)."""
        loop = self.loop
        if loop is None:
            return 0.0, None
        current = loop.current
        where = f"{current.component}:{current.task}" if current is not None else None
        return self.clock() - loop.turn_started, where

    # --- assignments ---------------------------------------------------------------------

    def apply_assignment(self, assignment: dict[str, Any], now: float) -> None:
        """Take a new assignment: set up on the first, follow moved tasks afterwards."""
        locations = {int(t): (h, int(p)) for t, (h, p) in assignment["tasks"].items()}
        mine = sorted(t for t, loc in locations.items() if loc == self.me)
        if self.loop is not None and mine != self.tasks:
            log.info("worker %s:%d: my tasks changed; restarting to take the new set",
                     self.host, self.port)
            self.request_stop(EXIT_TASKS_CHANGED)
            return
        self.version = assignment["version"]
        self.locations.clear()
        self.locations.update(locations)
        if self.loop is None:
            self.tasks = mine
            try:
                self._start(now)
            except Exception as e:  # a component that cannot be built: say why, and exit
                self.errors.report("__worker", -1, "start", e)
                self.failed = True
                self.heartbeat(now)
                self.request_stop(EXIT_FAILED)
                return
        self._reroute()
        self._set_active(bool(assignment.get("active", True)))
        self.heartbeat(now)  # say at once that the new version runs

    def _start(self, now: float) -> None:
        conf = self.conf
        tasks = self.executors = build_tasks(self.topology, conf, self.tasks, self.port,
                                             self.errors, self.services, self.capture)
        dispatcher = Dispatcher(tasks, self.transport, self.locations,
                                int(conf["worker.batch.size"]))
        self.loop = Loop(tasks, dispatcher, self.transport, self.services,
                         Backpressure(int(conf["worker.queue.high.watermark"]), (), now),
                         high_watermark=int(conf["worker.queue.high.watermark"]),
                         flush_interval=float(conf["worker.flush.interval.ms"]) / 1000.0,
                         batch_size=int(conf["worker.batch.size"]), clock=self.clock)
        self.loop.stopping = self.stop_requested
        for executor in tasks.all():
            executor.open()
        self._plan_timers(tasks, now)
        log.info("worker %s:%d: running tasks %s of %s", self.host, self.port, self.tasks,
                 self.topology_id)

    def _plan_timers(self, tasks: TaskSet, now: float) -> None:
        schedule = self.services.schedule
        every = float(self.conf["topology.message.timeout.secs"]) / 3
        schedule.every(every, tasks.expire, now + every, "expire pending trees")
        if self.link is not None:
            schedule.every(CONTROL_EVERY, self._follow_link, now, "follow parent link")
        by_component: dict[str, list[BoltExecutor]] = {}
        for bolt in tasks.bolts:
            by_component.setdefault(bolt.component, []).append(bolt)
        for component, bolts in by_component.items():
            freq = bolts[0].conf.get("topology.tick.tuple.freq.secs")
            if freq:
                info = bolts[0].infos[0]
                schedule.every(float(freq), _ticker(bolts, info, float(freq)), now + float(freq),
                               f"ticks of {component}")

    def _reroute(self) -> None:
        peers = sorted({loc for loc in self.locations.values() if loc != self.me})
        assert self.loop is not None
        self.loop.peers = peers
        self.loop.backpressure.set_peers(worker_id(host, port) for host, port in peers)
        self.transport.forget_peers(set(peers))

    def _set_active(self, active: bool) -> None:
        assert self.loop is not None and self.executors is not None
        self.loop.active = active
        if active == self.active:
            return
        self.active = active
        for spout in self.executors.spouts:
            spout.activate(active)
        log.info("worker %s:%d: %s", self.host, self.port, "active" if active else "inactive")

    # --- the parent ----------------------------------------------------------------------

    def on_control(self, now: float) -> None:
        """Serve what the parent link forwarded: assignments, dump and flush requests."""
        assert self.link is not None
        for message in self.link.messages():
            kind = message.get("type")
            if kind == "assignment":
                assignment = message["assignment"]
                if assignment.get("version") != self.version or self.loop is None:
                    self.apply_assignment(assignment, now)
            elif kind == "dump":
                self.link.post(self.dump())
            elif kind == "flush":
                self.flush(now)

    def _follow_link(self, now: float) -> None:
        assert self.link is not None and self.loop is not None
        self.loop.spouts_held = self.link.spouts_paused

    def flush(self, now: float) -> None:
        """The input is over: let every executor emit what it holds."""
        self.flushes += 1
        if self.executors is not None:
            for executor in self.executors.all():
                executor.call_user("flush", executor.flush, now)

    def heartbeat(self, now: float) -> None:
        loop, tasks = self.loop, self.executors
        executors = [e.snapshot() for e in tasks.all()] if tasks is not None else []
        self._windows.add(now, executors)
        dispatcher = loop.dispatcher if loop is not None else None
        self.last_heartbeat = {
            "type": "heartbeat", "topology_id": self.topology_id, "host": self.host,
            "port": self.port, "pid": os.getpid(), "version": self.version,
            "time": time.time(), "uptime": now - self.started,
            "state": "failed" if self.failed else "running" if loop is not None else "waiting",
            "active": self.active, "tasks": self.tasks, "executors": executors,
            "errors": self.errors.take_unsent(),
            "queued": dispatcher.queued if dispatcher else 0,
            "parked": len(loop.parked) if loop else 0,
            "overloaded": loop.backpressure.overloaded if loop else False,
            "rejected": self.transport.rejected + (loop.malformed if loop else 0),
            "dropped": dispatcher.dropped if dispatcher else 0,
            "too_big": dispatcher.too_big if dispatcher else 0,
            "errors_suppressed": self.errors.suppressed,
            "rss": self._process.memory_info().rss,
            "sent_bytes": self.transport.sent_bytes,
            "received_bytes": self.transport.received_bytes,
            "sent_messages": self.transport.sent_messages,
            "received_messages": self.transport.received_messages,
            "spouts_paused": loop.spouts_held if loop else False,
            "flushes": self.flushes,
            "turns": loop.turns if loop else 0,
            "stalled_secs": 0.0, "stalled_in": None,
        }
        if self.link is not None:
            self.link.post(self.last_heartbeat)

    def dump(self) -> dict[str, Any]:
        spouts = self.executors.spouts if self.executors is not None else []
        return {
            "type": "dump",
            "emitted": list(self.capture or []),
            "acked": {s.task: list(s.captured[0]) if s.captured else [] for s in spouts},
            "failed": {s.task: list(s.captured[1]) if s.captured else [] for s in spouts},
            "components": {s.task: s.component for s in spouts},
        }

    # --- shutdown ------------------------------------------------------------------------

    def shutdown(self) -> None:
        log.info("worker %s:%d: shutting down", self.host, self.port)
        if self.executors is not None:
            for executor in self.executors.all():
                executor.close()
        if self.loop is not None:
            try:
                self.loop.flush(self.clock())
            except Exception:  # the peers may be gone already
                log.debug("worker %s:%d: final flush failed", self.host, self.port,
                          exc_info=True)
        self.heartbeat(self.clock())
        self.transport.close()
        if self.link is not None:
            self.link.close()


def _ticker(bolts: list[BoltExecutor], info: StreamInfo, freq: float) -> Callable[[float], None]:
    def tick(now: float) -> None:
        for bolt in bolts:
            bolt.tick(info, freq)

    return tick
