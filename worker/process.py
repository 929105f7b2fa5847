"""The worker: one process running the executors of one slot in a single event loop.

One thread does everything, so the hot path takes no locks: each turn of the loop reads
what arrived, lets each bolt process a slice of its queue, lets the spouts emit if nothing
downstream is overloaded, and flushes outgoing batches when they are full or a flush
interval old (or at once when the worker falls idle). Sends never block (see transport),
and only spouts are ever paused, so the loop cannot deadlock on its peers.
"""

from __future__ import annotations

import collections
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import psutil
import zmq

from topology.context import TopologyContext
from topology.model import ACKER_COMPONENT, Topology
from worker.control import ControlClient
from worker.executor import (
    AckerExecutor,
    AckOutbox,
    BoltCollector,
    BoltExecutor,
    ErrorLog,
    SpoutCollector,
    SpoutExecutor,
)
from worker.routing import build_routes, stream_codes, stream_table
from worker.stats import Windows
from worker.transport import Address, Transport
from worker.wire import ACKER, BACKPRESSURE, DATA, SPOUT, Codec, topology_tag, worker_id

log = logging.getLogger(__name__)

BOLT_SLICE = 256  # tuples a bolt processes per turn before others get a go
SPOUT_SLICE = 64  # next_tuple calls per spout per turn
RECEIVE_SLICE = 256  # messages read per turn
BACKPRESSURE_TTL = 3.0  # a peer's "overloaded" that is not refreshed expires
# What a BACKPRESSURE message says. A worker that has just started says HELLO (not
# overloaded, and answer me), so its peers send their status at once and its spouts,
# which wait to hear from every peer, start without waiting for the peers' next round.
READY, OVERLOADED, HELLO = 0, 1, 2
STATUS_EVERY = 1.0  # every worker tells every peer its overload state this often
PEER_WAIT_SECS = 10.0  # spouts wait this long at most for every peer to be heard from


