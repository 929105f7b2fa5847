"""Replayable spouts: sources that can be read again from a position, for exactly-once state.

A `ReplayableSpout` reads its sources in order and knows its read position per source name
(a file's path, a stream's key). In a topology with stateful bolts the framework records the
position at the close of every checkpoint in the checkpoint's commit record, and after any
failure (including the death of the spout's own worker) it seeks every spout back to the
committed position: what was read after it is read again, and what was before it is never
read again. Per-tuple `ack`/`fail` are therefore not needed: replay is by seeking.

- `LogFileSpout(path)`: the lines of a file (which may keep growing), by byte offset.
- `RedisStreamSpout(stream)`: the entries of a Redis stream, by entry id.

Positions are kept by source name, so a rebalance that changes a spout's parallelism still
finds them; with parallelism > 1, put `{index}` in the name so each task reads its own.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from topology.component import Spout
from topology.context import TopologyContext

log = logging.getLogger(__name__)

READ_CHUNK = 64 * 1024  # bytes a log-file spout reads at a time
RETRY_SECS = 1.0  # a missing file or an unreachable Redis is tried again this often


def source_snapshot(kind: str, name: str, offset: Any, behind: int | None) -> dict[str, Any]:
    """A replayable spout task's heartbeat field "source": what it reads, its committed
    position, and how much of the source it has not read yet (bytes or entries)."""
    return {"kind": kind, "name": name, "offset": offset, "behind": behind}


class ReplayableSpout(Spout):
    """A spout whose reads can be replayed from a committed position (see module doc).

    Subclasses implement `name`, `position`, `seek`, `behind` and `next_tuple`. The
    framework calls `seek` before the first `next_tuple` and after every rollback,
    `position` when a checkpoint closes and `committed` when one commits.
    """

    kind = ""
    #: the framework replays these spouts by `seek`: it need not remember their msg ids
    replay_by_seek = True

    def __init__(self) -> None:
        self._committed: Any = None

    @property
    def name(self) -> str:
        """The source this task reads (known after `open`)."""
        raise NotImplementedError

    def position(self) -> dict[str, Any]:
        """{source name: the position of the next unread item}."""
        raise NotImplementedError

    def seek(self, positions: Mapping[str, Any]) -> None:
        """Resume from committed positions; a source missing from them starts over."""
        raise NotImplementedError

    def behind(self) -> int | None:
        """How much of the source is not read yet (None if unknown)."""
        raise NotImplementedError

    def committed(self, positions: Mapping[str, Any] | None) -> None:
        """A checkpoint committed with these positions."""
        if positions:
            self._committed = positions.get(self.name, self._committed)

    def source(self) -> dict[str, Any]:
        """The heartbeat field "source"."""
        return source_snapshot(self.kind, self.name, self._committed, self.behind())


def _task_name(template: str, context: TopologyContext) -> str:
    """`template` with {index} filled in; TopologyError-worthy message if it would be shared."""
    name = template.replace("{index}", str(context.task_index))
    parallelism = len(context.component_tasks(context.component_id))
    if parallelism > 1 and name == template:
        raise ValueError(f"component {context.component_id!r} has {parallelism} tasks but every "
                         f"one would read {template!r}: put {{index}} in it so each task "
                         "reads its own")
    return name


class LogFileSpout(ReplayableSpout):
    """Emits each line of a file (without its line end) as ["line"], with its byte offset as
    msg id. Only complete lines (ending in a newline) are emitted; it follows the file as it
    grows. `path` may contain `{index}` (the task index). Lines that are not valid text in
    `encoding` are decoded with replacement characters."""

    kind = "logfile"
    outputs = ["line"]

    def __init__(self, path: str, batch: int = 100, encoding: str = "utf-8") -> None:
        super().__init__()
        self.template = path
        self.batch = batch
        self.encoding = encoding
        self._path = ""
        self._file: Any = None
        self._offset = 0  # of the first byte not emitted yet
        self._buf = b""  # read from _offset on, not emitted yet
        self._retry_at = 0.0
        self._shrunk = False

    def open(self, conf: Mapping[str, Any], context: TopologyContext) -> None:
        self._path = os.path.abspath(_task_name(self.template, context))

    @property
    def name(self) -> str:
        return self._path

    def position(self) -> dict[str, Any]:
        return {self._path: self._offset}

    def seek(self, positions: Mapping[str, Any]) -> None:
        offset = positions.get(self._path, 0)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"log-file spout {self._path}: bad committed offset {offset!r}")
        self.close()
        self._offset = offset
        self._buf = b""
        self._retry_at = 0.0
        self._shrunk = False
        self._committed = offset

    def behind(self) -> int | None:
        try:
            return max(0, os.stat(self._path).st_size - self._offset) if self._path else None
        except OSError:
            return None

    def _ensure_open(self) -> bool:
        if self._file is not None:
            return True
        now = time.monotonic()
        if not self._path or now < self._retry_at:
            return False
        try:
            f = open(self._path, "rb")  # noqa: SIM115 - kept open across calls
        except OSError as e:
            self._retry_at = now + RETRY_SECS
            log.debug("log-file spout %s: cannot open it yet: %s", self._path, e)
            return False
        f.seek(self._offset + len(self._buf))
        self._file = f
        return True

    def _fill(self) -> None:
        """Read more of the file when the buffer holds no complete line."""
        if b"\n" in self._buf or not self._ensure_open():
            return
        chunk = self._file.read(READ_CHUNK)
        if chunk:
            self._buf += chunk
            return
        size = os.fstat(self._file.fileno()).st_size
        if size < self._offset + len(self._buf) and not self._shrunk:
            self._shrunk = True
            log.error("log-file spout %s: the file shrank to %d bytes, below the read offset "
                      "%d; it is not read again until it grows past it", self._path, size,
                      self._offset + len(self._buf))

    def next_tuple(self) -> None:
        self._fill()
        buf = self._buf
        start = 0
        emit = self.emit
        for _ in range(self.batch):
            end = buf.find(b"\n", start)
            if end < 0:
                break
            line = buf[start:end].rstrip(b"\r").decode(self.encoding, errors="replace")
            emit([line], msg_id=self._offset + start)
            start = end + 1
        if start:
            self._buf = buf[start:]
            self._offset += start

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class RedisStreamSpout(ReplayableSpout):
    """Emits each entry of a Redis stream, from its first, as the values of `fields` (text;
    None for a missing field), with the entry id as msg id. `url` defaults to
    `topology.state.redis.url`; `stream` may contain `{index}` (the task index)."""

    kind = "redis-stream"

    def __init__(self, stream: str, fields: Sequence[str] = ("data",), url: str | None = None,
                 batch: int = 100) -> None:
        super().__init__()
        self.template = stream
        self.fields = list(fields)
        self.outputs = list(fields)
        self.url = url
        self.batch = batch
        self._stream = ""
        self._db: Any = None
        self._last = "0-0"  # id of the last entry emitted
        self._read = 0  # entries emitted since the start of the stream
        self._retry_at = 0.0
        self._failing = False

    def open(self, conf: Mapping[str, Any], context: TopologyContext) -> None:
        self._stream = _task_name(self.template, context)
        self.url = self.url or str(conf.get("topology.state.redis.url"))

    @property
    def name(self) -> str:
        return self._stream

    def _connect(self) -> Any:
        if self._db is None:
            import redis

            self._db = redis.Redis.from_url(str(self.url), socket_timeout=10,
                                            socket_connect_timeout=5)
        return self._db

    def position(self) -> dict[str, Any]:
        return {self._stream: [self._last, self._read]}

    def seek(self, positions: Mapping[str, Any]) -> None:
        position = positions.get(self._stream, ["0-0", 0])
        if (not isinstance(position, (list, tuple)) or len(position) != 2
                or not isinstance(position[0], str) or not isinstance(position[1], int)):
            raise ValueError(f"redis stream spout {self._stream}: bad committed position "
                             f"{position!r}")
        self._last, self._read = position[0], position[1]
        self._committed = self._last

    def committed(self, positions: Mapping[str, Any] | None) -> None:
        position = (positions or {}).get(self._stream)
        if position:
            self._committed = position[0]  # the heartbeat shows the entry id

    def behind(self) -> int | None:
        try:
            info = self._connect().xinfo_stream(self._stream)
        except Exception:  # no stream yet, or Redis unreachable: unknown
            return None
        return max(0, int(info.get("entries-added", 0)) - self._read)

    def next_tuple(self) -> None:
        now = time.monotonic()
        if not self._stream or now < self._retry_at:
            return
        import redis

        try:
            entries = self._connect().xrange(self._stream, min=f"({self._last}",
                                             count=self.batch)
        except redis.RedisError as e:
            self._retry_at = now + RETRY_SECS
            if not self._failing:
                log.warning("redis stream spout %s: cannot read from %s: %s", self._stream,
                            self.url, e)
            self._failing = True
            return
        self._failing = False
        emit = self.emit
        fields = self.fields
        for entry_id, data in entries:
            values = [_text(data.get(f.encode())) for f in fields]
            entry = entry_id.decode()
            emit(values, msg_id=entry)
            self._last = entry
            self._read += 1

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")
