"""`complete_topology`: run a topology on fixed input and collect everything it emitted.

Windowed bolts hold their tuples' acks until their windows fire, so a topology with windows
never settles by itself on finite input: once every mocked tuple was emitted and the
topology is quiet (nothing queued, nothing emitted for a while), `complete_topology`
*flushes* it, a final watermark that fires every open window (DESIGN §7), then waits for the
mocked tuples to be acked as usual; once more for each further windowed bolt, since in a
chain of windows what one flush makes the first emit waits in the next. The flush is
`LocalCluster.flush`: the supervisor sends {"type": "flush"} to every worker of the topology.
"""

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
    return run_to_completion(mocked, set(mock_sources), expected, timeout, config)


def run_to_completion(topology: Topology, spouts: set[str], expected: int,
                      timeout: float = 60.0,
                      config: Mapping[str, Any] | None = None) -> CompleteResult:
    """Run `topology` in a LocalCluster until its `spouts` (which must stop emitting) have had
    `expected` tuples acked or failed, flushing windows on the way as complete_topology does;
    return what every component emitted and the spouts' outcomes."""
    from topology.local import LocalCluster

    conf = {"topology.testing.capture": True, "worker.heartbeat.frequency.secs": 0.05,
            **dict(config or {})}
    with LocalCluster() as cluster:
        windowed = _windowed(topology)
        flush = _Flush(cluster, topology.name, windowed) if windowed else None
        cluster.submit(topology, config=conf)
        cluster.wait_running(topology.name, timeout)
        deadline = time.monotonic() + timeout
        _wait_settled(cluster, topology.name, spouts, expected, deadline, flush)
        dumps = cluster.request_dumps(topology.name)
    return _collect(dumps, spouts)


def _windowed(topology: Topology) -> int:
    """How many windowed bolts `topology` has."""
    from topology.windowing import WindowedBolt

    return sum(issubclass(s.obj if isinstance(s.obj, type) else type(s.obj), WindowedBolt)
               for s in topology.bolts())


class _Flush:
    """Flushes the topology's workers, one round per windowed bolt at most: in a chain, what
    one flush makes the first window emit is held by the next window until the next round."""

    def __init__(self, cluster: Any, name: str, rounds: int) -> None:
        self.cluster = cluster
        self.name = name
        self.rounds = rounds
        self.sent = 0

    def send(self) -> None:
        self.sent += 1
        self.cluster.flush(self.name)


def _spout_totals(status: dict[str, Any], mocked: set[str]) -> tuple[int, int, int]:
    """(mocked tuples acked or failed, tuples emitted by all, tuples emitted by the mocks)."""
    done = emitted = fed = 0
    for hb in status["workers"].values():
        for e in hb.get("executors", ()):
            emitted += sum(e["emitted"].values())
            if e["type"] == "spout" and e["component"] in mocked:
                done += e["acked"] + e["failed"]
                fed += sum(e["emitted"].values())
    return done, emitted, fed


def _wait_settled(cluster: Any, name: str, mocked: set[str], expected: int,
                  deadline: float, flush: _Flush | None = None) -> None:
    last: tuple[int, int] | None = None
    still_since = time.monotonic()
    while True:
        status = cluster.status(name)
        done, emitted, fed = _spout_totals(status, mocked)
        queued = sum(hb.get("queued", 0) for hb in status["workers"].values())
        now = time.monotonic()
        if (done, emitted) != last or queued:
            last, still_since = (done, emitted), now
        elif now - still_since >= QUIET_SECS:
            if done >= expected:
                return
            if flush is not None and flush.sent < flush.rounds and fed >= expected:
                flush.send()  # all fed, all quiet, windows hold the rest: a final watermark
                still_since = now
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
