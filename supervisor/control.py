"""Small pieces of the supervisor's main loop that other threads talk to.

`Waker`: a pipe the loop polls next to its control socket, so that another thread (new
assignments read, a stop, a dump request) wakes it at once instead of at its next tick.

`DumpRequests`: asking the workers of a topology what they captured (testing mode, used by
`LocalCluster.request_dumps`). The control socket belongs to the loop thread, so a caller
queues its request and waits; the loop sends `{"type": "dump"}` to each worker and hands the
answers back.

`Broadcasts`: messages for every worker of a topology that need no answer (the
`{"type": "flush"}` of `LocalCluster.flush`), queued by any thread, sent by the loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.control import ControlServer


class Waker:
    """A non-blocking pipe: `wake()` from any thread, the loop polls `fd` and `drain()`s."""

    def __init__(self) -> None:
        self.fd, self._write = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write, False)

    def wake(self) -> None:
        try:
            os.write(self._write, b"x")
        except (BlockingIOError, OSError):  # full (a wake is pending anyway) or closed
            pass

    def drain(self) -> None:
        try:
            while os.read(self.fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        for fd in (self.fd, self._write):
            try:
                os.close(fd)
            except OSError:
                pass


@dataclass
class _Request:
    topology_id: str
    ports: list[int] = field(default_factory=list)
    answers: dict[int, dict[str, Any]] = field(default_factory=dict)
    sent: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class DumpRequests:
    """Dump requests in flight (see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[_Request] = []

    def request(self, topology_id: str, timeout: float,
                wake: Callable[[], None]) -> dict[int, dict[str, Any]]:
        """Every answer of the topology's workers; TimeoutError when some do not answer."""
        req = _Request(topology_id)
        with self._lock:
            self._requests.append(req)
        wake()
        try:
            if not req.done.wait(timeout):
                raise TimeoutError(f"topology {topology_id!r}: workers did not answer a dump "
                                   f"request within {timeout:g} s")
        finally:
            with self._lock:
                if req in self._requests:
                    self._requests.remove(req)
        return dict(req.answers)

    def send_pending(self, server: ControlServer, ports_of: Callable[[str], list[int]],
                     host: str) -> None:
        """(The loop thread.) Send the requests not sent yet."""
        with self._lock:
            pending = [r for r in self._requests if not r.sent]
            for req in pending:
                req.sent = True
                req.ports = ports_of(req.topology_id)
                if not req.ports:
                    req.done.set()
        for req in pending:
            for port in req.ports:
                server.send(f"{host}:{port}", {"type": "dump"})

    def answered(self, port: int, message: dict[str, Any]) -> None:
        """(The loop thread.) A worker's dump arrived."""
        with self._lock:
            for req in self._requests:
                if req.sent and port in req.ports and port not in req.answers:
                    req.answers[port] = message
                    if len(req.answers) == len(req.ports):
                        req.done.set()

    def cancel(self) -> None:
        """The supervisor stops: nobody will answer."""
        with self._lock:
            for req in self._requests:
                req.ports = []
                req.done.set()


class Broadcasts:
    """Messages for every worker of a topology, queued by any thread (see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[str, dict[str, Any]]] = []

    def post(self, topology_id: str, message: dict[str, Any], wake: Callable[[], None]) -> None:
        with self._lock:
            self._pending.append((topology_id, message))
        wake()

    def send_pending(self, server: ControlServer, ports_of: Callable[[str], list[int]],
                     host: str) -> int:
        """(The loop thread.) Send what was posted; return how many messages went out."""
        with self._lock:
            pending, self._pending = self._pending, []
        sent = 0
        for topology_id, message in pending:
            for port in ports_of(topology_id):
                server.send(f"{host}:{port}", message)
                sent += 1
        return sent
