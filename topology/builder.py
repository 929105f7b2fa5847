"""`TopologyBuilder`: declare components and their groupings, then `build()` and validate.

The bounds below keep every record a topology makes well inside what stores it:

- A name (topology or component id) has 1-100 characters from [A-Za-z0-9_.-], starting with a
  letter or digit, matched whole (a trailing newline is refused). The longest file name a
  topology name ends up in is the supervisor's temporary code file
  `.<name>-<10-digit time>-<6 hex>-<code version>.pkl.<pid>.tmp`: about 150 bytes for a
  100-character name, well under the 255-byte limit of Linux file systems; ZooKeeper node
  names (`topologies/<name>-<time>-<hex>`, `errors/<id>/<component>/...`) stay as short.
- At most MAX_WORKERS workers, MAX_PARALLELISM executors per component and MAX_TASKS tasks in
  all (ackers included): the assignment, the largest record (about 20 bytes plus the host
  name per task and 120 bytes plus host and supervisor id per worker), then stays under
  ~450 KB even with 64-character host names, under half of ZooKeeper's 1 MB node limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from topology.component import Bolt, Spout, declared_streams
from topology.errors import TopologyError
from topology.model import ComponentSpec, CustomGrouping, Grouping, Topology
from topology.state.plan import prepare_checkpoints
from topology.windowing import WindowedBolt, fold_methods, spec_problems
from topology.windowing.spec import DEFAULT_MESSAGE_TIMEOUT_SECS, WINDOW_SOURCES

MAX_NAME_CHARS = 100
MAX_WORKERS = 256
MAX_PARALLELISM = 4096
MAX_TASKS = 4096
NAME_RULE = (f"1-{MAX_NAME_CHARS} letters, digits, '_', '.', '-', starting with a letter or "
             "digit")
_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.\-]{{0,{MAX_NAME_CHARS - 1}}}")


def name_problem(value: Any, what: str = "topology name") -> str | None:
    """Why `value` is not a valid topology name or component id, or None if it is."""
    if isinstance(value, str) and _NAME.fullmatch(value):
        return None
    shown = repr(value) if not isinstance(value, str) or len(value) <= 120 else (
        f"{value[:60]!r}... ({len(value)} characters)")
    return f"{what} {shown} is not valid ({NAME_RULE})"


class BoltDeclarer:
    """Returned by `set_bolt`: chain grouping calls to subscribe the bolt to streams."""

    def __init__(self, spec: ComponentSpec) -> None:
        self._spec = spec

    def _add(
        self,
        kind: str,
        source: str,
        stream: str,
        fields: Sequence[str] = (),
        custom: CustomGrouping | None = None,
    ) -> BoltDeclarer:
        if isinstance(fields, str):
            fields = [fields]
        self._spec.inputs.append(Grouping(kind, source, stream, tuple(fields), custom))
        return self

    def shuffle_grouping(self, component: str, stream: str = "default") -> BoltDeclarer:
        """Tuples are spread evenly over the bolt's tasks."""
        return self._add("shuffle", component, stream)

    def fields_grouping(
        self, component: str, fields: Sequence[str], stream: str = "default"
    ) -> BoltDeclarer:
        """Tuples with equal values in `fields` go to the same task."""
        return self._add("fields", component, stream, fields)

    def all_grouping(self, component: str, stream: str = "default") -> BoltDeclarer:
        """Every task receives every tuple."""
        return self._add("all", component, stream)

    def global_grouping(self, component: str, stream: str = "default") -> BoltDeclarer:
        """Every tuple goes to the task with the lowest id."""
        return self._add("global", component, stream)

    def direct_grouping(self, component: str, stream: str = "default") -> BoltDeclarer:
        """The emitter picks the task with `emit_direct`."""
        return self._add("direct", component, stream)

    def local_or_shuffle_grouping(self, component: str, stream: str = "default") -> BoltDeclarer:
        """Shuffle among the tasks in the emitter's worker, or among all if it has none."""
        return self._add("local_or_shuffle", component, stream)

    def none_grouping(self, component: str, stream: str = "default") -> BoltDeclarer:
        """No preference (currently the same as shuffle)."""
        return self._add("none", component, stream)

    def partial_key_grouping(
        self, component: str, fields: Sequence[str], stream: str = "default"
    ) -> BoltDeclarer:
        """Each key goes to the less loaded of two candidate tasks (load-balanced fields)."""
        return self._add("partial_key", component, stream, fields)

    def custom_grouping(
        self, component: str, grouping: CustomGrouping, stream: str = "default"
    ) -> BoltDeclarer:
        """`grouping.choose_tasks(task_id, values)` picks the target tasks."""
        return self._add("custom", component, stream, custom=grouping)


