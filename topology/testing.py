"""`complete_topology`: run a topology on fixed input and collect everything it emitted."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from topology.component import Spout
from topology.errors import TopologyError
from topology.model import ComponentSpec, Topology

QUIET_SECS = 0.3  # how long the emitted counts must stay still once every tuple is settled


class FeederSpout(Spout):
    """Emits a fixed list of value lists once, reliably, with msg ids 0, 1, 2, ..."""

    def __init__(self, tuples: Sequence[Sequence[Any]], outputs: Any) -> None:
        self.tuples = [list(values) for values in tuples]
        self.outputs = outputs
        self.position = 0

    def next_tuple(self) -> None:
        if self.position < len(self.tuples):
            self.emit(self.tuples[self.position], msg_id=self.position)
            self.position += 1


class CompleteResult:
    """What `complete_topology` saw: emitted tuples per component and stream, and outcomes."""

    def __init__(self, emitted: dict[tuple[str, str], list[list[Any]]], acked: list[Any],
                 failed: list[Any]) -> None:
        self._emitted = emitted
        self.acked = acked
        self.failed = failed

    def emitted(self, component: str, stream: str = "default") -> list[list[Any]]:
        """Every value list `component` emitted on `stream`, in no particular order across
        tasks (in emit order within one task)."""
        return list(self._emitted.get((component, stream), []))


def complete_topology(
    topology: Topology,
    mock_sources: Mapping[str, Sequence[Sequence[Any]]] | None = None,
    timeout: float = 60.0,
    config: Mapping[str, Any] | None = None,
) -> CompleteResult:
    """Run `topology` with its named spouts replaced by feeders of `mock_sources`, wait until
    every mocked tuple is acked or failed, and return what every component emitted."""
    from topology.local import LocalCluster

    mock_sources = dict(mock_sources or {})
    components = dict(topology.components)
    expected = 0
    for cid, tuples in mock_sources.items():
        spec = components.get(cid)
        if spec is None or spec.kind != "spout":
            raise TopologyError(f"mock source {cid!r} is not a spout of {topology.name!r}")
        outputs = getattr(spec.obj, "outputs", ())
        components[cid] = ComponentSpec(cid, "spout", FeederSpout(tuples, outputs), 1,
                                        dict(spec.config), dict(spec.outputs), [])
        expected += len(tuples)
    mocked = Topology(topology.name, components, dict(topology.config))
    conf = {"topology.testing.capture": True, "worker.heartbeat.frequency.secs": 0.05,
            **dict(config or {})}
    with LocalCluster() as cluster:
        cluster.submit(mocked, config=conf)
        cluster.wait_running(topology.name, timeout)
        deadline = time.monotonic() + timeout
        _wait_settled(cluster, topology.name, set(mock_sources), expected, deadline)
        dumps = cluster.request_dumps(topology.name)
    return _collect(dumps, set(mock_sources))


def _spout_totals(status: dict[str, Any], mocked: set[str]) -> tuple[int, int]:
    done = emitted = 0
    for hb in status["workers"].values():
        for e in hb.get("executors", ()):
            emitted += sum(e["emitted"].values())
            if e["type"] == "spout" and e["component"] in mocked:
                done += e["acked"] + e["failed"]
    return done, emitted


def _wait_settled(cluster: Any, name: str, mocked: set[str], expected: int,
                  deadline: float) -> None:
    last: tuple[int, int] | None = None
    still_since = time.monotonic()
    while True:
        status = cluster.status(name)
        done, emitted = _spout_totals(status, mocked)
        queued = sum(hb.get("queued", 0) for hb in status["workers"].values())
        now = time.monotonic()
        if (done, emitted) != last or queued:
            last, still_since = (done, emitted), now
        elif done >= expected and now - still_since >= QUIET_SECS:
            return
        if now > deadline:
            raise TimeoutError(
                f"complete_topology {name!r}: {done} of {expected} mocked tuples settled "
                f"before the timeout; errors: {[e['error'] for e in status['errors']][-3:]}"
            )
        time.sleep(0.02)


def _collect(dumps: Mapping[int, dict[str, Any]], mocked: set[str]) -> CompleteResult:
    emitted: dict[tuple[str, str], list[list[Any]]] = {}
    acked: list[Any] = []
    failed: list[Any] = []
    for port in sorted(dumps):
        dump = dumps[port]
        for component, stream, values in dump["emitted"]:
            emitted.setdefault((component, stream), []).append(values)
        for task, ids in dump["acked"].items():
            if dump["components"][task] in mocked:
                acked += ids
        for task, ids in dump["failed"].items():
            if dump["components"][task] in mocked:
                failed += ids
    return CompleteResult(emitted, sorted(acked), sorted(failed))
