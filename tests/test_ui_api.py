"""The dashboard's REST API and /metrics against a running word count (local mode)."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cli.loader import load_topology_file
from topology.local import LocalCluster
from ui.local import serve_local
from ui.server import UiServer

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-ui-secret"
T = TypeVar("T")


class Ui:
    def __init__(self, cluster: LocalCluster, server: UiServer, url: str, tid: str) -> None:
        self.cluster, self.server, self.url, self.tid = cluster, server, url, tid
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "", parts.port or 80
        self.origin = f"http://{parts.netloc}"

    def request(self, method: str, path: str, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        kind = response.getheader("Content-Type", "")
        payload = json.loads(data) if kind.startswith("application/json") else data.decode()
        return response.status, payload, dict(response.getheaders())

    def get(self, path: str) -> Any:
        status, data, _ = self.request("GET", path)
        assert status == 200, (path, status, data)
        return data

    def post(self, path: str, secret: str | None = SECRET, origin: str | None = "own",
             body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        h = {"Content-Type": "application/json", **(headers or {})}
        if secret is not None:
            h["X-Squall-Secret"] = secret
        if origin is not None:
            h["Origin"] = self.origin if origin == "own" else origin
        raw = json.dumps(body).encode() if body is not None else b""
        status, data, _ = self.request("POST", path, raw, h)
        return status, data


def poll(fn: Callable[[], T], timeout: float = 20.0, what: str = "condition") -> T:
    """fn()'s first truthy result; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def ui() -> Iterator[Ui]:
    topology = load_topology_file(str(ROOT / "examples" / "word_count.py"))
    with LocalCluster({"cluster.secret": SECRET}) as cluster:
        tid = cluster.submit(topology)
        server, url = serve_local(cluster, sample_secs=0.5)
        try:
            cluster.wait_running("word-count")
            yield Ui(cluster, server, url, tid)
        finally:
            server.close()


def topology(ui: Ui, window: str = ":all-time", sys: str = "false") -> dict[str, Any]:
    return ui.get(f"/api/v1/topology/{ui.tid}?window={window}&sys={sys}")


def running_counts(ui: Ui) -> dict[str, int] | None:
    t = topology(ui)
    spout = t["spouts"][0]
    bolts = {b["boltId"]: b for b in t["bolts"]}
    counts = {"emitted": spout["emitted"], "acked": spout["acked"],
              "executed": bolts["count"]["executed"]}
    return counts if all(counts.values()) else None


# --- read-only API --------------------------------------------------------------------------------


def test_cluster_summary(ui: Ui) -> None:
    c = ui.get("/api/v1/cluster/summary")
    assert c["supervisors"] == 1
    assert c["topologies"] == 1
    assert c["slotsTotal"] == 2 and c["slotsUsed"] == 2 and c["slotsFree"] == 0
    assert c["executorsTotal"] == c["tasksTotal"] == 12  # 2 + 4 + 4 + 2 ackers
    assert c["mode"] == "local"
    assert isinstance(c["stormVersion"], str) and "nimbusUptime" in c


def test_nimbus_and_supervisor_summary(ui: Ui) -> None:
    assert ui.get("/api/v1/nimbus/summary") == {"nimbuses": []}  # local mode has none
    sups = ui.get("/api/v1/supervisor/summary")["supervisors"]
    assert len(sups) == 1
    s = sups[0]
    assert s["id"].startswith("local-") and s["host"] == "127.0.0.1"
    assert (s["slotsTotal"], s["slotsUsed"]) == (2, 2)
    assert {slot["topologyName"] for slot in s["slots"]} == {"word-count"}


def test_topology_summary(ui: Ui) -> None:
    (t,) = ui.get("/api/v1/topology/summary")["topologies"]
    assert t["id"] == ui.tid and t["name"] == "word-count" and t["status"] == "ACTIVE"
    assert (t["workersTotal"], t["tasksTotal"], t["executorsTotal"]) == (2, 12, 12)
    assert isinstance(t["uptimeSeconds"], int) and t["uptime"].endswith("s")


