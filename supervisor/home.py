"""The supervisor's home directory: one supervisor at a time (a lock), a stable id, and the
control socket its workers talk to. Everything here survives a restart of the supervisor, so
that the restarted one is the same supervisor to nimbus and to its workers."""

from __future__ import annotations

import fcntl
import os
import uuid
from pathlib import Path
from typing import IO

import zmq

from topology.errors import SquallError
from worker.control import ControlServer
from worker.launcher import free_ports
from worker.wire import secret_key

CONTROL_PATH_MAX = 100  # longest ipc socket path we use (the OS limit is about 107)


class SupervisorError(SquallError):
    """The supervisor cannot start: no slots, its home is taken, or the state is unreachable."""


def lock_home(home: Path) -> IO[str]:
    """Take the home's lock (held as long as the returned file is open); SupervisorError
    when another supervisor holds it."""
    f = open(home / "lock", "a+")  # noqa: SIM115 - held open: the lock lives with it
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise SupervisorError(f"supervisor home {home} is in use by another "
                              "supervisor") from None
    return f


def load_id(home: Path) -> str:
    """The supervisor id kept in the home (made the first time)."""
    path = home / "id"
    try:
        text = path.read_text().strip()
        if text:
            return text
    except FileNotFoundError:
        pass
    new = str(uuid.uuid4())
    tmp = home / ".id.tmp"
    tmp.write_text(new + "\n")
    os.replace(tmp, path)
    return new


def bind_control(home: Path, secret: str) -> ControlServer:
    """The control channel's server: an ipc socket in the home, or a loopback port kept
    stable across restarts when the home's path is too long for one."""
    key = secret_key(secret)
    path = home / "control.sock"
    if len(str(path)) < CONTROL_PATH_MAX:
        server = ControlServer(f"ipc://{path}", key)
    else:
        port_file = home / "control.port"
        try:
            port = int(port_file.read_text())
            server = ControlServer(f"tcp://127.0.0.1:{port}", key)
        except (OSError, ValueError, zmq.ZMQError):
            port = free_ports(1)[0]
            server = ControlServer(f"tcp://127.0.0.1:{port}", key)
            port_file.write_text(str(port))
    # A restarted worker reconnects with its predecessor's identity ("host:port"); let the
    # newest connection win instead of being refused until the old one times out.
    server.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)
    return server
