"""Routing tables, computed once per worker: who consumes each stream and how.

Streams get small integer codes (the same in every worker, since every worker holds the same
topology), so a tuple on the wire carries an int rather than two strings, and the receiver
finds its component, stream and field names with one list index.

Besides the streams components declare, the table holds system streams: framework-internal
streams that an executor class declares (`Executor.system_streams`) for its component, such
as a checkpoint or watermark message sent to every task of a consumer. They get codes after
every declared stream, are sent with `Collector.emit_system` and reach the receiving
executor's `on_system`, never user code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from topology.groupings import Chooser, make_chooser
from topology.model import Topology
from topology.tuple import SYSTEM_COMPONENT, TICK_STREAM, StreamInfo


class Route:
    """How one task's stream is delivered: choosers for grouped consumers, direct targets."""

    __slots__ = ("by_hash", "choose", "code", "counted", "direct_tasks", "emitted", "fanout",
                 "key", "nfields", "nkeys", "stream", "targets")

    def __init__(self, stream: str, code: int, nfields: int, choosers: list[Chooser],
                 direct_tasks: frozenset[int], fanout: int = 0,
                 targets: Sequence[int] = ()) -> None:
        self.stream = stream
        self.code = code
        self.nfields = nfields
        self.choose: Chooser = choosers[0] if len(choosers) == 1 else _combined(choosers)
        # A lone one-field fields grouping (groupings.keyed), for emit to inline: the
        # targets are by_hash[hash(values[key]) % len(by_hash)]; key -1 otherwise.
        self.key: int = getattr(self.choose, "key", -1)
        self.by_hash: list[list[int]] = getattr(self.choose, "by_hash", [])
        self.nkeys = len(self.by_hash)
        self.targets = tuple(targets)  # every task a chooser may pick
        self.direct_tasks = direct_tasks
        self.emitted = 0
        # Tuples sent per emit by the consumers that always take the same number (all but
        # custom groupings): transferred = emitted * fanout + counted, with no counting
        # on the hot path. `counted` is a one-element list the custom choosers add to.
        self.fanout = fanout
        self.counted = [0]

    def transferred(self) -> int:
        return self.emitted * self.fanout + self.counted[0]

    def all_targets(self) -> list[int]:
        """Every task this stream may be sent to, grouped or direct."""
        return sorted({*self.targets, *self.direct_tasks})


def _combined(choosers: list[Chooser]) -> Chooser:
    def choose(values: Sequence[Any]) -> list[int]:
        out: list[int] = []
        for chooser in choosers:
            out += chooser(values)
        return out

    return choose


SystemStreams = Mapping[str, Mapping[str, Sequence[str]]]
"""{component: {system stream: fields}}, from the executor classes of the components."""


def stream_table(topology: Topology, system: SystemStreams | None = None) -> list[StreamInfo]:
    """Every stream of the topology, indexed by its code: the tick stream is code 0, then
    the declared streams, then the system streams (`first_system_code` on)."""
    table = [StreamInfo(SYSTEM_COMPONENT, TICK_STREAM, ["freq"])]
    for cid in sorted(topology.components):
        outputs = topology.components[cid].outputs
        for stream in sorted(outputs):
            table.append(StreamInfo(cid, stream, outputs[stream]))
    for cid in sorted(system or {}):
        streams = (system or {})[cid]
        for stream in sorted(streams):
            table.append(StreamInfo(cid, stream, streams[stream]))
    return table


def first_system_code(topology: Topology) -> int:
    """The code of the first system stream: every code from here on is framework-internal."""
    return 1 + sum(len(spec.outputs) for spec in topology.components.values())


def stream_codes(table: Sequence[StreamInfo]) -> dict[tuple[str, str], int]:
    return {(info.component, info.stream): code for code, info in enumerate(table)}


def build_routes(
    topology: Topology,
    component_id: str,
    task: int,
    component_tasks: Mapping[str, Sequence[int]],
    local_tasks: set[int],
    codes: Mapping[tuple[str, str], int],
    context: Any,
) -> dict[str, Route]:
    """The routes of every stream that `component_id`'s task `task` declares."""
    spec = topology.components[component_id]
    routes: dict[str, Route] = {}
    for stream, fields in spec.outputs.items():
        choosers: list[Chooser] = []
        direct: set[int] = set()
        grouped: set[int] = set()
        fanout = 0
        counted = [0]
        for bolt in sorted(topology.bolts(), key=lambda b: b.id):
            for grouping in bolt.inputs:
                if grouping.source != component_id or grouping.stream != stream:
                    continue
                targets = component_tasks[bolt.id]
                if grouping.kind == "direct":
                    direct.update(targets)
                    continue
                grouped.update(targets)
                local = [t for t in targets if t in local_tasks]
                chooser = make_chooser(grouping, fields, targets, task, local, context)
                if grouping.kind == "custom":
                    chooser = _counting(chooser, counted)
                else:
                    fanout += len(targets) if grouping.kind == "all" else 1
                choosers.append(chooser)
        route = Route(stream, codes[(component_id, stream)], len(fields), choosers,
                      frozenset(direct), fanout, sorted(grouped))
        route.counted = counted
        routes[stream] = route
    return routes


def _counting(chooser: Chooser, counted: list[int]) -> Chooser:
    def choose(values: Sequence[Any]) -> list[int]:
        targets = chooser(values)
        counted[0] += len(targets)
        return targets

    return choose
