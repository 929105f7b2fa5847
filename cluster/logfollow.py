"""Following a worker's log from where one stopped: complete lines, across restarts and
rotations, from a local directory or a supervisor's log server alike.

A `Source` reads a byte range of a log by its public name (cluster.logfiles); a `Follower`
keeps one log's position and turns new bytes into lines:

- `tail(n)`: the last `n` lines now (from the rotated `.1` too when the current file, just
  begun, has fewer), and remember where they end;
- `poll()`: the complete lines written since (a partial last line waits for its newline).

A restarted worker appends to the same file, so following goes on by itself. When the file
is replaced (its identity changes: rotated to `worker.log.1` and a new one begun) the
follower first reads what was left of the old file under its rotated name, then the new one
from its start; when it was truncated, it starts again at 0. Bytes that rotated away
further than `.1` before they were read are reported as a gap line, not silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cluster.logfiles import DEFAULT_LENGTH, MAX_LENGTH, Chunk, read_range, resolve, rotated_name

MAX_TAIL_BYTES = 4 << 20  # tail(n) reads back at most this far
MAX_POLL_BYTES = 8 << 20  # one poll() reads at most this much (the rest on the next)
MAX_PARTIAL = 64 << 10  # a "line" without a newline this long is given out as it is


class Source(Protocol):
    def read(self, name: str, start: int | None, length: int) -> Chunk:
        """At most `length` bytes of log `name` from `start` (None: its last `length`).
        FileNotFoundError when there is no such log (yet); OSError when unreadable."""


class LocalSource:
    """Logs under a local directory (a supervisor's `{home}/logs`)."""

    def __init__(self, root: str) -> None:
        self.root = Path(root)

    def read(self, name: str, start: int | None, length: int) -> Chunk:
        return read_range(resolve(self.root, name), start, length)


class Follower:
    """One log followed by name (see the module doc). Not thread-safe."""

    def __init__(self, source: Source, name: str,
                 decode: Callable[[bytes], str] = lambda b: b.decode("utf-8", "replace")
                 ) -> None:
        self.source = source
        self.name = name
        self.decode = decode
        self.offset: int | None = None  # None: not read yet
        self.ident: str | None = None
        self._partial = b""

    def tail(self, lines: int) -> list[str]:
        """The last `lines` complete lines (fewer if the log is shorter); following goes on
        from their end. A log that does not exist yet gives [] and is followed from 0."""
        try:
            chunk = self.source.read(self.name, None, DEFAULT_LENGTH)
        except FileNotFoundError:
            self.offset, self.ident = 0, None
            return []
        data, start = chunk.data, chunk.start
        while data.count(b"\n") <= lines and start > 0 and len(data) < MAX_TAIL_BYTES:
            length = min(start, MAX_LENGTH)
            before = self.source.read(self.name, start - length, length)
            if before.ident != chunk.ident:
                break  # rotated meanwhile: what we have will do
            data, start = before.data + data, before.start
        if start == 0 and data.count(b"\n") <= lines:  # just rotated: the rest is in .1
            older = self._rotated_tail(MAX_LENGTH)
            if older is not None and older.data:
                gap = b"" if older.data.endswith(b"\n") else b"\n"
                data, start = older.data + gap + data, older.start
        self.offset, self.ident = chunk.end, chunk.ident
        complete, _, self._partial = data.rpartition(b"\n")
        if start > 0 and b"\n" in complete:  # the first line may be cut: drop it
            complete = complete.split(b"\n", 1)[1]
        found = [self.decode(line) for line in complete.split(b"\n")] if complete else []
        return found[-lines:] if lines > 0 else []

    def _rotated_tail(self, length: int) -> Chunk | None:
        """The last `length` bytes of the file the current one replaced, if it is there."""
        try:
            return self.source.read(rotated_name(self.name), None, length)
        except OSError:
            return None

    def poll(self) -> list[str]:
        """The complete lines written since the last call (or since `tail`)."""
        if self.offset is None:
            self.offset = 0
        out: list[str] = []
        budget = MAX_POLL_BYTES
        while budget > 0:
            try:
                chunk = self.source.read(self.name, self.offset, MAX_LENGTH)
            except FileNotFoundError:
                break
            if self.ident is not None and chunk.ident != self.ident:
                out += self._finish_rotated()
                self.offset, self.ident = 0, chunk.ident
                continue
            self.ident = chunk.ident
            if chunk.size < self.offset:  # truncated in place
                out.append(f"[... {self.name} was truncated; reading it from the start]")
                self.offset = 0
                continue
            out += self._take(chunk.data)
            self.offset = chunk.end
            budget -= len(chunk.data)
            if len(chunk.data) < MAX_LENGTH:
                break
        return out

    def flush(self) -> list[str]:
        """A last partial line (no newline yet), when following stops."""
        rest, self._partial = self._partial, b""
        return [self.decode(rest)] if rest else []

    def _finish_rotated(self) -> list[str]:
        """What was left unread of the file we followed, now under its rotated name."""
        old = rotated_name(self.name)
        out: list[str] = []
        offset = self.offset or 0
        while True:
            try:
                chunk = self.source.read(old, offset, MAX_LENGTH)
            except FileNotFoundError:
                chunk = None
            if chunk is None or chunk.ident != self.ident:
                out += self.flush()
                out.append(f"[... {self.name} was rotated; some of its lines were rotated "
                           f"away before they could be read]")
                return out
            out += self._take(chunk.data)
            offset = chunk.end
            if len(chunk.data) < MAX_LENGTH:
                return out + self.flush()

    def _take(self, data: bytes) -> list[str]:
        if not data:
            return []
        text = self._partial + data
        *lines, self._partial = text.split(b"\n")
        if len(self._partial) > MAX_PARTIAL:
            lines.append(self._partial)
            self._partial = b""
        return [self.decode(line) for line in lines]
