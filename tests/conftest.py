"""Shared fixtures. Each fixture group has its own section; add new groups below."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from cluster.config import Config
from cluster.zkserver import ZooKeeperServer

# --- ZooKeeper ----------------------------------------------------------------------------------


_SERVER = pytest.StashKey[ZooKeeperServer]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Attach the ZooKeeper log tail to the report of a failed test that used ZooKeeper."""
    outcome = yield
    report = outcome.get_result()
    server = item.session.stash.get(_SERVER, None)
    if report.failed and server is not None and "zookeeper" in getattr(item, "fixturenames", ()):
        report.sections.append((f"ZooKeeper log tail ({server.log_path})", server.log_tail()))


@pytest.fixture(scope="session")
def zookeeper(request: pytest.FixtureRequest) -> Iterator[ZooKeeperServer]:
    """A real single-node ZooKeeper for the whole session (fails if it cannot start)."""
    server = ZooKeeperServer().start()
    request.session.stash[_SERVER] = server
    try:
        yield server
    finally:
        server.stop(remove=True)


@pytest.fixture
def zk_config(zookeeper: ZooKeeperServer) -> Config:
    """A config pointing at the session ZooKeeper, with this test's own root."""
    return Config.from_mapping({
        "zookeeper.servers": [zookeeper.connect_string],
        "zookeeper.root": f"/t-{uuid.uuid4().hex[:12]}",
        "zookeeper.session.timeout.secs": 4,
        "zookeeper.connect.timeout.secs": 10,
    })


# --- nimbus -------------------------------------------------------------------------------------

CLUSTER_TOPOLOGY = '''
from topology import Bolt, Spout, TopologyBuilder


class Numbers(Spout):
    outputs = ["n"]

    def open(self, conf, context):
        self.n = 0

    def next_tuple(self):
        self.n += 1
        self.emit([self.n])


class Double(Bolt):
    outputs = ["n"]

    def process(self, tup):
        self.emit([tup.values[0] * 2])


builder = TopologyBuilder("numbers")
builder.set_spout("numbers", Numbers(), parallelism=2)
builder.set_bolt("double", Double(), parallelism=3).shuffle_grouping("numbers")
topology = builder.build(config={"topology.workers": 2})
'''


@pytest.fixture
def topology_file(tmp_path: Any) -> str:
    """A topology file (spout "numbers" x2 -> bolt "double" x3, 2 workers, 1 acker each)."""
    path = tmp_path / "numbers_topology.py"
    path.write_text(CLUSTER_TOPOLOGY)
    return str(path)


class RunningNimbus:
    """A nimbus started in this process, its loop on a thread."""

    def __init__(self, config: Config) -> None:
        import threading

        from nimbus.daemon import Nimbus

        self.config = config
        self.nimbus = Nimbus(config)
        self.nimbus.start()
        self.thread = threading.Thread(target=self.nimbus.run, name="test-nimbus", daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.nimbus.server.port}"

    def client(self, **kwargs: Any) -> Any:
        from nimbus.client import NimbusClient

        kwargs.setdefault("secret", self.config["cluster.secret"])
        return NimbusClient([self.endpoint], **kwargs)

    def wait_leading(self, timeout: float = 10.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not self.nimbus.leading:
            assert time.monotonic() < deadline, f"nimbus {self.nimbus.id} not leading"
            time.sleep(0.02)

    def stop(self) -> None:
        self.nimbus.request_stop()
        self.thread.join(timeout=10)
        self.nimbus.close()


@pytest.fixture
def start_nimbus(zk_config: Config) -> Iterator[Any]:
    """Start nimbus instances on free ports (`start(**overrides)`); all stopped at the end."""
    from cluster.zkserver import free_port

    started: list[RunningNimbus] = []

    def start(**overrides: Any) -> RunningNimbus:
        config = zk_config.with_overrides({
            "nimbus.port": free_port(),
            "nimbus.monitor.freq.secs": 0.1,
            "nimbus.session.timeout.secs": 2,
            **overrides,
        })
        started.append(RunningNimbus(config))
        return started[-1]

    yield start
    for running in started:
        running.stop()


# --- a cluster of daemon processes (tests/cluster_fixtures.py) ---------------------------------

from cluster_fixtures import make_cluster  # noqa: E402, F401 - a fixture, used by name
