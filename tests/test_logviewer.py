"""The supervisor's log server (supervisor.logviewer) on a real socket: byte ranges, the
secret, names that are not logs, sizes it refuses, and a follower reading through it."""

from __future__ import annotations

import base64
import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.logs_cmd import HttpSource, LogServerError
from cluster.logfiles import MAX_LENGTH, public_name, worker_log_path
from cluster.logfollow import Follower
from supervisor.logviewer import LogViewer

SECRET = "logviewer-test-secret"
TID = "words-1796049954-adc4fa"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = worker_log_path(tmp_path, TID, 6700)
    path.parent.mkdir(parents=True)
    path.write_text("".join(f"line {i}\n" for i in range(10)))
    return tmp_path


@pytest.fixture
def server(root: Path) -> Iterator[LogViewer]:
    viewer = LogViewer(root, "127.0.0.1", 0, SECRET)
    viewer.start()
    try:
        yield viewer
    finally:
        viewer.stop()


def get(server: LogViewer, target: str, headers: dict[str, str] | None = None,
        method: str = "GET", body: bytes | None = None
        ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, target, body=body,
                     headers={"X-Squall-Secret": SECRET} if headers is None else headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def log_url(name: str = public_name(TID, 6700), **query: Any) -> str:
    from urllib.parse import urlencode

    return f"/api/v1/log?{urlencode({'file': name, **query})}"


def test_reads_a_range_and_says_where_it_is(server: LogViewer, root: Path) -> None:
    status, headers, body = get(server, log_url(start=7, length=12))
    assert status == 200 and body == b"line 1\nline "
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert (headers["X-Squall-Log-Start"], headers["X-Squall-Log-Size"]) == ("7", "70")
    assert headers["X-Squall-Log-Id"]
    status, headers, body = get(server, log_url(length=14))  # no start: the last bytes
    assert body == b"line 8\nline 9\n" and headers["X-Squall-Log-Start"] == "56"
    status, headers, body = get(server, log_url(start=70))  # caught up: nothing new yet
    assert (status, body, headers["X-Squall-Log-Size"]) == (200, b"", "70")
    status, _, body = get(server, log_url())  # default length: the whole small file
    assert body.count(b"\n") == 10


def test_every_read_needs_the_secret(server: LogViewer) -> None:
    status, headers, body = get(server, log_url(), headers={})
    assert status == 401 and "cluster secret" in json.loads(body)["error"]
    assert headers["WWW-Authenticate"].startswith("Basic ")
    status, _, body = get(server, log_url(), headers={"X-Squall-Secret": "wrong"})
    assert status == 403 and b"line" not in body
    status, _, _ = get(server, "/api/v1/listLogs", headers={})
    assert status == 401
    basic = base64.b64encode(f"anyone:{SECRET}".encode()).decode()
    status, _, body = get(server, log_url(), headers={"Authorization": f"Basic {basic}"})
    assert status == 200 and b"line 9" in body  # what a browser opening the link sends
    wrong = base64.b64encode(b"anyone:nope").decode()
    assert get(server, log_url(), headers={"Authorization": f"Basic {wrong}"})[0] == 403
    assert get(server, log_url(), headers={"Authorization": "Basic !!!"})[0] == 401


def test_without_a_secret_reads_are_open(root: Path) -> None:
    viewer = LogViewer(root, "127.0.0.1", 0, None)
    viewer.start()
    try:
        assert get(viewer, log_url(), headers={})[0] == 200
    finally:
        viewer.stop()


@pytest.mark.parametrize("name", ["../../../etc/passwd", f"{TID}/6700/../../../etc/passwd",
                                  "/etc/passwd", f"{TID}/6700/worker.log/../../x",
                                  f"{TID}/6700/secrets.txt", "../../../etc/6700/worker.log",
                                  f"../{TID}/6700/worker.log"])
def test_names_that_are_not_logs_are_refused(server: LogViewer, name: str) -> None:
    status, _, body = get(server, log_url(name))
    # A malformed name is 400; a well-formed one with a strange topology id names a
    # (hashed, safe) directory of its own, which has no such log: 404.
    expected = 404 if name.endswith("/6700/worker.log") else 400
    assert status == expected, body
    assert b"root:" not in body and b"line" not in body


def test_a_symlinked_topology_directory_is_not_followed(server: LogViewer, root: Path,
                                                        tmp_path_factory: Any) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "worker-6700.log").write_text("not yours\n")
    os.symlink(outside, root / "evil-1")
    status, _, body = get(server, log_url(public_name("evil-1", 6700)))
    assert status == 400 and b"not yours" not in body


def test_bad_numbers_and_huge_ranges_are_refused(server: LogViewer) -> None:
    for query in ({"length": MAX_LENGTH + 1}, {"length": -1}, {"start": "x"},
                  {"start": "1e3"}, {"length": "9" * 30}, {"start": "-5"}):
        status, _, body = get(server, log_url(**query))
        assert status == 400, (query, body)
        message = json.loads(body)["error"]
        assert "length" in message or "start" in message
    assert get(server, log_url(length=MAX_LENGTH))[0] == 200
    assert get(server, "/api/v1/log")[0] == 400  # no file at all


def test_missing_logs_unknown_paths_and_other_methods(server: LogViewer) -> None:
    status, _, body = get(server, log_url(public_name(TID, 6799)))
    assert status == 404 and "no log" in json.loads(body)["error"]
    assert get(server, "/api/v1/nothing")[0] == 404
    assert get(server, log_url(), method="POST")[0] == 405
    status, _, _ = get(server, log_url(), method="GET", body=b"x" * 10)
    assert status == 413  # no request carries a body


def test_lists_the_logs(server: LogViewer, root: Path) -> None:
    worker_log_path(root, TID, 6701).write_text("x\n")
    status, _, body = get(server, f"/api/v1/listLogs?topoId={TID}")
    assert status == 200
    assert json.loads(body) == [public_name(TID, 6700), public_name(TID, 6701)]
    assert json.loads(get(server, "/api/v1/listLogs?port=6701")[2]) == [public_name(TID, 6701)]


def test_a_follower_reads_through_the_server_across_a_rotation(server: LogViewer,
                                                                root: Path) -> None:
    path = worker_log_path(root, TID, 6700)
    follower = Follower(HttpSource("127.0.0.1", server.port, SECRET), public_name(TID, 6700))
    assert follower.tail(2) == ["line 8", "line 9"]
    with open(path, "a") as f:
        f.write("line 10\nline 11\n")
    os.replace(path, path.with_name(path.name + ".1"))  # what a rotating handler does
    path.write_text("line 12\n")
    assert follower.poll() == ["line 10", "line 11", "line 12"]
    with pytest.raises(LogServerError, match="403"):
        HttpSource("127.0.0.1", server.port, "wrong").read(public_name(TID, 6700), None, 10)
    with pytest.raises(FileNotFoundError):
        HttpSource("127.0.0.1", server.port, SECRET).read(public_name(TID, 1), None, 10)
