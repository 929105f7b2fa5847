"""The raw ZooKeeper layer: retried, idempotent operations on bytes, with the cluster's ACL.

`cluster.zkstore` builds the domain operations on top of it. Every write here is safe to
retry: a create that finds the node already there (our own earlier, unacknowledged attempt)
turns into a set, and a delete that finds nothing is done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError, NotEmptyError, ZookeeperError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.states import ZnodeStat
from kazoo.retry import KazooRetry, RetryFailedError
from kazoo.security import ACL, make_digest_acl

from cluster.state import StateError

log = logging.getLogger(__name__)

T = TypeVar("T")
DIGEST_USER = "squall"


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
            auth_data=[("digest", f"{DIGEST_USER}:{secret}")] if secret else None,
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
        self.call(self.client.ensure_path, path, self.acl)
