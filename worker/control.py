"""The control channel between a worker and the process that started it.

The parent (a supervisor, or a LocalCluster) binds a ROUTER socket; each worker connects a
DEALER whose identity is "host:port". The worker speaks first and often (heartbeats); the
parent answers a heartbeat that carries an old assignment version with the current
assignment, so a restarted parent needs no state to bring its workers up to date.
Every message carries the cluster MAC like worker-to-worker traffic.

Worker -> parent: {"type": "heartbeat", ...} and {"type": "dump", ...} (testing captures).
Parent -> worker: {"type": "assignment", "assignment": {...}}, {"type": "supervised"}
(contact only: the answer to a heartbeat when the assignment has not changed),
{"type": "dump"}, {"type": "flush"} (the input is over: fire what is held) and
{"type": "stop"}. The worker's side runs on a thread of its own (worker.parent).

Both ends refuse frames over `max_message_bytes` before reading them (ZMQ_MAXMSGSIZE).
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from worker.wire import CONTROL, BadMessage, Codec

log = logging.getLogger(__name__)

NO_TOPOLOGY_TAG = b"\0" * 8
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ControlClient:
    """The worker's end."""

    def __init__(self, endpoint: str, key: bytes, host: str, port: int,
                 context: zmq.Context | None = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._codec = Codec(key, NO_TOPOLOGY_TAG, port)
        self.socket = (context or zmq.Context.instance()).socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.socket.setsockopt(zmq.IDENTITY, f"{host}:{port}".encode())
        self.socket.connect(endpoint)

    def send(self, message: dict[str, Any]) -> None:
        try:
            self.socket.send(self._codec.encode(CONTROL, message), flags=zmq.NOBLOCK)
        except zmq.Again:
            log.debug("control channel full; dropped a %s", message.get("type"))

    def receive(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            try:
                frames = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return out
            try:
                kind, _, message = self._codec.decode(_one(frames))
            except BadMessage as e:
                log.warning("control channel: dropped a message: %s", e)
                continue
            if kind == CONTROL and isinstance(message, dict):
                out.append(message)

    def close(self, linger_ms: int = 0) -> None:
        """Close; with `linger_ms`, give messages still queued that long to leave."""
        self.socket.close(linger_ms)


class ControlServer:
    """The parent's end. Not thread-safe: one thread owns it."""

    def __init__(self, endpoint: str, key: bytes, context: zmq.Context | None = None,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._codec = Codec(key, NO_TOPOLOGY_TAG, 0)
        self._context = context or zmq.Context()
        self._own_context = context is None
        self.socket = self._context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        self.socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.socket.bind(endpoint)
        self.endpoint = str(self.socket.getsockopt_string(zmq.LAST_ENDPOINT))
        self.rejected = 0

    def poll(self, timeout_ms: int) -> list[tuple[str, dict[str, Any]]]:
        """Messages that arrived within `timeout_ms`, as (worker "host:port", message)."""
        out: list[tuple[str, dict[str, Any]]] = []
        if not self.socket.poll(timeout_ms):
            return out
        while True:
            try:
                frames = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return out
            identity, body = frames[0], frames[1:]
            try:
                kind, _, message = self._codec.decode(_one(body))
            except BadMessage as e:
                self.rejected += 1
                log.warning("control: dropped a message from %r: %s", identity, e)
                continue
            if kind == CONTROL and isinstance(message, dict):
                out.append((identity.decode(errors="replace"), message))

    def send(self, worker: str, message: dict[str, Any]) -> None:
        frames = [worker.encode(), self._codec.encode(CONTROL, message)]
        try:
            self.socket.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.debug("control: could not send %s to %s: %s", message.get("type"), worker, e)

    def close(self) -> None:
        self.socket.close(0)
        if self._own_context:
            self._context.term()


def _one(frames: list[bytes]) -> bytes:
    if len(frames) != 1:
        raise BadMessage(f"{len(frames)} frames, expected 1")
    return frames[0]
