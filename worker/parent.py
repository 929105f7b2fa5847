"""The worker's link to its parent (a supervisor or a LocalCluster), on a thread of its own.

Heartbeats must not depend on user code returning quickly. The loop posts a snapshot every
heartbeat interval into an in-process pipe and this thread sends it; when the loop has
posted nothing for an interval (a bolt blocked in `process`, a slow `next_tuple`), the thread
sends the last snapshot again with a fresh time, how long the loop has been in its current
turn ("stalled_secs") and in which task ("stalled_in"). So the worker is neither restarted
nor taken for dead while user code blocks; the blocked task's tuples time out and replay.

The thread also
- forwards the parent's "assignment", "dump" and "flush" messages to the loop (the pipe is
  in the loop's poller, so an idle loop wakes at once);
- applies the log levels an assignment carries (`squall set-log-level`, worker.control) and
  puts each logger back to its own level when its time is over (`LogLevels`, below), here
  rather than on the loop, so a level changes even while user code blocks;
- stops the worker when asked: a "stop" message, SIGTERM/SIGINT (seen through the signal
  wakeup fd, even while the main thread is inside user code), the parent process gone
  (`--parent-pid`, local mode), or the parent silent too long. If the loop has not finished
  its shutdown `STOP_MARGIN_SECS` before `supervisor.worker.stop.timeout.secs`, because user
  code blocks, the thread ends the process itself and says why;
- watches the parent (`ParentWatch`, below).

Orphans. A parent answers every heartbeat, with the assignment or {"type": "supervised"},
so it speaks at least once per heartbeat interval; any verified message from it counts as
contact, on this worker's monotonic clock. Silent for more than half of
`nimbus.supervisor.timeout.secs` (nimbus may be moving the work elsewhere): the spouts pause
(bolts carry on, so what is in flight completes); contact again: they resume. Silent for
more than `worker.orphan.timeout.secs`: the worker logs why and exits. A parent that has
never said "supervised" (an older one that only answers when the assignment changes) is not
watched once it has spoken, only `--parent-pid` is; a worker that never hears from its
parent at all exits after `worker.orphan.timeout.secs`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from worker.control import ROOT_LOGGER, ControlClient, live_log_levels, next_log_change

log = logging.getLogger(__name__)

STOP_MARGIN_SECS = 0.5  # a worker that cannot stop cleanly exits this long before SIGKILL
PARENT_PID_EVERY = 0.25  # how often the parent process is looked for (local mode)
POLL_SECS = 0.05  # the thread wakes at least this often
# The loop posts a heartbeat every interval; one it has not posted for this many intervals
# is sent again by the thread (the margin keeps a busy loop's timer jitter from causing it).
STALE_AFTER = 1.5
FORWARDED = ("assignment", "dump", "flush")

CONTACT, PAUSE, ORPHANED = "contact", "pause", "orphaned"


class ParentWatch:
    """Is the parent still there? Pure: times are the caller's monotonic clock."""

    def __init__(self, pause_after: float, exit_after: float, now: float) -> None:
        self.pause_after = pause_after
        self.exit_after = exit_after
        self.last_contact = now
        self.heard = False  # any message from the parent
        self.supervised = False  # it said "supervised" at least once: it speaks every interval

    def contact(self, kind: Any, now: float) -> None:
        self.last_contact = now
        self.heard = True
        if kind == "supervised":
            self.supervised = True

    def silent_for(self, now: float) -> float:
        return now - self.last_contact

    def state(self, now: float) -> str:
        if self.heard and not self.supervised:
            return CONTACT
        silent = now - self.last_contact
        if silent > self.exit_after:
            return ORPHANED
        return PAUSE if silent > self.pause_after else CONTACT


class LogLevels:
    """The loggers `squall set-log-level` changed in this worker and their own levels before.
    Pure: `now` is unix time (the "until" of a level is nimbus's unix time), and
    `current(logger)` reads a logger's level."""

    def __init__(self) -> None:
        self.spec: Any = None
        self.applied: dict[str, int] = {}  # logger -> the level set here
        self.original: dict[str, int] = {}  # logger -> its level before
        self.next_check: float | None = None

    def changes(self, spec: Any, now: float, current: Callable[[str], int]
                ) -> list[tuple[str, int, bool]]:
        """(logger, level, set) to apply so that at `now` the loggers `spec` names have its
        levels and the others their own again (set False: a level put back)."""
        self.spec = spec
        wanted = live_log_levels(spec, now)
        out = []
        for name, level in sorted(wanted.items()):
            if self.applied.get(name) != level:
                self.original.setdefault(name, current(name))
                self.applied[name] = level
                out.append((name, level, True))
        for name in sorted(set(self.applied) - set(wanted)):
            del self.applied[name]
            out.append((name, self.original.pop(name), False))
        self.next_check = next_log_change(spec, now)
        return out

    def due(self, now: float) -> bool:
        """Whether a level's time is over (call `changes(self.spec, now, ...)` then)."""
        return self.next_check is not None and now >= self.next_check


