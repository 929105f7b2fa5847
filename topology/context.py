"""`TopologyContext`: what a task knows about itself and the topology it runs in, and the
metrics it registers (Storm's `registerMetric`).

A task registers metrics in `open`/`prepare` (or later): a `CountMetric` (a total since the
task started), a `GaugeMetric` (a value that goes up and down, set or read from a function
at each heartbeat) or a `HistogramMetric` (values in log-scale buckets, for percentiles).
Updating one is an attribute change in the task's own thread, nothing more; the worker reads
them when it heartbeats (every `worker.heartbeat.frequency.secs`) into the executor's
snapshot, "metrics": {name: {"type": ..., ...}} (cluster.records reads them; the REST API
and the dashboard show them per component, counters and gauges summed over its tasks).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cluster.records import MAX_USER_METRICS, Histogram
from topology.errors import TopologyError


class CountMetric:
    """A counter: `incr(n)`. Reported as its total since the task started."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def incr(self, by: float = 1) -> None:
        self.value += by

    def report(self) -> dict[str, Any]:
        return {"type": "counter", "value": _number(self.value)}


class GaugeMetric:
    """A current value: `set(v)`, or `GaugeMetric(fn)` to report `fn()` at each heartbeat."""

    __slots__ = ("value", "fn")

    def __init__(self, fn: Callable[[], float] | None = None) -> None:
        self.value: float = 0
        self.fn = fn

    def set(self, value: float) -> None:
        self.value = value

    def report(self) -> dict[str, Any]:
        return {"type": "gauge",
                "value": _number(self.fn() if self.fn is not None else self.value)}


class HistogramMetric:
    """Values (latencies in seconds, sizes, ...) in log-scale buckets: `update(v)`."""

    __slots__ = ("histogram",)

    def __init__(self) -> None:
        self.histogram = Histogram()

    def update(self, value: float) -> None:
        self.histogram.add(_number(value))

    def report(self) -> dict[str, Any]:
        return {"type": "histogram", **self.histogram.to_dict()}


Metric = CountMetric | GaugeMetric | HistogramMetric


def _number(value: Any) -> float:
    """A metric's value as the heartbeat carries it: a finite int or float, or TypeError
    (a heartbeat crosses processes and ends in JSON: no NaN, no Decimal, no user object)."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = value if type(value) is int else float(value)  # numpy's, Fraction: float
        if math.isfinite(number):
            return number
    raise TypeError(f"the value {value!r} is not a finite number")


class TopologyContext:
    """Given to `Spout.open` and `Bolt.prepare`."""

    def __init__(
        self,
        topology_name: str,
        task_id: int,
        component_id: str,
        component_tasks: Mapping[str, Sequence[int]],
        worker_tasks: Sequence[int] = (),
        worker_port: int | None = None,
    ) -> None:
        self.topology_name = topology_name
        self.task_id = task_id
        self.component_id = component_id
        self._component_tasks = {c: sorted(t) for c, t in component_tasks.items()}
        self.worker_tasks = sorted(worker_tasks)
        self.worker_port = worker_port
        self.metrics: dict[str, Metric] = {}  # registered, by name
        self._failing: set[str] = set()  # metrics that could not be read last time

    def component_tasks(self, component_id: str) -> list[int]:
        """The task ids of a component, sorted (empty if there is no such component)."""
        return list(self._component_tasks.get(component_id, ()))

    @property
    def task_index(self) -> int:
        """This task's position among its component's tasks: 0 .. parallelism-1."""
        return self._component_tasks[self.component_id].index(self.task_id)

    @property
    def components(self) -> list[str]:
        return sorted(self._component_tasks)

    def register_metric(self, name: str, metric: Metric | Callable[[], float],
                        time_bucket_size_secs: float = 60) -> Any:
        """Register `metric` under `name` for this task and return it; a plain function is a
        gauge read at each heartbeat. Storm's registerMetric: `time_bucket_size_secs` is
        accepted for its signature (and must be positive), but the worker reports metrics
        with every heartbeat and counters are totals, not per bucket."""
        where = f"component {self.component_id!r} task {self.task_id}"
        if not isinstance(name, str) or not name:
            raise TopologyError(f"{where}: a metric name must be a non-empty string, "
                                f"not {name!r}")
        if name in self.metrics:
            raise TopologyError(f"{where}: metric {name!r} is registered already")
        if len(self.metrics) >= MAX_USER_METRICS:
            raise TopologyError(f"{where}: cannot register metric {name!r}: a task has at "
                                f"most {MAX_USER_METRICS} metrics")
        if (isinstance(time_bucket_size_secs, bool)
                or not isinstance(time_bucket_size_secs, (int, float))
                or not math.isfinite(time_bucket_size_secs) or time_bucket_size_secs <= 0):
            raise TopologyError(f"{where}: metric {name!r}: time_bucket_size_secs must be a "
                                f"positive number of seconds, not {time_bucket_size_secs!r}")
        if not isinstance(metric, (CountMetric, GaugeMetric, HistogramMetric)):
            if not callable(metric):
                raise TopologyError(
                    f"{where}: metric {name!r} must be a CountMetric, GaugeMetric, "
                    f"HistogramMetric or a function returning a number, not {metric!r}")
            metric = GaugeMetric(metric)
        self.metrics[name] = metric
        return metric

    def report_metrics(self, on_error: Callable[[str, Exception], None]
                       ) -> dict[str, dict[str, Any]]:
        """Every metric's heartbeat form. One that cannot be read (a gauge's function raised,
        a value is not a finite number) is left out, and `on_error(name, exception)` told
        when it starts failing, not at every heartbeat."""
        out = {}
        failing = set()
        for name, metric in list(self.metrics.items()):  # a user thread may register one
            try:
                out[name] = metric.report()
            except Exception as e:  # user code: a gauge's function, a value set
                failing.add(name)
                if name not in self._failing:
                    on_error(name, e)
        self._failing = failing
        return out

    def __repr__(self) -> str:
        return (
            f"TopologyContext(topology={self.topology_name!r}, component={self.component_id!r}, "
            f"task={self.task_id})"
        )
