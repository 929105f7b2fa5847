"""Nimbus's API against hostile clients (issue 7): unauthenticated bodies, replays across
nimbuses and restarts, forged signatures, request smuggling, idle and slow connections, too
many connections; and nimbus starting on a config shared with a nimbus-only host. Real
ZooKeeper, real sockets, and real `squall nimbus` processes where a process is what is
measured. (Bad values: tests/test_security_input.py.)"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from polling import wait_for

from cli.daemons import Daemon, toml_config
from cli.loader import load_topology_file
from cluster.config import Config
from cluster.zkserver import free_port
from nimbus.client import NimbusClient
from nimbus.protocol import AUTH_HEADER, NimbusError, auth_header

pytestmark = pytest.mark.timeout(120)

ROOT = str(Path(__file__).resolve().parent.parent)
SECRET = "s3cret-for-security-tests"
MiB = 1 << 20


@pytest.fixture
def package(topology_file: str) -> bytes:
    return bytes(cloudpickle.dumps({"topology": load_topology_file(topology_file),
                                    "overrides": {}}))


class NimbusProcess:
    """A `squall nimbus` process reading its own TOML config."""

    def __init__(self, directory: Path, values: dict[str, Any], name: str) -> None:
        self.port = int(values["nimbus.port"])
        self.endpoint = f"127.0.0.1:{self.port}"
        self.secret = values.get("cluster.secret")
        config_path = directory / f"{name}.toml"
        config_path.write_text(toml_config(values))
        self.daemon = Daemon(name, ["nimbus", "--config", str(config_path)],
                             directory / f"{name}.log", env={**os.environ, "SQUALL_CONF": ""},
                             cwd=ROOT)

    @property
    def pid(self) -> int:
        return self.daemon.pid

    def client(self) -> NimbusClient:
        return NimbusClient([self.endpoint], self.secret, leader_wait=0)

    def info(self) -> dict[str, Any] | None:
        assert self.daemon.alive(), f"nimbus exited:\n{self.daemon.log_tail()}"
        try:
            return self.client().nimbus_info(self.endpoint)
        except NimbusError:
            return None

    def wait_up(self, leading: bool | None = None) -> None:
        def up() -> bool:
            info = self.info()
            return info is not None and (leading is None or info["leader"] is leading)
        wait_for(up, timeout=30, what=f"nimbus on {self.endpoint} up (leading={leading})")

    def stop(self) -> None:
        self.daemon.stop()


@pytest.fixture
def nimbus_process(zk_config: Config, tmp_path: Path) -> Iterator[Callable[..., NimbusProcess]]:
    """`nimbus_process(**settings)`: a started nimbus process (same ZooKeeper root for all
    of one test); every one is stopped at the end."""
    started: list[NimbusProcess] = []

    def start(**settings: Any) -> NimbusProcess:
        values = {
            "zookeeper.servers": zk_config["zookeeper.servers"],
            "zookeeper.root": zk_config["zookeeper.root"],
            "zookeeper.session.timeout.secs": 4,
            "nimbus.session.timeout.secs": 2,
            "nimbus.monitor.freq.secs": 0.1,
            "cluster.secret": SECRET,
            "nimbus.port": free_port(),
            "local.dir": str(tmp_path / "local"),
            **settings,
        }
        started.append(NimbusProcess(tmp_path, values, f"nimbus-{len(started)}"))
        return started[-1]

    yield start
    for proc in started:
        proc.stop()


def send(endpoint: str, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    host, _, port = endpoint.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def exchange(endpoint: str, raw: bytes) -> bytes:
    """Send raw bytes on one connection; everything nimbus answers until it closes."""
    host, _, port = endpoint.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def statuses(raw: bytes) -> list[int]:
    """The status of every response in `raw` (pipelined ones included)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


# --- item 3: unauthenticated bodies are never held ----------------------------------------------


