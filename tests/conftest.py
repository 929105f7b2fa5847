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
