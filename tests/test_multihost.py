"""A real cluster spread over simulated hosts: Linux network namespaces made by the test.

    master (10.213.N.1)   ZooKeeper and nimbus, and the bridge that joins everything
    host1  (10.213.N.11)  a supervisor with slots 6700 and 6701
    host2  (10.213.N.12)  a supervisor with the same slots 6700 and 6701
    root   (10.213.N.100) a leg for this process: the CLI and the test's ZooKeeper client

Each host namespace has one end of a veth pair, the other end is a port of the bridge inside
"master"; the subnet is picked per run among 10.213.0.0/16 networks unused here, and nothing
is routed anywhere else. Every address is routable, so the daemons run with a cluster secret
(and refuse to start without one). The workers of the two hosts listen on the same port
numbers, as on real clusters: tuples, acks and backpressure between (10.213.N.11, 6700) and
(10.213.N.12, 6700) must not be confused.

Needs root and `ip netns`: skipped with the reason otherwise, failed instead when CI=true.
Everything is removed at the end, failed test or not: every process in our namespaces or
naming our directories, the namespaces, the root namespace's veth.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from cluster_fixtures import ROOT, TEST_SETTINGS, ProcessCluster
from cluster_topologies import (
    acked_by_worker,
    expected_counts,
    read_counts,
    spout_totals,
    write_topology_file,
)
from polling import wait_for

from cli.daemons import Daemon, toml_config
from cluster.config import Config
from cluster.processes import stop_processes
from cluster.zkserver import ZooKeeperServer

IP = shutil.which("ip") or "/usr/sbin/ip"
CI = os.environ.get("CI") == "true"
HOSTS = ("host1", "host2")
SLOTS = [6700, 6701]  # the same on every host
ZK_PORT = 2181
NIMBUS_PORT = 6627

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and not CI,
    reason="multi-host tests build network namespaces: they need root (and `ip netns`)")


def unavailable(reason: str) -> None:
    """Skip, or fail under CI (which runs as root on a machine where this works)."""
    if CI:
        pytest.fail(f"{reason} (CI=true, so this is a failure, not a skip)")
    pytest.skip(reason)


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def free_subnet() -> str:
    """'10.213.N' for an N whose /24 overlaps no address or route of the root namespace."""
    used = []
    for line in (ip("-4", "-o", "addr") + ip("-4", "route")).splitlines():
        for word in line.split():
            try:
                used.append(ipaddress.ip_network(word, strict=False))
            except ValueError:
                pass
    candidates = [n for n in range(256)
                  if not any(ipaddress.ip_network(f"10.213.{n}.0/24").overlaps(u) for u in used)]
    assert candidates, "no free 10.213.N.0/24 in the root namespace"
    return f"10.213.{random.choice(candidates)}"


def net_namespace(pid: int) -> int | None:
    """The inode of `pid`'s network namespace (None if it is gone)."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


class NetnsZooKeeper(ZooKeeperServer):
    """The packaged ZooKeeper, run inside a namespace (`ip netns exec` execs: same pid)."""

    def __init__(self, namespace: str, host: str, port: int, data_dir: str) -> None:
        super().__init__(port, data_dir, host=host)
        self.namespace = namespace

    def command(self) -> list[str]:
        return [IP, "netns", "exec", self.namespace, *super().command()]


