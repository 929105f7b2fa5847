"""The tuple a bolt receives."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TICK_STREAM = "__tick"
SYSTEM_COMPONENT = "__system"


class StreamInfo:
    """What all tuples of one (component, stream) share: built once per worker, not per tuple."""

    __slots__ = ("component", "stream", "fields", "index")

    def __init__(self, component: str, stream: str, fields: Sequence[str]) -> None:
        self.component = component
        self.stream = stream
        self.fields = tuple(fields)
        self.index = {name: i for i, name in enumerate(self.fields)}


class Tuple:
    """One tuple delivered to `Bolt.process`.

    `values` are the emitted values; `fields`, `component` and `stream` come from the shared
    StreamInfo of its source, so a tuple costs a single small object on the hot path.
    `id` holds the acker's (root, edge, ...) pairs of a tracked tuple and is empty otherwise.

    The worker builds these without calling `__init__` (it sets the five slots itself, in
    worker.executor.BoltExecutor._execute) and reuses one that nothing kept once `process`
    returned; a slot added here must be set there too.
    """

    __slots__ = ("values", "task", "id", "_info", "_ackval")

    _ackval: int | None  # XOR of the edges anchored to this tuple; None once acked/failed

    def __init__(self, values: Sequence[Any], task: int, info: StreamInfo, ids: tuple = ()) -> None:
        self.values = values
        self.task = task
        self.id = ids
        self._info = info
        self._ackval = 0

    @property
    def fields(self) -> tuple[str, ...]:
        return self._info.fields

    @property
    def stream(self) -> str:
        return self._info.stream

    @property
    def component(self) -> str:
        return self._info.component

    @property
    def is_tick(self) -> bool:
        return self._info.stream == TICK_STREAM

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, int):
            return self.values[key]
        try:
            return self.values[self._info.index[key]]
        except KeyError:
            raise KeyError(
                f"tuple from {self._info.component!r} stream {self._info.stream!r} has no field "
                f"{key!r} (fields: {list(self._info.fields)})"
            ) from None

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return (
            f"Tuple(component={self.component!r}, stream={self.stream!r}, task={self.task}, "
            f"values={list(self.values)!r})"
        )
