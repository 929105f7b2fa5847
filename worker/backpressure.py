"""When a worker's spouts may run: its own load, what its peers say, and who it has heard.

Pure: no sockets, no clock (every method takes `now`). The loop feeds it what it measures
and sends the status it returns to every peer.

Only spouts ever pause, and every worker's spouts pause when any worker of the topology is
overloaded: tuples in flight still drain, so no worker waits on another and the topology
cannot deadlock. Each worker tells every peer its status when it changes and every
STATUS_EVERY seconds; a status not refreshed within PEER_STATUS_TTL is forgotten, so a peer
that died while overloaded does not pause the others for good.
"""

from __future__ import annotations

from collections.abc import Iterable

# What a BACKPRESSURE message says. A worker that has just started says HELLO (not
# overloaded, and answer me), so its peers send their status at once and its spouts, which
# wait to hear from every peer, start without waiting for the peers' next round.
READY, OVERLOADED, HELLO = 0, 1, 2

# Data messages waiting in this worker's backlogs for room in a peer's pipe (whose own
# high-water mark is 64 messages): more than a few batches means a peer does not keep up.
BACKLOG_LIMIT = 4
# Once overloaded, a worker says ready only when its queues are down to this share of the
# high watermark, so its status does not flap on every batch around the line.
RESUME_SHARE = 0.5
# How often a worker restates its status to every peer even when it has not changed.
STATUS_EVERY = 1.0
# A peer's "overloaded" that is not restated within this long (3 rounds) is forgotten.
PEER_STATUS_TTL = 3.0
# A starting worker's spouts wait for every peer to speak (they all say HELLO or their status
# at start) so as not to flood a consumer still starting; at most this long.
PEER_WAIT_SECS = 10.0
# How often the loop re-evaluates its own load while it works: a bolt slice takes about a
# millisecond, so the spouts pause within a few slices of the queues passing the line.
CHECK_EVERY = 0.005


class Backpressure:
    """One worker's backpressure state."""

    def __init__(self, high_watermark: int, peers: Iterable[int] = (), now: float = 0.0) -> None:
        self.high_watermark = high_watermark
        self.resume_below = int(high_watermark * RESUME_SHARE)
        self.overloaded = False
        self.peers: frozenset[int] = frozenset(peers)  # wire ids of the other workers
        self.heard: set[int] = set()  # peers a message came from
        self.peer_overloaded: dict[int, float] = {}  # peer -> when it last said so
        self._said_hello = False
        self._status_sent_at: float | None = None
        self._waiting_since = now
        self._waiting = bool(self.peers)

    def set_peers(self, peers: Iterable[int]) -> None:
        self.peers = frozenset(peers)
        for gone in [p for p in self.peer_overloaded if p not in self.peers]:
            del self.peer_overloaded[gone]

    def assess(self, queued: int, backlog: int, parked: int, now: float) -> int | None:
        """Update this worker's own state; return the status to send every peer, or None."""
        if not self.overloaded:
            over = queued > self.high_watermark or backlog > BACKLOG_LIMIT or parked > 0
        else:
            over = not (queued < self.resume_below and backlog <= BACKLOG_LIMIT and not parked)
        due = self._status_sent_at is None or now - self._status_sent_at >= STATUS_EVERY
        if over == self.overloaded and not due:
            return None
        self.overloaded = over
        self._status_sent_at = now
        if over:
            return OVERLOADED
        if not self._said_hello:
            self._said_hello = True
            return HELLO
        return READY

    def peer_said(self, peer: int, status: int, now: float) -> None:
        """A peer's BACKPRESSURE message; a HELLO makes the next `assess` answer at once."""
        if status == OVERLOADED:
            self.peer_overloaded[peer] = now
        else:
            self.peer_overloaded.pop(peer, None)
            if status == HELLO:
                self._status_sent_at = None

    def expire(self, now: float) -> None:
        """Forget peers' "overloaded" that were not restated in time."""
        for peer, since in list(self.peer_overloaded.items()):
            if now - since > PEER_STATUS_TTL:
                del self.peer_overloaded[peer]

    def spouts_may_run(self, now: float) -> bool:
        if self.overloaded or self.peer_overloaded:
            return False
        if self._waiting:
            if not self.peers <= self.heard and now - self._waiting_since < PEER_WAIT_SECS:
                return False
            self._waiting = False
        return True
