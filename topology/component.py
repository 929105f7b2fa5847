"""`Spout` and `Bolt`: the classes users subclass.

A component does not talk to the transport itself. When its task starts, the worker attaches
a collector and binds `emit`, `emit_direct`, `ack` and `fail` of this instance to it, so a
call from user code goes straight to the worker's routing code with no extra hop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from topology.context import TopologyContext
    from topology.tuple import Tuple

Outputs = Sequence[str] | Mapping[str, Sequence[str]]


def _not_running(name: str) -> Any:
    def method(self: Component, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"{type(self).__name__}.{name}() called outside a running task: "
            "emit, ack and fail work once the worker has opened/prepared the component"
        )

    method.__name__ = name
    return method


class Component:
    """What spouts and bolts share: declared outputs and the collector binding."""

    #: fields of the "default" stream, or {stream_id: [fields]}
    outputs: Outputs = ()
    #: the executor the worker runs this component's tasks with: None for the worker's own
    #: spout/bolt executor, else "package.module:ClassName" (or the class) of a subclass of
    #: worker.executor.Executor. A string keeps this layer from importing the worker's.
    executor_factory: Any = None

    def _attach(self, collector: Any) -> None:
        """Bind this instance's emit/ack/fail to the worker's collector (called by the worker)."""
        for name in self._collector_methods:
            setattr(self, name, getattr(collector, name))

    _collector_methods: tuple[str, ...] = ()


class Spout(Component):
    """A source of tuples. Override `next_tuple`; emit with a `msg_id` to make a tuple reliable."""

    _collector_methods = ("emit", "emit_direct")

    def open(self, conf: Mapping[str, Any], context: TopologyContext) -> None:
        """Called once in the worker before the first `next_tuple`."""

    def next_tuple(self) -> None:
        """Called repeatedly; may emit zero or more tuples. Must not block for long."""

    def ack(self, msg_id: Any) -> None:
        """The tuple tree of `msg_id` was fully processed."""

    def fail(self, msg_id: Any) -> None:
        """The tuple tree of `msg_id` failed or timed out; emit it again to replay it."""

    def activate(self) -> None:
        """The topology was activated: `next_tuple` will be called from now on."""

    def deactivate(self) -> None:
        """The topology was deactivated: `next_tuple` will not be called until activation."""

    def close(self) -> None:
        """The task is shutting down."""

    # Replaced per instance by the worker's collector (see Component._attach).
    emit = _not_running("emit")  # (values, msg_id=None, stream="default") -> list[int]
    emit_direct = _not_running("emit_direct")  # (task, values, msg_id=None, stream="default")


class Bolt(Component):
    """An operator: `process` is called once per input tuple."""

    #: ack the input after `process` returns (unless it was acked or failed explicitly)
    auto_ack: bool = True
    #: `emit(values)` inside `process` anchors to the input tuple
    auto_anchor: bool = True
    #: an exception in `process` fails the input tuple
    auto_fail: bool = True

    _collector_methods = ("emit", "emit_direct", "ack", "fail")

    def prepare(self, conf: Mapping[str, Any], context: TopologyContext) -> None:
        """Called once in the worker before the first tuple."""

    def process(self, tup: Tuple) -> None:
        """Handle one input tuple."""
        raise NotImplementedError(f"{type(self).__name__} must implement process(tup)")

    def process_tick(self, tup: Tuple) -> None:
        """Handle a tick tuple (see `topology.tick.tuple.freq.secs`)."""

    def cleanup(self) -> None:
        """The task is shutting down."""

    # Replaced per instance by the worker's collector (see Component._attach).
    emit = _not_running("emit")  # (values, anchors=None, stream="default") -> list[int]
    emit_direct = _not_running("emit_direct")  # (task, values, anchors=None, stream="default")
    ack = _not_running("ack")  # (tup)
    fail = _not_running("fail")  # (tup)


def declared_streams(component: Any) -> dict[str, tuple[str, ...]]:
    """Normalise a component's `outputs` to {stream_id: fields}."""
    outputs = getattr(component, "outputs", ())
    if isinstance(outputs, Mapping):
        return {str(stream): tuple(fields) for stream, fields in outputs.items()}
    return {"default": tuple(outputs)} if outputs else {}
