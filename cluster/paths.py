"""Every ZooKeeper path Squall uses, built from `zookeeper.root` in this one place.

Layout under the root:

    supervisors/<sup-id>                 ephemeral, JSON info
    supervisorbeats/<sup-id>             JSON heartbeat (info + "seq"), rewritten every beat
    nimbuses/<nimbus-id>                 ephemeral, JSON info
    leader/n_<seq>                       ephemeral-sequential election nodes, data = nimbus id
    topologies/<topology-id>             JSON meta
    assignments/<topology-id>            JSON assignment
    code/<topology-id>/chunk-<i>         raw bytes, <= CODE_CHUNK_BYTES each
    code/<topology-id>/manifest          JSON {"chunks", "size", "sha256"}, written last
    workerbeats/<topology-id>/<worker>   JSON heartbeat, worker = "host:port"
    errors/<topology-id>/<component>/e-<seq>   JSON error, the last MAX_ERRORS kept
    nonces/<nonce>                       JSON {"time"}: signed requests already served

Names given by users (topology ids, component ids) are percent-quoted so that a "/" in them
cannot escape their directory. No value may exceed MAX_VALUE_BYTES: ZooKeeper drops the
connection of a client that sends a request over its 1 MiB `jute.maxbuffer`, and a retried
write would stall its writer; both stores refuse such a value at once instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

CODE_CHUNK_BYTES = 512 * 1024
MAX_VALUE_BYTES = 1_000_000  # ZooKeeper's jute.maxbuffer is 1 MiB for the whole request
MAX_ERRORS = 10
LEADER_PREFIX = "n_"
ERROR_PREFIX = "e-"
MANIFEST = "manifest"


def encode(name: str) -> str:
    """A user-given name as one safe ZooKeeper node name."""
    if not name:
        raise ValueError("empty name")
    if name in (".", ".."):  # quote() leaves dots alone, but ZooKeeper rejects these names
        return name.replace(".", "%2E")
    return quote(name, safe=":@")


def decode(node: str) -> str:
    """Inverse of `encode`."""
    return unquote(node)


@dataclass(frozen=True)
class Paths:
    """The path helpers, bound to one `zookeeper.root`."""

    root: str

    def _join(self, *parts: str) -> str:
        base = "" if self.root == "/" else self.root
        return "/".join([base, *parts])

    def supervisors(self) -> str:
        return self._join("supervisors")

    def supervisor(self, sup_id: str) -> str:
        return self._join("supervisors", encode(sup_id))

    def supervisor_heartbeats(self) -> str:
        return self._join("supervisorbeats")

    def supervisor_heartbeat(self, sup_id: str) -> str:
        return self._join("supervisorbeats", encode(sup_id))

    def nimbuses(self) -> str:
        return self._join("nimbuses")

    def nimbus(self, nimbus_id: str) -> str:
        return self._join("nimbuses", encode(nimbus_id))

    def leader(self) -> str:
        return self._join("leader")

    def leader_candidate(self) -> str:
        return self._join("leader", LEADER_PREFIX)

    def topologies(self) -> str:
        return self._join("topologies")

    def topology(self, topology_id: str) -> str:
        return self._join("topologies", encode(topology_id))

    def assignments(self) -> str:
        return self._join("assignments")

    def assignment(self, topology_id: str) -> str:
        return self._join("assignments", encode(topology_id))

    def code(self, topology_id: str) -> str:
        return self._join("code", encode(topology_id))

    def code_chunk(self, topology_id: str, index: int) -> str:
        return self._join("code", encode(topology_id), f"chunk-{index:06d}")

    def code_manifest(self, topology_id: str) -> str:
        return self._join("code", encode(topology_id), MANIFEST)

    def heartbeats_root(self) -> str:
        return self._join("workerbeats")

    def errors_root(self) -> str:
        return self._join("errors")

    def heartbeats(self, topology_id: str) -> str:
        return self._join("workerbeats", encode(topology_id))

    def heartbeat(self, topology_id: str, worker_key: str) -> str:
        return self._join("workerbeats", encode(topology_id), encode(worker_key))

    def errors(self, topology_id: str) -> str:
        return self._join("errors", encode(topology_id))

    def component_errors(self, topology_id: str, component: str) -> str:
        return self._join("errors", encode(topology_id), encode(component))

    def error_node(self, topology_id: str, component: str) -> str:
        """Prefix for a new sequential error node."""
        return self._join("errors", encode(topology_id), encode(component), ERROR_PREFIX)

    def nonces(self) -> str:
        return self._join("nonces")

    def nonce(self, nonce: str) -> str:
        return self._join("nonces", encode(nonce))

    def watched(self) -> list[str]:
        """Directories whose changes `ClusterState.watch` callbacks hear about."""
        return [self.supervisors(), self.topologies(), self.assignments()]