class Worker:
    def __init__(self, topology: Topology, conf: Mapping[str, Any], topology_id: str,
                 host: str, port: int, key: bytes, control: ControlClient | None,
                 parent_pid: int | None = None) -> None:
        self.topology = topology
        self.conf = conf
        self.topology_id = topology_id
        self.host = host
        self.port = port
        self.me: Address = (host, port)
        self.control = control
        self.parent_pid = parent_pid
        self.transport = Transport(Codec(key, topology_tag(topology_id), worker_id(host, port)),
                                   host, port)
        self.stopping = False
        self.exit_code = 0
        self.started = time.monotonic()
        self.errors = ErrorLog(host, port,
                               per_interval=int(conf["topology.max.error.report.per.interval"]),
                               interval=float(conf["topology.error.throttle.interval.secs"]))
        self.batch_size = int(conf["worker.batch.size"])
        self.flush_interval = float(conf["worker.flush.interval.ms"]) / 1000.0
        self.high_watermark = int(conf["worker.queue.high.watermark"])
        self.heartbeat_every = float(conf["worker.heartbeat.frequency.secs"])
        self.timeout = float(conf["topology.message.timeout.secs"])
        self.capture: list | None = [] if conf.get("topology.testing.capture") else None
        self.assignment: dict[str, Any] | None = None
        self.version = -1
        self.active = False
        self.tasks: list[int] = []
        self.spouts: list[SpoutExecutor] = []
        self.bolts: list[BoltExecutor] = []
        self.ackers: dict[int, AckerExecutor] = {}
        self.acker_tasks: list[int] = []
        self.locations: dict[int, Address] = {}
        self.dest: dict[int, Any] = {}  # task -> append of its local queue or outgoing batch
        self.queues: dict[int, Any] = {}  # local bolt task -> its input queue
        self.outbound: dict[Address, dict[int, list]] = {}
        self.outbox: AckOutbox | None = None
        self.peers: set[Address] = set()
        self.overloaded = False
        self.peer_overload: dict[int, float] = {}  # sender id -> time it said "overloaded"
        self.heard: set[int] = set()  # ids (worker_id) of the peers a message came from
        self.parked: collections.deque[list[bytes]] = collections.deque()  # see _receive
        self.waiting_for_peers = True
        self.said_hello = False
        self.assigned_at = 0.0
        self.dropped = 0  # tuples for tasks this worker does not run (stale routing)
        self.last_flush = 0.0
        self.timers: dict[str, float] = {}
        self.ticks: list[tuple[float, float, list[BoltExecutor]]] = []
        self.windows = Windows()
        self._process = psutil.Process()

    # ----------------------------------------------------------------- set-up

    def apply_assignment(self, assignment: dict[str, Any]) -> None:
        """Take a new assignment: set up on the first, follow moved tasks afterwards."""
        locations = {int(t): (h, int(p)) for t, (h, p) in assignment["tasks"].items()}
        mine = sorted(t for t, loc in locations.items() if loc == self.me)
        if self.assignment is not None and mine != self.tasks:
            log.info("worker %s:%d: my tasks changed; restarting to take the new set",
                     self.host, self.port)
            self.exit_code = 3
            self.stopping = True
            return
        first = self.assignment is None
        self.assignment = assignment
        self.version = assignment["version"]
        self.locations = locations
        if first:
            self.tasks = mine
            self.assigned_at = time.monotonic()
            self._build()
        else:
            self._reroute()
        self._set_active(bool(assignment.get("active", True)))
        self.timers["heartbeat"] = 0.0  # say at once that the new version runs

    def _build(self) -> None:
        topology, conf = self.topology, self.conf
        component_tasks = topology.component_tasks(conf)
        self.acker_tasks = component_tasks.get(ACKER_COMPONENT, [])
        self.outbox = AckOutbox() if self.acker_tasks else None
        task_component = {t: c for c, ts in component_tasks.items() for t in ts}
        infos = stream_table(topology)
        codes = stream_codes(infos)
        mine = set(self.tasks)
        contexts = {}
        for task in self.tasks:
            component = task_component[task]
            if component == ACKER_COMPONENT:
                self.ackers[task] = AckerExecutor(component, task)
                continue
            spec = topology.components[component]
            comp_conf = {**conf, **spec.config}
            contexts[task] = TopologyContext(topology.name, task, component, component_tasks,
                                             self.tasks, self.port)
            if spec.kind == "spout":
                pending = comp_conf.get("topology.max.spout.pending")
                self.spouts.append(SpoutExecutor(component, task, spec.make_instance(),
                                                 pending, self.errors))
            else:
                self.bolts.append(BoltExecutor(component, task, spec.make_instance(), infos,
                                               self.errors))
        for bolt in self.bolts:
            self.queues[bolt.task] = bolt.queue
            self.dest[bolt.task] = bolt.queue.append
        self._reroute()
        for executor in [*self.spouts, *self.bolts]:
            executor.routes.update(build_routes(topology, executor.component, executor.task,
                                                component_tasks, mine, codes,
                                                contexts[executor.task]))
        for spout in self.spouts:
            spout.collector = SpoutCollector(spout, self.dest, self.outbox, self.capture)
            if self.capture is not None:
                spout.capture_acked, spout.capture_failed = [], []
        for bolt in self.bolts:
            outbox = self.outbox if self.outbox is not None else AckOutbox()
            auto_anchor = bool(getattr(bolt.bolt, "auto_anchor", True))
            bolt.collector = BoltCollector(bolt, self.dest, outbox, self.capture, auto_anchor)
        self._open(contexts)
        self._plan_ticks()
        log.info("worker %s:%d: running tasks %s of %s", self.host, self.port, self.tasks,
                 self.topology_id)

    def _open(self, contexts: dict[int, TopologyContext]) -> None:
        if self.conf.get("topology.debug"):
            collectors = [s.collector for s in self.spouts] + [b.collector for b in self.bolts]
            for collector in collectors:
                _log_emits(collector, self.host, self.port)
        for spout in self.spouts:
            spout.spout._attach(spout.collector)
            conf = {**self.conf, **self.topology.components[spout.component].config}
            spout._call("open", spout.spout.open, conf, contexts[spout.task])
        for bolt in self.bolts:
            bolt.bolt._attach(bolt.collector)
            conf = {**self.conf, **self.topology.components[bolt.component].config}
            try:
                bolt.bolt.prepare(conf, contexts[bolt.task])
            except Exception as e:
                self.errors.report(bolt.component, bolt.task, "prepare", e)

    def _reroute(self) -> None:
        """Point every remote task at the outgoing batch of the worker that runs it now."""
        component_tasks = self.topology.component_tasks(self.conf)
        receivers = {t for c, ts in component_tasks.items() if c != ACKER_COMPONENT
                     for t in ts if self.topology.components[c].kind == "bolt"}
        moved: list[tuple[int, list]] = []
        for task in receivers:
            loc = self.locations.get(task)
            if loc is None or loc == self.me:
                continue
            per_task = self.outbound.setdefault(loc, {})
            if task not in per_task:
                per_task[task] = []
                for old_loc, old in self.outbound.items():
                    if old_loc != loc and task in old:
                        moved.append((task, old.pop(task)))
            self.dest[task] = per_task[task].append
        for task, items in moved:
            self.outbound[self.locations[task]][task].extend(items)
        self.peers = {loc for loc in self.locations.values() if loc != self.me}
        self.transport.forget_peers(self.peers)

    def _plan_ticks(self) -> None:
        by_component: dict[str, list[BoltExecutor]] = {}
        for bolt in self.bolts:
            by_component.setdefault(bolt.component, []).append(bolt)
        now = time.monotonic()
        for component, bolts in by_component.items():
            spec = self.topology.components[component]
            freq = {**self.conf, **spec.config}.get("topology.tick.tuple.freq.secs")
            if freq:
                self.ticks.append((now + float(freq), float(freq), bolts))

    def _set_active(self, active: bool) -> None:
        if active == self.active:
            return
        self.active = active
        for spout in self.spouts:
            spout._call("activate" if active else "deactivate",
                        spout.spout.activate if active else spout.spout.deactivate)
        log.info("worker %s:%d: %s", self.host, self.port, "active" if active else "inactive")

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        """Wait for an assignment, then run until stopped. Returns the exit code."""
        poller = zmq.Poller()
        poller.register(self.transport.receiver, zmq.POLLIN)
        if self.control is not None:
            poller.register(self.control.socket, zmq.POLLIN)
        self.timers = {"heartbeat": 0.0, "control": 0.0, "rotate": time.monotonic(),
                       "overload": 0.0, "parent": 0.0}
        while not self.stopping:
            now = time.monotonic()
            self._timers(now)
            if self.assignment is None:
                poller.poll(50)
                continue
            busy = self._receive(now)
            busy = self._run_bolts() or busy
            if self._spouts_may_run():
                busy = self._run_spouts(now) or busy
            if not busy or now - self.last_flush >= self.flush_interval:
                self._flush(now)
            if not busy:
                poller.poll(self._idle_wait_ms(now))
        self._shutdown()
        return self.exit_code

    def _receive(self, now: float) -> bool:
        # Everything that arrives is read and verified at once, so acks, fails and
        # backpressure signals are never stuck behind data. Data that would take the bolts'
        # queues over the high watermark is parked still encoded (about 20 bytes a tuple)
        # and queued as the bolts work the queues down; meanwhile this worker says it is
        # overloaded and every spout pauses, so the parked data is bounded by what was
        # already in flight.
        hwm = self.high_watermark
        queued = sum(len(b.queue) for b in self.bolts)
        parked = self.parked
        load = self.transport.load
        while parked and queued < hwm:
            queued += self._take_data(load(parked.popleft()))
        receive = self.transport.receive
        heard = self.heard
        taken = 0
        while taken < RECEIVE_SLICE:
            message = receive()
            if message is None:
                break
            taken += 1
            kind, sender, frames = message
            heard.add(sender)
            if kind == DATA:
                if parked or queued >= hwm:
                    parked.append(frames)
                else:
                    queued += self._take_data(load(frames))
                if not self.overloaded and (parked or queued > hwm):
                    # Signal at once: waiting for the timer can take a whole slow bolt slice.
                    self._check_overload(now)
                continue
            payload = load(frames)
            if payload is None:
                continue
            if kind == ACKER:
                for task, (inits, acks, fails) in payload.items():
                    acker = self.ackers.get(task)
                    if acker is not None:
                        self._deliver_outcomes(acker.handle(inits, acks, fails), now)
            elif kind == SPOUT:
                for spout in self.spouts:
                    outcome = payload.get(spout.task)
                    if outcome is not None:
                        spout.outcomes(outcome[0], outcome[1], now)
            elif kind == BACKPRESSURE:
                if payload == OVERLOADED:
                    self.peer_overload[sender] = now
                else:
                    self.peer_overload.pop(sender, None)
                    if payload == HELLO:
                        self.timers["overload_sent"] = 0.0  # answer with our status now
        return taken > 0

    def _take_data(self, batch: dict[int, list] | None) -> int:
        """Queue a batch for the local tasks; return how many tuples were queued."""
        queues = self.queues
        taken = 0
        for task, items in (batch or {}).items():
            queue = queues.get(task)
            if queue is None:
                self.dropped += len(items)  # stale routing: the tree times out and replays
            else:
                queue.extend(items)
                taken += len(items)
        return taken

    def _run_bolts(self) -> bool:
        did = 0
        for bolt in self.bolts:
            if bolt.queue:
                did += bolt.run(BOLT_SLICE)
                if self._outbound_size() >= self.batch_size:
                    self._flush_data()
        return did > 0

    def _spouts_may_run(self) -> bool:
        if not self.active or not self.spouts or self.overloaded or self.peer_overload:
            return False
        if self.waiting_for_peers:
            # Do not flood a consumer that is still starting: wait until every peer has
            # spoken (they all send their status at start), or PEER_WAIT_SECS at most.
            missing = {worker_id(host, port) for host, port in self.peers} - self.heard
            if missing and time.monotonic() - self.assigned_at < PEER_WAIT_SECS:
                return False
            self.waiting_for_peers = False
        return True

    def _run_spouts(self, now: float) -> bool:
        emitted = 0
        for spout in self.spouts:
            emitted += spout.run(now, SPOUT_SLICE)
            if self._outbound_size() >= self.batch_size:
                self._flush_data()
        return emitted > 0

    def _outbound_size(self) -> int:
        return sum(len(items) for per_task in self.outbound.values()
                   for items in per_task.values())

    def _idle_wait_ms(self, now: float) -> int:
        if self._spouts_may_run():
            return 1  # an idle spout is asked again soon, like Storm's 1 ms wait
        return 20

    # ----------------------------------------------------------------- flush

    def _flush(self, now: float) -> None:
        self._flush_data()
        self._flush_acks(now)
        self.transport.retry_backlogs()
        self.last_flush = now

    def _flush_data(self) -> None:
        send = self.transport.send_data
        for address, per_task in self.outbound.items():
            batch = {task: items for task, items in per_task.items() if items}
            if batch:
                send(address, DATA, batch)
                for items in batch.values():
                    items.clear()

    def _flush_acks(self, now: float) -> None:
        outbox = self.outbox
        if not outbox:
            return
        ackers = self.acker_tasks
        n = len(ackers)
        per_acker: dict[int, tuple[list, dict, list]] = {}

        def share(root: int) -> tuple[list, dict, list]:
            task = ackers[root % n]
            entry = per_acker.get(task)
            if entry is None:
                entry = per_acker[task] = ([], {}, [])
            return entry

        for init in outbox.inits:
            share(init[0])[0].append(init)
        for root, val in outbox.acks.items():
            if val:
                share(root)[1][root] = val
        for root in outbox.fails:
            share(root)[2].append(root)
        outbox.inits.clear()
        outbox.acks.clear()
        outbox.fails.clear()
        remote: dict[Address, dict[int, tuple]] = {}
        for task, (inits, acks, fails) in per_acker.items():
            acker = self.ackers.get(task)
            if acker is not None:
                self._deliver_outcomes(acker.handle(inits, acks, fails), now)
            else:
                remote.setdefault(self.locations[task], {})[task] = (inits, acks, fails)
        for address, payload in remote.items():
            self.transport.send_system(address, ACKER, payload)

    def _deliver_outcomes(self, outcomes: list, now: float) -> None:
        if not outcomes:
            return
        per_spout: dict[int, tuple[list, list]] = {}
        for kind, root, spout_task in outcomes:
            entry = per_spout.get(spout_task)
            if entry is None:
                entry = per_spout[spout_task] = ([], [])
            entry[0 if kind == "ack" else 1].append(root)
        local = {s.task: s for s in self.spouts}
        remote: dict[Address, dict[int, tuple[list, list]]] = {}
        for task, (acked, failed) in per_spout.items():
            spout = local.get(task)
            if spout is not None:
                spout.outcomes(acked, failed, now)
            elif task in self.locations:
                remote.setdefault(self.locations[task], {})[task] = (acked, failed)
        for address, payload in remote.items():
            self.transport.send_system(address, SPOUT, payload)

    # ---------------------------------------------------------------- timers

    def _timers(self, now: float) -> None:
        timers = self.timers
        if now >= timers["control"]:
            timers["control"] = now + 0.01
            self._check_control()
        if now >= timers["heartbeat"]:
            timers["heartbeat"] = now + self.heartbeat_every
            self._heartbeat(now)
        if self.assignment is None:
            return
        if now >= timers["overload"]:
            timers["overload"] = now + 0.005
            self._check_overload(now)
        for i, (due, freq, bolts) in enumerate(self.ticks):
            if now >= due:
                self.ticks[i] = (now + freq, freq, bolts)
                for bolt in bolts:
                    bolt.tick(bolt.infos[0], freq)
        if now - timers["rotate"] >= self.timeout / 3:
            timers["rotate"] = now
            for spout in self.spouts:
                spout.expire()
            for acker in self.ackers.values():
                acker.ledger.rotate()
        if now >= timers["parent"]:
            timers["parent"] = now + 1.0
            if self.parent_pid is not None and os.getppid() != self.parent_pid:
                log.warning("worker %s:%d: parent %d is gone; stopping", self.host, self.port,
                            self.parent_pid)
                self.stopping = True

    def _check_overload(self, now: float) -> None:
        queued = sum(len(b.queue) for b in self.bolts)
        backlog = self.transport.backlog()
        overloaded = queued > self.high_watermark or backlog > 4 or bool(self.parked)
        if overloaded and not self.overloaded:
            over = True
        elif not overloaded and self.overloaded and queued < self.high_watermark // 2:
            over = False
        else:
            over = self.overloaded
        refresh = now - self.timers.get("overload_sent", 0.0) > STATUS_EVERY
        if over != self.overloaded or refresh:
            self.overloaded = over
            said = OVERLOADED if over else READY
            if said == READY and not self.said_hello:
                said = HELLO
            self.said_hello = True
            self.timers["overload_sent"] = now
            for peer in self.peers:
                self.transport.send_system(peer, BACKPRESSURE, said)
        for sender, since in list(self.peer_overload.items()):
            if now - since > BACKPRESSURE_TTL:
                del self.peer_overload[sender]

    def _check_control(self) -> None:
        if self.control is None:
            return
        for message in self.control.receive():
            kind = message.get("type")
            if kind == "assignment":
                assignment = message["assignment"]
                if assignment.get("version") != self.version:
                    self.apply_assignment(assignment)
            elif kind == "dump":
                self.control.send(self._dump())
            elif kind == "stop":
                self.stopping = True

    def _heartbeat(self, now: float) -> None:
        if self.control is None:
            return
        executors = [e.snapshot() for e in [*self.spouts, *self.bolts, *self.ackers.values()]]
        self.windows.add(now, executors)
        self.control.send({
            "type": "heartbeat",
            "topology_id": self.topology_id,
            "host": self.host,
            "port": self.port,
            "pid": os.getpid(),
            "version": self.version,
            "time": time.time(),
            "uptime": now - self.started,
            "state": "running" if self.assignment is not None else "waiting",
            "active": self.active,
            "tasks": self.tasks,
            "executors": executors,
            "errors": self.errors.take_unsent(),
            "queued": sum(len(b.queue) for b in self.bolts),
            "parked": len(self.parked),
            "overloaded": self.overloaded,
            "rejected": self.transport.rejected,
            "dropped": self.dropped,
            "errors_suppressed": self.errors.suppressed,
            "rss": self._process.memory_info().rss,
            "sent_bytes": self.transport.sent_bytes,
            "received_bytes": self.transport.received_bytes,
        })

    def _dump(self) -> dict[str, Any]:
        return {
            "type": "dump",
            "emitted": list(self.capture or []),
            "acked": {s.task: list(s.capture_acked or []) for s in self.spouts},
            "failed": {s.task: list(s.capture_failed or []) for s in self.spouts},
            "components": {s.task: s.component for s in self.spouts},
        }

    # -------------------------------------------------------------- shutdown

    def _shutdown(self) -> None:
        log.info("worker %s:%d: shutting down", self.host, self.port)
        for spout in self.spouts:
            spout._call("close", spout.spout.close)
        for bolt in self.bolts:
            try:
                bolt.bolt.cleanup()
            except Exception as e:
                self.errors.report(bolt.component, bolt.task, "cleanup", e)
        try:
            self._flush(time.monotonic())
        except Exception:  # the peers may be gone already
            log.debug("worker %s:%d: final flush failed", self.host, self.port, exc_info=True)
        self._heartbeat(time.monotonic())
        self.transport.close()
        if self.control is not None:
            self.control.close()


def _log_emits(collector: Any, host: str, port: int) -> None:
    """topology.debug: wrap a collector's emit methods to log every tuple (slow, on purpose)."""
    for name in ("emit", "emit_direct"):
        inner = getattr(collector, name)

        def logged(*args: Any, _inner: Any = inner, _name: str = name, **kwargs: Any) -> Any:
            targets = _inner(*args, **kwargs)
            log.info("worker %s:%d: %s task %d %s %r -> tasks %s", host, port,
                     collector._component, collector._task, _name, args, targets)
            return targets

        setattr(collector, name, logged)
