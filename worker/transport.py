"""How workers reach each other: a small interface, over ZeroMQ or in memory.

`ZmqTransport` binds one PULL socket on the slot port and keeps two PUSH sockets per peer.
Data and system traffic (acks, spout outcomes, backpressure) use separate PUSH sockets, so
they travel in separate ZeroMQ pipes with separate high-water marks: a peer that is slow to
take data never holds up the acks behind it. Sends never block: a data message that does not
fit is kept in a per-peer backlog and retried, and the worker treats a backlog as
backpressure (its spouts pause) instead of dropping anything.

Every message is verified (worker.wire) as it is read, before its payload is decoded, and no
frame larger than `max_message_bytes` is accepted from the network at all: ZeroMQ drops the
connection of a peer that announces one (ZMQ_MAXMSGSIZE), so an unauthenticated peer cannot
make a worker hold more than that. Senders never build a bigger message (`MessageTooBig`
tells them to split it).

`MemoryTransport` has the same behaviour between transports of one `MemoryNetwork` in one
process, so unit tests can drive one or several workers turn by turn without sockets.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Protocol

import zmq

from worker.wire import BadMessage, Codec

log = logging.getLogger(__name__)

Address = tuple[str, int]
Received = tuple[int, int, bytes]  # (kind, sender id, message)

DATA_HWM = 64  # data messages a pipe to one peer holds before sends back up
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class MessageTooBig(Exception):
    """The encoded payload is over the limit every worker enforces: split it and retry."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a {size}-byte message is over the {limit}-byte limit")
        self.size = size
        self.limit = limit


class Transport(Protocol):
    """What the worker's loop needs from its transport."""

    address: Address
    rejected: int  # messages dropped for a bad MAC, header, topology or payload
    sent_bytes: int
    received_bytes: int
    sent_messages: int
    received_messages: int

    @property
    def pollable(self) -> Any:
        """A socket or file descriptor that is readable when a message waits (None: poll
        the transport every turn)."""

    def send_data(self, address: Address, kind: int, obj: object) -> None:
        """Queue a data message; it leaves now if the peer's pipe has room, else it waits in
        a backlog. Raises MessageTooBig (sending nothing) if it is over the limit."""

    def send_system(self, address: Address, kind: int, obj: object) -> None:
        """Send a small system message at once (never refused, never behind data)."""

    def receive(self) -> Received | None:
        """The next verified message, or None if none is waiting."""

    def load(self, message: bytes) -> Any:
        """The payload of a received message, or None (counted) if it is unreadable."""

    def backlog(self) -> int:
        """Data messages waiting for room in a peer's pipe."""

    def retry_backlogs(self) -> int:
        """Send what the peers' pipes now accept; return how many messages remain."""

    def forget_peers(self, keep: set[Address]) -> None:
        """Drop the connections (and backlogs) of peers not in `keep`."""

    def close(self) -> None: ...


class _Counters:
    """Shared by both transports: verification, counting and the size limit."""

    def __init__(self, codec: Codec, address: Address, max_message_bytes: int) -> None:
        self.codec = codec
        self.address = address
        self.max_message_bytes = max_message_bytes
        self.rejected = 0
        self.sent_bytes = 0
        self.received_bytes = 0
        self.sent_messages = 0
        self.received_messages = 0

    def _encode(self, kind: int, obj: object) -> bytes:
        message = self.codec.encode(kind, obj)
        size = len(message)
        if size > self.max_message_bytes:
            raise MessageTooBig(size, self.max_message_bytes)
        self.sent_bytes += size
        self.sent_messages += 1
        return message

    def _verify(self, message: bytes) -> Received | None:
        self.received_bytes += len(message)
        self.received_messages += 1
        try:
            kind, sender = self.codec.verify(message)
            return kind, sender, message
        except BadMessage as e:
            self._rejected(e)
            return None

    def load(self, message: bytes) -> Any:
        try:
            return self.codec.load(message)
        except BadMessage as e:
            self._rejected(e)
            return None

    def _rejected(self, error: BadMessage) -> None:
        self.rejected += 1
        if self.rejected <= 10 or self.rejected % 1000 == 0:
            log.warning("worker %s:%d: dropped a message: %s (%d dropped so far)",
                        *self.address, error, self.rejected)


class _ZmqPeer:
    """The sockets to one other worker and what could not be sent to it yet."""

    def __init__(self, context: zmq.Context, address: Address, data_hwm: int) -> None:
        endpoint = f"tcp://{address[0]}:{address[1]}"
        self.data = context.socket(zmq.PUSH)
        self.data.setsockopt(zmq.LINGER, 0)
        self.data.setsockopt(zmq.SNDHWM, data_hwm)
        self.data.connect(endpoint)
        self.system = context.socket(zmq.PUSH)
        self.system.setsockopt(zmq.LINGER, 0)
        self.system.setsockopt(zmq.SNDHWM, 0)  # system traffic is small: never refuse it
        self.system.connect(endpoint)
        self.backlog: collections.deque[bytes] = collections.deque()

    def try_send(self, message: bytes) -> bool:
        try:
            self.data.send(message, flags=zmq.NOBLOCK)
            return True
        except zmq.Again:
            return False

    def close(self) -> None:
        self.data.close(0)
        self.system.close(0)


