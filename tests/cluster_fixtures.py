"""A real cluster of daemon processes (`squall nimbus`, `squall supervisor`) for the cluster
tests and bench/failover.py. Imported by conftest.py for the `make_cluster` fixture.

Every daemon is a `python -m cli.main ...` subprocess reading one TOML config under the
cluster's own directory (`local.dir`, kept short for the supervisors' ipc sockets). Stopping
the cluster ends every daemon and then every worker left: those named by the supervisors'
pid records, and any process whose command line mentions the directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from polling import wait_for

from cli.cluster_cmds import runs_version
from cli.daemons import Daemon, toml_config
from cluster.config import Config
from cluster.processes import stop_processes
from cluster.zkserver import ZooKeeperServer, free_port
from cluster.zkstore import ZkClusterState
from supervisor.procs import WorkerRecords, find_live
from worker.launcher import free_ports

ROOT = str(Path(__file__).resolve().parent.parent)

TEST_SETTINGS: dict[str, Any] = {
    "nimbus.monitor.freq.secs": 0.2,
    "nimbus.worker.timeout.secs": 2,
    "nimbus.supervisor.timeout.secs": 2,
    "supervisor.heartbeat.frequency.secs": 0.2,
    "nimbus.task.launch.secs": 15,
    "nimbus.session.timeout.secs": 2,
    "supervisor.monitor.freq.secs": 0.2,
    "supervisor.worker.timeout.secs": 3,
    "supervisor.worker.start.timeout.secs": 20,
    "supervisor.worker.stop.timeout.secs": 2,
    "worker.heartbeat.frequency.secs": 0.2,
    "zookeeper.session.timeout.secs": 4,
    "zookeeper.connect.timeout.secs": 10,
}


class ProcessCluster:
    """ZooKeeper (given), nimbus processes and supervisor processes on loopback.

    The config is `base` (TEST_SETTINGS unless given; {} means the registry's defaults) with
    `settings` over it.
    """

    def __init__(self, zookeeper: ZooKeeperServer, settings: dict[str, Any] | None = None,
                 slots_per_supervisor: int = 2, log_level: str = "INFO",
                 base: dict[str, Any] | None = None) -> None:
        self.zookeeper = zookeeper
        self.dir = Path(tempfile.mkdtemp(prefix="sqc-"))
        self.secret = secrets.token_hex(16)
        self.slots_per_supervisor = slots_per_supervisor
        self.log_level = log_level
        self.nimbus_ports = [free_port() for _ in range(3)]  # seeds for up to three nimbuses
        self.values: dict[str, Any] = {
            **(TEST_SETTINGS if base is None else base),
            **(settings or {}),
            "zookeeper.servers": [zookeeper.connect_string],
            "zookeeper.root": f"/c-{uuid.uuid4().hex[:10]}",
            "cluster.secret": self.secret,
            "local.dir": str(self.dir),
            "nimbus.seeds": [f"127.0.0.1:{p}" for p in self.nimbus_ports],
        }
        self.config_path = self.dir / "squall.toml"
        self.config_path.write_text(toml_config(self.values))
        self.config = Config.load(str(self.config_path))
        self.nimbuses: list[Daemon] = []
        self.supervisors: list[Daemon] = []
        self.supervisor_slots: dict[int, list[int]] = {}  # supervisor pid -> its ports
        self._view: ZkClusterState | None = None

    # --- daemons -------------------------------------------------------------------------------

    def _argv(self, *args: str) -> list[str]:
        return [*args, "--config", str(self.config_path), "--log-level", self.log_level]

    def start_nimbus(self) -> Daemon:
        port = self.nimbus_ports[len(self.nimbuses)]
        n = len(self.nimbuses)
        d = Daemon(f"nimbus-{n}", self._argv("nimbus", "-c", f"nimbus.port={port}"),
                   self.dir / f"nimbus-{n}.log", cwd=ROOT)
        self.nimbuses.append(d)
        return d

    def start_supervisor(self, ports: list[int] | None = None, kill_workers: bool = True,
                         *settings: str) -> Daemon:
        """A supervisor on `ports` (new free ones by default; the same ports as an earlier
        one share its home: that is a restart). With `kill_workers` (the default here) it
        stops its workers when it stops, as a dev cluster's do; without, they outlive it as
        on real hosts. `settings` are extra `key=value` for it alone."""
        n = len(self.supervisors)
        ports = ports or free_ports(self.slots_per_supervisor)
        extra = ["--kill-workers"] if kill_workers else []
        d = Daemon(f"supervisor-{n}",
                   self._argv("supervisor", *extra,
                              "-c", f"supervisor.slots.ports={json.dumps(ports)}",
                              *(a for item in settings for a in ("-c", item))),
                   self.dir / f"supervisor-{n}.log", cwd=ROOT)
        self.supervisors.append(d)
        self.supervisor_slots[d.pid] = ports
        return d

    def start(self, nimbuses: int = 1, supervisors: int = 2, timeout: float = 30.0,
              kill_workers: bool = True) -> None:
        """Start the daemons and wait until a leader is elected and all supervisors register."""
        for _ in range(nimbuses):
            self.start_nimbus()
        for _ in range(supervisors):
            self.start_supervisor(None, kill_workers)
        self.wait_registered(timeout)

    def wait_registered(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            for d in self.nimbuses + self.supervisors:  # alive, or stopped on purpose
                assert d.alive() or d.popen.returncode in (0, -signal.SIGKILL), \
                    f"{d.name} exited with {d.popen.returncode}:\n{d.log_tail()}"
            live_sups = sum(d.alive() for d in self.supervisors)
            return (len(self.view.supervisors()) == live_sups and
                    self.view.leader() is not None and
                    len(self.view.nimbuses()) == sum(d.alive() for d in self.nimbuses))
        wait_for(ready, timeout, "cluster registration")

    @property
    def view(self) -> ZkClusterState:
        """The test's own client of the cluster state."""
        if self._view is None:
            self._view = ZkClusterState(self.config)
        return self._view

    def leader_daemon(self) -> Daemon:
        """The nimbus process that leads now."""
        leader = self.view.leader()
        info = self.view.nimbuses().get(leader or "")
        assert info is not None, "no leader"
        for i, d in enumerate(self.nimbuses):
            if self.nimbus_ports[i] == info["port"]:
                return d
        raise AssertionError(f"leader {leader} is not one of ours")

    def supervisor_id(self, daemon: Daemon) -> str:
        registered = self.view.supervisors()
        for sid, info in registered.items():  # the pid is exact; ports may repeat on hosts
            if info.get("pid") == daemon.pid:
                return sid
        ports = self.supervisor_slots[daemon.pid]
        for sid, info in registered.items():
            if list(info.get("ports", [])) == ports:
                return sid
        raise AssertionError(f"{daemon.name} is not registered")

    def supervisor_home(self, daemon: Daemon) -> Path:
        return self.dir / f"supervisor-127.0.0.1-{self.supervisor_slots[daemon.pid][0]}"

    def worker_pids(self, daemon: Daemon | None = None) -> dict[int, int]:
        """Port -> pid of the live workers recorded by one supervisor (or all)."""
        homes = [self.supervisor_home(daemon)] if daemon else list(self.dir.glob("supervisor-*/"))
        out = {}
        for home in homes:
            for port, record in WorkerRecords(str(home / "workers")).load_all().items():
                if find_live(record) is not None:
                    out[port] = record.pid
        return out

    # --- the CLI -------------------------------------------------------------------------------

    def heartbeats(self, tid: str) -> dict[str, dict[str, Any]]:
        return self.view.worker_heartbeats(tid)

    def current_heartbeats(self, tid: str) -> dict[str, dict[str, Any]]:
        """Heartbeats of the workers of the current assignment, running its version."""
        a = self.view.assignment(tid) or {}
        hbs = self.heartbeats(tid)
        keys = [f"{w['host']}:{w['port']}" for w in a.get("workers", [])]
        return {k: hbs[k] for k in keys
                if k in hbs and runs_version(hbs[k].get("version"), a.get("version"))}

    def cli(self, *args: str, check: bool = True, timeout: float = 60.0
            ) -> subprocess.CompletedProcess[str]:
        """Run `squall ARGS` against this cluster."""
        argv = [sys.executable, "-m", "cli.main", *args, "--config", str(self.config_path)]
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"squall {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout}{done.stderr}")
        return done

    def cli_json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.cli(*args, "--json", **kwargs).stdout)

    # --- the end -------------------------------------------------------------------------------

    def logs(self, lines: int = 40) -> str:
        return "\n".join(f"----- {d.name} ({d.log_path}) -----\n{d.log_tail(lines)}"
                         for d in self.nimbuses + self.supervisors)

    def leftovers(self) -> list[psutil.Process]:
        """Live processes whose command line mentions this cluster's directory."""
        marker = str(self.dir)
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if proc.pid != os.getpid() and any(marker in a for a in proc.info["cmdline"] or ()):
                    if proc.status() != psutil.STATUS_ZOMBIE:
                        found.append(proc)
            except psutil.Error:
                pass
        return found

    def stop(self, remove: bool = True) -> list[int]:
        """End everything; return the pids that had to be killed after the daemons stopped."""
        if self._view is not None:
            self._view.close()
            self._view = None
        for d in self.supervisors + self.nimbuses:
            try:
                d.stop()
            except Exception:  # keep going: everything must go
                d.popen.kill()
        stray = []
        for home in self.dir.glob("supervisor-*/"):
            for record in WorkerRecords(str(home / "workers")).load_all().values():
                proc = find_live(record)
                if proc is not None:
                    stray.append(proc)
        stray += [p for p in self.leftovers() if p.pid not in {s.pid for s in stray}]
        stop_processes(stray, 0, "leftover")
        if remove:
            shutil.rmtree(self.dir, ignore_errors=True)
        return [p.pid for p in stray]


@pytest.fixture
def make_cluster(zookeeper: ZooKeeperServer, request: pytest.FixtureRequest
                 ) -> Iterator[Callable[..., ProcessCluster]]:
    """`make_cluster(nimbuses=1, supervisors=2, slots=2, settings={...})`: a started cluster.

    Everything is stopped at the end, failed test or not; on failure the daemon logs are
    printed (with capture off) and the cluster's directory is kept for a look.
    """
    made: list[ProcessCluster] = []
    failed_before = request.session.testsfailed

    def make(nimbuses: int = 1, supervisors: int = 2, slots: int = 2,
             settings: dict[str, Any] | None = None) -> ProcessCluster:
        c = ProcessCluster(zookeeper, settings, slots_per_supervisor=slots)
        made.append(c)
        c.start(nimbuses, supervisors)
        return c

    yield make
    failed = request.session.testsfailed > failed_before
    for c in made:
        if failed:
            capman = request.config.pluginmanager.getplugin("capturemanager")
            with capman.global_and_fixture_disabled():
                print(f"\n===== cluster logs ({c.dir}) =====\n{c.logs()}", file=sys.stderr)
        c.stop(remove=not failed)
