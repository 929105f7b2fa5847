"""Storm UI's `/api/v1/topology/ID/logconfig` over `squall set-log-level`'s records: the
body's translation (pure) and a dashboard in front of a LocalCluster (the real nimbus and
supervisor): a POST lands in the topology's assignment, a GET shows it, mistakes are 4xx."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from typing import Any

import pytest

from nimbus.protocol import BadRequest
from topology import Bolt, Spout, TopologyBuilder
from topology.local import LocalCluster
from ui.local import serve_local
from ui.logconfig import log_config, parse_log_config

SECRET = "logconfig-secret"


def test_storm_bodies_become_nimbus_requests() -> None:
    body = {"namedLoggerLevels": {
        "ROOT": {"target_level": "debug", "timeout": 30},
        "a.b": {"target_level": "WARN", "timeout": 0},
        "c": {"target_level": "INFO", "timeout": 30},
        "gone": {"target_level": "CLEAR"}, "also-gone": {"target_level": None}}}
    assert parse_log_config(body) == [({"ROOT": "DEBUG", "c": "INFO"}, 30.0,
                                       ["gone", "also-gone"]),
                                      ({"a.b": "WARN"}, None, [])]
    assert parse_log_config({"namedLoggerLevels": {"x": {"target_level": ""}}}) == [
        ({}, None, ["x"])]
    for bad, text in [({}, "namedLoggerLevels"),
                      ({"namedLoggerLevels": {"x": "DEBUG"}}, "'x' must be an object"),
                      ({"namedLoggerLevels": {"x": {"target_level": "LOUD"}}}, "LOUD"),
                      ({"namedLoggerLevels": {"x": {"target_level": "INFO", "timeout": -1}}},
                       "timeout of 'x'"),
                      ({"namedLoggerLevels": {"a b": {"target_level": "INFO"}}},
                       "not a logger name")]:
        with pytest.raises(BadRequest, match=text):
            parse_log_config(bad)


def test_the_get_view() -> None:
    meta = {"log_levels": {"ROOT": {"level": "DEBUG", "until": 1030.5},
                           "a": {"level": "WARN", "until": None},
                           "over": {"level": "INFO", "until": 999.0}}}
    assert log_config(meta, 1000.0) == {"namedLoggerLevels": {
        "ROOT": {"target_level": "DEBUG", "reset_level": None, "timeout": 30,
                 "timeout_epoch": 1030500},
        "a": {"target_level": "WARN", "reset_level": None, "timeout": 0, "timeout_epoch": 0}}}
    assert log_config({}, 0.0) == {"namedLoggerLevels": {}}


class Quiet(Spout):
    outputs = ["n"]

    def next_tuple(self) -> None:
        pass


class Sink(Bolt):
    def process(self, tup: Any) -> None:
        pass


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[LocalCluster, str, str]]:
    b = TopologyBuilder("quiet")
    b.set_spout("quiet", Quiet())
    b.set_bolt("sink", Sink()).shuffle_grouping("quiet")
    with LocalCluster({"cluster.secret": SECRET}) as cluster:
        tid = cluster.submit(b.build(config={"topology.workers": 1}))
        server, url = serve_local(cluster)
        try:
            cluster.wait_running("quiet")
            yield cluster, tid, url
        finally:
            server.close()


def request(url: str, method: str, path: str, body: Any = None,
            secret: str | None = SECRET) -> tuple[int, Any]:
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["X-Squall-Secret"] = secret
    try:
        conn.request(method, path, json.dumps(body).encode() if body is not None else None,
                     headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.timeout(60)
def test_a_post_reaches_the_assignment_and_a_get_shows_it(
        local: tuple[LocalCluster, str, str]) -> None:
    cluster, tid, url = local
    path = f"/api/v1/topology/{tid}/logconfig"
    status, view = request(url, "GET", path)
    assert status == 200 and view == {"namedLoggerLevels": {}}
    body = {"namedLoggerLevels": {"ROOT": {"target_level": "DEBUG", "timeout": 60},
                                  "my.mod": {"target_level": "WARN", "timeout": 0}}}
    status, view = request(url, "POST", path, body)
    assert status == 200, view
    levels = view["namedLoggerLevels"]
    assert levels["ROOT"]["target_level"] == "DEBUG" and 58 <= levels["ROOT"]["timeout"] <= 60
    assert levels["my.mod"] == {"target_level": "WARN", "reset_level": None, "timeout": 0,
                                "timeout_epoch": 0}
    assignment = cluster.state.assignment(tid) or {}
    assert set(assignment["log_levels"]) == {"ROOT", "my.mod"}
    assert request(url, "GET", path)[1] == view

    status, view = request(url, "POST", path, {"namedLoggerLevels": {
        "ROOT": {"target_level": "CLEAR"}, "my.mod": {"target_level": None}}})
    assert status == 200 and view == {"namedLoggerLevels": {}}
    assert "log_levels" not in (cluster.state.assignment(tid) or {})

    status, error = request(url, "POST", path, {"namedLoggerLevels": {
        "ROOT": {"target_level": "LOUD"}}})
    assert status == 400 and "LOUD" in error["error"] and "\n" not in error["error"]
    assert request(url, "POST", path, body, secret=None)[0] == 401
    assert request(url, "POST", path, body, secret="wrong")[0] == 403
    assert request(url, "GET", "/api/v1/topology/nope-1-2/logconfig")[0] == 404
