"""Collectors: what a component's `emit`, `emit_direct`, `ack` and `fail` are bound to.

A collector chooses the targets of each emitted tuple, gives it its ids (worker.acking) and
appends it to its rows for that target: `out[target]` is a flat list
[code, values, ids, code, values, ids, ...] in emit order. The loop takes those rows after
each executor's slice (tasks of this worker) or at the next flush (tasks of other workers),
so a tuple costs three list appends here and no object of its own (but its ids).

Collectors know nothing of executors: an executor builds its collector complete, hands it
the shared pieces (routes, the worker's AckOutbox, the spout's pending map) and, for a bolt,
sets `current` to the input being processed so that `emit` anchors to it by default.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from topology.errors import TopologyError
from worker.acking import UNTRACKED, AckOutbox, new_id
from worker.routing import Route
from worker.stats import ExecutorStats
from worker.wire import Rows


class Collector:
    """Target choice and rows, shared by the spout and bolt collectors."""

    def __init__(self, component: str, task: int, routes: Mapping[str, Route],
                 system_codes: Mapping[str, int], capture: list[Any] | None) -> None:
        self.component = component
        self.task = task
        self.routes = routes
        self.system_codes = system_codes
        self.capture = capture
        self.system_emitted = 0
        self.out: dict[int, Rows] = {}
        for route in routes.values():
            for target in route.all_targets():
                self.out[target] = []
        if capture is not None:  # testing: record every emit, off the hot path otherwise
            for name in ("emit", "emit_direct"):
                setattr(self, name, _capturing(getattr(self, name), component, capture))

    @property
    def count(self) -> int:
        """Tuples emitted, all streams: the sum of the routes' counters that stats report."""
        return sum(route.emitted for route in self.routes.values()) + self.system_emitted

    def _route(self, stream: str, values: Sequence[Any]) -> Route:
        route = self.routes.get(stream)
        if route is None:
            raise TopologyError(
                f"component {self.component!r} emitted on undeclared stream {stream!r} "
                f"(it declares {sorted(self.routes)})"
            )
        if len(values) != route.nfields:
            raise TopologyError(
                f"component {self.component!r} emitted {len(values)} values on stream "
                f"{stream!r}, which declares {route.nfields} fields"
            )
        return route

    def _direct_target(self, route: Route, task: int) -> list[int]:
        if task not in route.direct_tasks:
            raise TopologyError(
                f"component {self.component!r}: task {task} is not a direct-grouped consumer "
                f"of stream {route.stream!r} (direct consumers: {sorted(route.direct_tasks)})"
            )
        route.counted[0] += 1
        return [task]

    def _system_code(self, stream: str) -> int:
        code = self.system_codes.get(stream)
        if code is None:
            raise TopologyError(f"component {self.component!r}: no system stream {stream!r} "
                                f"(system streams: {sorted(self.system_codes)})")
        return code

    def emit_system(self, stream: str, values: Sequence[Any], tasks: Iterable[int],
                    anchors: Sequence[Any] = ()) -> None:
        """Send a framework-internal tuple (a system stream of the stream table) to `tasks`,
        unanchored (a bolt's collector anchors it); the receivers' executors get it in
        `on_system`, user code never sees it."""
        self._untracked(self._system_code(stream), values, tasks)
        self.system_emitted += 1

    def _untracked(self, code: int, values: Sequence[Any], targets: Iterable[int]) -> None:
        """Rows of a tuple no acker tracks, for `targets`."""
        out = self.out
        for t in targets:
            rows = out.get(t)
            if rows is None:  # a system stream's target that no route names
                rows = out[t] = []
            rows.append(code)
            rows.append(values)
            rows.append(UNTRACKED)

    def take_rows(self) -> Iterable[tuple[int, Rows]]:
        """(target, rows) of every target with rows waiting; each is left empty."""
        out = self.out
        for target, rows in out.items():
            if rows:
                out[target] = []
                yield target, rows


class SpoutCollector(Collector):
    """Binds `Spout.emit`/`emit_direct`. Reliable emits open a tree in the AckOutbox and
    enter `pending` (root -> (msg_id, emit time)); without ackers they complete at once."""

    def __init__(self, component: str, task: int, routes: Mapping[str, Route],
                 system_codes: Mapping[str, int], capture: list[Any] | None,
                 outbox: AckOutbox | None, pending: dict[int, tuple[Any, float]]) -> None:
        super().__init__(component, task, routes, system_codes, capture)
        self.outbox = outbox  # None: no acker tracks anything
        self.pending = pending
        self.instant: list[Any] = []  # msg ids complete at emit (nothing tracks them)
        self.now = 0.0  # the loop's time, set by the executor before each slice
        self.emits = 0  # emit calls (the spout loop asks if next_tuple emitted anything)

    def emit(self, values: Sequence[Any], msg_id: Any = None, stream: str = "default") -> list[int]:
        route = self.routes.get(stream)
        if route is None or len(values) != route.nfields:
            route = self._route(stream, values)  # raises the clear error
        targets = route.choose(values)
        self._send(route, targets, values, msg_id)
        return targets

    def emit_direct(self, task: int, values: Sequence[Any], msg_id: Any = None,
                    stream: str = "default") -> list[int]:
        route = self._route(stream, values)
        targets = self._direct_target(route, task)
        self._send(route, targets, values, msg_id)
        return targets

    def _send(self, route: Route, targets: list[int], values: Sequence[Any], msg_id: Any) -> None:
        if msg_id is None:
            self._untracked(route.code, values, targets)
        elif self.outbox is not None and targets:
            out = self.out
            code = route.code
            root, edges = self.outbox.open_tree(self.task, len(targets))
            for t, edge in zip(targets, edges, strict=True):
                rows = out[t]
                rows.append(code)
                rows.append(values)
                rows.append((root, edge))
            self.pending[root] = (msg_id, self.now)
        else:  # reliable, but nothing will track the tree: it is complete now
            self.instant.append(msg_id)
            self._untracked(route.code, values, targets)
        route.emitted += 1
        self.emits += 1


