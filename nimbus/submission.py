"""Turning a submitted package into what nimbus stores: the code blob and the topology meta.
No I/O: the daemon reads the request and writes the results.

A package is `cloudpickle.dumps({"topology": Topology, "overrides": {key: value}})` (a bare
Topology is accepted too), with `"resources": bytes` when the topology has shell components
(its code directory as a tar.gz, cluster.resources). The stored code blob is
`cloudpickle.dumps({"topology": Topology, "conf": dict})`, the conf being nimbus's config
with the topology's config and the overrides applied: exactly what `python -m worker` loads.
With resources, that blob and the archive go in an envelope (cluster.resources.wrap), which
a supervisor can open without unpickling user code.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Mapping
from typing import Any

import cloudpickle

from cluster.assignment import TopologyDemand
from cluster.config import KEYS, USER_KEY_PREFIX, Config, near_miss
from cluster.meta import topology_meta
from cluster.resources import ResourcesError, check_archive, open_envelope, wrap
from nimbus.lifecycle import TopologyStatus
from nimbus.protocol import MAX_LOGGERS, BadRequest, check_count
from topology.builder import (
    MAX_PARALLELISM,
    MAX_TASKS,
    MAX_WORKERS,
    name_problem,
    task_count_problems,
    validate,
)
from topology.errors import SquallError
from topology.model import ACKER_COMPONENT, Topology

SECRET_KEY = "cluster.secret"  # never stored with a topology: workers get it from the supervisor
MAX_RECORD_BYTES = 256 * 1024  # a topology record (JSON), far under ZooKeeper's 1 MB per node

# Config keys a running topology may change (`squall rebalance -t`): the workers restart with
# the new value and nothing else changes. Users' own keys (under topology., not registered)
# may change too. Every other registered key is refused, with what to do instead.
RUNTIME_KEYS = frozenset({
    "topology.max.spout.pending", "topology.message.timeout.secs", "topology.debug",
    "topology.tick.tuple.freq.secs", "topology.max.error.report.per.interval",
    "topology.error.throttle.interval.secs",
})
FIXED_KEYS = {
    "topology.workers": "give the number of workers with -n",
    "topology.acker.executors": "the ackers are part of the task layout: resubmit the topology",
    "topology.max.task.parallelism": "give each component's parallelism with -e",
    "topology.requirements": "a new environment needs a new submission",
}


def unpack(body: bytes) -> tuple[Topology, dict[str, Any], bytes | None]:
    """The topology, config overrides and resources archive (None: none shipped) of a
    submitted package; BadRequest if malformed, or if the archive must not be unpacked."""
    try:
        package = cloudpickle.loads(body)
    except Exception as e:  # anything can go wrong unpickling: it is the user's code
        raise BadRequest(f"cannot unpickle the topology package: {type(e).__name__}: {e}") from e
    if isinstance(package, Topology):
        return package, {}, None
    if not isinstance(package, dict) or not isinstance(package.get("topology"), Topology):
        raise BadRequest("the package is not {'topology': Topology, 'overrides': {...}}")
    overrides = package.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise BadRequest(f"package overrides must be a dict, got {type(overrides).__name__}")
    resources = package.get("resources")
    if resources is not None:
        if not isinstance(resources, bytes):
            raise BadRequest(f"package resources must be bytes (a tar.gz), got "
                             f"{type(resources).__name__}")
        try:
            check_archive(resources)
        except ResourcesError as e:
            raise BadRequest(str(e)) from e
    return package["topology"], overrides, resources


def unpack_code(blob: bytes) -> dict[str, Any]:
    """A stored code blob: {"topology": Topology, "conf": dict}, and "resources" (bytes)
    when it has them."""
    envelope = open_envelope(blob)
    package: dict[str, Any] = cloudpickle.loads(blob if envelope is None else envelope["code"])
    if envelope is not None and envelope.get("resources") is not None:
        package["resources"] = envelope["resources"]
    return package


def topology_id(name: str, now: float) -> str:
    problem = name_problem(name)
    if problem is not None:
        raise BadRequest(problem)
    return f"{name}-{int(now)}-{secrets.token_hex(3)}"


def prepare(
    topology: Topology, name: str | None, overrides: Mapping[str, Any], config: Config
) -> tuple[Topology, dict[str, Any]]:
    """Rename, re-validate and configure a submitted topology: (topology, worker conf).

    The overrides are folded into the topology's own config too, so that the topology and
    the conf agree on `topology.workers` and the ackers (the topology's config wins in
    `Topology.num_workers`).
    """
    topology = copy.copy(topology)
    if name:
        topology.name = name
    topology.config = {**topology.config, **{k: v for k, v in overrides.items()
                                             if k.startswith("topology.")}}
    problems = validate(topology)
    if problems:
        raise BadRequest(f"topology {topology.name!r} is invalid: {'; '.join(problems)}")
    conf = worker_conf(config, topology.config, overrides)
    problems = task_count_problems(topology, conf)
    if problems:
        raise BadRequest(f"topology {topology.name!r} is invalid: {'; '.join(problems)}")
    try:
        described = topology.describe(conf)
    except (SquallError, TypeError, ValueError) as e:
        raise BadRequest(f"topology {topology.name!r}: {e}") from e
    size = len(json.dumps({**described, "conf": conf}, default=str))
    if size > MAX_RECORD_BYTES:
        raise BadRequest(f"topology {topology.name!r}: its record would take {size} bytes, over "
                         f"the {MAX_RECORD_BYTES} allowed (fewer components, streams or "
                         "fields, or a smaller config)")
    return topology, conf


def worker_conf(
    config: Config, topology_config: Mapping[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    merged = {k: v for k, v in {**topology_config, **overrides}.items() if k != SECRET_KEY}
    try:
        conf = config.with_overrides(merged).to_dict()
    except SquallError as e:
        raise BadRequest(str(e)) from e
    conf[SECRET_KEY] = None
    try:
        json.dumps(conf)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"topology config is not JSON-safe: {e}") from e
    return conf


def code_blob(topology: Topology, conf: dict[str, Any], resources: bytes | None = None) -> bytes:
    """The code blob nimbus signs and stores: the package a worker loads, enveloped with the
    resources archive when there is one."""
    code = bytes(cloudpickle.dumps({"topology": topology, "conf": conf}))
    return code if resources is None else wrap(code, resources=resources)


def make_meta(
    topology_id: str, topology: Topology, conf: dict[str, Any], status: TopologyStatus,
    submitted: float, owner: str, code_version: int,
) -> dict[str, Any]:
    """The topology meta stored in the cluster state (cluster.meta's shape, plus the
    lifecycle status with its kill/rebalance deadline). Its "status" is the lifecycle state's
    `cluster.status.Status`."""
    return topology_meta(topology_id, topology, conf, status=status.name,
                         code_version=code_version, owner=owner, submitted=submitted,
                         lifecycle=status.to_dict())


def with_status(meta: Mapping[str, Any], status: TopologyStatus) -> dict[str, Any]:
    return {**meta, "status": status.name.value, "lifecycle": status.to_dict()}


def check_conf_changes(name: str, changes: Mapping[str, Any], config: Config) -> dict[str, Any]:
    """The config changes a rebalance of topology `name` may make, validated by the registry;
    BadRequest names the first key that may not change, or a typo of a known key."""
    what = f"rebalance {name!r}"
    for key in changes:
        if not key.startswith(USER_KEY_PREFIX):
            raise BadRequest(f"{what}: {key} cannot change on a running topology (only "
                             f"{USER_KEY_PREFIX}* keys can)")
        if key in KEYS and key not in RUNTIME_KEYS:
            hint = FIXED_KEYS.get(key, "resubmit the topology to change it")
            raise BadRequest(f"{what}: {key} cannot change on a running topology: {hint}")
        if key not in KEYS and (near := near_miss(key)) is not None:
            raise BadRequest(f"{what}: {key} is not a Squall key; did you mean {near}?")
    try:
        checked = config.with_overrides(dict(changes))
    except SquallError as e:
        raise BadRequest(f"{what}: {e}") from e
    return {key: checked[key] for key in changes}


def check_rebalance(
    meta: Mapping[str, Any], workers: int | None, parallelism: Mapping[str, Any],
    conf: Mapping[str, Any] | None = None, config: Config | None = None,
) -> dict[str, Any]:
    """The validated rebalance request {"workers", "parallelism", "conf"}; BadRequest names
    the fault. Workers, each component's parallelism and the tasks in all stay within the
    bounds of topology.builder, so that the rebalanced records stay small; `conf` changes
    only keys a running topology may change (checked against `config`'s registry)."""
    what = f"rebalance {meta['name']!r}"
    if workers is not None:
        check_count(workers, f"{what}: workers", MAX_WORKERS)
    if not isinstance(parallelism, Mapping):
        raise BadRequest(f"{what}: parallelism must be an object")
    for cid, n in parallelism.items():
        if cid not in meta["components"]:
            known = ", ".join(sorted(meta["components"]))
            raise BadRequest(f"{what}: no component {cid!r} (components: {known})")
        check_count(n, f"{what}: parallelism of {cid!r}", MAX_PARALLELISM)
    tasks = _tasks_after(meta, workers, parallelism)
    if tasks > MAX_TASKS:
        raise BadRequest(f"{what}: it would have {tasks} tasks (executors and ackers); at most "
                         f"{MAX_TASKS} are allowed")
    changes = check_conf_changes(meta["name"], conf, config or Config.from_mapping({})) \
        if conf else {}
    return {"workers": workers, "parallelism": dict(parallelism), "conf": changes}


def with_conf(topology: Topology, changes: Mapping[str, Any]) -> Topology:
    """A copy of `topology` whose own config has `changes` applied; BadRequest (naming the
    problem) when the topology is no longer valid with them."""
    changed = copy.copy(topology)
    changed.config = {**topology.config, **changes}
    problems = validate(changed)
    if problems:
        raise BadRequest(f"rebalance {topology.name!r}: with {', '.join(sorted(changes))} "
                         f"changed the topology is invalid: {'; '.join(problems)}")
    return changed


def _tasks_after(meta: Mapping[str, Any], workers: int | None,
                 parallelism: Mapping[str, int]) -> int:
    executors = sum(int(parallelism.get(cid, info.get("parallelism", len(info["tasks"]))))
                    for cid, info in meta["components"].items())
    ackers = (meta.get("conf") or {}).get("topology.acker.executors")
    if ackers is None:
        ackers = workers if workers is not None else int(meta.get("num_ackers") or 0)
    return executors + int(ackers)


def rebalanced(
    topology: Topology, conf: dict[str, Any], workers: int | None, parallelism: Mapping[str, int],
    changes: Mapping[str, Any] | None = None,
) -> tuple[Topology, dict[str, Any]]:
    """The topology and conf after a rebalance to `workers`, per-component parallelism and
    config `changes` (keys check_conf_changes allowed)."""
    changed = topology.with_parallelism(parallelism) if parallelism else copy.copy(topology)
    conf = dict(conf)
    if changes:
        changed.config = {**changed.config, **changes}
        conf.update(changes)
    if workers is not None:
        changed.config = {**changed.config, "topology.workers": workers}
        conf["topology.workers"] = workers
    return changed, conf


def demand(meta: Mapping[str, Any]) -> TopologyDemand:
    """What the scheduler needs of a topology, from its meta."""
    tasks = {cid: list(info["tasks"]) for cid, info in meta["components"].items()}
    if meta.get("acker_tasks"):
        tasks[ACKER_COMPONENT] = list(meta["acker_tasks"])
    return TopologyDemand(meta["id"], int(meta["num_workers"]), tasks)


# --- log levels (squall set-log-level) ---------------------------------------------------------


def log_levels_after(stored: Any, levels: Mapping[str, str], timeout: float | None,
                     reset: list[str], now: float) -> dict[str, dict[str, Any]]:
    """A topology's "log_levels" (worker.control) after setting `levels` for `timeout`
    seconds (None or 0: until reset) and resetting `reset`, at unix time `now`; levels whose
    time is over are dropped."""
    from worker.control import live_log_levels

    live = live_log_levels(stored, now)
    out = {name: dict(stored[name]) for name in live if name not in reset}
    until = now + timeout if timeout else None
    out.update({name: {"level": level, "until": until} for name, level in levels.items()})
    if len(out) > MAX_LOGGERS:
        raise BadRequest(f"at most {MAX_LOGGERS} loggers may have a level set at once; reset "
                         "some first")
    return out


def live_log_levels_of(meta: Mapping[str, Any], now: float) -> dict[str, dict[str, Any]]:
    """The entries of a topology's "log_levels" not over at unix time `now` (what its
    assignment carries)."""
    from worker.control import live_log_levels

    stored: Any = meta.get("log_levels")
    return {name: stored[name] for name in live_log_levels(stored, now)}
