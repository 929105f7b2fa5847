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

Log levels (`squall set-log-level`): an assignment may carry
`"log_levels": {logger: {"level": NAME, "until": unix time or null}}`, the loggers whose
level an operator set for a while (`ROOT_LOGGER` is Python's root logger; NAME one of
`LOG_LEVELS`). Nimbus stores them with the topology and puts those not yet over into the
assignment (bumping its version when the set changes), so a worker started later gets them
too; the worker's parent thread applies them and puts a logger back at `until`
(worker.parent.LogLevels).
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from worker.wire import CONTROL, BadMessage, Codec

log = logging.getLogger(__name__)

NO_TOPOLOGY_TAG = b"\0" * 8
ROOT_LOGGER = "ROOT"  # Storm's name of the root logger
# Storm's (log4j's) level names and Python's, as Python levels; OFF silences a logger.
LOG_LEVELS: dict[str, int] = {
    "ALL": 1, "TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40,
    "FATAL": 50, "CRITICAL": 50, "OFF": 100,
}
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def live_log_levels(spec: Any, now: float) -> dict[str, int]:
    """Logger -> level of a "log_levels" value at unix time `now`: what is not over yet (an
    entry that is malformed is skipped: this is the parent's word, checked by nimbus)."""
    out: dict[str, int] = {}
    if not isinstance(spec, dict):
        return out
    for name, entry in spec.items():
        if not isinstance(name, str) or not isinstance(entry, dict):
            continue
        level, until = LOG_LEVELS.get(str(entry.get("level")).upper()), entry.get("until")
        if level is None or (until is not None and not isinstance(until, (int, float))):
            continue
        if until is None or now < until:
            out[name] = level
    return out


def next_log_change(spec: Any, now: float) -> float | None:
    """The unix time at which a level of `spec` set now is over (None: none is)."""
    if not isinstance(spec, dict):
        return None
    ends = [e["until"] for e in spec.values() if isinstance(e, dict)
            and isinstance(e.get("until"), (int, float)) and e["until"] > now]
    return min(ends, default=None)


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