class ZmqTransport(_Counters):
    """Binds the slot port and sends encoded messages to peers by (host, port)."""

    def __init__(self, codec: Codec, host: str, port: int, data_hwm: int = DATA_HWM,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        super().__init__(codec, (host, port), max_message_bytes)
        self.context: zmq.Context = zmq.Context.instance()
        self.receiver = self.context.socket(zmq.PULL)
        self.receiver.setsockopt(zmq.LINGER, 0)
        # Finite, so that a worker that stops reading (a long bolt slice) makes its
        # senders' sends back up into their backlogs, which pauses their spouts.
        self.receiver.setsockopt(zmq.RCVHWM, data_hwm)
        self.receiver.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.receiver.bind(f"tcp://{host}:{port}")
        self._data_hwm = data_hwm
        self._peers: dict[Address, _ZmqPeer] = {}

    @property
    def pollable(self) -> Any:
        return self.receiver

    def _peer(self, address: Address) -> _ZmqPeer:
        peer = self._peers.get(address)
        if peer is None:
            peer = self._peers[address] = _ZmqPeer(self.context, address, self._data_hwm)
            log.debug("worker %s:%d: connected to %s:%d", *self.address, *address)
        return peer

    def forget_peers(self, keep: set[Address]) -> None:
        for address in list(self._peers):
            if address not in keep:
                self._peers.pop(address).close()

    def send_data(self, address: Address, kind: int, obj: object) -> None:
        message = self._encode(kind, obj)
        peer = self._peer(address)
        if peer.backlog or not peer.try_send(message):
            peer.backlog.append(message)

    def send_system(self, address: Address, kind: int, obj: object) -> None:
        self._peer(address).system.send(self._encode(kind, obj))

    def backlog(self) -> int:
        return sum(len(peer.backlog) for peer in self._peers.values())

    def retry_backlogs(self) -> int:
        left = 0
        for peer in self._peers.values():
            backlog = peer.backlog
            while backlog and peer.try_send(backlog[0]):
                backlog.popleft()
            left += len(backlog)
        return left

    def receive(self) -> Received | None:
        recv = self.receiver.recv
        while True:
            try:
                message = recv(flags=zmq.NOBLOCK)
            except zmq.Again:
                return None
            received = self._verify(message)
            if received is not None:
                return received


    def close(self) -> None:
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()
        self.receiver.close(0)


class MemoryNetwork:
    """Transports of one process, found by address: what unit tests drive workers with."""

    def __init__(self) -> None:
        self.transports: dict[Address, MemoryTransport] = {}

    def transport(self, codec: Codec, host: str, port: int, data_hwm: int = DATA_HWM,
                  max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> MemoryTransport:
        address = (host, port)
        if address in self.transports:
            raise ValueError(f"address {host}:{port} is in use")
        transport = self.transports[address] = MemoryTransport(self, codec, address, data_hwm,
                                                              max_message_bytes)
        return transport


class MemoryTransport(_Counters):
    """A transport whose messages go straight into the receiving transport's inbox.

    Data to one peer backs up like ZeroMQ's: at most 2 * data_hwm unread data messages
    (the send and receive high-water marks) sit in the pipe, the rest wait in a backlog.
    """

    def __init__(self, network: MemoryNetwork, codec: Codec, address: Address, data_hwm: int,
                 max_message_bytes: int) -> None:
        super().__init__(codec, address, max_message_bytes)
        self.network = network
        self.inbox: collections.deque[tuple[Address | None, bytes]] = collections.deque()
        self.unread_data: collections.Counter[Address] = collections.Counter()  # per sender
        self._capacity = 2 * data_hwm
        self._backlogs: dict[Address, collections.deque[bytes]] = {}
        self.closed = False

    @property
    def pollable(self) -> Any:
        return None

    def _try_send(self, address: Address, message: bytes) -> bool:
        peer = self.network.transports.get(address)
        if peer is None or peer.closed:
            return True  # like a PUSH to nobody: gone (ZeroMQ would hold it until HWM)
        if peer.unread_data[self.address] >= self._capacity:
            return False
        peer.unread_data[self.address] += 1
        peer.inbox.append((self.address, message))
        return True

    def send_data(self, address: Address, kind: int, obj: object) -> None:
        message = self._encode(kind, obj)
        backlog = self._backlogs.setdefault(address, collections.deque())
        if backlog or not self._try_send(address, message):
            backlog.append(message)

    def send_system(self, address: Address, kind: int, obj: object) -> None:
        message = self._encode(kind, obj)
        peer = self.network.transports.get(address)
        if peer is not None and not peer.closed:
            peer.inbox.append((None, message))

    def deliver_raw(self, message: bytes) -> None:
        """Put an arbitrary message in this transport's inbox (tests: forged messages)."""
        self.inbox.append((None, message))

    def backlog(self) -> int:
        return sum(len(b) for b in self._backlogs.values())

    def retry_backlogs(self) -> int:
        left = 0
        for address, backlog in self._backlogs.items():
            while backlog and self._try_send(address, backlog[0]):
                backlog.popleft()
            left += len(backlog)
        return left

    def forget_peers(self, keep: set[Address]) -> None:
        for address in [a for a in self._backlogs if a not in keep]:
            del self._backlogs[address]

    def receive(self) -> Received | None:
        while self.inbox:
            sender, message = self.inbox.popleft()
            if sender is not None:
                self.unread_data[sender] -= 1
            received = self._verify(message)
            if received is not None:
                return received
        return None

    def close(self) -> None:
        self.closed = True
        self.network.transports.pop(self.address, None)
