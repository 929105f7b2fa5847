"""`ShellBolt` and `ShellSpout`: Storm multilang components declared in a Squall topology.

    b.set_bolt("split", ShellBolt(["python3", "splitsentence.py"], outputs=["word"]))

The command runs once per task, in the topology's code directory, so scripts kept next to
the topology file are found. The worker runs these components with its multilang executor
(the subprocess, its pipes on the worker's poller); `process`/`next_tuple` are never called.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from topology.component import Bolt, Outputs, Spout
from topology.errors import ConfigError, SquallError, TopologyError

# Configuration (Storm's key names where Storm has one).
TIMEOUT_KEY = "topology.subprocess.timeout.secs"
MAX_PENDING_KEY = "topology.shellbolt.max.pending"
MAX_MESSAGE_KEY = "topology.multilang.max.message.bytes"
HEARTBEAT_KEY = "topology.multilang.heartbeat.secs"
PIPELINE_KEY = "topology.multilang.spout.pipeline"


@dataclass(frozen=True)
class ShellSettings:
    """How a shell component's subprocess is run, resolved once from the task's config."""

    timeout: float = 30.0  # silent and idle this long: hung, restarted
    heartbeat_every: float = 1.0  # a quiet bolt subprocess gets a heartbeat tuple this often
    max_pending: int = 1000  # tuples in flight to one bolt subprocess
    max_message_bytes: int = 16 << 20  # the longest message a subprocess may send
    spout_pipeline: int = 1  # commands a spout subprocess may have outstanding (Storm: 1)

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> ShellSettings:
        """Read the settings from a task's config; ConfigError names a bad key and value."""
        d = cls()
        return cls(
            timeout=_number(conf, TIMEOUT_KEY, d.timeout),
            heartbeat_every=_number(conf, HEARTBEAT_KEY, d.heartbeat_every),
            max_pending=int(_number(conf, MAX_PENDING_KEY, d.max_pending, integer=True)),
            max_message_bytes=int(_number(conf, MAX_MESSAGE_KEY, d.max_message_bytes,
                                          integer=True)),
            spout_pipeline=int(_number(conf, PIPELINE_KEY, d.spout_pipeline, integer=True)),
        )


def _number(conf: Mapping[str, Any], key: str, default: float, integer: bool = False) -> float:
    value = conf.get(key)
    if value is None:
        return default
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
        what = "a positive integer" if integer else "a positive number"
        raise ConfigError(f"config key {key!r}: must be {what}, got {value!r}")
    return value


def _caller_dir() -> str | None:
    """The directory of the file that declared the component (the topology file's, usually):
    relative script paths are found there when the code package has no code directory."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != __name__ and not name.startswith("topology."):
            path = frame.f_globals.get("__file__")
            return os.path.dirname(os.path.abspath(path)) if path else None
        frame = frame.f_back  # type: ignore[assignment]
    return None


class ShellComponent:
    """What ShellBolt and ShellSpout share: the command and where and how it runs."""

    command: list[str]
    cwd: str | None
    env: dict[str, str]
    origin_dir: str | None

    def _init_shell(self, command: Sequence[str], outputs: Outputs, cwd: str | None,
                    env: Mapping[str, str] | None) -> None:
        kind = type(self).__name__
        if isinstance(command, (str, bytes)) or not isinstance(command, Sequence) \
                or not command or not all(isinstance(a, str) and a for a in command):
            hint = f" (write {str(command).split()!r})" if isinstance(command, str) else ""
            raise TopologyError(f"{kind}: the command must be a non-empty list of strings, "
                                f"got {command!r}{hint}")
        if env is not None and not all(isinstance(k, str) and isinstance(v, str)
                                       for k, v in env.items()):
            raise TopologyError(f"{kind}: env must map strings to strings, got {env!r}")
        self.command = list(command)
        self.outputs = outputs
        self.cwd = cwd
        self.env = dict(env or {})
        self.origin_dir = _caller_dir()

    def working_dir(self, code_dir: str | None) -> str | None:
        """Where the subprocess runs: `cwd` (relative to the code directory), else the
        topology's code directory, else the directory the component was declared in, else
        the worker's own (None)."""
        base = code_dir or (self.origin_dir if self.origin_dir and os.path.isdir(
            self.origin_dir) else None)
        if self.cwd:
            return os.path.join(base or os.getcwd(), self.cwd)
        return base

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The subprocess's environment: `base` with `env` on top (PATH is appended to, as
        Storm's ShellProcess does)."""
        out = dict(base)
        for key, value in self.env.items():
            out[key] = f"{out['PATH']}{os.pathsep}{value}" if key == "PATH" and out.get(
                "PATH") else value
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.command!r}, outputs={self.outputs!r})"


def _no_executor(component: ShellComponent, what: str) -> SquallError:
    return SquallError(f"{type(component).__name__} {component.command!r}: {what} is done by "
                       "the worker's multilang executor, which this worker does not have")


class ShellBolt(ShellComponent, Bolt):
    """A bolt run as a subprocess speaking Storm's multilang protocol (pystorm, streamparse,
    storm.py, storm.js, ...). `outputs` declares its streams as for any bolt."""

    executor_factory = "worker.shell:ShellBoltExecutor"

    def __init__(self, command: Sequence[str], outputs: Outputs = (), *, cwd: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self._init_shell(command, outputs, cwd, env)

    def prepare(self, conf: Mapping[str, Any], context: Any) -> None:
        raise _no_executor(self, "starting the subprocess")

    def process(self, tup: Any) -> None:
        raise _no_executor(self, "processing a tuple")


class ShellSpout(ShellComponent, Spout):
    """A spout run as a subprocess speaking Storm's multilang protocol."""

    executor_factory = "worker.shell:ShellSpoutExecutor"

    def __init__(self, command: Sequence[str], outputs: Outputs = (), *, cwd: str | None = None,
                 env: Mapping[str, str] | None = None) -> None:
        self._init_shell(command, outputs, cwd, env)

    def open(self, conf: Mapping[str, Any], context: Any) -> None:
        raise _no_executor(self, "starting the subprocess")
