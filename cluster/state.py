"""The cluster-state store: one interface, a ZooKeeper and an in-memory implementation.

Nimbus, supervisors, workers and the dashboard talk to the cluster state only through
`ClusterState`. `ZkClusterState` (cluster.zkstore) keeps it in ZooKeeper; `MemoryClusterState`
(cluster.memstore) keeps it in process, for local mode and unit tests. Both behave the same,
and the same tests run against both.

Values are JSON-compatible dicts (they go through JSON in both implementations, so a tuple
comes back as a list and dict keys come back as strings); topology code is bytes. A stored
value that is not a JSON object (written by something else than Squall, or damaged) is
skipped by the readers with a warning, so that one bad record never hides the others; a value
over `cluster.paths.MAX_VALUE_BYTES` is refused at once with a StateError.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

from topology.errors import SquallError

Callback = Callable[[], None]


class StateError(SquallError):
    """The cluster state could not be read or written (ZooKeeper unreachable, corrupt data)."""


class RecordError(StateError):
    """One record cannot be stored (too large, or not JSON): the store itself works, and
    other records can still be written."""


class ClusterState(ABC):
    """The domain operations on the cluster state. Every write is idempotent."""

    # --- daemons ------------------------------------------------------------------------------

    @abstractmethod
    def register_supervisor(self, sup_id: str, info: dict[str, Any]) -> None:
        """Publish (or update) a supervisor's info; it lives as long as this client's session
        and is re-registered automatically after a session loss."""

    @abstractmethod
    def supervisors(self) -> dict[str, dict[str, Any]]:
        """Every registered supervisor: id -> info."""

    @abstractmethod
    def supervisor_heartbeat(self, sup_id: str, beat: dict[str, Any]) -> None:
        """Write (overwrite) a supervisor's own heartbeat: its info and a counter that changes
        every beat. Unlike the registration it outlives the session: nimbus judges a
        supervisor by this record changing, so a supervisor restarting is not lost."""

    @abstractmethod
    def supervisor_heartbeats(self) -> dict[str, dict[str, Any]]:
        """Every supervisor heartbeat record: id -> beat."""

    @abstractmethod
    def remove_supervisor_heartbeat(self, sup_id: str) -> None:
        """Remove a supervisor's heartbeat record (no error if there is none)."""

    @abstractmethod
    def register_nimbus(self, nimbus_id: str, info: dict[str, Any]) -> None:
        """Publish (or update) a nimbus's info, ephemeral like `register_supervisor`."""

    @abstractmethod
    def nimbuses(self) -> dict[str, dict[str, Any]]:
        """Every registered nimbus: id -> info."""

    @abstractmethod
    def run_for_leader(self, nimbus_id: str, on_elected: Callback, on_lost: Callback) -> None:
        """Enter the leader election without blocking. `on_elected` is called (from a
        background thread) when this client becomes leader, `on_lost` when it stops being
        leader (session lost); after a loss it runs again automatically. Once per client."""

    @abstractmethod
    def leader(self) -> str | None:
        """The nimbus id of the current leader, or None when there is none."""

    # --- topologies ---------------------------------------------------------------------------

    @abstractmethod
    def set_topology(self, topology_id: str, meta: dict[str, Any]) -> None:
        """Create or overwrite a topology's meta data."""

    @abstractmethod
    def topology(self, topology_id: str) -> dict[str, Any] | None:
        """A topology's meta data, or None."""

    @abstractmethod
    def topologies(self) -> dict[str, dict[str, Any]]:
        """Every topology: id -> meta."""

    @abstractmethod
    def remove_topology(self, topology_id: str) -> None:
        """Remove a topology with its assignment, code, heartbeats and errors."""

    @abstractmethod
    def put_code(self, topology_id: str, blob: bytes) -> None:
        """Store a topology's code package (any size)."""

    @abstractmethod
    def get_code(self, topology_id: str) -> bytes | None:
        """A topology's code package, or None if there is none (or it is still being
        written)."""

    # --- assignments --------------------------------------------------------------------------

    @abstractmethod
    def set_assignment(self, topology_id: str, assignment: dict[str, Any]) -> None:
        """Create or overwrite a topology's assignment."""

    @abstractmethod
    def assignment(self, topology_id: str) -> dict[str, Any] | None:
        """A topology's assignment, or None."""

    @abstractmethod
    def assignments(self) -> dict[str, dict[str, Any]]:
        """Every assignment: topology id -> assignment."""

    @abstractmethod
    def remove_assignment(self, topology_id: str) -> None:
        """Remove a topology's assignment (no error if there is none)."""

    # --- heartbeats and errors ----------------------------------------------------------------

    @abstractmethod
    def worker_heartbeat(self, topology_id: str, worker_key: str, hb: dict[str, Any]) -> None:
        """Write (overwrite) the heartbeat of worker `worker_key` ("host:port")."""

    @abstractmethod
    def worker_heartbeats(self, topology_id: str) -> dict[str, dict[str, Any]]:
        """A topology's worker heartbeats: worker key -> heartbeat."""

    @abstractmethod
    def remove_worker_heartbeat(self, topology_id: str, worker_key: str) -> None:
        """Remove one worker's heartbeat (no error if there is none)."""

    @abstractmethod
    def report_error(self, topology_id: str, component: str, error: dict[str, Any]) -> None:
        """Record an error of a component; only the last ten per component are kept."""

    @abstractmethod
    def errors(
        self, topology_id: str, component: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """A topology's recent errors: component -> errors, oldest first; only `component`'s
        when it is given."""

    @abstractmethod
    def orphaned_records(self) -> set[str]:
        """Topology ids that have heartbeats or errors but no topology record: written by a
        supervisor or worker that had not yet heard of a kill. Nimbus removes them."""

    # --- request nonces ------------------------------------------------------------------------

    @abstractmethod
    def claim_nonce(self, nonce: str, now: float, ttl: float) -> bool:
        """Record the nonce of a signed request: True the first time, False when it was
        already claimed less than `ttl` seconds before (a replay), whichever nimbus claimed
        it and across restarts. `now` is the caller's wall clock (the same clock every
        claim of a nonce uses: the request's own timestamp bounds it); claims older than
        `ttl` are forgotten."""

    # --- notification and lifetime ------------------------------------------------------------

    @abstractmethod
    def watch(self, callback: Callback) -> None:
        """Call `callback()` from a background thread soon after registering it and whenever
        supervisors, topologies or assignments change. It may be called more often than
        needed; it must not block for long."""

    @abstractmethod
    def close(self) -> None:
        """Stop background threads and end the session (ephemeral entries disappear)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_state(config: Mapping[str, Any]) -> ClusterState:
    """The ZooKeeper-backed cluster state described by `config` (connected)."""
    from cluster.zkstore import ZkClusterState  # kazoo is only needed when used

    return ZkClusterState(config)