def test_topology_page_components_and_growing_counts(ui: Ui) -> None:
    first = poll(lambda: running_counts(ui), what="non-zero emitted/acked/executed")
    second = poll(lambda: (c := running_counts(ui)) and all(c[k] > first[k] for k in c) and c,
                  what="counts to grow")
    assert second["acked"] > first["acked"]
    t = topology(ui)
    assert t["id"] == ui.tid and t["name"] == "word-count" and t["status"] == "ACTIVE"
    assert t["window"] == ":all-time" and t["msgTimeout"] == 30
    (spout,) = t["spouts"]
    assert (spout["spoutId"], spout["executors"], spout["tasks"]) == ("sentences", 2, 2)
    assert spout["emitted"] > 0 and spout["transferred"] > 0 and spout["failed"] >= 0
    assert spout["completeLatency"] > 0 and spout["lastError"] == ""
    bolts = {b["boltId"]: b for b in t["bolts"]}
    assert sorted(bolts) == ["count", "split"]  # no __acker unless sys=true
    for bolt in bolts.values():
        assert (bolt["executors"], bolt["tasks"]) == (4, 4)
        assert bolt["executed"] > 0 and bolt["acked"] > 0
        assert bolt["executeLatency"] > 0 and bolt["processLatency"] > 0
        assert 0 < bolt["capacity"] < 1.5
    assert bolts["split"]["emitted"] > bolts["split"]["executed"]  # sentences -> words
    windows = {s["window"]: s for s in t["topologyStats"]}
    assert list(windows) == ["600", "10800", "86400", ":all-time"]
    assert [w["windowPretty"] for w in windows.values()] == \
        ["10m 0s", "3h 0m 0s", "1d 0h 0m 0s", "All time"]
    assert windows[":all-time"]["acked"] > 0 and windows[":all-time"]["completeLatency"] > 0
    assert len(t["workers"]) == 2
    assert sum(w["executorsTotal"] for w in t["workers"]) == 12
    assert all(w["rssBytes"] > 0 for w in t["workers"])
    ten = topology(ui, window="600")
    assert ten["window"] == "600" and ten["spouts"][0]["emitted"] > 0
    with_sys = topology(ui, sys="true")
    assert "__acker" in {b["boltId"] for b in with_sys["bolts"]}


def test_component_pages(ui: Ui) -> None:
    poll(lambda: running_counts(ui), what="traffic")
    split = ui.get(f"/api/v1/topology/{ui.tid}/component/split")
    assert split["componentType"] == "bolt" and split["topologyId"] == ui.tid
    assert (split["executors"], split["tasks"]) == (4, 4)
    assert [w["window"] for w in split["boltStats"]] == ["600", "10800", "86400", ":all-time"]
    assert len(split["executorStats"]) == 4
    assert all(e["executed"] > 0 and e["port"] for e in split["executorStats"])
    assert all(e["workerLogLink"] is None for e in split["executorStats"])  # no log server
    (inputs,) = split["inputStats"]
    assert {k: inputs[k] for k in ("component", "stream", "grouping", "fields")} == \
        {"component": "sentences", "stream": "default", "grouping": "shuffle", "fields": []}
    assert inputs["executed"] > 0  # per input stream
    assert {"acked", "failed", "executeLatency", "processLatency"} <= set(inputs)
    (output,) = split["outputStats"]
    assert output["stream"] == "default" and output["transferred"] == output["emitted"] > 0
    spout = ui.get(f"/api/v1/topology/{ui.tid}/component/sentences?window=600")
    assert spout["componentType"] == "spout" and spout["window"] == "600"
    assert spout["spoutSummary"][0]["completeLatency"] > 0
    assert all("completeLatency" in e for e in spout["executorStats"])
    (out,) = spout["outputStats"]
    assert {"stream", "emitted", "transferred", "completeLatency", "acked", "failed"} <= set(out)
    for window in ("10800", "86400"):
        long = ui.get(f"/api/v1/topology/{ui.tid}/component/split?window={window}")
        assert long["window"] == window and long["executorStats"]
        stats = {w["window"]: w for w in long["boltStats"]}
        assert 0 < stats[window]["executed"] <= stats[":all-time"]["executed"]


