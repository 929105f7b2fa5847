"""The raw ZooKeeper layer: retried, idempotent operations on bytes, with the cluster's ACL.

`cluster.zkstore` builds the domain operations on top of it. Every write here is safe to
retry: a create that finds the node already there (our own earlier, unacknowledged attempt)
turns into a set, and a delete that finds nothing is done. A value over MAX_VALUE_BYTES is
refused before it is sent (ZooKeeper would drop the connection, and the retry stall).

With a cluster secret every node Squall creates carries an ACL that only the secret opens,
and `secure_tree` gives that ACL to every node that already exists under the root (a root
created before the secret was set, or by someone else, keeps the ACLs it was made with).
The secret itself is handed to kazoo as a `Redacted` string: kazoo logs its auth packet at
DEBUG, and that must not show the secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    ZookeeperError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import ZnodeStat
from kazoo.retry import KazooRetry, RetryFailedError
from kazoo.security import ACL, make_digest_acl

from cluster.paths import MAX_VALUE_BYTES
from cluster.state import RecordError, StateError

log = logging.getLogger(__name__)

T = TypeVar("T")
DIGEST_USER = "squall"
SECURE_BATCH = 500  # nodes whose ACLs are read at once while securing the tree


class Redacted(str):
    """A credential that kazoo sends as it is, but that never prints: its repr and str (what
    a log line shows, kazoo's `Auth(... auth=...)` included) are a placeholder."""

    def __repr__(self) -> str:
        return "'<redacted>'"

    def __str__(self) -> str:
        return "<redacted>"


def _check_size(path: str, data: bytes) -> None:
    if len(data) > MAX_VALUE_BYTES:
        raise RecordError(f"zookeeper: refusing to write {len(data)} bytes to {path}: more than "
                         f"the {MAX_VALUE_BYTES} bytes a ZooKeeper node can take")


def _child(path: str, name: str) -> str:
    return f"{path.rstrip('/')}/{name}"


class RawZk:
    """The raw layer: retried, idempotent operations on one kazoo client."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        secret = config["cluster.secret"]
        self.acl: list[ACL] | None = (
            [make_digest_acl(DIGEST_USER, secret, all=True)] if secret else None
        )
        self.timeout = float(config["zookeeper.session.timeout.secs"])
        self.hosts = ",".join(config["zookeeper.servers"])
        self.client = KazooClient(
            hosts=self.hosts,
            timeout=self.timeout,
            connection_retry=KazooRetry(max_tries=-1, delay=0.05, max_delay=1.0),
            auth_data=[("digest", Redacted(f"{DIGEST_USER}:{secret}"))] if secret else None,
            default_acl=self.acl,
        )
        # Writes ride out a ZooKeeper restart or a session loss for a while, then give up.
        self._retry = KazooRetry(
            max_tries=-1, delay=0.05, max_delay=1.0, deadline=max(15.0, 2 * self.timeout)
        )

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return self._retry.copy()(fn, *args)
        except (RetryFailedError, KazooTimeoutError) as e:
            raise StateError(f"zookeeper {self.hosts}: gave up: {e}") from e
        except ZookeeperError as e:
            raise StateError(f"zookeeper {self.hosts}: {type(e).__name__} {e}") from e

    def get(self, path: str) -> bytes | None:
        def op() -> bytes | None:
            try:
                data, _ = self.client.get(path)
            except NoNodeError:
                return None
            return bytes(data)

        return self.call(op)

    def children(self, path: str) -> list[str]:
        def op() -> list[str]:
            try:
                return list(self.client.get_children(path))
            except NoNodeError:
                return []

        return self.call(op)

    def put(self, path: str, data: bytes) -> None:
        """Create or overwrite a persistent node (and its parents)."""
        _check_size(path, data)

        def op() -> None:
            try:
                self.client.set(path, data)
            except NoNodeError:
                try:
                    self.client.create(path, data, acl=self.acl, makepath=True)
                except NodeExistsError:  # created meanwhile, maybe by our own retried create
                    self.client.set(path, data)

        self.call(op)

    def create(self, path: str, data: bytes) -> bool:
        """Create a persistent node (and its parents); False if it exists already. A retry
        after a lost reply may find our own node and answer False: callers that claim
        something with it must tolerate a false refusal, never a false grant."""
        _check_size(path, data)

        def op() -> bool:
            try:
                self.client.create(path, data, acl=self.acl, makepath=True)
                return True
            except NodeExistsError:
                return False

        return self.call(op)

    def put_ephemeral(self, path: str, data: bytes) -> None:
        """Create or overwrite an ephemeral node owned by this session. A node left by an
        earlier session of the same daemon is replaced, not kept: it would vanish later."""
        _check_size(path, data)

        def op() -> None:
            session = self.client.client_id[0] if self.client.client_id else None
            stat: ZnodeStat | None = self.client.exists(path)
            if stat is not None and stat.ephemeralOwner == session:
                self.client.set(path, data)
                return
            if stat is not None:
                try:
                    self.client.delete(path, version=stat.version)
                except NoNodeError:
                    pass
            self.client.create(path, data, acl=self.acl, ephemeral=True, makepath=True)

        self.call(op)

    def create_sequential(self, prefix: str, data: bytes, ephemeral: bool = False) -> str:
        """Create a sequential node. Not idempotent by nature: a retry after a lost reply may
        leave a duplicate, which callers tolerate (error trimming, election cleanup)."""
        _check_size(prefix, data)
        return self.call(
            lambda: self.client.create(
                prefix, data, acl=self.acl, sequence=True, ephemeral=ephemeral, makepath=True
            )
        )

    def delete(self, path: str, recursive: bool = False) -> None:
        def op() -> None:
            for _ in range(10):  # a recursive delete races with concurrent creates
                try:
                    self.client.delete(path, recursive=recursive)
                    return
                except NoNodeError:
                    return
                except NotEmptyError:
                    continue
            raise StateError(f"zookeeper: cannot delete {path}: it keeps getting children")

        self.call(op)

    def ensure(self, path: str) -> None:
        def op() -> None:
            try:
                self.client.ensure_path(path, self.acl)
            except NoAuthError:  # name the node that refused us, not the one we wanted
                refusing = path
                while refusing.count("/") > 1 and self.client.exists(refusing) is None:
                    refusing = refusing.rpartition("/")[0]
                raise self._cannot_secure(refusing, None) from None

        self.call(op)

    # --- securing what exists -------------------------------------------------------------------

    def secure_tree(self, root: str) -> int:
        """Give `root` and every node below it exactly the cluster's ACL; return how many
        nodes had another one. Raises StateError naming the node when one cannot be fixed
        (its ACL does not let the secret change it): a daemon then refuses to start rather
        than run on a tree that others can write."""
        assert self.acl is not None, "secure_tree needs a cluster secret"
        fixed = self.call(self._secure_tree, root)
        if fixed:
            log.warning("zookeeper %s: %d node(s) under %s could be read or written without "
                        "the cluster secret; they are now protected by it", self.hosts, fixed,
                        root)
        return fixed

    def _secure_tree(self, root: str) -> int:
        fixed = 0
        level = [root]
        while level:
            batch, level = level[:SECURE_BATCH], level[SECURE_BATCH:]
            for path, acls, stat in self._acls(batch):
                if set(acls) != set(self.acl or ()):
                    fixed += self._set_acl(path, acls, stat)
            level += self._children_of(batch)  # after the fix: no stranger adds one meanwhile
        return fixed

    def _acls(self, paths: list[str]) -> list[tuple[str, list[ACL], ZnodeStat]]:
        out = []
        pending = [(path, self.client.get_acls_async(path)) for path in paths]
        for path, result in pending:
            try:
                acls, stat = result.get(timeout=self.timeout)
            except NoNodeError:
                continue  # removed meanwhile
            except NoAuthError:
                raise self._cannot_secure(path, None) from None
            out.append((path, list(acls), stat))
        return out

    def _set_acl(self, path: str, acls: list[ACL], stat: ZnodeStat) -> int:
        try:
            self.client.set_acls(path, self.acl, version=stat.aversion)
        except NoNodeError:
            return 0
        except BadVersionError:  # another daemon fixed it first
            return 0
        except NoAuthError:
            raise self._cannot_secure(path, acls) from None
        log.info("zookeeper %s: %s had ACL %s; set to the cluster secret's", self.hosts, path,
                 _describe(acls))
        return 1

    def _children_of(self, paths: list[str]) -> list[str]:
        out = []
        pending = [(path, self.client.get_children_async(path)) for path in paths]
        for path, result in pending:
            try:
                out += [_child(path, name) for name in result.get(timeout=self.timeout)]
            except NoNodeError:
                continue
            except NoAuthError:
                raise self._cannot_secure(path, None) from None
        return out

    def _cannot_secure(self, path: str, acls: list[ACL] | None) -> StateError:
        shown = f" (its ACL: {_describe(acls)})" if acls is not None else ""
        return StateError(
            f"zookeeper {self.hosts}: {path} is not open to the cluster secret{shown}, so it "
            "cannot be protected: remove it with ZooKeeper's super user, or choose another "
            "zookeeper.root")


def _describe(acls: list[ACL]) -> str:
    """ACLs as ZooKeeper's CLI shows them ("world:anyone:cdrwa"), never a digest's hash."""
    letters = "rwcda"  # READ=1, WRITE=2, CREATE=4, DELETE=8, ADMIN=16
    parts = []
    for acl in acls:
        perms = "".join(ch for bit, ch in enumerate(letters) if acl.perms & (1 << bit))
        who = acl.id.id.split(":", 1)[0] if acl.id.scheme == "digest" else acl.id.id
        parts.append(f"{acl.id.scheme}:{who}:{perms}")
    return ", ".join(parts) or "none"
