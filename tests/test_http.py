"""cluster.http, the server under nimbus's API and the dashboard, on real sockets: routing and
the one error shape, bodies (authenticated first, bounded, drained), Transfer-Encoding
refused, idle and slow clients dropped, connections bounded."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from polling import wait_for

from cluster.http import MAX_HEAD_BYTES, HttpError, Limits, Request, Route, Router, Server

pytestmark = pytest.mark.timeout(60)


class Demo(Server):
    """Routes for the tests; `authenticate` wants the header `X-Key: k`; `calls` counts what
    the handlers ran."""

    def __init__(self, limits: Limits) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()
        r = Router()
        r.add("GET", "/hello/{who}", self._hello)
        r.add("POST", "/echo", self._echo, max_body=1 << 20, limit_name="demo.max.bytes")
        r.add("POST", "/small", self._echo)
        r.add("GET", "/open", lambda req: {"open": True}, auth=False)
        r.add("GET", "/bug", self._bug)
        super().__init__(("127.0.0.1", 0), r, limits, "demo")

    def authenticate(self, request: Request, route: Route) -> None:
        if request.headers.get("X-Key") != "k":
            raise HttpError(401, "no key", extra={"hint": "send X-Key"})

    def _record(self, what: str) -> None:
        with self.lock:
            self.calls.append(what)

    def _hello(self, request: Request) -> Any:
        self._record(f"hello {request.params['who']}")
        return {"hello": request.params["who"], "query": request.query}

    def _echo(self, request: Request) -> Any:
        self._record(f"echo {len(request.body)}")
        return {"bytes": len(request.body)}

    def _bug(self, request: Request) -> Any:
        raise ValueError("a bug")


@pytest.fixture
def serve() -> Iterator[Any]:
    made: list[Demo] = []

    def start(**limits: Any) -> Demo:
        server = Demo(Limits(**{"idle_secs": 5.0, "request_secs": 10.0, **limits}))
        server.start()
        made.append(server)
        return server

    yield start
    for server in made:
        server.stop()


KEY = {"X-Key": "k"}


def request(server: Demo, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        conn.close()


def connect(server: Demo) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def statuses(raw: bytes) -> list[int]:
    """The status of every response in `raw` (pipelined ones included)."""
    return [int(code) for code in re.findall(rb"HTTP/1\.[01] (\d{3}) ", raw)]


# --- routing and the error shape ----------------------------------------------------------------


def test_routes_params_and_query(serve: Any) -> None:
    server = serve()
    status, data, _ = request(server, "GET", "/hello/a%2Fb/?x=1&x=2&y=", headers=KEY)
    assert status == 200 and data == {"hello": "a/b", "query": {"x": "2", "y": ""}}
    assert request(server, "GET", "/open")[1] == {"open": True}  # a route without auth


@pytest.mark.parametrize("method, path, status, words", [
    ("GET", "/nope", 404, "no such path '/nope'"),
    ("GET", "/hello/a/b", 404, "no such path"),
    ("GET", "/hello/", 404, "no such path"),
    ("POST", "/hello/x", 405, "POST is not allowed on /hello/x; use GET"),
    ("DELETE", "/echo", 405, "use POST"),
    ("GET", "/hello/%ff", 400, "bad percent-encoding"),
    ("GET", "/hello/x?y=%ff", 400, "malformed query string"),
    ("GET", "/hello/x", 401, "no key"),
    ("BREW", "/open", 405, ""),
    ("GET", "/bug", 500, "ValueError: a bug"),
])
def test_errors_have_one_shape(serve: Any, method: str, path: str, status: int,
                               words: str) -> None:
    server = serve()
    headers = {} if status == 401 else KEY
    got, data, head = request(server, method, path, headers=headers)
    assert got == status, data
    assert data["error"] == data["errorMessage"] and words in data["error"]
    assert head["Content-Type"] == "application/json" and head["Connection"] == "close"
    if status == 405 and method != "BREW":
        assert head["Allow"] in ("GET", "POST")
    if status == 401:
        assert data["hint"] == "send X-Key"  # a server's extra fields ride along
    assert request(server, "GET", "/open")[0] == 200  # still serving


def test_garbage_gets_a_json_400(serve: Any) -> None:
    server = serve()
    with connect(server) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        raw = read_all(sock)
    assert statuses(raw) == [400] and b'"errorMessage"' in raw


# --- bodies -------------------------------------------------------------------------------------


def test_bodies_are_read_within_the_routes_limit(serve: Any) -> None:
    server = serve()
    assert request(server, "POST", "/echo", b"x" * 100_000, KEY)[:2] == (200, {"bytes": 100_000})
    # over the limit: 413 naming it, readable by a client still sending (the body is drained)
    status, data, _ = request(server, "POST", "/echo", b"x" * (3 << 20), KEY)
    assert status == 413 and data["error"] == (
        f"request of {3 << 20} bytes is over the limit of {1 << 20} bytes (demo.max.bytes)")
    status, data, _ = request(server, "POST", "/small", b"x" * 70_000, KEY)  # Limits.max_body
    assert status == 413 and "over the limit of 65536 bytes" in data["error"]
    assert server.calls == ["echo 100000"]


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "99999999999999999999"])
def test_bad_content_length_is_400(serve: Any, length: str) -> None:
    server = serve()
    with connect(server) as sock:
        sock.sendall(f"POST /echo HTTP/1.1\r\nX-Key: k\r\nContent-Length: {length}\r\n\r\n"
                     .encode())
        raw = read_all(sock)
    assert statuses(raw) == [400] and b"Content-Length" in raw and not server.calls


def test_the_body_is_read_only_after_authentication(serve: Any) -> None:
    """With `Expect: 100-continue` the client sends its body only when told to: the server
    says so only to a request that passed authenticate()."""
    server = serve()
    head = "POST /echo HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n{}\r\n"
    with connect(server) as sock:
        sock.sendall(head.format("X-Key: wrong\r\n").encode())
        raw = read_all(sock)  # answered and closed without waiting for the body
    assert statuses(raw) == [401] and b"100 Continue" not in raw
    with connect(server) as sock:
        sock.sendall(head.format("X-Key: k\r\n").encode())
        sock.settimeout(10)
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"hello")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200 and json.loads(response.read()) == {"bytes": 5}
    assert server.calls == ["echo 5"]


def test_transfer_encoding_is_refused_and_what_follows_never_runs(serve: Any) -> None:
    server = serve()
    smuggled = b"GET /hello/smuggled HTTP/1.1\r\nX-Key: k\r\n\r\n"
    chunked = (b"POST /echo HTTP/1.1\r\nX-Key: k\r\nTransfer-Encoding: chunked\r\n\r\n"
               + f"{len(smuggled):x}\r\n".encode() + smuggled + b"\r\n0\r\n\r\n")
    # CL.TE: a proxy going by Transfer-Encoding sees one request; a server going by
    # Content-Length would read a second one (the smuggled GET) from the same connection.
    both = (b"POST /echo HTTP/1.1\r\nX-Key: k\r\nContent-Length: 4\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + f"{len(smuggled):x}\r\n".encode()
            + smuggled + b"\r\n0\r\n\r\n")
    for raw_request in (chunked, both):
        with connect(server) as sock:
            sock.sendall(raw_request)
            raw = read_all(sock)
        assert statuses(raw) == [411] and b"Content-Length" in raw
    assert server.calls == []


def test_an_oversized_head_is_refused(serve: Any) -> None:
    server = serve()
    filler = "a" * 40_000
    with connect(server) as sock:
        sock.sendall(f"GET /open HTTP/1.1\r\nA: {filler}\r\nB: {filler}\r\n\r\n".encode())
        raw = read_all(sock)
    assert statuses(raw) == [431] and str(MAX_HEAD_BYTES).encode() in raw


# --- slow and idle clients ----------------------------------------------------------------------


def test_a_silent_connection_is_closed(serve: Any) -> None:
    server = serve(idle_secs=0.3)
    with connect(server) as sock:
        wait_for(lambda: closed_by_server(sock), what="the silent connection closed")
    with connect(server) as sock:  # kept alive after a request, then silent
        sock.sendall(b"GET /open HTTP/1.1\r\nHost: x\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 200 and response.getheader("Connection") is None
        response.read()
        wait_for(lambda: closed_by_server(sock), what="the idle kept-alive connection closed")


def test_a_trickling_request_is_dropped(serve: Any) -> None:
    """Each byte comes well within the idle timeout, but the head never completes in time."""
    server = serve(idle_secs=0.5, request_secs=1.0)
    head = b"GET /hello/slow HTTP/1.1\r\nX-Key: k\r\nX-Filler: " + b"z" * 10_000
    with connect(server) as sock:
        sent = 0

        def trickle_until_closed() -> bool:
            nonlocal sent
            try:
                sock.sendall(head[sent:sent + 1])
            except OSError:
                return True
            sent += 1
            return closed_by_server(sock)

        wait_for(trickle_until_closed, timeout=30, every=0.1, what="the trickler dropped")
    assert sent < len(head) and server.calls == []


def test_a_trickling_body_is_dropped_with_408(serve: Any) -> None:
    server = serve(idle_secs=0.5, request_secs=1.0)
    with connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nX-Key: k\r\nContent-Length: 1000\r\n\r\n")
        answer = b""

        def trickle_until_answered() -> bool:
            nonlocal answer
            try:
                sock.sendall(b"x")
            except OSError:
                pass
            sock.settimeout(0.05)
            try:
                answer += sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                pass
            return b"\r\n\r\n" in answer

        wait_for(trickle_until_answered, timeout=30, every=0.1, what="the slow body answered")
    assert statuses(answer) == [408] and server.calls == []


def test_connections_beyond_the_bound_get_503_and_slots_come_back(serve: Any) -> None:
    server = serve(max_connections=2)
    holders = [connect(server), connect(server)]
    try:
        for sock in holders:  # both are being served (each holds a thread)
            sock.sendall(b"GET /open HTTP/1.1\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 200
            response.read()
        threads = threading.active_count()
        for _ in range(5):
            with connect(server) as extra:
                raw = read_all(extra)
            assert statuses(raw) == [503] and b"too many connections" in raw
        assert threading.active_count() <= threads  # no thread for a refused connection
    finally:
        for sock in holders:
            sock.close()
    wait_for(lambda: request(server, "GET", "/open")[0] == 200, what="a free slot again")


def test_a_stopped_server_leaves_no_thread(serve: Any) -> None:
    before = {t.name for t in threading.enumerate()}
    server = serve()
    assert request(server, "GET", "/open")[0] == 200
    server.stop()
    wait_for(lambda: {t.name for t in threading.enumerate()} <= before | {"MainThread"},
             timeout=10, what="the server's threads gone")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
