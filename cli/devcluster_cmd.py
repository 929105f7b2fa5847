"""`squall dev-cluster`: a whole cluster on loopback, for development and demos.

Starts ZooKeeper, one nimbus, N supervisors with K slots each (and the dashboard when the
`ui` subcommand exists), all in a fresh temporary directory with a generated cluster secret.
It writes the cluster's TOML config there and prints `export SQUALL_CONF=...` so that
`squall submit/list/kill ...` in another terminal talk to it. Ctrl-C or SIGTERM stops
everything, workers included, and removes the directory (unless --keep).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cli.daemons import Daemon, toml_config
from cluster.processes import stop_processes
from topology.errors import SquallError

HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "dev-cluster", parents=[parent], help="run a local cluster (ZooKeeper, nimbus, "
        "supervisors) on loopback", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supervisors", type=int, default=2, metavar="N",
                   help="number of supervisors (default 2)")
    p.add_argument("--slots", type=int, default=4, metavar="K",
                   help="worker slots per supervisor (default 4)")
    p.add_argument("--zk-port", type=int, default=None, metavar="P",
                   help="ZooKeeper client port (default: a free one)")
    p.add_argument("--keep", action="store_true",
                   help="keep the cluster's directory (config, logs) after it stops")
    p.set_defaults(run=run)


def available_commands() -> set[str]:
    """The subcommands this `squall` has (nimbus and ui are written separately)."""
    from cli.main import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def port_open(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class DevCluster:
    def __init__(self, args: argparse.Namespace) -> None:
        if args.supervisors < 1 or args.slots < 1:
            raise SquallError("--supervisors and --slots must be at least 1")
        self.args = args
        self.dir = Path(tempfile.mkdtemp(prefix="squall-dev-"))
        self.logs = self.dir / "logs"
        self.logs.mkdir()
        self.conf_path = self.dir / "squall.toml"
        self.zk: Any = None
        self.daemons: list[Daemon] = []
        self.slots: list[list[int]] = []

    def start(self) -> None:
        from cluster.config import Config
        from cluster.zkserver import ZooKeeperServer
        from worker.launcher import free_ports

        self.zk = ZooKeeperServer(self.args.zk_port, str(self.dir / "zookeeper"), host=HOST)
        self.zk.start()
        n, k = self.args.supervisors, self.args.slots
        ports = free_ports(2 + n * k, HOST)
        self.nimbus_port, self.ui_port = ports[0], ports[1]
        self.slots = [ports[2 + i * k: 2 + (i + 1) * k] for i in range(n)]
        self.conf_path.write_text(toml_config({
            "zookeeper.servers": [self.zk.connect_string],
            "zookeeper.root": "/squall",
            "nimbus.host": HOST, "nimbus.port": self.nimbus_port,
            "ui.host": HOST, "ui.port": self.ui_port,
            "supervisor.host": HOST,
            "cluster.secret": secrets.token_hex(16),
            "local.dir": str(self.dir / "local"),
        }))
        self.config = Config.load(str(self.conf_path), overrides=list(self.args.overrides))
        common = ["--config", str(self.conf_path), "--log-level", "INFO",
                  *[arg for item in self.args.overrides for arg in ("-c", item)]]
        commands = available_commands()
        if "nimbus" in commands:
            self._spawn("nimbus", ["nimbus", *common])
            self._wait_port(self.daemons[-1], self.nimbus_port)
        else:
            print("squall dev-cluster: warning: this squall has no `nimbus` command yet",
                  file=sys.stderr)
        for i, slots in enumerate(self.slots, 1):
            self._spawn(f"supervisor-{i}", ["supervisor", *common, "--kill-workers",
                                            "-c", f"supervisor.slots.ports={json.dumps(slots)}"])
        if "ui" in commands:
            self._spawn("ui", ["ui", *common])
            self._wait_port(self.daemons[-1], self.ui_port)
        self._wait_supervisors(n)

    def _spawn(self, name: str, argv: list[str]) -> None:
        from worker.launcher import PROJECT_ROOT

        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [PROJECT_ROOT, env.get("PYTHONPATH")] if p)
        env.pop("SQUALL_CONF", None)
        self.daemons.append(Daemon(name, argv, self.logs / f"{name}.log", env))

    @staticmethod
    def _check_alive(daemon: Daemon) -> None:
        if not daemon.alive():
            raise SquallError(f"{daemon.name} exited with {daemon.returncode}; "
                              f"log {daemon.log_path}:\n{daemon.log_tail()}")

    def _wait_port(self, daemon: Daemon, port: int) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not port_open(port):
            self._check_alive(daemon)
            if time.monotonic() > deadline:
                raise SquallError(f"{daemon.name} is not listening on {HOST}:{port} after "
                                  f"{READY_TIMEOUT:g} s; log {daemon.log_path}")
            time.sleep(0.1)

    def _wait_supervisors(self, count: int) -> None:
        from cluster.state import open_state

        supervisors = [d for d in self.daemons if d.name.startswith("supervisor-")]
        deadline = time.monotonic() + READY_TIMEOUT
        with open_state(self.config) as state:
            while len(state.supervisors()) < count:
                for d in supervisors:
                    self._check_alive(d)
                if time.monotonic() > deadline:
                    raise SquallError(f"supervisors did not register within {READY_TIMEOUT:g} s; "
                                      f"logs in {self.logs}")
                time.sleep(0.1)

    def describe(self) -> str:
        names = {d.name for d in self.daemons}
        lines = [f"squall dev-cluster: running in {self.dir}",
                 f"  zookeeper    {self.zk.connect_string:<24} log {self.zk.log_path}"]
        if "nimbus" in names:
            lines.append(f"  nimbus       {HOST}:{self.nimbus_port:<14} log "
                         f"{self.logs / 'nimbus.log'}")
        for i, slots in enumerate(self.slots, 1):
            lines.append(f"  supervisor-{i} slots {','.join(map(str, slots)):<18} log "
                         f"{self.logs / f'supervisor-{i}.log'}")
        if "ui" in names:
            lines.append(f"  ui           http://{HOST}:{self.ui_port}/")
        lines += [f"  worker logs  {self.config['local.dir']}/supervisor-*/logs/",
                  f"  config       {self.conf_path}", "",
                  f"export SQUALL_CONF={self.conf_path}", "",
                  "Ctrl-C stops the cluster."]
        return "\n".join(lines)

    def watch(self) -> None:
        """Report (once) any daemon that dies while the cluster runs."""
        for d in self.daemons:
            if not d.alive() and not d.reported:
                d.reported = True
                print(f"squall dev-cluster: {d.name} exited with {d.returncode}; log "
                      f"{d.log_path}:\n{d.log_tail()}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        """Stop ui, supervisors (which stop their workers), nimbus, then ZooKeeper."""
        order = ([d for d in self.daemons if d.name == "ui"]
                 + [d for d in self.daemons if d.name.startswith("supervisor-")]
                 + [d for d in self.daemons if d.name == "nimbus"])
        for pid in stop_processes([d.popen for d in order], STOP_TIMEOUT, "daemon"):
            name = next(d.name for d in order if d.pid == pid)
            print(f"squall dev-cluster: {name} did not stop; killed it", file=sys.stderr)
        self._kill_leftover_workers()
        if self.zk is not None:
            self.zk.stop()
        if self.args.keep:
            print(f"squall dev-cluster: stopped; files kept in {self.dir}", file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
            print("squall dev-cluster: stopped", file=sys.stderr)

    def _kill_leftover_workers(self) -> None:
        """Workers of a supervisor that had to be killed: found by their pid records."""
        from supervisor.procs import WorkerRecords, find_live

        procs = []
        for records_dir in (self.dir / "local").glob("supervisor-*/workers"):
            for record in WorkerRecords(str(records_dir)).load_all().values():
                proc = find_live(record)
                if proc is not None:
                    procs.append(proc)
        stop_processes(procs, 0, "leftover worker")


def run(args: argparse.Namespace) -> int:
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True  # only a flag: the loop below stops the cluster

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cluster = DevCluster(args)
    try:
        cluster.start()
        print(cluster.describe(), flush=True)
        while not stop:
            time.sleep(0.2)
            cluster.watch()
    finally:
        cluster.stop()
    return 0

