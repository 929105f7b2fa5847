"""`topology.requirements` on a real cluster, with real packages from PyPI: the supervisors
build the environment once and run the workers with it, nimbus never needs the package, and
a package that does not exist is one clear error on the topology, not a retry loop.
Skipped when PyPI cannot be reached."""

from __future__ import annotations

import importlib.util
import socket
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cluster_fixtures import ProcessCluster
from polling import wait_for

pytestmark = pytest.mark.timeout(180)

PACKAGE, VERSION = "tomli_w", "1.0.0"  # small, pure Python, and not a dependency of Squall
MISSING = "squall-no-such-package-zq9"
SETTINGS = {"supervisor.logviewer.port": 0, "nimbus.task.launch.secs": 4}


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def needs_pypi() -> None:
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable from here")


def topology_file(tmp_path: Path, name: str, requirements: list[str]) -> str:
    path = tmp_path / f"{name.replace('-', '_')}.py"
    path.write_text(textwrap.dedent(f"""\
        import sys

        from topology import Bolt, Spout, TopologyBuilder

        class Once(Spout):
            outputs = ["n"]
            def open(self, conf, context):
                self.sent = 0
            def next_tuple(self):
                if self.sent < 3:
                    self.sent += 1
                    self.emit([self.sent])

        class Toml(Bolt):
            def prepare(self, conf, context):
                import {PACKAGE}  # imported where it runs: nimbus never needs it
                self.dumps = {PACKAGE}.dumps
                print("python is", sys.executable, flush=True)
            def process(self, tup):
                print("as toml:", self.dumps({{"n": tup.values[0]}}).strip(), flush=True)

        b = TopologyBuilder({name!r})
        b.set_spout("once", Once())
        b.set_bolt("toml", Toml()).shuffle_grouping("once")
        topology = b.build(config={{"topology.workers": 1, "topology.acker.executors": 0,
                                   "topology.requirements": {requirements!r}}})
        """))
    return str(path)


def worker_logs(cluster: ProcessCluster) -> str:
    return "".join(p.read_text(errors="replace")
                   for p in cluster.dir.glob("supervisor-*/logs/*/worker-*.log"))


def test_workers_run_with_a_package_from_pypi(make_cluster: Callable[..., ProcessCluster],
                                             tmp_path: Path) -> None:
    assert importlib.util.find_spec(PACKAGE) is None, f"{PACKAGE} is installed here already"
    cluster = make_cluster(supervisors=1, settings=SETTINGS)
    path = topology_file(tmp_path, "needs-toml", [f"tomli-w=={VERSION}"])
    cluster.cli("submit", path, "--wait", "--timeout", "120", timeout=150)
    wait_for(lambda: "as toml: n = 3" in worker_logs(cluster), 30, "the package at work")
    built = list(cluster.dir.glob("venvs/*/squall-env.json"))
    assert len(built) == 1
    # The worker runs with the environment's own interpreter (the spawn's python=).
    pythons = [line.rsplit("python is ", 1)[1] for line in worker_logs(cluster).splitlines()
               if "python is " in line]
    assert pythons and set(pythons) == {str(built[0].parent / "bin" / "python")}, pythons
    # A second topology asking for the same set uses the same environment.
    other = topology_file(tmp_path, "needs-toml-too", [f"tomli-w=={VERSION}"])
    cluster.cli("submit", other, "--wait", "--timeout", "60", timeout=90)
    assert list(cluster.dir.glob("venvs/*/squall-env.json")) == built
    status = cluster.cli_json("status", "needs-toml")
    assert not status["errors"], status["errors"]


def test_a_package_that_does_not_exist_is_one_clear_error(
        make_cluster: Callable[..., ProcessCluster], tmp_path: Path) -> None:
    cluster = make_cluster(supervisors=2, settings=SETTINGS)
    path = topology_file(tmp_path, "needs-nothing-real", [MISSING])
    cluster.cli("submit", path)

    def supervisor_errors() -> list[dict[str, Any]]:
        errors = cluster.cli_json("status", "needs-nothing-real")["errors"]
        return list(errors.get("__supervisor", []))

    first = wait_for(supervisor_errors, 90, "the install error on the topology")[0]
    assert MISSING in first["error"] and "installing its requirements" in first["error"]
    assert "\n" not in first["error"]
    assert "No matching distribution" in first["error"] or "Could not find" in first["error"]
    assert MISSING in first.get("traceback", "")  # pip's own words, in full
    # Nimbus moves the never-starting worker around (nimbus.task.launch.secs): each
    # supervisor it lands on tries once for this topology, and never again.
    tid = cluster.cli_json("status", "needs-nothing-real")["id"]
    version = (cluster.view.assignment(tid) or {}).get("version", 0)
    wait_for(lambda: (cluster.view.assignment(tid) or {}).get("version", 0) >= version + 3,
             60, "three more assignments")
    errors = supervisor_errors()
    assert 1 <= len(errors) <= 2, errors
    assert len({e["error"].split(":")[0] for e in errors}) == len(errors)  # one per supervisor
    for d in cluster.supervisors:
        log = d.log_path.read_text(errors="replace")
        assert log.count("building its environment") <= 1, log
    assert not worker_logs(cluster)  # no worker was ever started for it
