"""Starting worker processes: used by the supervisor and by LocalCluster alike."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

from cluster import logsink
from worker.__main__ import SECRET_ENV

PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


def hash_seed(topology_id: str) -> int:
    """The PYTHONHASHSEED all workers of a topology share, so fields grouping agrees."""
    return zlib.crc32(topology_id.encode()) % 4294967295 + 1


def spawn_worker(
    *,
    topology_id: str,
    host: str,
    port: int,
    control: str,
    code_path: str,
    secret: str,
    log_path: str,
    parent_pid: int | None = None,
    sys_path: Sequence[str] = (),
    log_level: str = "INFO",
    python: str | None = None,
    log_max_bytes: int = logsink.MAX_BYTES,
    log_backups: int = logsink.BACKUPS,
) -> subprocess.Popen:
    """Start `python -m worker` for one slot, detached from the caller's terminal.

    `python` is the interpreter (a topology's requirements environment, supervisor.venvs;
    default: this one). The worker logs to `log_path`, which it rotates when it reaches
    `log_max_bytes`, keeping `log_backups` older files (cluster.logsink); the path is also
    its stdout and stderr from the start, so what the interpreter says before the worker
    runs is kept there too."""
    env = dict(os.environ)
    env["PYTHONHASHSEED"] = str(hash_seed(topology_id))
    env[SECRET_ENV] = secret
    paths = [PROJECT_ROOT, *sys_path]
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    cmd = [python or sys.executable, "-m", "worker", "--topology-id", topology_id, "--host", host,
           "--port", str(port), "--control", control, "--code", code_path,
           "--log-level", log_level, "--log-file", log_path,
           "--log-max-bytes", str(log_max_bytes), "--log-backups", str(log_backups)]
    if parent_pid is not None:
        cmd += ["--parent-pid", str(parent_pid)]
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


QUICK_EXIT_SECS = 10.0  # a worker that dies younger than this counts as crashing
MAX_RESTART_DELAY = 10.0


def restart_delay(quick_exits: int) -> float:
    """How long to wait before restarting a worker that died young `quick_exits` times in a
    row: at once the first time, then 0.5 s, 1 s, 2 s ... up to MAX_RESTART_DELAY, so that
    a worker that cannot start does not spin."""
    return 0.0 if quick_exits <= 1 else min(MAX_RESTART_DELAY, 0.5 * 2 ** (quick_exits - 2))


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports the OS says are free right now (all held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
