"""A real Redis server for tests: started once per session on a free port, in its own
directory, with deploy/start-redis.sh (so tests run it as operators do).

Use it by importing the fixture into a test module:

    from redis_fixtures import redis_server  # noqa: F401  (a fixture, used by name)
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.zkserver import free_port

log = logging.getLogger(__name__)

START_SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "start-redis.sh"


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a Redis server answers PING on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One throwaway redis-server: `start()` waits for PING; `stop()` ends it and, for a
    directory it made, removes it."""

    def __init__(self, port: int | None = None, data_dir: str | None = None,
                 host: str = "127.0.0.1", start_timeout: float = 20.0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._own_dir = data_dir is None
        self.data_dir = tempfile.mkdtemp(prefix="squall-redis-") if data_dir is None else data_dir
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, "redis.log")

    def start(self) -> RedisServer:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed: run deploy/install-redis.sh")
        env = {**os.environ, "REDIS_BIND": self.host}
        os.makedirs(self.data_dir, exist_ok=True)
        with open(os.path.join(self.data_dir, "stdout.log"), "ab") as out:
            self._proc = subprocess.Popen(
                ["bash", str(START_SCRIPT), str(self.port), self.data_dir], env=env,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while not ping(self.host, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"redis {self.host}:{self.port} did not answer PING within "
                                   f"{self.start_timeout:g} s; log:\n{tail}")
            time.sleep(0.02)
        log.info("redis %s:%d: ready (pid %d)", self.host, self.port, self._proc.pid)
        return self

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self, remove: bool | None = None) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._own_dir if remove is None else remove:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no redis log)"


class ExternalRedis(RedisServer):
    """A server this process did not start (deploy/test.sh's): used, never stopped."""

    def __init__(self, url: str) -> None:
        rest = url.split("://", 1)[-1].split("/", 1)[0]
        host, _, port = rest.rpartition(":")
        super().__init__(int(port), data_dir="", host=host or "127.0.0.1")  # none: not ours
        if not ping(self.host, self.port, timeout=5):
            raise RuntimeError(f"{EXTERNAL_ENV}={url}: no redis answers PING there")

    def running(self) -> bool:
        return ping(self.host, self.port)

    def stop(self, remove: bool | None = None) -> None:
        """Not ours to stop."""


EXTERNAL_ENV = "SQUALL_TEST_REDIS_URL"
_SERVER = pytest.StashKey[RedisServer]()


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    """A real Redis server for the whole session, shared by every module that imports this
    fixture; fails (does not skip) if it cannot start."""
    server = request.session.stash.get(_SERVER, None)
    if server is not None and server.running():
        yield server
        return
    external = os.environ.get(EXTERNAL_ENV)
    if external:  # deploy/test.sh started one
        yield ExternalRedis(external)
        return
    server = RedisServer().start()
    request.session.stash[_SERVER] = server
    try:
        yield server
    finally:
        server.stop()