def test_unauthenticated_large_posts_do_not_grow_nimbus(nimbus_process: Any) -> None:
    """8 clients post 60 MiB packages each without the secret (half with no signature,
    half with a well-formed forged one) and all hold their connections open together, the
    last byte unsent: nimbus must not hold their bodies (it used to read them first)."""
    nimbus = nimbus_process()
    nimbus.wait_up(leading=True)
    before = peak_rss(nimbus.pid)
    clients, size = 8, 60 * MiB
    chunk = b"\0" * MiB
    together = threading.Barrier(clients, timeout=90)
    answers: list[bytes] = []
    lock = threading.Lock()

    def post(i: int) -> None:
        forged = f"1700000000.{i:016x}:{'a' * 64}:{'b' * 64}" if i % 2 else None
        head = (f"POST /api/v1/topologies?name=n{i} HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
                + (f"{AUTH_HEADER}: {forged}\r\n" if forged else "") + "\r\n")
        with socket.create_connection(("127.0.0.1", nimbus.port), timeout=60) as sock:
            try:
                sock.sendall(head.encode())
                for _ in range(size // MiB - 1):
                    sock.sendall(chunk)
                sock.sendall(chunk[:-1])
            except OSError:
                pass  # nimbus may close early: it holds nothing either way
            together.wait()
            try:
                sock.sendall(b"\0")
                answer = sock.recv(65536)
            except OSError:
                answer = b""
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=100)
    grown = peak_rss(nimbus.pid) - before
    print(f"nimbus peak RSS grew by {grown / MiB:.1f} MiB for {clients} x 60 MiB posts")
    assert grown < 200 * MiB, f"nimbus grew by {grown / MiB:.0f} MiB"
    # each one refused (or, had nimbus given up draining its body in time, just closed)
    assert len(answers) == clients
    assert all(a.startswith(b"HTTP/1.1 401 ") or a == b"" for a in answers), answers
    assert nimbus.client().list() == []  # alive, and nothing was submitted


# --- item 5: a signed request is served once, whichever nimbus and after restarts ---------------


def test_a_replay_is_refused_by_another_and_by_a_restarted_nimbus(nimbus_process: Any,
                                                                   package: bytes) -> None:
    first = nimbus_process()
    first.wait_up(leading=True)
    port = first.port
    second = nimbus_process()
    second.wait_up(leading=False)
    first.client().submit(package)

    path = "/api/v1/topologies/numbers/deactivate"
    deactivate = auth_header(SECRET, "POST", path, b"{}")
    status, reply = send(first.endpoint, "POST", path, b"{}", {AUTH_HEADER: deactivate})
    assert status == 200 and reply["status"] == "INACTIVE"
    listing = "/api/v1/topologies"
    read = auth_header(SECRET, "GET", listing, b"")
    assert send(first.endpoint, "GET", listing, headers={AUTH_HEADER: read})[0] == 200
    first.client().activate("numbers")

    # to the other nimbus: refused, with a message that says why
    status, reply = send(second.endpoint, "POST", path, b"{}", {AUTH_HEADER: deactivate})
    assert status == 401 and "replayed request" in reply["error"], reply
    assert send(second.endpoint, "GET", listing, headers={AUTH_HEADER: read})[0] == 401

    # the leader goes, the standby leads: still refused, and nothing was deactivated
    first.stop()
    second.wait_up(leading=True)
    status, reply = send(second.endpoint, "POST", path, b"{}", {AUTH_HEADER: deactivate})
    assert status == 401 and "already used" in reply["error"]
    assert second.client().status("numbers")["status"] == "ACTIVE"

    # the first one restarted on its port: its own old requests are refused too
    restarted = nimbus_process(**{"nimbus.port": port})
    restarted.wait_up(leading=False)
    status, reply = send(restarted.endpoint, "GET", listing, headers={AUTH_HEADER: read})
    assert status == 401 and "replayed request" in reply["error"]
    assert [t["status"] for t in restarted.client().list()] == ["ACTIVE"]  # fresh ones work


def test_a_forged_or_tampered_request_is_refused_before_its_body(start_nimbus: Any,
                                                                 package: bytes) -> None:
    nimbus = start_nimbus(**{"cluster.secret": SECRET})
    nimbus.wait_leading()
    path = "/api/v1/topologies?name=numbers"
    signed = auth_header(SECRET, "POST", path, package)
    # the same signature with another body: the body does not match what was signed
    status, reply = send(nimbus.endpoint, "POST", path, package + b"x", {AUTH_HEADER: signed})
    assert status == 401 and "does not match its signature" in reply["error"]
    for header in ("garbage", "1700000000.ab:cd", f"{signed}:extra"):
        status, reply = send(nimbus.endpoint, "POST", path, package, {AUTH_HEADER: header})
        assert status == 401 and "malformed signature" in reply["error"], header
    wrong = auth_header("not-the-secret", "POST", path, package)
    status, reply = send(nimbus.endpoint, "POST", path, package, {AUTH_HEADER: wrong})
    assert status == 401 and reply["error"] == "wrong cluster secret"
    assert nimbus.client().list() == []


