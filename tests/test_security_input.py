"""Nimbus and its client against bad values (issue 7): non-finite and huge numbers,
oversized records, names, and a nimbus that accepts no connection. Real ZooKeeper, real
sockets, `squall` processes for the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from test_security_nimbus import send

from cli.loader import load_topology_file
from cluster.config import Config
from cluster.zkserver import free_port
from nimbus.client import NimbusClient
from nimbus.protocol import BadRequest, NimbusError
from topology import Spout, TopologyBuilder

pytestmark = pytest.mark.timeout(120)

ROOT = str(Path(__file__).resolve().parent.parent)


@pytest.fixture
def package(topology_file: str) -> bytes:
    return bytes(cloudpickle.dumps({"topology": load_topology_file(topology_file),
                                    "overrides": {}}))

# --- item 13: non-finite and huge numbers stop at the door --------------------------------------


@pytest.mark.parametrize("action, body, field", [
    ("kill", b'{"wait": NaN}', "wait"),
    ("kill", b'{"wait": Infinity}', "wait"),
    ("kill", b'{"wait": -Infinity}', "wait"),
    ("kill", b'{"wait": 1e999}', "wait"),
    ("rebalance", b'{"workers": 1, "wait": NaN}', "wait"),
    ("rebalance", b'{"parallelism": {"double": NaN}}', "parallelism.double"),
    ("rebalance", b'{"workers": Infinity}', "workers"),
])
def test_non_finite_numbers_get_400_naming_the_field(start_nimbus: Any, package: bytes,
                                                     action: str, body: bytes,
                                                     field: str) -> None:
    nimbus = start_nimbus()
    nimbus.wait_leading()
    nimbus.client().submit(package)
    status, reply = send(nimbus.endpoint, "POST", f"/api/v1/topologies/numbers/{action}", body)
    assert status == 400 and f"{field} must be a finite number" in reply["error"], reply
    assert nimbus.client().status("numbers")["status"] == "ACTIVE"  # nothing happened


def test_non_finite_overrides_are_refused_at_submission(start_nimbus: Any,
                                                        package: bytes) -> None:
    nimbus = start_nimbus()
    nimbus.wait_leading()
    path = "/api/v1/topologies?overrides=%7B%22topology.message.timeout.secs%22%3A%20NaN%7D"
    status, reply = send(nimbus.endpoint, "POST", path, package)
    assert status == 400 and "topology.message.timeout.secs must be a finite number" in \
        reply["error"]
    with pytest.raises(BadRequest, match="overrides: topology.message.timeout.secs must be a "
                                         "finite number"):
        nimbus.client().submit(package, overrides={"topology.message.timeout.secs": 1e999})
    assert nimbus.client().list() == []


@pytest.mark.parametrize("call, message", [
    (lambda c: c.kill("numbers", float("nan")), "wait must be a number of seconds from 0 to "
                                                "86400, got nan"),
    (lambda c: c.kill("numbers", float("inf")), "got inf"),
    (lambda c: c.rebalance("numbers", wait=-1), "wait must be a number of seconds"),
    (lambda c: c.rebalance("numbers", 1_000_000), "workers must be an integer from 1 to 256, "
                                                  "got 1000000"),
    (lambda c: c.rebalance("numbers", parallelism={"double": 10**6}),
     "parallelism of 'double' must be an integer from 1 to 4096, got 1000000"),
    (lambda c: c.rebalance("numbers", parallelism={"double": 2.5}), "got 2.5"),
])
def test_the_client_refuses_bad_numbers_before_sending(call: Any, message: str) -> None:
    client = NimbusClient(["127.0.0.1:1"])  # nothing listens there: nothing may be sent
    with pytest.raises(BadRequest) as info:
        call(client)
    assert message in str(info.value)


def test_huge_rebalances_are_refused_by_nimbus_and_the_cli(start_nimbus: Any, package: bytes,
                                                           zk_config: Config) -> None:
    nimbus = start_nimbus()
    nimbus.wait_leading()
    nimbus.client().submit(package)
    path = "/api/v1/topologies/numbers/rebalance"
    for body, words in [
        (b'{"workers": 1000000, "wait": 0}', "workers must be an integer from 1 to 256, got "
                                            "1000000"),
        (b'{"parallelism": {"double": 1000000}}', "parallelism of 'double' must be an integer "
                                                  "from 1 to 4096"),
        (b'{"workers": 256, "parallelism": {"double": 4000}, "wait": 0}',
         "it would have 4258 tasks (executors and ackers); at most 4096"),
    ]:
        status, reply = send(nimbus.endpoint, "POST", path, body)
        assert status == 400 and words in reply["error"], reply
    for args, line in [
        (["rebalance", "numbers", "-n", "1000000"],
         "squall rebalance: error: workers must be an integer from 1 to 256, got 1000000"),
        (["kill", "numbers", "--wait", "nan"],
         "squall kill: error: wait must be a number of seconds from 0 to 86400, got nan"),
        (["rebalance", "numbers", "-n", "2", "--wait", "inf"],
         "squall rebalance: error: wait must be a number of seconds from 0 to 86400, got inf"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *args,
             "-c", f"nimbus.port={nimbus.nimbus.server.port}"],
            cwd=ROOT, env={**os.environ, "SQUALL_CONF": ""}, capture_output=True, text=True,
            timeout=60)
        assert done.returncode == 1 and done.stderr.strip() == line, done.stderr
    status = nimbus.client().status("numbers")
    assert status["status"] == "ACTIVE" and status["num_workers"] == 2


class Wide(Spout):
    outputs = [f"field_{i:06d}" for i in range(40_000)]  # ~640 KB of field names


def test_a_topology_whose_record_would_be_too_big_is_refused(start_nimbus: Any) -> None:
    nimbus = start_nimbus()
    nimbus.wait_leading()
    builder = TopologyBuilder("wide")
    builder.set_spout("wide", Wide())
    package = cloudpickle.dumps({"topology": builder.build(), "overrides": {}})
    with pytest.raises(BadRequest, match=r"topology 'wide': its record would take \d+ bytes, "
                                         r"over the 262144 allowed"):
        nimbus.client().submit(package)
    assert nimbus.client().list() == []


# --- item 7: names ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["evil\n", "x" * 101, "bad name", "-dash", "a/b"])
def test_bad_names_are_refused_naming_the_value(start_nimbus: Any, package: bytes,
                                                name: str) -> None:
    nimbus = start_nimbus()
    nimbus.wait_leading()
    client = nimbus.client()
    with pytest.raises(BadRequest) as info:
        client.submit(package, name=name)
    message = str(info.value)
    assert message.startswith("topology name ") and "is not valid (1-100 letters" in message
    assert repr(name)[:40] in message and "\n" not in message
    with pytest.raises(BadRequest, match="is not valid"):
        client.status(name)
    with pytest.raises(BadRequest, match="is not valid"):
        client.kill(name, 0)
    assert client.list() == []
    assert client.submit(package, name="x" * 100)["name"] == "x" * 100  # the longest allowed


# --- item 14: a nimbus that accepts nothing is reported soon ------------------------------------


def test_squall_list_gives_up_soon_on_a_nimbus_that_accepts_nothing() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: once its backlog is full, connections hang
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            s = socket.socket()
            s.settimeout(0.3)
            try:
                s.connect(("127.0.0.1", port))
            except TimeoutError:
                pass
            fillers.append(s)
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "list", "-c", f"nimbus.port={port}"],
            cwd=ROOT, env={**os.environ, "SQUALL_CONF": ""}, capture_output=True, text=True,
            timeout=25)  # the old client waited 30 s
    finally:
        for s in fillers:
            s.close()
        listener.close()
    assert done.returncode == 1
    assert done.stderr.strip() == (f"squall list: error: cannot reach nimbus: 127.0.0.1:{port}:"
                                   " no connection within 3 s (is nimbus running there, and "
                                   "reachable?)")


def test_a_refused_connection_is_one_clear_line() -> None:
    port = free_port()
    with pytest.raises(NimbusError, match=f"cannot reach nimbus: 127.0.0.1:{port}: Connection "
                                          "refused"):
        NimbusClient([f"127.0.0.1:{port}"]).list()