def _logger(name: str) -> logging.Logger:
    return logging.getLogger() if name == ROOT_LOGGER else logging.getLogger(name)


class ParentLink:
    """The thread and both ends of its pipe. The loop's side: `socket` (to poll),
    `messages()`, `post()`, `spouts_paused`, `close()`."""

    def __init__(self, control: ControlClient, name: str, *, heartbeat_every: float,
                 pause_after: float, orphan_after: float, stop_timeout: float,
                 parent_pid: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.control = control
        self.name = name  # "host:port", for log lines
        self.heartbeat_every = heartbeat_every
        self.stop_grace = max(0.0, stop_timeout - STOP_MARGIN_SECS)
        self.parent_pid = parent_pid
        self.signals: socket.socket | None = None
        self._wakeup: socket.socket | None = None
        self.clock = clock
        self.wall = wall
        self.levels = LogLevels()
        self.watch = ParentWatch(pause_after, orphan_after, clock())
        self.spouts_paused = False
        context: zmq.Context = zmq.Context.instance()
        endpoint = f"inproc://squall-parent-{id(self)}"
        self.socket = context.socket(zmq.PAIR)  # the loop's end
        self.socket.bind(endpoint)
        self._end = context.socket(zmq.PAIR)  # the thread's end
        self._end.connect(endpoint)
        self._on_stop: Callable[[int, str], None] = lambda code, why: None
        self._stall: Callable[[], tuple[float, str | None]] = lambda: (0.0, None)
        self._stop_deadline: float | None = None
        self._stop_code = 0
        self._latest: dict[str, Any] | None = None
        self._sent_at = 0.0
        self._posted_at = 0.0
        self._thread = threading.Thread(target=self._run, name="squall-parent", daemon=True)

    def hear_signals(self) -> None:
        """Have the C-level signal handler write to a socket this thread polls, so a SIGTERM
        is heard even while the main thread is inside user code (call from the main thread,
        before `start`)."""
        self.signals, self._wakeup = socket.socketpair()
        self.signals.setblocking(False)
        self._wakeup.setblocking(False)
        signal.set_wakeup_fd(self._wakeup.fileno(), warn_on_full_buffer=False)

    def start(self, on_stop: Callable[[int, str], None],
              stall: Callable[[], tuple[float, str | None]]) -> None:
        """`on_stop(exit code, why)` asks the loop to stop; `stall()` says how long the loop
        has been in its current turn, and in which task."""
        self._on_stop = on_stop
        self._stall = stall
        self._thread.start()

    # --- the loop's side -----------------------------------------------------------------

    def messages(self) -> list[dict[str, Any]]:
        out = []
        while True:
            try:
                out.append(self.socket.recv_pyobj(zmq.NOBLOCK))
            except zmq.Again:
                return out

    def post(self, message: dict[str, Any]) -> None:
        """Hand a heartbeat or a dump to the thread, which sends it to the parent (never
        blocks the loop: if the thread has fallen a thousand messages behind, it is dropped)."""
        try:
            self.socket.send_pyobj(message, zmq.NOBLOCK)
        except zmq.Again:
            log.warning("worker %s: the parent link is not keeping up; dropped a %s",
                        self.name, message.get("type"))

    def close(self, timeout: float = 2.0) -> None:
        """Send what was posted, then end the thread and the control channel."""
        with contextlib.suppress(zmq.Again):
            self.socket.send_pyobj({"type": "__close"}, zmq.NOBLOCK)
        self._thread.join(timeout)
        self.socket.close(0)

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.control.socket, zmq.POLLIN)
        poller.register(self._end, zmq.POLLIN)
        signals = self.signals.fileno() if self.signals is not None else None
        if signals is not None:
            poller.register(signals, zmq.POLLIN)  # a plain fd comes back from poll as its int
        next_pid_check = 0.0
        try:
            while True:
                ready = dict(poller.poll(int(POLL_SECS * 1000)))
                now = self.clock()
                if self.control.socket in ready:
                    self._from_parent(now)
                if self._end in ready and not self._from_loop(now):
                    return
                if signals is not None and signals in ready:
                    self._signalled()
                if self.parent_pid is not None and now >= next_pid_check:
                    next_pid_check = now + PARENT_PID_EVERY
                    if os.getppid() != self.parent_pid:
                        self._stop(0, f"parent {self.parent_pid} is gone", now)
                self._follow_parent(now)
                if self.levels.due(self.wall()):
                    self._set_levels(self.levels.spec)
                self._resend_if_stale(now)
                self._enforce_stop(now)
        except Exception:  # a bug here must not leave a worker without heartbeats silently
            log.exception("worker %s: parent link failed; stopping", self.name)
            self._stop(1, "parent link failed", self.clock())
            self._enforce_stop(float("inf"))
        finally:
            self._end.close(0)
            self.control.close(linger_ms=1000)

    def _from_parent(self, now: float) -> None:
        for message in self.control.receive():
            kind = message.get("type")
            self.watch.contact(kind, now)
            if kind == "stop":
                self._stop(0, "the parent asked", now)
            elif kind in FORWARDED:
                if kind == "assignment" and isinstance(message.get("assignment"), dict):
                    self._set_levels(message["assignment"].get("log_levels"))
                self._end.send_pyobj(message)

    def _from_loop(self, now: float) -> bool:
        """Send what the loop posted; False once it closed the link."""
        while True:
            try:
                message = self._end.recv_pyobj(zmq.NOBLOCK)
            except zmq.Again:
                return True
            if message.get("type") == "__close":
                return False
            if message.get("type") == "heartbeat":
                self._latest = message
                self._posted_at = now
            self.control.send(message)
            self._sent_at = now

    def _set_levels(self, spec: Any) -> None:
        """Give loggers the levels `spec` wants now, and the others back their own."""
        now = self.wall()
        for name, level, setting in self.levels.changes(spec, now, lambda n: _logger(n).level):
            _logger(name).setLevel(level)
            if setting:
                until = (spec.get(name) or {}).get("until")
                log.warning("worker %s: log level of %s set to %s%s", self.name, name,
                            spec[name].get("level"), "" if until is None else
                            f" for {max(0.0, until - now):.0f} s")
            else:
                log.warning("worker %s: log level of %s back to %s", self.name, name,
                            logging.getLevelName(level))

    def _resend_if_stale(self, now: float) -> None:
        latest = self._latest
        if latest is None or now - self._sent_at < STALE_AFTER * self.heartbeat_every:
            return
        stalled, where = self._stall()
        lag = now - self._posted_at
        self.control.send({**latest, "time": time.time(), "uptime": latest["uptime"] + lag,
                           "errors": [], "stalled_secs": stalled, "stalled_in": where})
        self._sent_at = now

    def _follow_parent(self, now: float) -> None:
        state = self.watch.state(now)
        silent = self.watch.silent_for(now)
        if state == ORPHANED:
            self._stop(4, f"no word from the parent for {silent:.1f} s "
                          f"(worker.orphan.timeout.secs {self.watch.exit_after:g}): orphaned", now)
        paused = state != CONTACT
        if paused != self.spouts_paused:
            self.spouts_paused = paused
            if paused:
                log.warning("worker %s: no word from the parent for %.1f s (over half of "
                            "nimbus.supervisor.timeout.secs): spouts paused, as its work may "
                            "be moving elsewhere", self.name, silent)
            else:
                log.info("worker %s: the parent speaks again: spouts resume", self.name)

    def _signalled(self) -> None:
        try:
            signals = self.signals.recv(64) if self.signals is not None else b""
        except BlockingIOError:
            return
        if signals:
            self._stop(0, f"signal {', '.join(str(s) for s in signals)}", self.clock())

    def _stop(self, code: int, why: str, now: float) -> None:
        if self._stop_deadline is None:
            log.info("worker %s: stopping: %s", self.name, why)
            self._stop_code = code
            self._stop_deadline = now + self.stop_grace
        self._on_stop(code, why)

    def _enforce_stop(self, now: float) -> None:
        if self._stop_deadline is None or now < self._stop_deadline:
            return
        stalled, where = self._stall()
        log.error("worker %s: could not stop in time (the loop has been in %s for %.1f s); "
                  "exiting without a clean shutdown", self.name, where or "its turn", stalled)
        os._exit(self._stop_code)