class Net:
    """The namespaces, their links and ZooKeeper; `build()`, then `destroy()` (always)."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.dir = Path(tempfile.mkdtemp(prefix="sqn-"))  # short: the supervisors' ipc sockets
        self.subnet = free_subnet()
        self.namespaces = {name: f"sqm-{tag}-{name}" for name in ("master", *HOSTS)}
        self.addresses = {"master": f"{self.subnet}.1", "host1": f"{self.subnet}.11",
                          "host2": f"{self.subnet}.12", "root": f"{self.subnet}.100"}
        self.bridge = f"sq{tag}br"                          # in master
        self.legs = {"host1": f"sq{tag}h1", "host2": f"sq{tag}h2", "root": f"sq{tag}r"}
        # the bridge's end of each leg's veth pair
        self.ports = {name: f"sq{tag}p{i}" for i, name in enumerate(("root", *HOSTS))}
        self.made: list[str] = []  # namespaces that exist
        self.zookeeper = NetnsZooKeeper(self.namespaces["master"], self.addresses["master"],
                                        ZK_PORT, str(self.dir / "zk"))

    def exec_prefix(self, name: str) -> list[str]:
        return [IP, "netns", "exec", self.namespaces[name]]

    def build(self) -> None:
        for ns in self.namespaces.values():
            done = subprocess.run([IP, "netns", "add", ns], capture_output=True, text=True)
            if done.returncode != 0:
                unavailable(f"`ip netns add` failed: {done.stderr.strip()}")
            self.made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        master = self.namespaces["master"]
        ip("-n", master, "link", "add", self.bridge, "type", "bridge")
        ip("-n", master, "addr", "add", f"{self.addresses['master']}/24", "dev", self.bridge)
        ip("-n", master, "link", "set", self.bridge, "up")
        for name in ("root", *HOSTS):
            leg, port = self.legs[name], self.ports[name]
            where = [] if name == "root" else ["-n", self.namespaces[name]]
            # made in master with its peer (the leg) put straight into its namespace
            ip("-n", master, "link", "add", port, "type", "veth", "peer", "name", leg,
               "netns", str(os.getpid()) if name == "root" else self.namespaces[name])
            ip("-n", master, "link", "set", port, "master", self.bridge, "up")
            ip(*where, "addr", "add", f"{self.addresses[name]}/24", "dev", leg)
            ip(*where, "link", "set", leg, "up")
        self.zookeeper.start()  # polls ruok over the root leg: the bridge works

    def set_link(self, name: str, up: bool) -> None:
        ip("-n", self.namespaces[name], "link", "set", self.legs[name], "up" if up else "down")

    def pids(self, name: str) -> list[int]:
        out = ip("netns", "pids", self.namespaces[name], check=False)
        return [int(p) for p in out.split()]

    def namespace_of(self, pid: int) -> str | None:
        """Which of our namespaces `pid` runs in ("host1", ...), None if none of them."""
        inode = net_namespace(pid)
        for name, ns in self.namespaces.items():
            try:
                if inode is not None and os.stat(f"/run/netns/{ns}").st_ino == inode:
                    return name
            except OSError:
                pass
        return None

    def kill_all(self, name: str) -> list[int]:
        """SIGKILL every process in namespace `name` (a host dying: no SIGTERM first, unlike
        cluster.processes.stop_processes); return their pids."""
        pids = self.pids(name) if self.namespaces[name] in self.made else []
        procs = []
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                proc.kill()
                procs.append(proc)
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=5)
        return pids

    def destroy(self) -> None:
        self.zookeeper.stop()
        for name in self.namespaces:
            self.kill_all(name)
        kill_mentioning(self.dir)
        for ns in self.made:
            ip("netns", "del", ns, check=False)
        self.made.clear()
        # deleting master took the peer of the root leg and so the leg; make sure of it
        if self.legs["root"] in ip("-o", "link", check=False):
            ip("link", "del", self.legs["root"], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def kill_mentioning(directory: Path) -> None:
    marker = str(directory)
    procs = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and any(marker in a for a in proc.info["cmdline"] or ()):
                procs.append(proc)
        except psutil.Error:
            pass
    stop_processes(procs, 0, "leftover")


class NetnsCluster(ProcessCluster):
    """Nimbus in "master", one supervisor per host namespace, all with one config file."""

    def __init__(self, net: Net) -> None:
        super().__init__(net.zookeeper, slots_per_supervisor=len(SLOTS))
        self.net = net
        master = net.addresses["master"]
        self.values.update({
            "nimbus.host": master,
            "nimbus.port": NIMBUS_PORT,
            "nimbus.seeds": [f"{master}:{NIMBUS_PORT}"],
            "supervisor.slots.ports": SLOTS,
        })
        self.config_path.write_text(toml_config(self.values))
        self.config = Config.load(str(self.config_path))
        self.hosts: dict[str, Daemon] = {}

    def start_nimbus(self) -> Daemon:
        d = Daemon("nimbus", self._argv("nimbus"), self.dir / "nimbus.log", cwd=ROOT,
                   prefix=self.net.exec_prefix("master"))
        self.nimbuses.append(d)
        return d

    def start_supervisor_on(self, host: str) -> Daemon:
        d = Daemon(f"supervisor-{host}",
                   self._argv("supervisor", "--kill-workers",
                              "-c", f"supervisor.host={self.net.addresses[host]}"),
                   self.dir / f"supervisor-{host}.log", cwd=ROOT,
                   prefix=self.net.exec_prefix(host))
        self.supervisors.append(d)
        self.supervisor_slots[d.pid] = SLOTS
        self.hosts[host] = d
        return d

    def start_all(self) -> None:
        self.start_nimbus()
        for host in HOSTS:
            self.start_supervisor_on(host)
        self.wait_registered(30)

    def supervisor_home(self, daemon: Daemon) -> Path:
        host = next(h for h, d in self.hosts.items() if d is daemon)
        return self.dir / f"supervisor-{self.net.addresses[host]}-{SLOTS[0]}"

    def supervisor_id(self, daemon: Daemon) -> str:
        """By host: the ports are the same on both."""
        host = next(h for h, d in self.hosts.items() if d is daemon)
        for sid, info in self.view.supervisors().items():
            if info.get("host") == self.net.addresses[host]:
                return sid
        raise AssertionError(f"{daemon.name} is not registered")


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    if os.geteuid() != 0:
        unavailable("multi-host tests build network namespaces: they need root")
    if not os.path.exists(IP):
        unavailable(f"iproute2's `ip` not found (looked for {IP})")
    n = Net()
    try:
        n.build()
        yield n
    finally:
        n.destroy()


@pytest.fixture
def cluster(net: Net, request: pytest.FixtureRequest) -> Iterator[NetnsCluster]:
    """A started cluster over `net` with its own ZooKeeper root and local.dir."""
    for host in HOSTS:
        net.set_link(host, True)  # a previous test may have cut one
    failed_before = request.session.testsfailed
    c = NetnsCluster(net)
    try:
        c.start_all()
        yield c
    finally:
        if request.session.testsfailed > failed_before:
            capman = request.config.pluginmanager.getplugin("capturemanager")
            with capman.global_and_fixture_disabled():
                print(f"\n===== cluster logs ({c.dir}) =====\n{c.logs()}\n"
                      f"----- zookeeper -----\n{net.zookeeper.log_tail(30)}", file=sys.stderr)
        c.stop(remove=True)
        for host in HOSTS:  # anything a supervisor left in its namespace
            net.kill_all(host)


# --- helpers ------------------------------------------------------------------------------------


def submit(c: NetnsCluster, tmp_path: Path, kind: str, name: str, *conf: str) -> dict[str, Any]:
    path = write_topology_file(tmp_path / f"topo-{name}", kind, name=name)
    args = [a for item in conf for a in ("-c", item)]
    return c.cli_json("submit", path, "--wait", "--timeout", "40", *args)  # type: ignore[no-any-return]


def placed(c: NetnsCluster, tid: str) -> list[tuple[str, int]]:
    return sorted((w["host"], w["port"]) for w in (c.view.assignment(tid) or {}).get("workers", []))


def total_acked(c: NetnsCluster, tid: str) -> int:
    return spout_totals(c.heartbeats(tid).values(), "acked")


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_daemons_refuse_a_routable_address_without_a_secret(net: Net, tmp_path: Path) -> None:
    values = {**TEST_SETTINGS, "zookeeper.servers": [net.zookeeper.connect_string],
              "zookeeper.root": f"/n-{uuid.uuid4().hex[:10]}", "local.dir": str(net.dir / "open"),
              "nimbus.host": net.addresses["master"], "supervisor.host": net.addresses["host1"]}
    config = tmp_path / "open.toml"
    config.write_text(toml_config(values))
    for ns, command in (("master", "nimbus"), ("host1", "supervisor")):
        done = subprocess.run([*net.exec_prefix(ns), sys.executable, "-m", "cli.main", command,
                               "--config", str(config)],
                              cwd=ROOT, capture_output=True, text=True, timeout=20)
        assert done.returncode != 0, f"{command} started on a routable address with no secret"
        assert "cluster.secret" in done.stderr + done.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("workers", [2, 4])
def test_exact_word_count_across_two_hosts_on_the_same_ports(cluster: NetnsCluster,
                                                            tmp_path: Path, workers: int) -> None:
    """2 workers: one per host, both on port 6700. 4: every slot, so each worker also has a
    peer on the other host with its own port number and another with the same port as one
    of its local peers."""
    c, net = cluster, cluster.net
    out = c.dir / "counts"  # the hosts share the filesystem
    out.mkdir()
    n = 300
    st = submit(c, tmp_path, "finite", "wc-hosts", f"topology.workers={workers}",
                f"topology.wc.sentences={n}", f"topology.wc.output.dir={out}")
    tid = st["id"]
    assert st["status"] == "ACTIVE"
    h1, h2 = net.addresses["host1"], net.addresses["host2"]
    slots = SLOTS[:workers // 2]
    assert placed(c, tid) == sorted((h, p) for h in (h1, h2) for p in slots)  # even, same ports

    wait_for(lambda: total_acked(c, tid) == n, 40, f"all {n} sentences acked")
    expected = expected_counts(n)
    wait_for(lambda: read_counts(out) == expected, 10, "count files equal to the expected")
    # Each worker's heartbeat in ZooKeeper is its latest within a heartbeat period: wait for
    # one written after it has both received and sent (data or status) over the network.
    def with_traffic() -> dict[str, dict[str, Any]] | None:
        hbs = c.heartbeats(tid)
        talked = all(hb["received_bytes"] > 0 and hb["sent_bytes"] > 0 for hb in hbs.values())
        return hbs if talked else None

    hbs = wait_for(with_traffic, 10, "every worker's traffic in its heartbeat")
    assert spout_totals(hbs.values(), "failed") == 0
    assert spout_totals(hbs.values(), "emitted") == n  # no replay, so no duplicates
    assert sorted(hbs) == sorted(f"{h}:{p}" for h, p in placed(c, tid))
    for key, hb in hbs.items():
        host = next(h for h in HOSTS if key.startswith(f"{net.addresses[h]}:"))
        # really on that host: the worker process runs in the host's network namespace
        assert net.namespace_of(hb["pid"]) == host, f"worker {key} pid {hb['pid']} not in {host}"
        assert hb["rejected"] == 0 and hb["dropped"] == 0, (key, hb)
    # the two spout tasks (one per host with 2 workers) each acked their half
    assert sorted(v for v in acked_by_worker(hbs).values() if v) == [n // 2, n // 2]


@pytest.mark.timeout(60)
def test_dead_host_loses_its_work_to_the_other(cluster: NetnsCluster, tmp_path: Path) -> None:
    c, net = cluster, cluster.net
    tid = submit(c, tmp_path, "endless", "wc-dies")["id"]
    h1, h2 = net.addresses["host1"], net.addresses["host2"]
    assert placed(c, tid) == [(h1, SLOTS[0]), (h2, SLOTS[0])]
    victim_key = f"{h2}:{SLOTS[0]}"
    wait_for(lambda: acked_by_worker(c.heartbeats(tid)).get(victim_key, 0) > 20, 20,
             "the worker on host2 acking")
    victim = c.hosts["host2"]
    victim_pids = set(net.pids("host2"))
    assert victim.pid in victim_pids and len(victim_pids) >= 2  # the supervisor and its worker

    died_at = time.monotonic()
    killed = net.kill_all("host2")  # the supervisor and its workers, at once
    net.set_link("host2", False)
    assert set(killed) >= victim_pids and not any(psutil.pid_exists(p) for p in victim_pids)

    wait_for(lambda: placed(c, tid) == [(h1, SLOTS[0]), (h1, SLOTS[1])], 20,
             "the work moved to host1")
    moved = time.monotonic() - died_at
    wait_for(lambda: len(c.current_heartbeats(tid)) == 2 and all(
        acked_by_worker(c.current_heartbeats(tid)).get(f"{h1}:{p}", 0) > 10 for p in SLOTS),
        25, "both workers on host1 acking")
    flowing = time.monotonic() - died_at
    start = total_acked(c, tid)
    wait_for(lambda: total_acked(c, tid) >= start + 100, 15, "acked counts growing")
    print(f"host2 killed and cut off -> reassigned {moved:.2f} s, acking on host1 {flowing:.2f} s")
    assert all(net.namespace_of(hb["pid"]) == "host1"
               for hb in c.current_heartbeats(tid).values())