class TopologyBuilder:
    """Declare spouts and bolts, wire them, and `build()` a validated `Topology`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._components: dict[str, ComponentSpec] = {}
        self._errors: list[str] = []

    def _declare(
        self, kind: str, cid: str, obj: Any, parallelism: int, config: Mapping[str, Any] | None
    ) -> ComponentSpec:
        if cid in self._components:
            self._errors.append(f"component id {cid!r} is declared twice")
        spec = ComponentSpec(
            id=cid,
            kind=kind,
            obj=obj,
            parallelism=parallelism,
            config=dict(config or {}),
            outputs=declared_streams(obj),
        )
        self._components.setdefault(cid, spec)
        return spec

    def set_spout(
        self,
        component_id: str,
        spout: Spout | type[Spout],
        parallelism: int = 1,
        config: Mapping[str, Any] | None = None,
    ) -> ComponentSpec:
        """Add a spout (an instance, copied per task, or a class, instantiated per task)."""
        return self._declare("spout", component_id, spout, parallelism, config)

    def set_bolt(
        self,
        component_id: str,
        bolt: Bolt | type[Bolt],
        parallelism: int = 1,
        config: Mapping[str, Any] | None = None,
    ) -> BoltDeclarer:
        """Add a bolt; subscribe it to streams with the returned declarer's groupings."""
        return BoltDeclarer(self._declare("bolt", component_id, bolt, parallelism, config))

    def build(self, config: Mapping[str, Any] | None = None) -> Topology:
        """Validate and return the topology; raise TopologyError naming what is wrong."""
        topology = Topology(self.name, dict(self._components), dict(config or {}))
        problems = list(self._errors) + validate(topology)
        if not problems:
            problems += prepare_checkpoints(topology)  # stateful bolts: topology.state.plan
        if problems:
            raise TopologyError(f"topology {self.name!r}: " + "; ".join(problems))
        _record_window_sources(topology)
        return topology


def validate(topology: Topology) -> list[str]:
    """Every problem of a topology, each naming the component, stream or field at fault."""
    problems: list[str] = []
    if (problem := name_problem(topology.name, "name")) is not None:
        problems.append(problem)
    if not topology.spouts():
        problems.append("it has no spout")
    for spec in topology.components.values():
        problems += _check_component(spec)
    for spec in topology.bolts():
        problems += _check_inputs(spec, topology.components)
    problems += _check_cycles(topology)
    problems += _check_config(topology.config, "topology config")
    problems += _check_windows(topology)
    if not problems:
        problems += task_count_problems(topology)
    return problems


def task_count_problems(topology: Topology, conf: Mapping[str, Any] | None = None) -> list[str]:
    """The topology's task count against MAX_TASKS (with `conf` under its own config)."""
    try:
        tasks = sum(len(t) for t in topology.component_tasks(conf).values())
    except (TypeError, ValueError) as e:
        return [f"cannot count its tasks: {e}"]
    if tasks > MAX_TASKS:
        return [f"it has {tasks} tasks (executors and ackers); at most {MAX_TASKS} are allowed"]
    return []


def _check_component(spec: ComponentSpec) -> list[str]:
    cid = spec.id
    problems: list[str] = []
    if name_problem(cid) is not None or cid.startswith("__"):
        shown = repr(cid) if not isinstance(cid, str) or len(cid) <= 120 else (
            f"{cid[:60]!r}... ({len(cid)} characters)")
        problems.append(f"component id {shown} is not valid ({NAME_RULE}; not starting with "
                        "'__', which is reserved)")
    base = Spout if spec.kind == "spout" else Bolt
    cls = spec.obj if isinstance(spec.obj, type) else type(spec.obj)
    if not issubclass(cls, base):
        other = "Bolt" if base is Spout else "Spout"
        what = f"a {other}" if issubclass(cls, Bolt if base is Spout else Spout) else cls.__name__
        problems.append(
            f"component {cid!r} is set as a {spec.kind} but is {what}, not a {base.__name__}"
        )
    if not isinstance(spec.parallelism, int) or isinstance(spec.parallelism, bool) \
            or not 1 <= spec.parallelism <= MAX_PARALLELISM:
        problems.append(f"component {cid!r} has parallelism {spec.parallelism!r}; it must be "
                        f"an integer from 1 to {MAX_PARALLELISM}")
    outputs = getattr(spec.obj, "outputs", ())
    if isinstance(outputs, str):
        problems.append(
            f"component {cid!r}: outputs must be a list of field names or a dict, not the "
            f"string {outputs!r}"
        )
        return problems
    for stream, fields in spec.outputs.items():
        if stream.startswith("__"):
            problems.append(f"component {cid!r} declares stream {stream!r}: '__' is reserved")
        if len(set(fields)) != len(fields):
            problems.append(f"component {cid!r} stream {stream!r} repeats a field: {list(fields)}")
        for f in fields:
            if not isinstance(f, str) or not f:
                problems.append(f"component {cid!r} stream {stream!r} has a bad field name {f!r}")
    problems += _check_config(spec.config, f"component {cid!r} config")
    return problems


