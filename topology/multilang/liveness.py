"""When a subprocess gets a heartbeat, when it counts as hung, and when it may restart.

Pure policies: time is always a parameter, on the observer's own monotonic clock.

Storm's ShellBolt kills a subprocess that has not answered a heartbeat within the timeout,
even one busy on a long tuple. Here anything the subprocess says counts (a message, a stray
line), and so does CPU time it spent since the last look: only a subprocess that is both
silent and idle for the whole timeout is hung.
"""

from __future__ import annotations

QUICK_EXIT_SECS = 10.0  # a subprocess that dies younger than this counts as crashing
MAX_RESTART_DELAY = 10.0


class Liveness:
    def __init__(self, timeout: float, heartbeat_every: float, now: float) -> None:
        self.timeout = timeout
        self.heartbeat_every = heartbeat_every
        self.last_heard = now
        self.last_heartbeat = now
        self.cpu = -1.0  # CPU seconds of the subprocess at the last look

    def heard(self, now: float) -> None:
        self.last_heard = now

    def quiet(self, now: float) -> bool:
        """Silent long enough that a heartbeat or a CPU look is due."""
        return now - self.last_heard >= self.heartbeat_every

    def heartbeat_due(self, now: float) -> bool:
        return self.quiet(now) and now - self.last_heartbeat >= self.heartbeat_every

    def sent_heartbeat(self, now: float) -> None:
        self.last_heartbeat = now

    def cpu_seen(self, cpu: float, now: float) -> None:
        """The subprocess's CPU time now; if it grew, the subprocess is busy, not hung."""
        if self.cpu >= 0.0 and cpu > self.cpu:
            self.last_heard = now
        self.cpu = cpu

    def hung(self, now: float) -> bool:
        return now - self.last_heard > self.timeout

    def silent_for(self, now: float) -> float:
        return now - self.last_heard


def restart_delay(quick_exits: int) -> float:
    """Wait before restarting a subprocess that died young `quick_exits` times in a row: none
    the first time, then 0.5 s, 1 s, 2 s ... up to MAX_RESTART_DELAY."""
    return 0.0 if quick_exits <= 1 else min(MAX_RESTART_DELAY, 0.5 * 2 ** (quick_exits - 2))


class Restarts:
    """Counts deaths and says when the next start may happen."""

    def __init__(self) -> None:
        self.total = 0
        self.quick = 0  # quick deaths in a row

    def died(self, started: float, now: float) -> float:
        """Record a death; return the time the next start may happen."""
        self.total += 1
        self.quick = self.quick + 1 if now - started < QUICK_EXIT_SECS else 1
        return now + restart_delay(self.quick)
