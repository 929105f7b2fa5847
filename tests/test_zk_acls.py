"""ZooKeeper ACLs with a cluster secret (issue 7, items 1 and 2): what the state protects,
how a tree made open is repaired when a daemon opens it, a node the secret cannot open makes
the daemon refuse to start, and kazoo never logs the secret."""

from __future__ import annotations

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError

from cluster.config import Config
from cluster.paths import Paths
from cluster.state import StateError
from cluster.zkserver import ZooKeeperServer
from cluster.zkstore import ZkClusterState

pytestmark = pytest.mark.timeout(60)


def test_secret_protects_nodes_with_acls(zookeeper: ZooKeeperServer, zk_config: Config) -> None:
    config = zk_config.with_overrides({"cluster.secret": "s3cret"})
    with ZkClusterState(config) as s:
        s.set_topology("t", {"secret": "stuff"})
        s.put_code("t", b"code")
        assert s.topology("t") == {"secret": "stuff"}
        paths = Paths(config["zookeeper.root"])
        intruder = KazooClient(hosts=zookeeper.connect_string)
        intruder.start(timeout=10)
        try:
            for path in (paths.topology("t"), paths.code_manifest("t")):
                with pytest.raises(NoAuthError):
                    intruder.get(path)
            with pytest.raises(NoAuthError):
                intruder.get_children(paths.topologies())
            with pytest.raises(NoAuthError):
                intruder.set(paths.topology("t"), b"{}")
        finally:
            intruder.stop()
            intruder.close()
        wrong = config.with_overrides({"cluster.secret": "wrong"})
        with pytest.raises(StateError, match="not open to the cluster secret"):
            ZkClusterState(wrong)  # a daemon with another secret refuses to start


def open_tree(zookeeper: ZooKeeperServer, root: str) -> KazooClient:
    """A client without credentials that made `root` first, with open ACLs, and wrote a
    topology record, an assignment and code under it, as a stranger could."""
    stranger = KazooClient(hosts=zookeeper.connect_string)
    stranger.start(timeout=10)
    paths = Paths(root)
    stranger.create(paths.topology("evil-1"), b'{"id": "evil-1"}', makepath=True)
    stranger.create(paths.assignment("evil-1"), b'{"topology_id": "evil-1"}', makepath=True)
    stranger.create(paths.code_manifest("evil-1"), b"{}", makepath=True)
    return stranger


def test_a_daemon_protects_a_tree_that_was_created_open(zookeeper: ZooKeeperServer,
                                                         zk_config: Config) -> None:
    root = zk_config["zookeeper.root"]
    stranger = open_tree(zookeeper, root)
    try:
        config = zk_config.with_overrides({"cluster.secret": "s3cret"})
        with ZkClusterState(config) as s:  # what every daemon opens at start
            own = s.client
            for path in (root, Paths(root).topologies(), Paths(root).topology("evil-1"),
                         Paths(root).code_manifest("evil-1")):
                acls, _ = own.get_acls(path)
                assert [(a.id.scheme, a.id.id.split(":")[0], a.perms) for a in acls] == \
                    [("digest", "squall", 31)], path
            for write in (lambda: stranger.set(Paths(root).topology("evil-1"), b"{}"),
                          lambda: stranger.create(Paths(root).topology("evil-2"), b"{}"),
                          lambda: stranger.get(Paths(root).assignment("evil-1"))):
                with pytest.raises(NoAuthError):
                    write()
    finally:
        stranger.stop()
        stranger.close()


def test_a_node_the_secret_cannot_open_makes_the_daemon_refuse_to_start(
        zookeeper: ZooKeeperServer, zk_config: Config) -> None:
    from kazoo.security import make_digest_acl

    root = zk_config["zookeeper.root"]
    # evil's own nodes, and (to clean up what the daemon protected meanwhile) the cluster's
    other = KazooClient(hosts=zookeeper.connect_string,
                        auth_data=[("digest", "evil:pw"), ("digest", "squall:s3cret")])
    other.start(timeout=10)
    locked = [make_digest_acl("evil", "pw", all=True)]
    config = zk_config.with_overrides({"cluster.secret": "s3cret"})
    try:
        other.ensure_path(f"{root}/topologies")  # open
        other.create(f"{root}/topologies/locked", b"{}", acl=locked)  # nobody else's
        with pytest.raises(StateError) as e:
            ZkClusterState(config)
        assert f"{root}/topologies/locked is not open to the cluster secret" in str(e.value)
        assert "s3cret" not in str(e.value)
        other.delete(f"{root}/topologies/locked")
        other.delete(f"{root}/topologies")
        other.set_acls(root, locked)  # the root itself
        with pytest.raises(StateError, match=f"{root} is not open to the cluster secret"):
            ZkClusterState(config)
    finally:
        other.delete(root, recursive=True)
        other.stop()
        other.close()


def test_the_secret_never_reaches_a_log(zk_config: Config,
                                        caplog: pytest.LogCaptureFixture) -> None:
    secret = "very-secret-value-9f2c"
    with caplog.at_level(1):  # below DEBUG: kazoo's BLATHER too
        with ZkClusterState(zk_config.with_overrides({"cluster.secret": secret})) as s:
            s.set_topology("t", {"a": 1})
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "Auth(" in text  # kazoo did log its auth packet
    assert secret not in text