def _check_inputs(spec: ComponentSpec, components: Mapping[str, ComponentSpec]) -> list[str]:
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    if not spec.inputs:
        problems.append(f"bolt {spec.id!r} subscribes to no stream")
    for g in spec.inputs:
        where = f"bolt {spec.id!r} input {g.source!r} stream {g.stream!r}"
        if (g.source, g.stream) in seen:
            problems.append(f"{where} is subscribed twice")
        seen.add((g.source, g.stream))
        source = components.get(g.source)
        if source is None:
            problems.append(f"bolt {spec.id!r} subscribes to unknown component {g.source!r}")
            continue
        if g.stream not in source.outputs:
            problems.append(
                f"bolt {spec.id!r} subscribes to stream {g.stream!r} which component "
                f"{g.source!r} does not declare (it declares {sorted(source.outputs)})"
            )
            continue
        declared = source.outputs[g.stream]
        if g.kind in ("fields", "partial_key"):
            if not g.fields:
                problems.append(f"{where}: {g.kind} grouping needs at least one field")
            for f in g.fields:
                if f not in declared:
                    problems.append(
                        f"{where}: {g.kind} grouping on field {f!r} which the stream does not "
                        f"declare (fields: {list(declared)})"
                    )
        if g.kind == "custom" and not isinstance(g.custom, CustomGrouping):
            problems.append(f"{where}: custom grouping must be a topology.CustomGrouping")
    return problems


def _check_windows(topology: Topology) -> list[str]:
    """The settings of every windowed bolt, against its streams and the message timeout."""
    timeout = topology.config.get("topology.message.timeout.secs", DEFAULT_MESSAGE_TIMEOUT_SECS)
    if _check_config({"topology.message.timeout.secs": timeout}, ""):
        timeout = None  # a bad value is reported once, by _check_config
    problems: list[str] = []
    for spec in topology.bolts():
        cls = spec.obj if isinstance(spec.obj, type) else type(spec.obj)
        if not issubclass(cls, WindowedBolt):
            continue
        try:
            bolt = spec.make_instance() if isinstance(spec.obj, type) else spec.obj
        except Exception as e:  # user code: say which bolt, keep validating the rest
            problems.append(f"windowed bolt {spec.id!r}: creating it to read its window "
                            f"raised {type(e).__name__}: {e}")
            continue
        sources = topology.components
        inputs = {(g.source, g.stream): sources[g.source].outputs[g.stream]
                  for g in spec.inputs
                  if g.source in sources and g.stream in sources[g.source].outputs}
        problems += spec_problems(spec.id, bolt.window_spec, fold_methods=fold_methods(bolt),
                                  outputs=spec.outputs, inputs=inputs, timeout_secs=timeout)
    return problems


def _record_window_sources(topology: Topology) -> None:
    """Tell each windowed bolt's tasks which components feed it (in its component config): an
    event-time window waits for every task of those before its watermark moves."""
    for spec in topology.bolts():
        cls = spec.obj if isinstance(spec.obj, type) else type(spec.obj)
        if issubclass(cls, WindowedBolt):
            spec.config[WINDOW_SOURCES] = sorted({g.source for g in spec.inputs})


def _check_cycles(topology: Topology) -> list[str]:
    graph = {cid: [g.source for g in spec.inputs] for cid, spec in topology.components.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                if state.get(node) == 2:
                    continue
                if state.get(node) == 1:
                    cycle = path[path.index(node):] + [node]
                    return [f"it has a cycle: {' <- '.join(cycle)}"]
                state[node] = 1
                path.append(node)
            parents = [p for p in graph.get(node, []) if p in graph]
            if i < len(parents):
                stack.append((node, i + 1))
                stack.append((parents[i], 0))
            else:
                state[node] = 2
                path.pop()
    return []


def _check_config(config: Mapping[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    for key in config:
        if not isinstance(key, str):
            problems.append(f"{where}: key {key!r} is not a string")
    for key, (low, high) in _INT_KEYS.items():
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low or (high is not None and value > high)):
            bound = f">= {low}" if high is None else f"from {low} to {high}"
            problems.append(f"{where}: {key} = {value!r}; it must be an integer {bound}")
    for key in _SECONDS_KEYS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or not value > 0):
            problems.append(f"{where}: {key} = {value!r}; it must be a finite number of "
                            "seconds > 0")
    return problems


# The same bounds as cluster.config's registry, checked here so build() names the component.
_INT_KEYS: dict[str, tuple[int, int | None]] = {
    "topology.workers": (1, MAX_WORKERS),
    "topology.acker.executors": (0, MAX_TASKS),
    "topology.max.spout.pending": (1, None),
    "topology.max.task.parallelism": (1, None),
}
_SECONDS_KEYS = ("topology.message.timeout.secs", "topology.tick.tuple.freq.secs")
