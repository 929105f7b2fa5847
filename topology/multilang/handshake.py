"""The first message a multilang component reads: configuration, topology context, pid dir.

Shaped exactly as Storm's `JsonSerializer.connect` sends it (TopologyContext.toJSONString),
so pystorm, streamparse and Storm's storm.py/storm.js find every key where they look.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from topology.model import Grouping, Topology
from topology.tuple import SYSTEM_COMPONENT

from .protocol import SYSTEM_TASK

# Storm's names for the kinds of grouping (the set field of its Thrift `Grouping` union).
STORM_GROUPING = {
    "shuffle": "SHUFFLE",
    "fields": "FIELDS",
    "all": "ALL",
    "global": "FIELDS",  # Storm's global grouping is a fields grouping on no fields
    "direct": "DIRECT",
    "local_or_shuffle": "LOCAL_OR_SHUFFLE",
    "none": "NONE",
    "partial_key": "CUSTOM_SERIALIZED",
    "custom": "CUSTOM_SERIALIZED",
}

# Daemon settings are not the component's business (and `cluster.secret` must not leak).
_DAEMON_PREFIXES = ("cluster.", "local.", "nimbus.", "supervisor.", "ui.", "worker.",
                    "zookeeper.")


def grouping_json(grouping: Grouping) -> dict[str, Any]:
    out: dict[str, Any] = {"type": STORM_GROUPING.get(grouping.kind, grouping.kind.upper())}
    if grouping.kind in ("fields", "global", "partial_key"):
        out["fields"] = list(grouping.fields)
    return out


def component_conf(conf: Mapping[str, Any], topology_name: str) -> dict[str, Any]:
    """The configuration a component sees: the topology's keys and the user's own, never the
    daemons' (values that are not JSON are left out)."""
    out: dict[str, Any] = {}
    for key, value in conf.items():
        if not isinstance(key, str) or key.startswith(_DAEMON_PREFIXES):
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        out[key] = value
    out["topology.name"] = topology_name
    return out


def context_json(topology: Topology, component: str, task: int,
                 component_tasks: Mapping[str, Sequence[int]]) -> dict[str, Any]:
    """Storm's TopologyContext as JSON, for `component`'s task `task`."""
    spec = topology.components[component]
    task_component = {str(t): c for c, ts in component_tasks.items() for t in ts}
    task_component[str(SYSTEM_TASK)] = SYSTEM_COMPONENT
    targets: dict[str, dict[str, Any]] = {stream: {} for stream in spec.outputs}
    for other in topology.components.values():
        for g in other.inputs:
            if g.source == component and g.stream in targets:
                targets[g.stream][other.id] = grouping_json(g)
    sources: dict[str, dict[str, Any]] = {}
    source_fields: dict[str, dict[str, list[str]]] = {}
    for g in spec.inputs:
        sources.setdefault(g.source, {})[g.stream] = grouping_json(g)
        fields = topology.components[g.source].outputs.get(g.stream, ())
        source_fields.setdefault(g.source, {})[g.stream] = list(fields)
    return {
        "task->component": task_component,
        "taskid": task,
        "componentid": component,
        "streams": sorted(spec.outputs),
        "stream->outputfields": {s: list(f) for s, f in spec.outputs.items()},
        "stream->target->grouping": targets,
        "source->stream->grouping": sources,
        "source->stream->fields": source_fields,
    }


def setup_info(topology: Topology, component: str, task: int,
               component_tasks: Mapping[str, Sequence[int]], conf: Mapping[str, Any],
               pid_dir: str) -> dict[str, Any]:
    """The handshake message: {"conf", "pidDir", "context"}."""
    return {
        "conf": component_conf(conf, topology.name),
        "pidDir": pid_dir,
        "context": context_json(topology, component, task, component_tasks),
    }


def context_from_streams(component: str, task: int,
                         component_tasks: Mapping[str, Sequence[int]],
                         streams: Sequence[tuple[str, str, Sequence[str]]]) -> dict[str, Any]:
    """Storm's TopologyContext as JSON when only the worker's stream table is at hand (the
    (component, stream, fields) of every user stream), not the topology: every key is
    there, but the groupings are unknown (empty) and `source->stream->fields` lists every
    other component's streams, a superset of this component's inputs."""
    task_component = {str(t): c for c, ts in component_tasks.items() for t in ts}
    task_component[str(SYSTEM_TASK)] = SYSTEM_COMPONENT
    own = {s: list(f) for c, s, f in streams if c == component}
    source_fields: dict[str, dict[str, list[str]]] = {}
    for c, s, f in streams:
        if c != component:
            source_fields.setdefault(c, {})[s] = list(f)
    return {
        "task->component": task_component,
        "taskid": task,
        "componentid": component,
        "streams": sorted(own),
        "stream->outputfields": own,
        "stream->target->grouping": {s: {} for s in own},
        "source->stream->grouping": {},
        "source->stream->fields": source_fields,
    }
