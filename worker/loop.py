"""The worker's loop: one thread runs every executor of the worker, so the hot path takes no
locks.

Each turn runs the timers that are due, reads what arrived (`receive`), lets each spout emit
a slice (unless backpressure, deactivation or a silent parent holds them) and each bolt,
upstream first, process a slice of its queue, and flushes outgoing batches
when the turn did nothing, when the last flush is `worker.flush.interval.ms` old or when a
batch's worth was emitted; the acker's verdicts for other workers' spouts leave as soon as
they are known, since they end a tuple tree's latency. An idle loop sleeps in a poll on
the transport and the watched sources until a message comes, a timer is due or, when the
spouts may run, a millisecond has passed (an idle spout is asked again soon, like Storm's
1 ms wait).

Everything that arrives is read and verified at once, so acks, fails and backpressure are
never stuck behind data. Data that would take the bolts' queues over the high watermark is
parked still encoded (about 20 bytes a tuple) and queued as the bolts work the queues down;
meanwhile this worker says it is overloaded and every spout pauses, so what is parked is
bounded by what was already in flight. Sends never block (see transport), and only spouts
are ever paused, so the loop cannot deadlock on its peers.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq

from worker.backpressure import CHECK_EVERY, Backpressure
from worker.dispatch import Dispatcher
from worker.executor import Executor
from worker.schedule import Schedule
from worker.tasks import TaskSet
from worker.transport import Address, Transport
from worker.wire import ACKER, BACKPRESSURE, DATA, BadMessage

log = logging.getLogger(__name__)

BOLT_SLICE = 256  # tuples a bolt processes per turn before the others get a go
SPOUT_SLICE = 64  # most next_tuple calls per spout per turn ...
SPOUT_SLICE_SECS = 0.005  # ... and no more calls once a spout's slice has taken this long
RECEIVE_SLICE = 256  # most messages read per turn
IDLE_WAIT_SECS = 0.02  # longest an idle loop sleeps when nothing is due
SPOUT_IDLE_WAIT_SECS = 0.001  # ... and when its spouts may run
WATCH_EVERY = 0.002  # a busy loop looks at its watched sources this often


class Services:
    """What the loop offers executors: its schedule, and sources it watches for them."""

    def __init__(self, transport: Transport) -> None:
        self.schedule = Schedule()
        self.poller = zmq.Poller()
        if transport.pollable is not None:
            self.poller.register(transport.pollable, zmq.POLLIN)
        self.watched: dict[Any, Callable[[float], None]] = {}

    def watch(self, source: Any, on_readable: Callable[[float], None]) -> None:
        """Call `on_readable(now)` from the loop whenever `source` (a zmq socket, a file
        descriptor, or an object with a fileno()) is readable; the callback must read
        without blocking."""
        source = _pollable(source)
        self.watched[source] = on_readable
        self.poller.register(source, zmq.POLLIN)

    def unwatch(self, source: Any) -> None:
        source = _pollable(source)
        if self.watched.pop(source, None) is not None:
            self.poller.unregister(source)

    def poll(self, timeout_ms: int, now: float) -> None:
        """Wait up to `timeout_ms` for the transport or a watched source; serve the latter."""
        for source, _ in self.poller.poll(timeout_ms):
            callback = self.watched.get(source)
            if callback is not None:
                _guarded(callback, now, f"the watcher of {source!r}")


def _guarded(callback: Callable[[float], None], now: float, what: str) -> None:
    """Run a timer's or a watcher's callback: one that raises is logged, the loop goes on."""
    try:
        callback(now)
    except Exception:
        log.exception("worker loop: %s raised", what)


def _pollable(source: Any) -> Any:
    """What zmq.Poller gives back for `source`: a zmq socket itself, else its fd as an int."""
    if isinstance(source, zmq.Socket) or isinstance(source, int):
        return source
    return source.fileno()


class Loop:
    def __init__(self, tasks: TaskSet, dispatcher: Dispatcher, transport: Transport,
                 services: Services, backpressure: Backpressure, *, high_watermark: int,
                 flush_interval: float, batch_size: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spouts = tasks.spouts
        self.bolts = tasks.bolts
        self.dispatcher = dispatcher
        self.transport = transport
        self.services = services
        self.schedule = services.schedule
        self.backpressure = backpressure
        self.high_watermark = high_watermark
        self.flush_interval = flush_interval
        self.batch_size = batch_size
        self.clock = clock
        self.peers: list[Address] = []
        self.active = False
        self.spouts_held = False  # the parent went silent: its work may be moving elsewhere
        self.stopping = False
        self.parked: collections.deque[bytes] = collections.deque()
        self.malformed = 0  # verified messages whose payload made no sense (version skew)
        self.last_flush = 0.0
        self.unflushed = 0  # tuples emitted since the last flush
        self.turns = 0
        self._next_check = 0.0
        self._next_watch = 0.0
        # Read by the parent link's thread to say where a stuck loop is stuck.
        self.turn_started = 0.0
        self.current: Executor | None = None

    def run(self) -> None:
        """Turn until `stopping` is set."""
        clock = self.clock
        while not self.stopping:
            now = clock()
            if not self.turn(now):
                self.services.poll(self._idle_wait_ms(now), now)

    def turn(self, now: float) -> bool:
        """One turn of the loop; True if it did any work."""
        self.turn_started = now
        self.turns += 1
        for timer in self.schedule.pop_due(now):
            _guarded(timer.callback, now, timer.name)
        if now >= self._next_watch and self.services.watched:
            self._next_watch = now + WATCH_EVERY
            self.services.poll(0, now)
        if now >= self._next_check:
            self._next_check = now + CHECK_EVERY
            self.check_load(now)
        busy = self.receive(now)
        if self.spouts_may_run(now) and self.run_spouts(now):
            busy = True
        if self.run_bolts():  # upstream first (see worker.tasks), after the spouts: a turn
            busy = True  # carries a tuple through every step this worker runs
        if not busy or now - self.last_flush >= self.flush_interval:
            self.flush(self.clock())  # the turn may have taken long: its verdicts are later
        return busy

    def _idle_wait_ms(self, now: float) -> int:
        wait = SPOUT_IDLE_WAIT_SECS if self.spouts_may_run(now) else IDLE_WAIT_SECS
        due = self.schedule.next_due()
        if due is not None:
            wait = min(wait, max(0.0, due - now))
        return max(0, int(wait * 1000 + 0.999))

    # --- receive -------------------------------------------------------------------------

    def receive(self, now: float) -> bool:
        dispatcher = self.dispatcher
        hwm = self.high_watermark
        parked = self.parked
        while parked and dispatcher.queued < hwm:
            self._take_data(parked.popleft())
        receive = self.transport.receive
        load = self.transport.load
        heard = self.backpressure.heard
        taken = 0
        while taken < RECEIVE_SLICE:
            message = receive()
            if message is None:
                break
            taken += 1
            kind, sender, body = message
            heard.add(sender)
            if kind == DATA:
                if parked or dispatcher.queued >= hwm:
                    parked.append(body)
                else:
                    self._take_data(body)
                if not self.backpressure.overloaded and (parked or dispatcher.queued > hwm):
                    self.check_load(now)  # at once: the timer can be a whole bolt slice away
                continue
            payload = load(body)
            if payload is None:
                continue
            try:
                if kind == ACKER:
                    dispatcher.take_acks(payload, now)
                elif kind == BACKPRESSURE:
                    self.backpressure.peer_said(sender, payload, now)
            except (BadMessage, AttributeError, TypeError, ValueError) as e:
                self._malformed(kind, e)
        dispatcher.send_verdicts()
        return taken > 0

    def _take_data(self, message: bytes) -> None:
        payload = self.transport.load(message)
        if payload is not None:
            try:
                self.dispatcher.take_data(payload)
            except (BadMessage, TypeError, ValueError) as e:
                self._malformed(DATA, e)

    def _malformed(self, kind: int, error: Exception) -> None:
        self.malformed += 1
        if self.malformed <= 10 or self.malformed % 1000 == 0:
            log.warning("worker %s:%d: dropped an authenticated message of kind %d that makes "
                        "no sense (a version mismatch?): %s: %s (%d so far)",
                        *self.transport.address, kind, type(error).__name__, error,
                        self.malformed)

    # --- run -----------------------------------------------------------------------------

    def run_bolts(self) -> bool:
        dispatcher = self.dispatcher
        did = 0
        for bolt in self.bolts:
            if bolt.queue:
                self.current = bolt
                before = bolt.collector.count
                n = bolt.run(BOLT_SLICE)
                dispatcher.queued -= n
                did += n
                dispatcher.hand_over(bolt.collector)
                self._emitted(bolt.collector.count - before)
        self.current = None
        return did > 0

    def spouts_may_run(self, now: float) -> bool:
        return (self.active and not self.spouts_held and bool(self.spouts)
                and self.backpressure.spouts_may_run(now))

    def run_spouts(self, now: float) -> bool:
        emitted = 0
        clock = time.perf_counter
        for spout in self.spouts:
            self.current = spout
            n = spout.run(now, SPOUT_SLICE, clock() + SPOUT_SLICE_SECS)
            self.dispatcher.hand_over(spout.collector)
            self._emitted(n)
            emitted += n
        self.current = None
        return emitted > 0

    def _emitted(self, n: int) -> None:
        self.unflushed += n
        if self.unflushed >= self.batch_size:
            self.dispatcher.flush_data()
            self.unflushed = 0

    # --- flush and load ------------------------------------------------------------------

    def flush(self, now: float) -> None:
        self.dispatcher.flush_data()
        self.dispatcher.flush_acks(now)
        self.transport.retry_backlogs()
        self.last_flush = now
        self.unflushed = 0

    def check_load(self, now: float) -> None:
        """Re-evaluate this worker's load; tell every peer when its status is due."""
        status = self.backpressure.assess(self.dispatcher.queued, self.transport.backlog(),
                                          len(self.parked), now)
        if status is not None:
            for peer in self.peers:
                self.transport.send_system(peer, BACKPRESSURE, status)
        self.backpressure.expire(now)
