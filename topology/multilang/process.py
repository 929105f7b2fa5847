"""One subprocess of a shell component, behind non-blocking pipes.

Nothing here ever blocks its caller: writes that the pipe cannot take wait in a buffer,
reads take what is there (up to a budget, so one chatty subprocess cannot hold the worker's
loop), and a process being killed is reaped on a later call rather than waited for. The
owner polls `stdout_fd` and `stderr_fd` for readability.

The subprocess runs in its own process group (so a wrapper script's children are stopped
with it) and gets SIGKILL if the worker dies without stopping it (Linux's parent-death
signal), so no subprocess outlives its worker.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from .protocol import Decoder

log = logging.getLogger(__name__)

READ_BUDGET = 1 << 20  # bytes read from stdout per call
PIPE_SIZE = 1 << 20  # asked of the kernel for stdin/stdout (the default 64 KiB stalls batches)
F_SETPIPE_SZ = 1031
PR_SET_PDEATHSIG = 1
STDERR_LINE_MAX = 8192  # a longer stderr line is cut
STDERR_TAIL_BYTES = 8192  # kept for error reports


def _parent_death_signal() -> Any:
    """A pre-exec hook that makes the kernel SIGKILL the child when its parent dies."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: the signal never comes
            os._exit(1)

    return hook


class ShellProcess:
    """Starts the command and moves bytes; knows nothing of the protocol beyond framing."""

    def __init__(self, command: Sequence[str], cwd: str | None, env: Mapping[str, str],
                 label: str, max_message_bytes: int) -> None:
        self.command = list(command)
        self.cwd = cwd
        self.env = dict(env)
        self.label = label  # who speaks in log lines: "shell bolt 'split' task 3"
        self.decoder = Decoder(max_message_bytes)
        self.bytes_read = 0  # from stdout, in all
        self.popen: subprocess.Popen[bytes] | None = None
        self._wbuf = bytearray()
        self._err_partial = b""
        self.stderr_tail: collections.deque[str] = collections.deque()
        self._tail_size = 0
        self.stdout_open = False
        self.stderr_open = False

    # -------------------------------------------------------------- lifecycle

    def start(self) -> int:
        """Start the subprocess; return its pid. Raises OSError if it cannot be run."""
        self.popen = subprocess.Popen(
            self.command, cwd=self.cwd, env=self.env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            start_new_session=True, preexec_fn=_parent_death_signal())
        assert self.popen.stdin and self.popen.stdout and self.popen.stderr
        for f in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            os.set_blocking(f.fileno(), False)
        for f in (self.popen.stdin, self.popen.stdout):
            with contextlib.suppress(OSError):
                fcntl.fcntl(f.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
        self.stdout_open = self.stderr_open = True
        return self.popen.pid

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def stdout_fd(self) -> int:
        assert self.popen is not None and self.popen.stdout is not None
        return self.popen.stdout.fileno()

    @property
    def stderr_fd(self) -> int:
        assert self.popen is not None and self.popen.stderr is not None
        return self.popen.stderr.fileno()

    def exit_code(self) -> int | None:
        """The exit status once it has exited (reaping it), else None."""
        return self.popen.poll() if self.popen is not None else None

    def kill(self) -> None:
        """SIGKILL the whole process group; `reap()` later collects it."""
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        """Close stdin (a multilang component exits on EOF) and SIGTERM its process group."""
        self.close_stdin()
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # the group leader is gone and its pid reused: only ours
            if self.popen.poll() is None:
                self.popen.send_signal(sig)

    def reap(self) -> bool:
        """True once the subprocess has exited and been collected (no zombie left)."""
        if self.popen is None:
            return True
        if self.popen.poll() is None:
            return False
        # The leader is gone; stop anything it left behind in its group, then close pipes.
        with contextlib.suppress(OSError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.close()
        return True

    def close_stdin(self) -> None:
        if self.popen is not None and self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        self._wbuf.clear()

    def close(self) -> None:
        """Close every pipe (the process must be gone or going)."""
        self.close_stdin()
        if self.popen is not None:
            for f in (self.popen.stdout, self.popen.stderr):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        self.stdout_open = self.stderr_open = False

    def cpu_seconds(self) -> float:
        """User+system CPU time of the subprocess and its children (0 if it is gone)."""
        if self.popen is None:
            return 0.0
        try:
            proc = psutil.Process(self.popen.pid)
            total = sum(proc.cpu_times()[:2])
            for child in proc.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    total += sum(child.cpu_times()[:2])
            return float(total)
        except psutil.Error:
            return 0.0

    # -------------------------------------------------------------- bytes

    @property
    def unwritten(self) -> int:
        return len(self._wbuf)

    def write(self, data: bytes) -> None:
        """Queue `data` for stdin and write what the pipe takes now.

        Raises BrokenPipeError when the subprocess has closed its stdin (it is dying)."""
        if self._wbuf:
            self._wbuf += data
            self.flush()
            return
        assert self.popen is not None and self.popen.stdin is not None
        try:
            n = os.write(self.popen.stdin.fileno(), data)
        except BlockingIOError:
            n = 0
        except ValueError:  # stdin already closed by us
            return
        if n < len(data):
            self._wbuf += data[n:] if n else data

    def flush(self) -> None:
        """Write what the pipe takes of the queued bytes."""
        buf = self._wbuf
        if not buf or self.popen is None or self.popen.stdin is None:
            return
        try:
            n = os.write(self.popen.stdin.fileno(), buf)
        except BlockingIOError:
            return
        except ValueError:
            buf.clear()
            return
        del buf[:n]

    def read(self) -> tuple[list[Any], list[str], bool]:
        """What stdout holds now: (messages, stray lines, end of file).

        Raises ProtocolError for a message over the size bound."""
        messages: list[Any] = []
        stray: list[str] = []
        if not self.stdout_open:
            return messages, stray, True
        fd = self.stdout_fd
        got = 0
        while got < READ_BUDGET:
            try:
                data = os.read(fd, 1 << 18)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                data = b""
            if not data:
                self.stdout_open = False
                return messages, stray, True
            got += len(data)
            self.bytes_read += len(data)
            m, s = self.decoder.feed(data)
            messages += m
            stray += s
        return messages, stray, False

    def read_stderr(self) -> tuple[list[str], bool]:
        """Complete stderr lines available now (kept in the tail too), and end of file."""
        if not self.stderr_open:
            return [], True
        fd = self.stderr_fd
        chunks = []
        eof = False
        for _ in range(16):
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                eof = True
                self.stderr_open = False
                break
            chunks.append(data)
        if not chunks and not eof:
            return [], False
        buf = self._err_partial + b"".join(chunks)
        parts = buf.split(b"\n")
        rest = parts.pop()
        if eof and rest:
            parts.append(rest)
            rest = b""
        while len(rest) > STDERR_LINE_MAX:
            parts.append(rest[:STDERR_LINE_MAX])
            rest = rest[STDERR_LINE_MAX:]
        self._err_partial = rest
        lines = [p[:STDERR_LINE_MAX].decode("utf-8", "replace").rstrip("\r") for p in parts]
        for line in lines:
            self._keep(line)
        return lines, eof

    def _keep(self, line: str) -> None:
        tail = self.stderr_tail
        tail.append(line)
        self._tail_size += len(line) + 1
        while self._tail_size > STDERR_TAIL_BYTES and len(tail) > 1:
            self._tail_size -= len(tail.popleft()) + 1

    def tail_text(self) -> str:
        text = "\n".join(self.stderr_tail)
        if self._err_partial:
            text += ("\n" if text else "") + self._err_partial[-1024:].decode("utf-8", "replace")
        return text
