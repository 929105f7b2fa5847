"""Storm's multilang wire format, without I/O: framing, stray output, and the messages we send.

Every message is JSON followed by a line holding `end`. Storm treats anything else on the
component's stdout as a broken stream and kills the component; here a line that is not part
of a message (a stray `print()`) is handed back as the component's output and the stream
goes on. `Decoder.feed` takes whatever bytes a read returned (partial lines included) and
returns the complete messages and stray lines found so far, holding at most `max_bytes` of
an unfinished message or line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson

from topology.errors import SquallError

END = b"end"
FRAME_END = b"\nend\n"
HEARTBEAT_STREAM = "__heartbeat"
SYSTEM_TASK = -1
STRAY_SHOWN = 4096  # characters of an over-long stray line kept for the log

_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _loads(text: bytes) -> Any:
    """JSON as Storm's components write it. orjson reads a message in half the time of the
    standard library; what it refuses and Python's json reads (NaN, Infinity, integers
    over 64 bits, which Python components can write) is read by the latter."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


class ProtocolError(SquallError):
    """A component broke the protocol in a way the stream cannot survive."""


def encode(message: Any) -> bytes:
    """One message as it goes on the wire: compact JSON, then a line `end`."""
    return _dumps(message).encode() + FRAME_END


def encode_task_ids(tasks: Sequence[int]) -> bytes:
    """The reply to an emit that wants the ids of the tasks the tuple went to."""
    return b"[" + ",".join(map(str, tasks)).encode() + b"]" + FRAME_END


class TupleEncoder:
    """Encodes the tuples of one (component, stream) for a shell bolt: the constant part is
    made once, so a tuple costs one `json.dumps` of its values and a few concatenations."""

    __slots__ = ("head",)

    def __init__(self, component: str | None, stream: str) -> None:
        self.head = '{"comp":' + _dumps(component) + ',"stream":' + _dumps(stream) + ',"task":'

    def encode(self, tuple_id: str, task: int, values: Sequence[Any]) -> bytes:
        """Raises TypeError/ValueError if a value is not JSON-serializable."""
        return (f'{self.head}{task:d},"id":"{tuple_id}","tuple":'
                f'{_dumps(values if type(values) is list else list(values))}}}\nend\n').encode()


def _looks_like_json(line: bytes) -> bool:
    first = line[:1]
    if first in (b"{", b"["):
        return True
    stripped = line.lstrip()
    return stripped[:1] in (b"{", b"[")


def _parse(text: bytes) -> Any:
    """The JSON value of `text`, or None if it is not a JSON object or array."""
    try:
        value = _loads(text)
    except ValueError:  # includes UnicodeDecodeError
        return None
    return value if isinstance(value, (dict, list)) else None


def _bulk(lines: list[bytes]) -> list[Any] | None:
    """The common case, parsed in one call: message, `end`, message, `end`, ... with every
    message on one line. None if the lines are anything else (then they go one by one)."""
    n = len(lines)
    if n < 2 or n % 2:
        return None
    ends = lines[1::2]
    if ends.count(END) != len(ends):
        return None
    bodies = lines[0::2]
    try:
        values = _loads(b"[" + b",".join(bodies) + b"]")
    except ValueError:
        return None
    if len(values) != len(bodies):
        return None
    for value in values:
        if type(value) is not dict and type(value) is not list:
            return None
    return values  # type: ignore[no-any-return]


