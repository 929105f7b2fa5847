"""Squall daemons as child processes: what `squall dev-cluster`, the cluster tests and the
failover bench use to run nimbus, supervisors and the ui on one machine."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cluster.processes import stop_processes


def toml_config(values: dict[str, Any]) -> str:
    """Dotted keys as TOML tables: {"a.b": 1} -> "[a]\\nb = 1" (values are JSON-compatible)."""
    tables: dict[str, list[str]] = {}
    for key, value in sorted(values.items()):
        table, _, name = key.rpartition(".")
        tables.setdefault(table, []).append(f"{name} = {json.dumps(value)}")
    return "\n".join(f"[{table}]\n" + "\n".join(lines) + "\n" for table, lines in tables.items())


class Daemon:
    """One `python -m cli.main COMMAND ...` child writing to its own log file.

    It runs in a session of its own, so a Ctrl-C at the terminal reaches only the parent,
    which stops its daemons in order. `prefix` goes before the interpreter, for a wrapper that
    execs it in place (`ip netns exec NS` in the multi-host tests), so the pid stays the daemon's.
    """

    def __init__(self, name: str, args: list[str], log_path: Path,
                 env: dict[str, str] | None = None, cwd: str | None = None,
                 prefix: Sequence[str] = ()) -> None:
        self.name = name
        self.log_path = log_path
        self.reported = False  # whether its unexpected exit has been reported
        with open(log_path, "ab") as out:
            self.popen = subprocess.Popen(
                [*prefix, sys.executable, "-m", "cli.main", *args], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for it to exit; True if it did."""
        try:
            self.popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout` s; True if it stopped without the SIGKILL."""
        return not stop_processes([self.popen], timeout, self.name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-lines:])
        except OSError:
            return "(no log)"
