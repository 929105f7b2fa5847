"""`squall logs NAME [--component C] [--task N] [-f] [-n LINES]`: a topology's worker logs,
from anywhere that has the cluster's config.

Nimbus's status says where the topology's workers run (host, port, supervisor); each
supervisor serves its workers' logs (supervisor.logviewer) on the port it registered as
"logviewer_port" (read from nimbus's status when it gives it, else from the supervisors'
records in the cluster state). The last LINES lines of each selected worker's log are shown,
each prefixed by the component and task it is about, or by the worker (cluster.logtags:
exact for the lines a worker tags), a record as its time, level, logger and message, a
print as its time and what was printed;
`--component`/`--task` select the workers running them and leave out the lines that are
about other components. With `-f` it goes on printing lines as they are written, every
POLL_SECS, and asks nimbus again every REFRESH_SECS: a worker restarted on its port goes on
in the same file, and a worker moved elsewhere is picked up where it now runs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from cluster.logfiles import Chunk, public_name
from cluster.logfollow import Follower
from cluster.logtags import Label, LineLabeler, short_form, worker_tasks
from topology.errors import SquallError

POLL_SECS = 0.5
REFRESH_SECS = 5.0
HTTP_TIMEOUT = 10.0
SECRET_HEADER = "X-Squall-Secret"
MAX_TAIL_FILTERED = 20_000  # lines read back to find LINES of one component


def lines_count(text: str) -> int:
    """An argparse type: a whole number of lines >= 0."""
    if not text.strip().isascii() or not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected a number of lines >= 0, got {text!r}")
    return int(text)


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("logs", parents=[parent], help="show a topology's worker logs",
                              description="Show (or follow) the logs of NAME's workers.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--component", default=None, metavar="C",
                   help="only the workers running component C, and their lines about it")
    p.add_argument("--task", type=int, default=None, metavar="N",
                   help="only the worker running task N, and its lines about it")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new lines as they are written (Ctrl-C to stop)")
    p.add_argument("-n", "--lines", type=lines_count, default=10, metavar="LINES",
                   help="how many of the last lines of each worker's log to show (default 10)")
    p.set_defaults(run=run)


class LogServerError(OSError):
    """A supervisor's log server answered with an error, or could not be reached."""


class HttpSource:
    """Logs read from one supervisor's log server (cluster.logfollow.Source)."""

    def __init__(self, host: str, port: int, secret: str | None,
                 timeout: float = HTTP_TIMEOUT) -> None:
        self.host, self.port, self.secret, self.timeout = host, port, secret, timeout

    def read(self, name: str, start: int | None, length: int) -> Chunk:
        query = {"file": name, "length": length, **({} if start is None else {"start": start})}
        headers = {SECRET_HEADER: self.secret} if self.secret else {}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", f"/api/v1/log?{urlencode(query)}", headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise LogServerError(f"log server {self.host}:{self.port}: "
                                 f"{getattr(e, 'strerror', None) or e}") from None
        finally:
            conn.close()
        if response.status == 404:
            raise FileNotFoundError(name)
        if response.status != 200:
            raise LogServerError(f"log server {self.host}:{self.port} answered "
                                 f"{response.status}: {_error_of(data)}")
        try:
            return Chunk(data, int(response.getheader("X-Squall-Log-Start", "")),
                         int(response.getheader("X-Squall-Log-Size", "")),
                         str(response.getheader("X-Squall-Log-Id", "")))
        except ValueError:
            raise LogServerError(f"{self.host}:{self.port} is not a Squall log server "
                                 "(no X-Squall-Log headers)") from None


def _error_of(body: bytes) -> str:
    try:
        return str(json.loads(body).get("error"))
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace")


# --- choosing the workers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """Which lines to show: about `component` and/or `task` (None: any)."""

    component: str | None = None
    task: int | None = None

    def shows(self, label: Label) -> bool:
        if label.component is None:
            return True  # the worker's own lines may be about anything it runs
        return ((self.component is None or label.component == self.component)
                and (self.task is None or label.task == self.task))

    def runs_on(self, tasks: Mapping[int, str]) -> bool:
        return any((self.component is None or c == self.component)
                   and (self.task is None or t == self.task) for t, c in tasks.items())


def check_selection(status: Mapping[str, Any], selection: Selection) -> None:
    """SquallError naming the component or task that the topology does not have."""
    name, components = status["name"], status.get("components") or {}
    if selection.component is not None and selection.component not in components:
        known = ", ".join(sorted(components))
        raise SquallError(f"topology {name!r} has no component {selection.component!r} "
                          f"(components: {known})")
    if selection.task is None:
        return
    owner = {int(t): cid for cid, info in components.items() for t in info.get("tasks", [])}
    if selection.task not in owner:
        raise SquallError(f"topology {name!r} has no task {selection.task} of a component")
    if selection.component is not None and owner[selection.task] != selection.component:
        raise SquallError(f"task {selection.task} of {name!r} is a task of "
                          f"{owner[selection.task]!r}, not of {selection.component!r}")


@dataclass
class WorkerLog:
    """One worker's log being shown."""

    key: tuple[str, int]  # (host, port)
    supervisor: str
    follower: Follower
    labeler: LineLabeler
    failing: str | None = None  # the last problem reported, until it reads again
    lines: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.key[0]}:{self.key[1]}"