def test_component_errors(ui: Ui) -> None:
    when = time.time()
    ui.cluster.state.report_error(ui.tid, "count", {
        "component": "count", "task": 3, "time": when, "host": "127.0.0.1", "port": 6700,
        "error": "ValueError: bad word", "traceback": "Traceback ..."})
    c = ui.get(f"/api/v1/topology/{ui.tid}/component/count")
    (e,) = c["componentErrors"]
    assert e["error"] == "ValueError: bad word" and e["errorHost"] == "127.0.0.1"
    assert e["errorPort"] == 6700 and e["errorTime"] == e["time"] == when
    assert 0 <= e["errorLapsedSecs"] < 60 and e["errorTraceback"] == "Traceback ..."
    bolt = next(b for b in topology(ui)["bolts"] if b["boltId"] == "count")
    assert bolt["lastError"] == "ValueError: bad word" and bolt["errorPort"] == 6700
    assert bolt["errorTime"] == when and 0 <= bolt["errorLapsedSecs"] < 60
    assert bolt["lastErrorTraceback"] == "Traceback ..."
    assert topology(ui)["recentErrors"][0]["component"] == "count"


def test_live_graph_and_throughput(ui: Ui) -> None:
    live = poll(lambda: (d := ui.get(f"/api/v1/topology/{ui.tid}/live"))
                and len(d["samples"]) >= 2 and all(e["rate"] > 0 for e in d["edges"]) and d,
                what="two samples and flowing edges")
    assert {n["id"] for n in live["nodes"]} == {"sentences", "split", "count"}
    assert {(e["source"], e["target"]) for e in live["edges"]} == {
        ("sentences", "split"), ("split", "count")}
    assert live["samples"][-1]["executed"] > 0


