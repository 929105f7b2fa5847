"""A worker's log: one size-bounded file for its log records, its prints and its crashes.

The worker rotates its own log (`WorkerLogHandler`, a RotatingFileHandler): `worker.log`
grows to `max_bytes`, is renamed `worker.log.1` (the older ones shift up to `.{backups}`,
the oldest is dropped) and a new one begins. Why the worker and not the supervisor: the
supervisor would have to hold a pipe from each worker and rewrite it, so a supervisor
restart (workers are adopted, they live on) would break every worker's stdout; a log pump
process per worker costs a process per worker. Here nothing sits between the worker and
its file, and nothing written before a crash is lost:

- the spawn opens `worker.log` (append) as the process's stdout and stderr, so whatever the
  interpreter says before the worker runs (a venv that cannot import Squall) is there;
- the worker then logs through the handler and points its fds 1 and 2 at the handler's
  current file (again at every rollover), so output written straight to the fds (C
  libraries, a subprocess that inherits them, a faulthandler dump of a fatal crash) lands
  in the current file too;
- `sys.stdout` and `sys.stderr` become `LineWriter`s: every line a component prints is a
  log record of the logger `STDOUT` (INFO) or `STDERR` (WARNING), as in Storm, so prints
  count towards the size bound and carry the task tag.

Each line says which task wrote it. `LINE_FORMAT` has a `task_tag` field: `component:task`
when the record was made on the worker's loop thread while that task's code ran
(`TaskTagFilter`, given a function that says which task is current), `-` otherwise. A
record's further lines (a traceback) carry no tag: they continue the record above.
cluster.logtags reads the tag back.
"""

from __future__ import annotations

import faulthandler
import io
import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

LINE_FORMAT = "%(asctime)s %(levelname)s worker[{port}] %(task_tag)s %(name)s: %(message)s"
NO_TASK = "-"
MAX_BYTES = 100 * 1024 * 1024  # Storm's worker.xml: 100 MB a file, 9 old files
BACKUPS = 9
MIN_MAX_BYTES = 4096
STDOUT_LOGGER, STDERR_LOGGER = "STDOUT", "STDERR"  # Storm's names for what prints


class TaskTagFilter(logging.Filter):
    """Adds `task_tag` to every record: `current()` (e.g. "split:4") when the record is made
    on `thread` (the loop's), else "-". A tag given by the caller (extra=) is kept."""

    def __init__(self, current: Callable[[], str | None], thread: int) -> None:
        super().__init__()
        self.current = current
        self.thread = thread

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_tag"):
            tag = self.current() if record.thread == self.thread else None
            record.task_tag = tag or NO_TASK
        return True


class WorkerLogHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that keeps the process's fds 1 and 2 on its current file."""

    def __init__(self, path: str | Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS,
                 redirect_fds: bool = True) -> None:
        if max_bytes < MIN_MAX_BYTES or backups < 1:
            raise ValueError(f"worker log: max_bytes must be >= {MIN_MAX_BYTES} and backups "
                             f">= 1, got {max_bytes} and {backups}")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        super().__init__(path, "a", max_bytes, backups, encoding="utf-8",
                         errors="backslashreplace")
        self.redirect_fds = redirect_fds
        self._point_fds()

    def emit(self, record: logging.LogRecord) -> None:
        """Write one record, rolling over first if it would make the file reach max_bytes.
        RotatingFileHandler formats each record twice and stats the file for each; this
        formats once and asks the file's offset, which is its size: every write to the
        file (ours, and raw ones to fds 1 and 2, which share our open file) appends."""
        try:
            msg = self.format(record) + self.terminator
            stream = self.stream
            if stream is None:
                stream = self.stream = self._open()
            size = os.lseek(stream.fileno(), 0, os.SEEK_CUR)
            if size > 0 and size + len(msg.encode("utf-8", "backslashreplace")) > self.maxBytes:
                self.doRollover()
                stream = self.stream = self.stream or self._open()
            stream.write(msg)
            stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def doRollover(self) -> None:  # noqa: N802 (logging's name)
        super().doRollover()
        self._point_fds()

    def _point_fds(self) -> None:
        if self.redirect_fds and self.stream is not None:
            self.stream.flush()
            for fd in (1, 2):
                os.dup2(self.stream.fileno(), fd)


class LineWriter(io.TextIOBase):
    """A text stream whose every line becomes one record of `logger` at `level` (a partial
    line waits for its newline, per thread, or for flush()). Should logging itself write to
    this stream (a handler's error report), that goes straight to `fd` instead."""

    def __init__(self, logger: logging.Logger, level: int, fd: int) -> None:
        super().__init__()
        self.logger = logger
        self.level = level
        self.fd = fd
        self._local = threading.local()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fd

    @property
    def buffer(self) -> _BinaryLines:
        """What code writing bytes to `sys.stdout.buffer` writes to: decoded, then lines."""
        return _BinaryLines(self)

    def write(self, text: str) -> int:
        local = self._local
        if getattr(local, "busy", False):
            os.write(self.fd, text.encode("utf-8", "backslashreplace"))
            return len(text)
        lines = (getattr(local, "partial", "") + text).split("\n")
        local.partial = lines.pop()
        for line in lines:
            self._emit(line)
        return len(text)

    def flush(self) -> None:
        partial = getattr(self._local, "partial", "")
        if partial:
            self._local.partial = ""
            self._emit(partial)

    def _emit(self, line: str) -> None:
        logger = self.logger
        if not logger.isEnabledFor(self.level):
            return
        local = self._local
        local.busy = True
        try:  # a record made directly: where print() was called from is not looked up
            logger.handle(logger.makeRecord(logger.name, self.level, "(print)", 0,
                                            line.rstrip("\r"), (), None))
        finally:
            local.busy = False


class _BinaryLines(io.RawIOBase):
    """The bytes side of a LineWriter (UTF-8; a character cut between two writes is
    replaced, not lost with its line)."""

    def __init__(self, text: LineWriter) -> None:
        super().__init__()
        self.text = text

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raw = bytes(data)
        self.text.write(raw.decode("utf-8", "replace"))
        return len(raw)

    def flush(self) -> None:
        self.text.flush()

    def fileno(self) -> int:
        return self.text.fd


def install(path: str | Path | None, port: int, level: str | int,
            current: Callable[[], str | None], max_bytes: int = MAX_BYTES,
            backups: int = BACKUPS) -> logging.Handler:
    """Make this process a worker that logs to `path` (see the module doc): the root logger
    writes there through a rotating handler, fds 1 and 2 follow it, prints become records,
    warnings are logged, and a fatal crash dumps its traceback there. `current` names the
    task running on this (the loop's) thread, or None. Without a path the records, tagged
    alike, go to stderr and nothing else changes."""
    handler: logging.Handler
    if path is None:
        handler = logging.StreamHandler()
    else:
        handler = WorkerLogHandler(path, max_bytes, backups)
    handler.setFormatter(logging.Formatter(LINE_FORMAT.format(port=port)))
    handler.addFilter(TaskTagFilter(current, threading.get_ident()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    logging.logProcesses = logging.logMultiprocessing = False  # not in LINE_FORMAT
    if path is not None:
        sys.stdout = LineWriter(logging.getLogger(STDOUT_LOGGER), logging.INFO, 1)
        sys.stderr = LineWriter(logging.getLogger(STDERR_LOGGER), logging.WARNING, 2)
        faulthandler.enable(file=2)  # type: ignore[arg-type]  # an fd: follows rotation
    return handler
