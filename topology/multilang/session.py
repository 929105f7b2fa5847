"""The protocol state of one shell bolt or spout subprocess, without I/O or clocks.

A session turns what the component said (decoded messages) into calls on a sink (the
worker's collector for this task: emit, ack, fail, error) and on a log function, and queues
the bytes to write
back (tuples, commands, task id replies). The host that owns the pipes writes
`take_output()` and feeds `handle()`.

Batching: a bolt session writes tuples as long as fewer than `max_pending` are in flight
(no sync per tuple: the bolt protocol needs none), so the subprocess always has work queued
in its pipe; a spout session may keep up to `pipeline` commands outstanding.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .protocol import HEARTBEAT_STREAM, SYSTEM_TASK, TupleEncoder, encode, encode_task_ids

# Storm's log levels (ShellMsg.ShellLogLevel): trace, debug, info, warn, error.
TRACE, DEBUG, INFO, WARN, ERROR = range(5)
SHOWN = 300  # characters of a bad message quoted in an error
# What a component's metrics may take of each heartbeat.
MAX_METRICS = 64
MAX_METRIC_NAME = 200
MAX_METRIC_JSON = 4096


def _quote(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN else text[:SHOWN] + "..."


class Sink(Protocol):
    """What a session tells the task that runs it (the worker's collector, in effect)."""

    def error(self, text: str) -> None:
        """Report an error of the component (shown like any bolt's error)."""


class BoltSink(Sink, Protocol):
    def emit(self, stream: str, values: list[Any], anchors: list[Any],
             task: int | None) -> list[int]:
        """Emit anchored to the given tuple handles; `task` set means emit direct."""

    def ack(self, handle: Any) -> None: ...

    def fail(self, handle: Any) -> None: ...


class SpoutSink(Sink, Protocol):
    def emit(self, stream: str, values: list[Any], msg_id: Any, task: int | None) -> list[int]:
        """Emit (reliably if `msg_id` is not None); `task` set means emit direct."""


LogFn = Callable[[int, str], None]  # (Storm log level, text): the component logged something


class _Session:
    """What both kinds share: the pid handshake, output queue, log/error/metrics."""

    def __init__(self, log: LogFn) -> None:
        self.log = log
        self.out: list[bytes] = []
        self.pid: int | None = None  # the pid the component reported: ready once known
        self.metrics: dict[str, Any] = {}
        self.emitted = 0

    def start(self, setup: dict[str, Any]) -> None:
        """Queue the handshake; nothing else is written until the component sends its pid."""
        self.out.append(encode(setup))

    @property
    def ready(self) -> bool:
        return self.pid is not None

    def take_output(self) -> bytes:
        if not self.out:
            return b""
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        self.out.clear()
        return data

    def _common(self, sink: Sink, command: Any, msg: dict[str, Any]) -> None:
        if command == "log":
            level = msg.get("level", INFO)
            self.log(level if isinstance(level, int) and TRACE <= level <= ERROR else INFO,
                     str(msg.get("msg")))
        elif command == "error":
            sink.error(str(msg.get("msg")))
        elif command == "metrics":
            self._metric(msg)
        elif command is None and "pid" in msg:
            pid = msg["pid"]
            if isinstance(pid, int) and not isinstance(pid, bool):
                self.pid = pid
            else:
                sink.error(f"handshake reply with a pid that is not a number: {_quote(msg)}")
        else:
            self.log(WARN, f"unknown command, ignored: {_quote(msg)}")

    def _metric(self, msg: dict[str, Any]) -> None:
        """Keep the latest value of each metric for the heartbeat, bounded: at most
        MAX_METRICS names of MAX_METRIC_NAME characters, values of MAX_METRIC_JSON bytes."""
        name = msg.get("name")
        params = msg.get("params")
        if not isinstance(name, str) or not name or len(name) > MAX_METRIC_NAME:
            self.log(WARN, f"metrics message without a name (or with one over "
                           f"{MAX_METRIC_NAME} characters): {_quote(msg)}")
        elif name not in self.metrics and len(self.metrics) >= MAX_METRICS:
            self.log(WARN, f"metric {name!r} dropped: {MAX_METRICS} metrics kept already")
        elif len(encode(params)) > MAX_METRIC_JSON:
            self.log(WARN, f"metric {name!r} dropped: its value is over {MAX_METRIC_JSON} "
                           f"bytes of JSON ({_quote(params)})")
        else:
            self.metrics[name] = params

    def _parse_emit(self, sink: Sink, msg: dict[str, Any]
                    ) -> tuple[list[Any], str, int | None] | None:
        """(values, stream, direct task or None) of an emit message, or None when it is
        malformed (reported and answered by _bad_emit)."""
        values = msg.get("tuple")
        stream = msg.get("stream")
        if stream is None:
            stream = "default"
        task = msg.get("task")
        if type(values) is not list or type(stream) is not str or (
                task is not None and type(task) is not int):
            self._bad_emit(sink, msg)
            return None
        return values, stream, task or None  # Storm: task 0 means "not direct"

    def _send(self, sink: Any, msg: dict[str, Any], stream: str, values: list[Any],
              tracking: Any, task: int | None) -> None:
        """Emit through the sink (`tracking`: a bolt's anchor handles, a spout's msg id) and
        answer the task ids the component waits for."""
        try:
            targets = sink.emit(stream, values, tracking, task)
        except Exception as e:  # a bad stream or field count: the component's bug, reported
            sink.error(f"emit on stream {stream!r} refused: {e}")
            targets = []
        self.emitted += 1
        if task is None and msg.get("need_task_ids") is not False:
            self.out.append(encode_task_ids(targets))

    def _bad_emit(self, sink: Sink, msg: dict[str, Any]) -> None:
        """An emit without a list `tuple`, a string `stream` or an integer `task`: report it,
        and answer it if the component waits for task ids, so the stream stays in step."""
        sink.error(f"emit needs a list `tuple`, a string `stream` and an integer `task` if "
                    f"any: {_quote(msg)}")
        if msg.get("need_task_ids", True) is not False and msg.get("task") is None:
            self.out.append(encode_task_ids(()))


class BoltSession(_Session):
    """A shell bolt: tuples out (each with a protocol id), emits/acks/fails back."""

    def __init__(self, sink: BoltSink, log: LogFn, max_pending: int) -> None:
        super().__init__(log)
        self.sink = sink
        self.max_pending = max_pending
        self.inflight: dict[str, Any] = {}  # protocol id -> the worker's tuple handle
        self._ids = 0
        self._heartbeats: collections.deque[str] = collections.deque(maxlen=64)
        self._heartbeat_encoder = TupleEncoder(None, HEARTBEAT_STREAM)
        self.acked = 0
        self.failed = 0

    def room(self) -> int:
        """How many more tuples may be written now."""
        return self.max_pending - len(self.inflight) if self.pid is not None else 0

    def send(self, handle: Any, encoder: TupleEncoder, task: int, values: Sequence[Any]) -> bool:
        """Write one input tuple (from source `task`); False (and the tuple failed) if its
        values are not JSON."""
        self._ids += 1
        tuple_id = str(self._ids)
        try:
            data = encoder.encode(tuple_id, task, values)
        except (TypeError, ValueError) as e:
            self.sink.error(f"cannot send a tuple to the subprocess, its values are not JSON: "
                            f"{e} (values {_quote(values)})")
            self.sink.fail(handle)
            return False
        self.inflight[tuple_id] = handle
        self.out.append(data)
        return True

    def heartbeat(self) -> None:
        """Ask for a sync (Storm's heartbeat tuple); a live component answers at once."""
        self._ids += 1
        tuple_id = str(self._ids)
        self._heartbeats.append(tuple_id)
        self.out.append(self._heartbeat_encoder.encode(tuple_id, SYSTEM_TASK, ()))

    def fail_all(self) -> int:
        """Fail every tuple in flight (the subprocess is gone); return how many."""
        handles = list(self.inflight.values())
        self.inflight.clear()
        for handle in handles:
            self.sink.fail(handle)
        self.failed += len(handles)
        return len(handles)

    def handle(self, messages: list[Any]) -> None:
        sink = self.sink
        inflight = self.inflight
        for msg in messages:
            if type(msg) is not dict:
                self.log(WARN, f"a message that is not a JSON object, ignored: {_quote(msg)}")
                continue
            command = msg.get("command")
            if command == "emit":
                self._emit(msg)
            elif command == "ack" or command == "fail":
                handle = inflight.pop(str(msg.get("id")), None)
                if handle is None:
                    self._unknown(command, msg)
                elif command == "ack":
                    self.acked += 1
                    sink.ack(handle)
                else:
                    self.failed += 1
                    sink.fail(handle)
            elif command == "sync":
                pass  # the answer to a heartbeat: hearing it was the point
            else:
                self._common(sink, command, msg)

    def _unknown(self, command: str, msg: dict[str, Any]) -> None:
        if str(msg.get("id")) in self._heartbeats:
            return  # a component that acks heartbeat tuples: harmless
        self.log(WARN, f"{command} of tuple id {_quote(msg.get('id'))}, which is not in "
                            "flight (already acked or failed, or never sent): ignored")

    def _emit(self, msg: dict[str, Any]) -> None:
        sink = self.sink
        parsed = self._parse_emit(sink, msg)
        if parsed is None:
            return
        values, stream, task = parsed
        anchors = msg.get("anchors")
        handles: list[Any] = []
        if anchors:
            inflight = self.inflight
            for anchor in anchors if type(anchors) is list else [anchors]:
                handle = inflight.get(anchor if type(anchor) is str else str(anchor))
                if handle is None:
                    sink.error(f"emit anchored to tuple id {_quote(anchor)}, which is not in "
                               "flight (already acked or failed): emitted without that anchor")
                else:
                    handles.append(handle)
        self._send(sink, msg, stream, values, handles, task)


class SpoutSession(_Session):
    """A shell spout: commands out (next/ack/fail/activate/deactivate), emits and syncs back.

    Storm's ShellSpout blocks on each command until the sync. Here up to `pipeline` commands
    may be outstanding and none blocks the caller. A `next` answered without an emit means the
    spout has nothing: the next `next` waits `idle_wait`, doubling up to `max_idle_wait`.
    """

    def __init__(self, sink: SpoutSink, log: LogFn, pipeline: int = 1,
                 idle_wait: float = 0.001, max_idle_wait: float = 0.032) -> None:
        super().__init__(log)
        self.sink = sink
        self.pipeline = max(1, pipeline)
        self.commands: collections.deque[bytes] = collections.deque()  # waiting to be written
        self.outstanding: collections.deque[bool] = collections.deque()  # is_next, per command
        self.min_idle_wait = idle_wait
        self.max_idle_wait = max_idle_wait
        self.idle_wait = 0.0
        self.next_at = 0.0  # no `next` before this time
        self._emits = 0  # emits since the last sync

    def ack(self, msg_id: Any) -> None:
        self.commands.append(encode({"command": "ack", "id": msg_id}))

    def fail(self, msg_id: Any) -> None:
        self.commands.append(encode({"command": "fail", "id": msg_id}))

    def activate(self) -> None:
        self.commands.append(encode({"command": "activate"}))

    def deactivate(self) -> None:
        self.commands.append(encode({"command": "deactivate"}))

    @property
    def waiting(self) -> bool:
        """A command is outstanding: the component owes a sync."""
        return bool(self.outstanding)

    def pump(self, now: float, nexts: int) -> None:
        """Write queued commands, then up to `nexts` `next` commands, within the pipeline."""
        if self.pid is None:
            return
        outstanding = self.outstanding
        commands = self.commands
        while commands and len(outstanding) < self.pipeline:
            self.out.append(commands.popleft())
            outstanding.append(False)
        if commands or now < self.next_at:
            return
        room = min(nexts, self.pipeline - len(outstanding))
        for _ in range(room):
            self.out.append(b'{"command":"next"}\nend\n')
            outstanding.append(True)

    def restarted(self) -> None:
        """The subprocess was replaced: nothing it owed is coming."""
        self.outstanding.clear()
        self.pid = None
        self.out.clear()
        self._emits = 0

    def handle(self, messages: list[Any], now: float) -> None:
        sink = self.sink
        for msg in messages:
            if type(msg) is not dict:
                self.log(WARN, f"a message that is not a JSON object, ignored: {_quote(msg)}")
                continue
            command = msg.get("command")
            if command == "emit":
                self._emit(msg)
            elif command == "sync":
                self._sync(now)
            else:
                self._common(sink, command, msg)

    def _sync(self, now: float) -> None:
        if not self.outstanding:
            self.log(WARN, "sync without a command outstanding: ignored")
            return
        was_next = self.outstanding.popleft()
        if self._emits:
            self.idle_wait = 0.0
            self.next_at = 0.0
        elif was_next:
            self.idle_wait = min(self.max_idle_wait, max(self.min_idle_wait, self.idle_wait * 2))
            self.next_at = now + self.idle_wait
        self._emits = 0

    def _emit(self, msg: dict[str, Any]) -> None:
        sink = self.sink
        parsed = self._parse_emit(sink, msg)
        if parsed is None:
            return
        values, stream, task = parsed
        self._send(sink, msg, stream, values, msg.get("id"), task)
        self._emits += 1