class BoltCollector(Collector):
    """Binds `Bolt.emit`/`emit_direct`/`ack`/`fail`, and is where anchoring is done.

    `emit(anchors=None)` anchors to `current` if the bolt auto-anchors: the executor sets it
    to the input tuple while `process` runs and to None otherwise, so emits from ticks and
    timers are unanchored. Anchoring (see worker.acking) is `_anchor`; `emit`'s inline case
    (one anchor in one tree: nearly every emit) is `_anchor` unrolled for one anchor.
    """

    def __init__(self, component: str, task: int, routes: Mapping[str, Route],
                 system_codes: Mapping[str, int], capture: list[Any] | None,
                 outbox: AckOutbox, stats: ExecutorStats, auto_anchor: bool = True) -> None:
        super().__init__(component, task, routes, system_codes, capture)
        self.outbox = outbox
        self.stats = stats
        self.auto_anchor = auto_anchor
        self.current: Any = None  # the input being processed, if the bolt auto-anchors

    def emit(self, values: Sequence[Any], anchors: Sequence[Any] | None = None,
             stream: str = "default") -> list[int]:
        route = self.routes.get(stream)
        if route is None or len(values) != route.nfields:
            route = self._route(stream, values)  # raises the clear error
        key = route.key  # a fields grouping on one field: its chooser, inline
        targets = (route.by_hash[hash(values[key]) % route.nkeys] if key >= 0
                   else route.choose(values))
        out = self.out
        code = route.code
        current = self.current if anchors is None else None
        if current is not None and len(current.id) == 2:  # anchored to the input: inline
            root = current.id[0]
            try:
                for t in targets:
                    edge = new_id()
                    current._ackval ^= edge  # a TypeError once it was acked: before any row
                    rows = out[t]
                    rows.append(code)
                    rows.append(values)
                    rows.append((root, edge))
            except TypeError:
                self._anchor((current,))  # raises the clear error
        elif anchors or (current is not None and current.id):
            self._write(code, values, targets, anchors or (current,))
        else:  # unanchored, or anchored to untracked tuples: _untracked, inline
            for t in targets:
                rows = out[t]
                rows.append(code)
                rows.append(values)
                rows.append(UNTRACKED)
        route.emitted += 1
        return targets

    def emit_direct(self, task: int, values: Sequence[Any], anchors: Sequence[Any] | None = None,
                    stream: str = "default") -> list[int]:
        route = self._route(stream, values)
        targets = self._direct_target(route, task)
        if anchors is None:
            anchors = (self.current,) if self.current is not None else ()
        self._send(route, targets, values, anchors)
        return targets

    def emit_system(self, stream: str, values: Sequence[Any], tasks: Iterable[int],
                    anchors: Sequence[Any] = ()) -> None:
        self._write(self._system_code(stream), values, tasks, anchors)
        self.system_emitted += 1

    def _send(self, route: Route, targets: list[int], values: Sequence[Any],
              anchors: Sequence[Any]) -> None:
        self._write(route.code, values, targets, anchors)
        route.emitted += 1

    def _write(self, code: int, values: Sequence[Any], targets: Iterable[int],
               anchors: Sequence[Any]) -> None:
        if not anchors:
            self._untracked(code, values, targets)
            return
        out = self.out
        for t in targets:
            rows = out.get(t)
            if rows is None:
                rows = out[t] = []
            ids = self._anchor(anchors)
            rows.append(code)
            rows.append(values)
            rows.append(ids)

    def _anchor(self, anchors: Sequence[Any]) -> tuple[int, ...]:
        """The ids of a child anchored to `anchors`: a new edge per tracked anchor, XORed
        into that anchor's ackval and into the child's id under each of that anchor's
        roots. Raises TopologyError, changing nothing, if an anchor was acked or failed."""
        tracked = [a for a in anchors if a is not None and a.id]
        for a in tracked:
            if a._ackval is None:
                raise TopologyError(f"component {self.component!r} anchored a tuple to {a!r}, "
                                    "which was already acked or failed")
        child: dict[int, int] = {}
        for a in tracked:
            edge = new_id()
            a._ackval ^= edge
            ids = a.id
            for i in range(0, len(ids), 2):
                root = ids[i]
                child[root] = child.get(root, 0) ^ edge
        flat: list[int] = []
        for root, val in child.items():
            flat += (root, val)
        return tuple(flat)

    def ack(self, tup: Any) -> None:
        if self.outbox.ack(tup):
            self.stats.acked += 1

    def fail(self, tup: Any) -> None:
        if self.outbox.fail(tup):
            self.stats.failed += 1


def _capturing(emit: Callable[..., list[int]], component: str,
               capture: list[Any]) -> Callable[..., list[int]]:
    """`emit` that also records (component, stream, values) of every tuple it sent."""
    signature = inspect.signature(emit)

    def capturing(*args: Any, **kwargs: Any) -> list[int]:
        targets = emit(*args, **kwargs)
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        capture.append((component, call.arguments["stream"], list(call.arguments["values"])))
        return targets

    return capturing
