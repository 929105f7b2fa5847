"""ZeroMQ transport between workers: one PULL socket on the slot port, two PUSH per peer.

Data and system traffic (acks, spout outcomes, backpressure) use separate PUSH sockets to
each peer, so they travel in separate ZeroMQ pipes with separate high-water marks: a peer
that is slow to take data never holds up the acks behind it. Sends never block: a message
that does not fit is kept in a per-peer backlog and retried, and the worker treats a
backlog as backpressure (its spouts pause) instead of dropping anything.
"""

from __future__ import annotations

import collections
import logging
from typing import Any

import zmq

from worker.wire import BadMessage, Codec

log = logging.getLogger(__name__)

Address = tuple[str, int]


class Peer:
    """The sockets to one other worker and what could not be sent to it yet."""

    def __init__(self, context: zmq.Context, address: Address, data_hwm: int) -> None:
        self.address = address
        endpoint = f"tcp://{address[0]}:{address[1]}"
        self.data = context.socket(zmq.PUSH)
        self.data.setsockopt(zmq.LINGER, 0)
        self.data.setsockopt(zmq.SNDHWM, data_hwm)
        self.data.connect(endpoint)
        self.system = context.socket(zmq.PUSH)
        self.system.setsockopt(zmq.LINGER, 0)
        self.system.setsockopt(zmq.SNDHWM, 0)  # system traffic is small: never refuse it
        self.system.connect(endpoint)
        self.backlog: collections.deque[list[bytes]] = collections.deque()

    def close(self) -> None:
        self.data.close(0)
        self.system.close(0)


class Transport:
    """Binds the slot port and sends encoded messages to peers by (host, port)."""

    def __init__(self, codec: Codec, host: str, port: int, data_hwm: int = 64) -> None:
        self.codec = codec
        self.context: zmq.Context = zmq.Context.instance()
        self.receiver = self.context.socket(zmq.PULL)
        self.receiver.setsockopt(zmq.LINGER, 0)
        # Finite, so that a worker that stops reading (a long bolt slice) makes its
        # senders' sends back up into their backlogs, which pauses their spouts.
        self.receiver.setsockopt(zmq.RCVHWM, data_hwm)
        self.receiver.bind(f"tcp://{host}:{port}")
        self.address = (host, port)
        self._data_hwm = data_hwm
        self._peers: dict[Address, Peer] = {}
        self.rejected = 0  # messages dropped for a bad MAC, header or topology
        self.sent_bytes = 0
        self.received_bytes = 0

    def peer(self, address: Address) -> Peer:
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = Peer(self.context, address, self._data_hwm)
            log.debug("worker %s:%d: connected to %s:%d", *self.address, *address)
        return peer

    def forget_peers(self, keep: set[Address]) -> None:
        for address in list(self._peers):
            if address not in keep:
                self._peers.pop(address).close()

    def send_data(self, address: Address, kind: int, obj: object) -> None:
        """Queue a data message to a peer; it leaves now if the peer's pipe has room."""
        peer = self.peer(address)
        frames = self.codec.encode(kind, obj)
        self.sent_bytes += len(frames[1])
        if peer.backlog or not self._try_send(peer.data, frames):
            peer.backlog.append(frames)

    def send_system(self, address: Address, kind: int, obj: object) -> None:
        frames = self.codec.encode(kind, obj)
        self.sent_bytes += len(frames[1])
        self.peer(address).system.send_multipart(frames, copy=False)

    def _try_send(self, socket: zmq.Socket, frames: list[bytes]) -> bool:
        try:
            socket.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False

    def backlog(self) -> int:
        """Messages waiting for room in a peer's pipe (a sign of a slow peer)."""
        return sum(len(peer.backlog) for peer in self._peers.values())

    def retry_backlogs(self) -> int:
        """Send what the peers' pipes now accept; return how many messages remain."""
        left = 0
        for peer in self._peers.values():
            backlog = peer.backlog
            while backlog and self._try_send(peer.data, backlog[0]):
                backlog.popleft()
            left += len(backlog)
        return left

    def receive(self) -> tuple[int, int, list[bytes]] | None:
        """The next verified message as (kind, sender id, frames), or None if none is
        waiting; `load(frames)` reads its payload. Messages that fail verification are
        dropped and counted."""
        recv = self.receiver.recv_multipart
        while True:
            try:
                frames = recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return None
            self.received_bytes += sum(len(f) for f in frames)
            try:
                kind, port = self.codec.verify(frames)
                return kind, port, frames
            except BadMessage as e:
                self._rejected(e)

    def load(self, frames: list[bytes]) -> Any:
        """The payload of a message from `receive`, or None (counted) if it is unreadable."""
        try:
            return self.codec.load(frames)
        except BadMessage as e:
            self._rejected(e)
            return None

    def _rejected(self, error: BadMessage) -> None:
        self.rejected += 1
        if self.rejected <= 10 or self.rejected % 1000 == 0:
            log.warning("worker %s:%d: dropped a message: %s (%d dropped so far)",
                        *self.address, error, self.rejected)

    def close(self) -> None:
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()
        self.receiver.close(0)