# --- item 6: Transfer-Encoding is refused, a smuggled request never runs ------------------------


def test_a_request_smuggled_in_a_chunked_body_never_runs(start_nimbus: Any,
                                                         package: bytes) -> None:
    nimbus = start_nimbus()  # no secret: a smuggled request would be as good as any
    nimbus.wait_leading()
    client = nimbus.client()
    client.submit(package)
    kill = b'{"wait": 0}'
    smuggled = (b"POST /api/v1/topologies/numbers/kill HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: " + str(len(kill)).encode() + b"\r\n\r\n" + kill)
    chunk = f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n"
    head = b"POST /api/v1/topologies/numbers/activate HTTP/1.1\r\nHost: x\r\n"
    # CL.TE: a proxy going by Transfer-Encoding forwards one request; nimbus used to go by
    # Content-Length (4 bytes: the chunk size line) and run the kill that follows.
    cl_te = head + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n" + chunk
    for raw in (cl_te, chunked):
        answer = exchange(nimbus.endpoint, raw)  # read until nimbus closes the connection
        assert statuses(answer) == [411], answer
        assert b"Transfer-Encoding is not accepted" in answer
    assert client.status("numbers")["status"] == "ACTIVE"


# --- item 4: idle and slow connections are dropped ----------------------------------------------


def test_idle_and_trickling_connections_to_nimbus_are_dropped(start_nimbus: Any) -> None:
    nimbus = start_nimbus(**{"nimbus.api.idle.timeout.secs": 0.5,
                             "nimbus.api.request.timeout.secs": 1.0})
    nimbus.wait_leading()
    with socket.create_connection(("127.0.0.1", nimbus.nimbus.server.port), timeout=10) as sock:
        wait_for(lambda: closed_by_server(sock), what="a silent connection dropped")

    head = b"GET /api/v1/topologies HTTP/1.1\r\nX-Filler: " + b"z" * 10_000
    sent = 0
    with socket.create_connection(("127.0.0.1", nimbus.nimbus.server.port), timeout=10) as sock:
        def trickle() -> bool:  # a byte every 0.1 s: never idle, never done
            nonlocal sent
            try:
                sock.sendall(head[sent:sent + 1])
            except OSError:
                return True
            sent += 1
            return closed_by_server(sock)

        wait_for(trickle, timeout=30, every=0.1, what="a trickling client dropped")
    assert sent < len(head)
    assert nimbus.client().list() == []  # still serving


def test_connections_to_nimbus_are_bounded(start_nimbus: Any) -> None:
    nimbus = start_nimbus(**{"nimbus.api.max.connections": 3})
    nimbus.wait_leading()
    port = nimbus.nimbus.server.port
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        answer = wait_for(lambda: (a := exchange(nimbus.endpoint, b"")) and a,
                          what="a fourth connection answered")
        assert statuses(answer) == [503] and b"too many connections" in answer
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: send(nimbus.endpoint, "GET", "/api/v1/topologies")[0] == 200,
             what="served again once the connections closed")


# --- item 15: a config shared with a nimbus-only host -------------------------------------------


def test_nimbus_ui_and_cli_start_with_a_config_offering_no_slots(nimbus_process: Any,
                                                                 tmp_path: Path) -> None:
    nimbus = nimbus_process(**{"supervisor.slots.ports": []})
    nimbus.wait_up(leading=True)
    config = next(tmp_path.glob("nimbus-0.toml"))
    assert "ports = []" in config.read_text()
    env = {**os.environ, "SQUALL_CONF": str(config)}
    done = subprocess.run([sys.executable, "-m", "cli.main", "list"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "no topologies running", done.stderr
    ui_port = free_port()
    ui = Daemon("ui", ["ui", "-c", f"ui.port={ui_port}"], tmp_path / "ui.log", env=env, cwd=ROOT)
    try:
        def serving() -> bool:
            assert ui.alive(), ui.log_tail()
            try:
                return send(f"127.0.0.1:{ui_port}", "GET", "/api/v1/cluster/summary")[0] == 200
            except OSError:
                return False
        wait_for(serving, timeout=30, what="the ui serving")
    finally:
        ui.stop()