def _show(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r")


class Decoder:
    """Splits a component's stdout into protocol messages and stray output lines."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._partial: list[bytes] = []  # chunks of the unfinished last line
        self._partial_size = 0
        self._lines: list[bytes] = []  # lines of a message waiting for its `end`
        self._size = 0  # bytes in _lines
        self._skipping = 0  # bytes dropped so far of an over-long stray line, 0 if none
        self._skip_head = b""  # the start of that line, for the log
        self._last_stray = b""  # a stray line just before `end` may end with a message

    def feed(self, data: bytes) -> tuple[list[Any], list[str]]:
        """Take the bytes a read returned; return (messages, stray lines) completed by them.

        Raises ProtocolError when an unfinished message grows past `max_bytes`."""
        messages: list[Any] = []
        stray: list[str] = []
        if self._skipping:
            data = self._skip(data, stray)
            if not data:
                return messages, stray
        if b"\n" not in data:  # no line ends here: keep the chunk (no copy of the rest)
            self._partial.append(data)
            self._partial_size += len(data)
            if self._partial_size + self._size > self.max_bytes:
                self._overflow(b"".join(self._partial), stray)
            return messages, stray
        if self._partial:
            self._partial.append(data)
            data = b"".join(self._partial)
            self._partial.clear()
        lines = data.split(b"\n")
        partial = lines.pop()
        pending = self._lines
        if not pending and not self._last_stray:
            bulk = _bulk(lines)
            if bulk is not None:
                messages = bulk
                lines = []
        for line in lines:
            if line == END or line == b"end\r":
                if len(pending) == 1:
                    value = _parse(pending[0])
                    if value is not None:
                        messages.append(value)
                        pending.clear()
                        self._size = 0
                        continue
                self._end(messages, stray)
            elif pending:
                self._more(line, stray)
            elif _looks_like_json(line):
                pending.append(line)
                self._size = len(line)
            else:
                stray.append(_show(line))
                self._last_stray = line
                continue
            self._last_stray = b""
        if partial:
            self._partial.append(partial)
        self._partial_size = len(partial)
        if self._partial_size + self._size > self.max_bytes:
            self._overflow(partial, stray)
        return messages, stray

    def _more(self, line: bytes, stray: list[str]) -> None:
        """A line after an unfinished message: either its continuation, or, if what is
        pending is already complete JSON (no message is followed by anything but `end`), the
        pending lines were stray output."""
        pending = self._lines
        if _parse(b"\n".join(pending)) is not None:
            stray.extend(_show(p) for p in pending)
            pending.clear()
            self._size = 0
            if not _looks_like_json(line):
                stray.append(_show(line))
                return
        pending.append(line)
        self._size += len(line) + 1

    def _end(self, messages: list[Any], stray: list[str]) -> None:
        """An `end` line: the longest run of pending lines that parses is the message;
        lines before it were stray output."""
        pending = self._lines
        if not pending:
            value = self._salvage(self._last_stray)
            if value is not None:
                messages.append(value)
            else:
                stray.append("end")
            return
        for start in range(len(pending)):
            value = _parse(b"\n".join(pending[start:]))
            if value is not None:
                stray.extend(_show(p) for p in pending[:start])
                messages.append(value)
                break
        else:
            stray.extend(_show(p) for p in pending)
            stray.append("end")
        pending.clear()
        self._size = 0

    @staticmethod
    def _salvage(line: bytes) -> Any:
        """A message written right after output that did not end its line (`print(x, end="")`)
        sits at the end of a stray line: find it there."""
        if not line or not line.rstrip().endswith((b"}", b"]")):
            return None
        for i, byte in enumerate(line):
            if byte in b"{[":
                value = _parse(line[i:])
                if isinstance(value, dict):
                    return value
        return None

    def _overflow(self, partial: bytes, stray: list[str]) -> None:
        if self._lines or _looks_like_json(partial):
            size = self._size + len(partial)
            head = _show((self._lines[0] if self._lines else partial)[:80])
            self._partial.clear()
            self._partial_size = 0
            self._lines.clear()
            self._size = 0
            raise ProtocolError(
                f"sent a message of more than {self.max_bytes} bytes without its `end` line "
                f"({size} bytes so far, starting {head!r})"
            )
        # A stray line longer than the bound: keep its head for the log, drop the rest.
        self._skip_head = partial[:STRAY_SHOWN]
        self._skipping = len(partial)
        self._partial.clear()
        self._partial_size = 0

    def _skip(self, data: bytes, stray: list[str]) -> bytes:
        """Drop the rest of an over-long stray line; return what follows its end."""
        newline = data.find(b"\n")
        if newline < 0:
            self._skipping += len(data)
            return b""
        total = self._skipping + newline
        stray.append(f"{_show(self._skip_head)}... (a line of {total} bytes, cut)")
        self._skipping = 0
        self._skip_head = b""
        return data[newline + 1:]
