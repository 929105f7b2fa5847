"""Tools written for Storm's UI against Squall's dashboard: a client doing exactly what
streamparse's `sparse stats` (every table: cluster, topology, each component) and `sparse
worker_uptime` request and read, against a real dashboard over a running word count.

streamparse prints every table cell as `row.get(column, "MISSING")`, takes any response with
an "error" key for a failure, and reads `workerLogLink` with `[]` (a missing one crashed it).
The columns below are the ones its cli/stats.py and cli/worker_uptime.py ask for.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

from cli.loader import load_topology_file
from topology.local import LocalCluster
from ui.local import serve_local

ROOT = Path(__file__).resolve().parent.parent

CLUSTER = ["stormVersion", "nimbusUptime", "supervisors", "slotsTotal", "slotsUsed",
           "slotsFree", "executorsTotal", "tasksTotal"]
TOPOLOGIES = ["name", "id", "status", "uptime", "workersTotal", "executorsTotal", "tasksTotal"]
SUPERVISORS = ["id", "host", "uptime", "slotsTotal", "slotsUsed"]
TOPOLOGY_STATS = ["windowPretty", "emitted", "transferred", "completeLatency", "acked",
                  "failed"]
SPOUTS = ["spoutId", "emitted", "transferred", "completeLatency", "acked", "failed"]
BOLTS = ["boltId", "executors", "tasks", "emitted", "transferred", "capacity",
         "executeLatency", "executed", "processLatency", "acked", "failed", "lastError"]
COMPONENT = ["id", "name", "executors", "tasks"]
BOLT_STATS = ["windowPretty", "emitted", "transferred", "executeLatency", "executed",
              "processLatency", "acked", "failed"]
INPUT_STATS = ["component", "stream", "executeLatency", "processLatency", "executed", "acked",
               "failed"]
BOLT_OUTPUTS = ["stream", "emitted", "transferred"]
SPOUT_STATS = ["windowPretty", "emitted", "transferred", "completeLatency", "acked", "failed"]
SPOUT_OUTPUTS = ["stream", "emitted", "transferred", "completeLatency", "acked", "failed"]
SPOUT_EXECUTORS = ["id", "uptime", "host", "port", "emitted", "transferred",
                   "completeLatency", "acked", "failed"]


class StormUiClient:
    """streamparse's way of reading Storm's UI: GET, JSON, a response with "error" fails,
    and every table cell is `row.get(column, "MISSING")`."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")
        self.tables: list[tuple[str, list[list[Any]]]] = []

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            data = json.load(r)
        if isinstance(data, dict) and data.get("error"):
            raise RuntimeError(f"Received bad response from {path}: {data['error']}\n"
                               f"{data.get('errorMessage')}")
        return data

    def table(self, header: str, data: Any, columns: list[str]) -> None:
        rows = data if isinstance(data, list) else [data]
        self.tables.append((header, [[row.get(c, "MISSING") for c in columns]
                                     for row in rows]))

    def missing(self) -> list[str]:
        return [f"{header}: row {i}: {row}" for header, rows in self.tables
                for i, row in enumerate(rows) if "MISSING" in row]

    # --- sparse stats -------------------------------------------------------------------------

    def cluster_status(self) -> None:
        self.table("Cluster summary", self.get("/api/v1/cluster/summary"), CLUSTER)
        self.table("Topology summary", self.get("/api/v1/topology/summary")["topologies"],
                   TOPOLOGIES)
        self.table("Supervisor summary",
                   self.get("/api/v1/supervisor/summary")["supervisors"], SUPERVISORS)

    def topology_id(self, name: str) -> str | None:
        for topology in self.get("/api/v1/topology/summary")["topologies"]:
            if topology["name"] == name:
                return str(topology["id"])
        return None

    def topology_status(self, name: str) -> dict[str, Any]:
        detail = self.get(f"/api/v1/topology/{self.topology_id(name)}")
        self.table("Topology summary", detail, TOPOLOGIES)
        self.table("Topology stats", detail["topologyStats"], TOPOLOGY_STATS)
        if detail.get("spouts"):
            self.table("Spouts (All time)", detail["spouts"], SPOUTS)
        self.table("Bolt (All time)", detail["bolts"], BOLTS)
        return dict(detail)

    def component_status(self, name: str, component: str) -> None:
        detail = self.get(f"/api/v1/topology/{self.topology_id(name)}/component/{component}")
        self.table("Component summary", detail, COMPONENT)
        if detail.get("componentType") == "spout":
            self.table("Spout stats", detail["spoutSummary"][-1].copy(), SPOUT_STATS)
            self.table("Output stats (All time)", detail["outputStats"], SPOUT_OUTPUTS)
            self.table("Executors (All time)", detail["executorStats"], SPOUT_EXECUTORS)
        elif detail.get("componentType") == "bolt":
            self.table("Bolt stats", detail["boltStats"], BOLT_STATS)
            if detail["inputStats"]:
                self.table("Input stats (All time)", detail["inputStats"], INPUT_STATS)
            if detail["outputStats"]:
                self.table("Output stats (All time)", detail["outputStats"], BOLT_OUTPUTS)
        else:
            raise AssertionError(f"unknown componentType {detail.get('componentType')!r}")

    # --- sparse worker_uptime -----------------------------------------------------------------

    def worker_uptime(self) -> list[tuple[Any, ...]]:
        ids = [t["id"] for t in self.get("/api/v1/topology/summary")["topologies"]]
        components = {}
        for tid in ids:
            detail = self.get(f"/api/v1/topology/{tid}")
            components[tid] = ([x["spoutId"] for x in detail["spouts"]]
                               + [x["boltId"] for x in detail["bolts"]])
        stats = []
        for tid, names in components.items():
            for c in names:
                detail = self.get(f"/api/v1/topology/{tid}/component/{c}")
                stats += [(w["host"], w["id"], w["uptime"], w["workerLogLink"])
                          for w in detail["executorStats"]]
        return sorted(set(stats), key=str)


@pytest.fixture(scope="module")
def dashboard() -> Iterator[str]:
    topology = load_topology_file(str(ROOT / "examples" / "word_count.py"))
    with LocalCluster({"cluster.secret": "storm-clients"}) as cluster:
        cluster.submit(topology)
        server, url = serve_local(cluster, sample_secs=0.5)
        try:
            cluster.wait_running("word-count")
            yield url
        finally:
            server.close()


def test_sparse_stats_reads_every_table_with_no_missing_field(dashboard: str) -> None:
    client = StormUiClient(dashboard)

    def acked() -> bool:
        detail = client.get(f"/api/v1/topology/{client.topology_id('word-count')}")
        return all(b["acked"] > 0 for b in detail["bolts"]) and detail["spouts"][0]["acked"] > 0

    wait_for(acked, 30, "the word count to ack")
    client.cluster_status()
    detail = client.topology_status("word-count")
    for spout in detail["spouts"]:
        client.component_status("word-count", spout["spoutId"])
    for bolt in detail["bolts"]:
        client.component_status("word-count", bolt["boltId"])
    headers = [h for h, _ in client.tables]
    assert headers.count("Input stats (All time)") == 2 and "Executors (All time)" in headers
    assert client.missing() == []


def test_sparse_worker_uptime_reads_every_worker(dashboard: str) -> None:
    stats = StormUiClient(dashboard).worker_uptime()
    assert len(stats) == 10  # 2 spout, 4 split and 4 count executors
    for host, executor_id, uptime, log_link in stats:
        assert host == "127.0.0.1" and executor_id.startswith("[") and uptime.endswith("s")
        assert log_link is None or log_link.startswith("http://")