def test_metrics_parse(ui: Ui) -> None:
    poll(lambda: running_counts(ui), what="traffic")
    status, text, headers = ui.request("GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    emitted = families["squall_emitted"]
    assert emitted.type == "counter"
    spout = [s for s in emitted.samples if s.labels["component"] == "sentences"]
    assert {s.labels["task"] for s in spout} and all(s.labels["topology"] == "word-count"
                                                      and s.labels["stream"] == "default"
                                                      for s in spout)
    assert sum(s.value for s in spout) > 0
    assert sum(s.value for s in families["squall_acked"].samples) > 0
    assert families["squall_capacity"].type == "gauge"
    for name in ("squall_complete_latency_seconds", "squall_execute_latency_seconds"):
        latency = families[name]
        assert latency.type == "histogram"
        by_task: dict[str, dict[str, float]] = {}
        for sample in latency.samples:
            labels = sample.labels
            key = sample.name.rsplit("_", 1)[-1] + labels.get("le", "")
            by_task.setdefault(labels["task"], {})[key] = sample.value
        assert by_task and any(t["count"] > 0 for t in by_task.values())
        for t in by_task.values():  # a complete histogram per task: +Inf is the count
            assert t["bucket+Inf"] == t["count"]
    complete = families["squall_complete_latency_seconds"].samples
    edges = sorted({s.labels["le"] for s in complete if "le" in s.labels}, key=float)
    assert len(edges) == 19  # the same buckets for every task: they add up across tasks
    summed = [sum(s.value for s in complete if s.labels.get("le") == le) for le in edges]
    assert summed == sorted(summed) and 0 < summed[-1]
    assert len(families["squall_worker_rss_bytes"].samples) == 2
    assert families["squall_topology_info"].samples[0].labels["status"] == "ACTIVE"


# --- actions --------------------------------------------------------------------------------


def test_actions_need_the_secret_and_same_origin(ui: Ui) -> None:
    path = f"/api/v1/topology/{ui.tid}/deactivate"
    assert ui.post(path, secret=None)[0] == 401
    assert ui.post(path, secret="wrong")[0] == 403
    assert ui.post(path, origin="http://evil.example")[0] == 403
    assert ui.post(path, origin=None, headers={"Referer": "http://evil.example/x"})[0] == 403
    assert ui.post(path, headers={"Sec-Fetch-Site": "cross-site"})[0] == 403
    assert topology(ui)["status"] == "ACTIVE"  # none of those did anything

    status, data = ui.post(path)
    assert status == 200
    assert data == {"topologyOperation": "deactivate", "topologyId": ui.tid, "status": "success"}
    assert topology(ui)["status"] == "INACTIVE"
    # the form-field spelling, from a script without an Origin
    status, data, _ = ui.request("POST", f"/api/v1/topology/{ui.tid}/activate",
                                 f"secret={SECRET}",
                                 {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and data["topologyOperation"] == "activate"
    assert topology(ui)["status"] == "ACTIVE"


def test_rebalance_is_refused_in_local_mode(ui: Ui) -> None:
    status, data = ui.post(f"/api/v1/topology/{ui.tid}/rebalance/0",
                           body={"rebalanceOptions": {"numWorkers": 1}})
    assert status == 400 and "local mode" in data["errorMessage"]


def test_kill_removes_the_topology(ui: Ui) -> None:
    topo = load_topology_file(str(ROOT / "examples" / "word_count.py"))
    tid = ui.cluster.submit(topo, name="doomed", config={"topology.workers": 1})
    status, data = ui.post(f"/api/v1/topology/{tid}/kill/0")
    assert status == 200 and data["topologyOperation"] == "kill"
    poll(lambda: all(t["id"] != tid for t in ui.get("/api/v1/topology/summary")["topologies"]),
         what="the killed topology to go")
    assert ui.request("GET", f"/api/v1/topology/{tid}")[0] == 404
    assert ui.post(f"/api/v1/topology/{tid}/kill/0")[0] == 404


# --- malformed requests ---------------------------------------------------------------------------

MALFORMED = [
    ("GET", "/nope", None, {}, 404),
    ("GET", "/api/v1/nope/summary", None, {}, 404),
    ("GET", "/api/v1/topology/no-such-id", None, {}, 404),
    ("GET", "/api/v1/topology/{tid}/component/nope", None, {}, 404),
    ("GET", "/api/v1/topology/{tid}/whatever/else/here", None, {}, 404),
    ("GET", "/api/v1/topology/{tid}?window=86401", None, {}, 400),
    ("GET", "/api/v1/topology/{tid}/metrics?window=1", None, {}, 400),
    ("GET", "/api/v1/topology/{tid}/visualization?sys=2", None, {}, 400),
    ("GET", "/api/v1/topology-workers/no-such-id", None, {}, 404),
    ("GET", "/api/v1/topology/no-such-id/metrics", None, {}, 404),
    ("GET", "/api/v1/topology/no-such-id/visualization", None, {}, 404),
    ("GET", "/api/v1/topology/{tid}?sys=maybe", None, {}, 400),
    ("GET", "/api/v1/topology/{tid}/component/split?window=x", None, {}, 400),
    ("GET", "/api/v1/topology/%ff%fe", None, {}, 400),
    ("GET", "/api/v1/topology/{tid}?window=%ff", None, {}, 400),
    ("GET", "/api/v1/topology/{tid}/kill/0", None, {}, 405),
    ("POST", "/api/v1/cluster/summary", b"", {}, 405),
    ("DELETE", "/api/v1/topology/{tid}", None, {}, 405),
    ("PUT", "/api/v1/topology/{tid}/kill/0", b"", {}, 405),
    ("BREW", "/", None, {}, 405),
    ("POST", "/api/v1/topology/{tid}/kill/soon", b"", {"X-Squall-Secret": SECRET}, 400),
    ("POST", "/api/v1/topology/{tid}/kill/-1", b"", {"X-Squall-Secret": SECRET}, 400),
    ("POST", "/api/v1/topology/{tid}/kill/nan", b"", {"X-Squall-Secret": SECRET}, 400),
    ("POST", "/api/v1/topology/{tid}/kill/1e9", b"", {"X-Squall-Secret": SECRET}, 400),
    ("POST", "/api/v1/topology/{tid}/kill/0/extra", b"", {"X-Squall-Secret": SECRET}, 404),
    ("POST", "/api/v1/topology/{tid}/activate", b"{not json",
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/{tid}/activate", b"[1, 2]",
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/{tid}/activate", b"\xff\xfe",
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/{tid}/activate", b"<x/>",
     {"X-Squall-Secret": SECRET, "Content-Type": "application/xml"}, 415),
    ("POST", "/api/v1/topology/{tid}/activate", b"x" * 70000, {"X-Squall-Secret": SECRET}, 413),
    ("POST", "/api/v1/topology/{tid}/activate", b"", {"Content-Length": "abc"}, 400),
    ("POST", "/api/v1/topology/{tid}/rebalance/0", b'{"rebalanceOptions": {"numWorkers": 0}}',
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/{tid}/rebalance/0",
     b'{"rebalanceOptions": {"executors": {"nope": 2}}}',
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/{tid}/rebalance/0", b'{"rebalanceOptions": "{"}',
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/no-such-id/activate", b"", {"X-Squall-Secret": SECRET}, 404),
    ("POST", "/api/v1/topology/{tid}/rebalance/0", b'{"rebalanceOptions": {"numWorkers": NaN}}',
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/{tid}/rebalance/0", b'{"rebalanceOptions": {"numWorkers": 257}}',
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/{tid}/rebalance/0",
     b'{"rebalanceOptions": {"executors": {"split": 4097}}}',
     {"X-Squall-Secret": SECRET, "Content-Type": "application/json"}, 400),
    ("POST", "/api/v1/topology/{tid}/kill/inf", b"", {"X-Squall-Secret": SECRET}, 400),
    ("POST", "/api/v1/topology/{tid}/activate", b"0\r\n\r\n",
     {"X-Squall-Secret": SECRET, "Transfer-Encoding": "chunked"}, 411),
    ("GET", "/api/v1/topology/summary", b"0\r\n\r\n", {"Transfer-Encoding": "chunked"}, 411),
]


@pytest.mark.parametrize("method, path, body, headers, expected", MALFORMED)
def test_malformed_requests_get_4xx(ui: Ui, method: str, path: str, body: bytes | None,
                                    headers: dict[str, str], expected: int) -> None:
    conn = http.client.HTTPConnection(ui.host, ui.port, timeout=10)
    try:
        conn.putrequest(method, path.replace("{tid}", ui.tid), skip_accept_encoding=True)
        sent = dict(headers)
        if body is not None and "Content-Length" not in sent:
            sent["Content-Length"] = str(len(body))
        for k, v in sent.items():
            conn.putheader(k, v)
        conn.endheaders(body or None)
        response = conn.getresponse()
        data = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == expected, data
    assert data["error"] and data["error"] == data["errorMessage"]  # cluster.http's one shape
    assert ui.get("/api/v1/cluster/summary")["topologies"] >= 1  # still serving
    assert topology(ui)["status"] == "ACTIVE"  # and nothing happened


def test_non_finite_numbers_are_refused_naming_the_field(ui: Ui) -> None:
    for body, field in [(b'{"rebalanceOptions": {"numWorkers": NaN}}',
                         "rebalanceOptions.numWorkers"),
                        (b'{"rebalanceOptions": {"executors": {"split": Infinity}}}',
                         "rebalanceOptions.executors.split"),
                        (b'{"rebalanceOptions": "{\\"numWorkers\\": -Infinity}"}',
                         "rebalanceOptions: numWorkers")]:
        status, data, _ = ui.request("POST", f"/api/v1/topology/{ui.tid}/rebalance/0", body, {
            "X-Squall-Secret": SECRET, "Content-Type": "application/json"})
        assert status == 400 and f"{field} must be a finite number" in data["errorMessage"], data


def test_the_secret_header_is_checked_before_the_body(ui: Ui) -> None:
    """A client that waits for `100 Continue` is refused without being asked for its body."""
    head = (f"POST /api/v1/topology/{ui.tid}/deactivate HTTP/1.1\r\nHost: {ui.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 60000\r\n"
            "Expect: 100-continue\r\nX-Squall-Secret: wrong\r\n\r\n")
    with socket.create_connection((ui.host, ui.port), timeout=10) as sock:
        sock.sendall(head.encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 403 ") and b"100 Continue" not in raw
    assert b"wrong cluster secret" in raw and topology(ui)["status"] == "ACTIVE"


@pytest.fixture
def strict_ui(ui: Ui) -> Iterator[Ui]:
    """A second dashboard on the same cluster with short timeouts and few connections."""
    from ui.actions import LocalActions

    server = UiServer(ui.cluster.state, LocalActions(ui.cluster), "127.0.0.1", 0, SECRET,
                      mode="local", config={"ui.idle.timeout.secs": 0.5,
                                            "ui.request.timeout.secs": 1.0,
                                            "ui.max.connections": 3}).start()
    try:
        yield Ui(ui.cluster, server, server.url, ui.tid)
    finally:
        server.close()


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_and_trickling_connections_are_dropped(strict_ui: Ui) -> None:
    with socket.create_connection((strict_ui.host, strict_ui.port), timeout=10) as sock:
        poll(lambda: _closed_by_server(sock), what="a silent connection dropped")
    head = b"GET /api/v1/topology/summary HTTP/1.1\r\nX-Filler: " + b"z" * 10_000
    sent = 0
    with socket.create_connection((strict_ui.host, strict_ui.port), timeout=10) as sock:
        def trickle() -> bool:  # a byte every 0.1 s: never idle, never done
            nonlocal sent
            try:
                sock.sendall(head[sent:sent + 1])
            except OSError:
                return True
            sent += 1
            return _closed_by_server(sock)

        poll(trickle, timeout=30, what="a trickling client dropped")
    assert sent < len(head)
    assert strict_ui.get("/api/v1/topology/summary")["topologies"]  # still serving


def test_connections_beyond_the_bound_are_refused(strict_ui: Ui) -> None:
    held = [socket.create_connection((strict_ui.host, strict_ui.port), timeout=10)
            for _ in range(3)]
    try:
        with socket.create_connection((strict_ui.host, strict_ui.port), timeout=10) as extra:
            raw = b""
            while chunk := extra.recv(65536):
                raw += chunk
        assert raw.startswith(b"HTTP/1.1 503 ") and b"too many connections" in raw
    finally:
        for sock in held:
            sock.close()
    poll(lambda: strict_ui.request("GET", "/api/v1/topology/summary")[0] == 200,
         what="served again once the connections closed")


def test_garbage_on_the_socket_gets_400(ui: Ui) -> None:
    with socket.create_connection((ui.host, ui.port), timeout=5) as sock:
        sock.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.") and b" 400 " in reply.split(b"\r\n")[0]
    assert ui.get("/api/v1/topology/summary")["topologies"]


def test_page_and_static_files_are_served_with_a_strict_policy(ui: Ui) -> None:
    status, html, headers = ui.request("GET", "/")
    assert status == 200 and "<script src=\"/app.js\"" in html
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    for path in ("/app.js", "/style.css", "/favicon.svg"):
        assert ui.request("GET", path)[0] == 200


# --- cluster mode: ZooKeeper state, actions through the leader nimbus -----------------------------


def test_cluster_mode_reads_zookeeper_and_acts_through_nimbus(start_nimbus: Any,
                                                              topology_file: str) -> None:
    import cloudpickle

    from cluster.state import open_state
    from ui.actions import NimbusActions

    nimbus = start_nimbus(**{"cluster.secret": SECRET})
    nimbus.wait_leading()
    client = nimbus.client()
    package = cloudpickle.dumps({"topology": load_topology_file(topology_file), "overrides": {}})
    tid = client.submit(package)["id"]
    with open_state(nimbus.config) as state:
        server = UiServer(state, NimbusActions(client), "127.0.0.1", 0, SECRET).start()
        try:
            ui = Ui(None, server, server.url, tid)  # type: ignore[arg-type]
            (n,) = ui.get("/api/v1/nimbus/summary")["nimbuses"]
            assert n["status"] == "Leader" and n["port"] == nimbus.nimbus.server.port
            assert isinstance(n["nimbusUpTimeSeconds"], int)
            assert ui.get("/api/v1/cluster/summary")["mode"] == "cluster"
            (t,) = ui.get("/api/v1/topology/summary")["topologies"]
            assert (t["id"], t["name"], t["tasksTotal"]) == (tid, "numbers", 7)
            page = ui.get(f"/api/v1/topology/{tid}")
            assert [s["spoutId"] for s in page["spouts"]] == ["numbers"]
            assert [(b["boltId"], b["executors"]) for b in page["bolts"]] == [("double", 3)]

            assert ui.post(f"/api/v1/topology/{tid}/deactivate", secret=None)[0] == 401
            assert ui.post(f"/api/v1/topology/{tid}/deactivate")[0] == 200
            assert ui.get(f"/api/v1/topology/{tid}")["status"] == "INACTIVE"
            status, data = ui.post(f"/api/v1/topology/{tid}/rebalance/0",
                                   body={"rebalanceOptions": {"numWorkers": 1000}})
            assert status == 400 and "numWorkers must be an integer from 1 to 256, got 1000" in \
                data["errorMessage"]
            status, data = ui.post(f"/api/v1/topology/{tid}/rebalance/0",
                                   body={"rebalanceOptions": {"executors": {"double": 2}}})
            assert status == 200, data
            assert ui.post(f"/api/v1/topology/{tid}/kill/0")[0] == 200
            poll(lambda: not ui.get("/api/v1/topology/summary")["topologies"],
                 what="nimbus to remove the killed topology")
        finally:
            server.close()
