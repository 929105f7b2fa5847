"""A throwaway single-node ZooKeeper server, for tests and the local dev cluster.

Runs Debian's packaged ZooKeeper (`/usr/share/java/zookeeper.jar`, whose manifest carries the
classpath of its dependencies) with slf4j-simple added so its log goes to `zookeeper.log` in the
data directory. Readiness is decided by the `ruok` four-letter word, polled until a deadline.

    python -m cluster.zkserver --port 2181 --data-dir /var/lib/squall-zk
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from cluster.processes import stop_processes
from topology.errors import SquallError

log = logging.getLogger(__name__)

JAVA_DIR = "/usr/share/java"
ZOOKEEPER_JAR = os.path.join(JAVA_DIR, "zookeeper.jar")
LOGGER_JAR = os.path.join(JAVA_DIR, "slf4j-simple.jar")
MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
LOG_NAME = "zookeeper.log"


class ZooKeeperError(SquallError):
    """The local ZooKeeper server could not be started or did not answer."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def four_letter(host: str, port: int, word: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command and return the reply ('' if none)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(word.encode())
            chunks = []
            while chunk := s.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


def zoo_cfg(data_dir: str, port: int, host: str = "127.0.0.1") -> str:
    """The text of a single-node zoo.cfg."""
    return "\n".join([
        "tickTime=500",
        f"dataDir={data_dir}",
        f"clientPort={port}",
        f"clientPortAddress={host}",
        "admin.enableServer=false",
        "4lw.commands.whitelist=ruok,srvr,mntr",
        "minSessionTimeout=1000",
        "maxSessionTimeout=120000",
        "",
    ])


class ZooKeeperServer:
    """One local ZooKeeper process; `start()`, `stop()`, `restart()` on the same port and data.

    With no `data_dir` a temporary one is made and removed by `stop(remove=True)` / on exit of
    the `with` block.
    """

    def __init__(
        self,
        port: int | None = None,
        data_dir: str | None = None,
        host: str = "127.0.0.1",
        java: str = "java",
        start_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="squall-zk-")
        self.java = java
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def connect_string(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, LOG_NAME)

    def command(self) -> list[str]:
        classpath = [ZOOKEEPER_JAR] + ([LOGGER_JAR] if os.path.exists(LOGGER_JAR) else [])
        return [
            self.java,
            f"-Dorg.slf4j.simpleLogger.logFile={self.log_path}",
            "-Dorg.slf4j.simpleLogger.showDateTime=true",
            "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd HH:mm:ss.SSS",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-Xmx256m",
            "-cp",
            ":".join(classpath),
            MAIN_CLASS,
            os.path.join(self.data_dir, "zoo.cfg"),
        ]

    def start(self) -> Self:
        if self._proc is not None and self._proc.poll() is None:
            return self
        if not os.path.exists(ZOOKEEPER_JAR):
            raise ZooKeeperError(
                f"zookeeper: {ZOOKEEPER_JAR} is missing; run deploy/install-zookeeper.sh"
            )
        if shutil.which(self.java) is None:
            raise ZooKeeperError(f"zookeeper: java ({self.java!r}) not found on PATH")
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(self.data_dir, "zoo.cfg"), "w") as f:
            f.write(zoo_cfg(self.data_dir, self.port, self.host))
        with open(os.path.join(self.data_dir, "stdout.log"), "ab") as out:
            self._proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C in a terminal goes to us, we stop it cleanly
            )
        log.info("zookeeper %s: started pid %d in %s", self.connect_string, self._proc.pid,
                 self.data_dir)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ZooKeeperError(
                    f"zookeeper {self.connect_string}: exited with {self._proc.returncode}; "
                    f"log: {self.log_path}\n{self.log_tail()}"
                )
            if four_letter(self.host, self.port, "ruok") == "imok":
                log.info("zookeeper %s: ready", self.connect_string)
                return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        self.stop()
        raise ZooKeeperError(
            f"zookeeper {self.connect_string}: not ready after {self.start_timeout:g}s; "
            f"log: {self.log_path}"
        )

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, remove: bool = False, timeout: float = 10.0) -> None:
        """Terminate the server (kill it if it lingers); remove its data dir if asked."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            stop_processes([proc], timeout, f"zookeeper {self.connect_string}")
            log.info("zookeeper %s: stopped", self.connect_string)
        if remove:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port and data dir (sessions survive on disk)."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = 60) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no zookeeper log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(remove=self._own_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ZooKeeper in the foreground until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m cluster.zkserver", description=__doc__)
    parser.add_argument("--port", type=int, default=2181)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()  # only a flag: the main loop does the work

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = ZooKeeperServer(args.port, os.path.abspath(args.data_dir), host=args.host)
    try:
        server.start()
    except ZooKeeperError as e:
        logging.getLogger("cluster.zkserver").error("%s", e)
        return 1
    try:
        while not stop.wait(0.5):
            if not server.running():
                log.error("zookeeper %s: exited unexpectedly; log: %s",
                          server.connect_string, server.log_path)
                return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
