"""`squall monitor`: Storm's columns, tuples counted between lines, a restart counting as
nothing new, and its errors in one line; run as a subprocess against a real nimbus whose
workers' heartbeats the test writes (counts growing as the test says)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.monitor_cmd import HEADER, counts, lines, watched
from cluster.config import Config
from cluster.zkstore import ZkClusterState
from topology.errors import SquallError
from worker import stats as worker_stats

ROOT = str(Path(__file__).resolve().parent.parent)

STATUS = {"name": "numbers", "status": "ACTIVE",
          "components": {"numbers": {"type": "spout", "parallelism": 2,
                                     "outputs": {"default": ["n"]}},
                         "double": {"type": "bolt", "parallelism": 3,
                                    "outputs": {"default": ["n"], "odd": ["n"]}},
                         "__acker": {"type": "bolt", "parallelism": 2, "outputs": {}}},
          "stats": {"numbers": {"emitted_streams": {"default": 100}},
                    "double": {"emitted_streams": {"default": 40, "odd": 7},
                               "transferred_streams": {"default": 30}}}}


def test_every_component_but_the_ackers_by_default() -> None:
    assert watched(STATUS, None, "default") == ["double", "numbers"]
    assert watched(STATUS, "double", "odd") == ["double"]


@pytest.mark.parametrize("component, stream, message", [
    ("nope", "default", "topology 'numbers' has no component 'nope' (components: double, "
                        "numbers)"),
    ("numbers", "odd", "component 'numbers' has no output stream 'odd' (streams: default)"),
    (None, "x", "topology 'numbers' has no output stream 'x' (streams: default, odd)"),
])
def test_unknown_components_and_streams_are_named(component: str | None, stream: str,
                                                  message: str) -> None:
    with pytest.raises(SquallError, match=message.replace("(", r"\(").replace(")", r"\)")):
        watched(STATUS, component, stream)


def test_lines_count_what_is_new_and_a_restart_as_nothing() -> None:
    before = counts(STATUS, ["numbers", "double"], "default", "emitted")
    assert before == {"numbers": 100, "double": 40}
    assert counts(STATUS, ["double"], "default", "transferred") == {"double": 30}
    after = {"numbers": 2100, "double": 10}  # double's worker restarted: its count went down
    assert lines(STATUS, before, after, 4000, "default") == [
        ("numbers", "numbers", 2, "default", 4000, 2000, 0.5),
        ("numbers", "double", 3, "default", 4000, 0, 0.0)]


# --- against nimbus ------------------------------------------------------------------------


def squall(*args: str, endpoint: str) -> subprocess.CompletedProcess:
    host, _, port = endpoint.rpartition(":")
    return subprocess.run([sys.executable, "-m", "cli.main", *args, "-c", f"nimbus.host={host}",
                           "-c", f"nimbus.port={port}", "-c", "cluster.secret=pw"],
                          check=False, cwd=ROOT, env={**os.environ, "SQUALL_CONF": ""},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def nimbus(start_nimbus: Any, zk_config: Config, topology_file: str) -> Iterator[Any]:
    """A nimbus running `numbers`, its workers' heartbeats written by a thread: the spout's
    tasks emit 50 tuples each per 0.1 s."""
    view = ZkClusterState(zk_config.with_overrides({"cluster.secret": "pw"}))
    view.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    running = start_nimbus(**{"cluster.secret": "pw"})
    running.wait_leading()
    assert squall("submit", topology_file, endpoint=running.endpoint).returncode == 0
    stop = threading.Event()

    def workers() -> None:
        n = 0
        while not stop.wait(0.1):
            n += 50
            for tid, a in view.assignments().items():
                meta = view.topology(tid) or {}
                for w in a["workers"]:
                    executors = []
                    for cid, spec in meta.get("components", {}).items():
                        for task in set(spec["tasks"]) & set(w["tasks"]):
                            s = worker_stats.ExecutorStats(cid, task, spec["type"])
                            executors.append(s.snapshot({"default": n}, {"default": n}, {}))
                    view.worker_heartbeat(tid, f"{w['host']}:{w['port']}",
                                          {"time": n, "executors": executors})

    thread = threading.Thread(target=workers, daemon=True)
    thread.start()
    yield running
    stop.set()
    thread.join(timeout=5)
    view.close()


def test_monitor_prints_storms_columns_with_growing_counts(nimbus: Any) -> None:
    done = squall("monitor", "numbers", "-m", "numbers", "-i", "0.5", "--count", "2",
                  endpoint=nimbus.endpoint)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split("\t") == [h.format(watch="emitted") for h in HEADER]
    assert len(rows) == 2
    for row in rows:
        topology, component, parallelism, stream, millis, emitted, rate = row.split("\t")
        assert (topology, component, parallelism, stream) == ("numbers", "numbers", "2",
                                                              "default")
        assert int(millis) >= 500 and int(emitted) > 0  # two tasks, 500 tuples a second each
        assert float(rate) == pytest.approx(int(emitted) / int(millis), abs=1e-3)
    as_json = squall("monitor", "numbers", "-i", "0.2", "--count", "1", "--json",
                     endpoint=nimbus.endpoint)
    assert as_json.returncode == 0, as_json.stderr
    assert [json.loads(line)["component"] for line in as_json.stdout.splitlines()] == \
        ["double", "numbers"]


def test_monitor_errors_are_one_line(nimbus: Any) -> None:
    for args, message in [
        (["nope"], "squall monitor: error: no topology named 'nope'"),
        (["numbers", "-m", "nope"], "squall monitor: error: topology 'numbers' has no "
                                    "component 'nope' (components: double, numbers)"),
        (["numbers", "-s", "odd"], "squall monitor: error: topology 'numbers' has no output "
                                   "stream 'odd' (streams: default)"),
    ]:
        done = squall("monitor", *args, "-i", "0.2", "--count", "1", endpoint=nimbus.endpoint)
        assert done.returncode == 1 and done.stderr.strip() == message, done.stderr
    for args, usage in [(["numbers", "-i", "0"], "expected a number of seconds > 0"),
                        (["numbers", "--count", "0"], "expected a number >= 1")]:
        done = squall("monitor", *args, endpoint=nimbus.endpoint)
        assert done.returncode == 2 and usage in done.stderr.strip().splitlines()[-1]