class Logs:
    """The logs of one topology's selected workers (see the module doc)."""

    def __init__(self, status_of: Callable[[], dict[str, Any]],
                 logviewers: Callable[[dict[str, Any]], dict[str, int | None]],
                 secret: str | None, selection: Selection,
                 warn: Callable[[str], None]) -> None:
        self.status_of = status_of
        self.logviewers = logviewers
        self.secret = secret
        self.selection = selection
        self.warn = warn
        self.workers: dict[tuple[str, int], WorkerLog] = {}
        self.gone: list[WorkerLog] = []  # no longer selected: read one last time
        self._unserved: set[tuple[str, int]] = set()  # said to have no log server

    def refresh(self) -> list[WorkerLog]:
        """Read the status again; the selected workers not shown before. A worker whose
        log server moved (its supervisor restarted on another port) is read there."""
        status = self.status_of()
        check_selection(status, self.selection)
        tasks = worker_tasks({"workers": status.get("workers") or []},
                             status.get("components") or {}, status.get("acker_tasks") or [])
        chosen = {key: t for key, t in tasks.items() if self.selection.runs_on(t)}
        supervisors = {(str(w.get("host")), int(w.get("port", 0))): str(w.get("supervisor"))
                       for w in status.get("workers") or []}
        for gone in [k for k, w in self.workers.items()
                     if k not in chosen or w.supervisor != supervisors[k]]:
            self.gone.append(self.workers.pop(gone))
        stale = bool(set(chosen) - set(self.workers)) or any(
            w.failing for w in self.workers.values())
        ports = self.logviewers(status) if stale else {}
        new = []
        for key, its_tasks in sorted(chosen.items()):
            port = ports.get(supervisors[key])
            known = self.workers.get(key)
            if known is not None:
                if port is not None and isinstance(known.follower.source, HttpSource):
                    known.follower.source.port = port
                continue
            if port is None:
                if key not in self._unserved:
                    self.warn(f"worker {key[0]}:{key[1]}: its supervisor "
                              f"{supervisors[key]} serves no logs (see its own log)")
                self._unserved.add(key)
                continue
            self._unserved.discard(key)
            follower = Follower(HttpSource(key[0], port, self.secret),
                                public_name(status["id"], key[1]))
            self.workers[key] = WorkerLog(key, supervisors[key], follower,
                                          LineLabeler(f"{key[0]}:{key[1]}", its_tasks))
            new.append(self.workers[key])
        return new

    def tail(self, workers: list[WorkerLog], lines: int) -> list[str]:
        """The last `lines` shown lines of each of `workers`."""
        wanted = lines if self.selection == Selection() else MAX_TAIL_FILTERED
        out = []
        for w in workers:
            shown = self._read(w, lambda f: f.tail(wanted if lines else 0))
            out += shown[-lines:] if lines else []
        return out

    def poll(self) -> list[str]:
        """The new lines of every worker shown (and the last ones of those gone)."""
        out = []
        for w in list(self.workers.values()):
            out += self._read(w, Follower.poll)
        gone, self.gone = self.gone, []
        for w in gone:
            out += self._read(w, lambda f: f.poll() + f.flush())
        return out

    def _read(self, w: WorkerLog, how: Callable[[Follower], list[str]]) -> list[str]:
        try:
            raw = how(w.follower)
        except OSError as e:
            problem = str(e) or type(e).__name__
            if w.failing != problem:
                self.warn(f"worker {w.name}: cannot read its log: {problem}")
            w.failing = problem
            return []
        w.failing = None
        out = []
        for line in raw:
            label = w.labeler.label(line)
            if self.selection.shows(label):
                out.append(f"[{label}] {short_form(line, with_time=True)}")
        return out


# --- the command ---------------------------------------------------------------------------------


def logviewer_ports(config: Mapping[str, Any], status: Mapping[str, Any]
                    ) -> dict[str, int | None]:
    """Supervisor id -> the port its log server listens on (None: it serves none)."""
    ports: dict[str, int | None] = {}
    for w in status.get("workers") or []:
        if "logviewer_port" in w:
            ports[str(w.get("supervisor"))] = w["logviewer_port"]
    wanted = {str(w.get("supervisor")) for w in status.get("workers") or []} - set(ports)
    if wanted:
        from cluster.state import open_state

        with open_state(config) as state:
            records = {**state.supervisor_heartbeats(), **state.supervisors()}
        for sid in wanted:
            port = (records.get(sid) or {}).get("logviewer_port")
            ports[sid] = int(port) if isinstance(port, int) and port > 0 else None
    return ports


def run(args: argparse.Namespace) -> int:
    from cli.main import load_config
    from nimbus.client import NimbusClient

    config = load_config(args)
    client = NimbusClient.from_config(config)
    problems: list[str] = []

    def warn(text: str) -> None:
        problems.append(text)
        print(f"squall logs: {text}", file=sys.stderr)

    logs = Logs(lambda: client.status(args.name), lambda st: logviewer_ports(config, st),
                config["cluster.secret"], Selection(args.component, args.task), warn)
    first = logs.refresh()
    if not first and not args.follow:
        raise SquallError(f"topology {args.name!r}: no worker to read"
                          + ("" if problems else " (none is assigned yet)"))
    _print(logs.tail(first, args.lines))
    if not args.follow:
        if all(w.failing for w in first):
            raise SquallError(f"topology {args.name!r}: no worker's log could be read")
        return 0
    next_refresh = time.monotonic() + REFRESH_SECS
    refresh_failed = ""
    while True:
        time.sleep(POLL_SECS)
        _print(logs.poll())
        if time.monotonic() >= next_refresh:
            next_refresh = time.monotonic() + REFRESH_SECS
            try:
                _print(logs.tail(logs.refresh(), args.lines))
                refresh_failed = ""
            except SquallError as e:  # nimbus away for a while: keep following what we have
                if str(e) != refresh_failed:
                    warn(f"cannot refresh the workers: {e}")
                refresh_failed = str(e)


def _print(lines: list[str]) -> None:
    for line in lines:
        print(line)
    sys.stdout.flush()
