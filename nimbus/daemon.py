"""The nimbus daemon: the API's actions, and the loop that keeps assignments right.

    start()  open the cluster state, bind the API, register, run for leader
    run()    until stopped: when leader, one round (nimbus.reconcile) per `nimbus.monitor.freq.secs`
             (sooner when the cluster state changes): lifecycle deadlines, heartbeats,
             `compute_assignments`, and write only the assignments that changed
    close()  stop the API, end the ZooKeeper session (a standby takes over at once)

Every nimbus serves reads from the cluster state; only the leader changes it. One lock
serialises the API's writes with the scheduling round. Time comes from `clock` (monotonic,
for liveness and lifecycle deadlines) and `wall` (ids and the submitted time). A round that
cannot read the state tells the liveness core so: nimbus's blindness is nobody's silence.

The code nimbus stores is signed with the cluster secret (cluster.codesign): supervisors run
nothing else. `LocalCluster` runs this same class without the API (`api=False`).
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cluster.codesign import sign_code, verify_code
from cluster.config import Config, require_secret_off_loopback
from cluster.records import (
    ALL_TIME,
    aggregate_components,
    component_figures,
    component_progress,
    heartbeats_of,
    last_checkpoint,
)
from cluster.state import ClusterState, StateError, open_state
from cluster.status import Status
from nimbus import submission as sub
from nimbus.lifecycle import (
    ACTIVATE,
    ACTIVE,
    DEACTIVATE,
    KILL,
    REBALANCE,
    STARTUP,
    LifecycleError,
    TopologyStatus,
    allowed_events,
    transition,
)
from nimbus.liveness import Liveness
from nimbus.protocol import ACTIONS, BadRequest, Conflict, NotFound, NotLeader
from nimbus.reconcile import Reconciler, status_of
from topology.model import Topology
from topology.state import rebalance_problem

log = logging.getLogger(__name__)

VERSION = "0.1"
StateFactory = Callable[[Config], ClusterState]


class Nimbus:
    """One nimbus process: the API's service and the scheduling loop."""

    def __init__(
        self,
        config: Config,
        state_factory: StateFactory = open_state,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        api: bool = True,
    ) -> None:
        self.config = config
        self.api = api
        self.id = f"{config['nimbus.host']}:{config['nimbus.port']}-{secrets.token_hex(3)}"
        self._state_factory = state_factory
        self.clock = clock
        self.wall = wall
        self.state: ClusterState | None = None
        self.server: Any = None  # nimbus.api.ApiServer once started
        self.leading = False
        self.started = wall()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._elected = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        freq = float(config["nimbus.monitor.freq.secs"])
        self.liveness = Liveness(float(config["nimbus.worker.timeout.secs"]),
                                 float(config["nimbus.task.launch.secs"]),
                                 float(config["nimbus.supervisor.timeout.secs"]),
                                 blind_after=2 * freq + 1.0)
        self.reconciler = Reconciler(self.id, self.liveness, config["cluster.secret"], wall)

    # --- lifetime -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the state, bind the API and enter the election. Raises SquallError."""
        if self.api:
            require_secret_off_loopback(self.config, "nimbus.host", f"nimbus {self.id}")
        session = {"zookeeper.session.timeout.secs": self.config["nimbus.session.timeout.secs"]}
        self.state = self._state_factory(self.config.with_overrides(session))
        try:
            if self.api:
                from nimbus.api import ApiServer  # the server imports this module's types

                self.server = ApiServer(self, self.config)
                self.server.start()
                self.state.register_nimbus(self.id, {
                    "host": self.config["nimbus.host"], "port": self.server.port,
                    "version": VERSION, "started": self.started,
                })
            self.state.watch(self._wake.set)
            self.state.run_for_leader(self.id, self._on_elected, self._on_lost)
        except BaseException:
            self.close()
            raise
        if self.server is not None:
            log.info("nimbus %s: serving on %s:%d", self.id, self.config["nimbus.host"],
                     self.server.port)

    def run(self) -> None:
        """The loop, until `request_stop()`."""
        freq = float(self.config["nimbus.monitor.freq.secs"])
        while not self._stopping.is_set():
            self._wake.wait(freq)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                if self._elected.is_set() and not self.leading:
                    self._take_charge()
                if self.leading:
                    self.tick()
            except StateError:
                self.liveness.blind()  # what it could not see is nobody's silence
                log.warning("nimbus %s: round failed; retrying", self.id, exc_info=True)
            except Exception:  # a bug in one round must not end the daemon
                log.exception("nimbus %s: round failed", self.id)

    def tick(self) -> None:
        """One scheduling round now (the leader's; the loop calls it on its own)."""
        with self._lock:
            self.reconciler.run(self._live_state(), self.clock())

    def serve(self) -> None:
        """start(), run() until stopped, close()."""
        self.start()
        try:
            self.run()
        finally:
            self.close()

    def request_stop(self) -> None:
        """Ask run() to return (safe from a signal handler: only sets flags)."""
        self._stopping.set()
        self._wake.set()

    def close(self) -> None:
        """Stop the API and end the session. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.request_stop()
        self.leading = False
        if self.server is not None:
            self.server.stop()
        if self.state is not None:
            self.state.close()
        log.info("nimbus %s: stopped", self.id)

    # --- leadership ---------------------------------------------------------------------------

    def _on_elected(self) -> None:  # election thread: only flag
        self._elected.set()
        self._wake.set()

    def _on_lost(self) -> None:
        self._elected.clear()
        self.leading = False
        log.warning("nimbus %s: lost leadership", self.id)

    def _take_charge(self) -> None:
        """Become leader: re-arm kill/rebalance waits on this host's clock, forget old
        liveness observations (they were another nimbus's)."""
        state = self._live_state()
        with self._lock:
            self.liveness.forget()
            now = self.clock()
            for tid, meta in state.topologies().items():
                status = status_of(meta)
                if status is None:
                    continue
                new = transition(status, STARTUP, now)
                if new != status:
                    state.set_topology(tid, sub.with_status(meta, new))
            self.leading = True
            self.tick()
        log.info("nimbus %s: leading", self.id)

    def leader_address(self) -> str | None:
        state = self._live_state()
        leader = state.leader()
        info = state.nimbuses().get(leader) if leader else None
        return f"{info['host']}:{info['port']}" if info else None

    def _require_leader(self) -> ClusterState:
        if not self.leading:
            leader = None if self._elected.is_set() else self.leader_address()
            where = f"; the leader is {leader}" if leader else "; no leader is elected yet"
            raise NotLeader(f"nimbus {self.id} is not the leader{where}", leader)
        return self._live_state()

    def _live_state(self) -> ClusterState:
        if self.state is None:
            raise StateError(f"nimbus {self.id}: not started")
        return self.state

    # --- the API's actions --------------------------------------------------------------------

    def submit(self, body: bytes, name: str | None, overrides: Mapping[str, Any],
               owner: str) -> dict[str, Any]:
        self._require_leader()
        topology, package_overrides, resources = sub.unpack(body)
        return self.submit_topology(topology, name, {**package_overrides, **overrides}, owner,
                                    resources)

    def submit_topology(self, topology: Topology, name: str | None,
                        overrides: Mapping[str, Any], owner: str,
                        resources: bytes | None = None) -> dict[str, Any]:
        """Validate, store (code signed, with its `resources` archive) and schedule
        `topology`; its summary."""
        self._require_leader()
        topology, conf = sub.prepare(topology, name, overrides, self.config)
        with self._lock:
            state = self._require_leader()
            existing = self._find(topology.name)
            if existing is not None:
                what = "being killed" if existing.get("status") == Status.KILLED else "running"
                raise Conflict(f"topology {topology.name!r} is already {what}")
            now = self.wall()
            tid = sub.topology_id(topology.name, now)
            state.put_code(tid, sign_code(sub.code_blob(topology, conf, resources),
                                          self.config["cluster.secret"]))
            meta = sub.make_meta(tid, topology, conf, TopologyStatus(ACTIVE), now, owner, 1)
            state.set_topology(tid, meta)
            log.info("nimbus %s: submitted %s (%d workers, %d tasks) for %s", self.id, tid,
                     meta["num_workers"], meta["num_tasks"], owner)
            self.tick()
            return self._summary(meta, state.assignment(tid))

    def kill(self, name: str, wait: float | None) -> dict[str, Any]:
        return self._event(name, KILL, wait)

    def activate(self, name: str) -> dict[str, Any]:
        return self._event(name, ACTIVATE, None)

    def deactivate(self, name: str) -> dict[str, Any]:
        return self._event(name, DEACTIVATE, None)

    def rebalance(self, name: str, workers: int | None, parallelism: Mapping[str, Any],
                  wait: float | None, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Rebalance `name`: workers, parallelism and/or config keys a running topology may
        change (the topology must still validate with them: checked now, on its stored code,
        so that a refusal is the caller's answer rather than an abandoned rebalance later)."""
        state = self._require_leader()
        with self._lock:
            meta = self._get(name)
            request = sub.check_rebalance(meta, workers, parallelism, conf, self.config)
            if request["conf"] or request["parallelism"]:
                signed = state.get_code(meta["id"])
                if signed is None:
                    raise Conflict(f"rebalance {name!r}: its code is not stored yet")
                package = sub.unpack_code(verify_code(signed, self.config["cluster.secret"],
                                                      f"the stored code of {meta['id']}"))
                if request["conf"]:
                    sub.with_conf(package["topology"], request["conf"])
                problem = rebalance_problem(package["topology"], request["parallelism"])
                if problem:
                    raise BadRequest(f"rebalance {name!r}: {problem}")
            return self._event(name, REBALANCE, wait, {"rebalance": request})

    def set_log_levels(self, name: str, levels: Mapping[str, str], timeout: float | None,
                       reset: list[str]) -> dict[str, Any]:
        """Set loggers' levels in `name`'s workers for `timeout` seconds (None: until reset)
        and put `reset`'s back: stored with the topology, carried by its assignment
        (nimbus.reconcile), applied by each worker's parent thread (worker.parent)."""
        with self._lock:
            state = self._require_leader()
            meta = self._get(name)
            if meta.get("status") == Status.KILLED:
                raise BadRequest(f"topology {name!r} is being killed")
            meta = {**meta, "log_levels": sub.log_levels_after(
                meta.get("log_levels"), levels, timeout, reset, self.wall())}
            state.set_topology(meta["id"], meta)
            log.info("nimbus %s: log levels of %s: %s", self.id, meta["id"],
                     {k: v["level"] for k, v in meta["log_levels"].items()} or "their own")
            self.tick()
            current = state.topology(meta["id"]) or meta
            return {**self._summary(current, state.assignment(meta["id"])),
                    "log_levels": sub.live_log_levels_of(current, self.wall())}

    def _event(self, name: str, event: str, wait: float | None,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        with self._lock:
            state = self._require_leader()
            meta = self._get(name)
            if event in (KILL, REBALANCE) and wait is None:
                wait = float(meta.get("conf", {}).get("topology.message.timeout.secs", 30))
            if wait is not None and (isinstance(wait, bool) or not isinstance(wait, (int, float))
                                     or not math.isfinite(wait) or wait < 0):
                raise BadRequest(f"{event} {name!r}: wait must be a number >= 0, got {wait!r}")
            status = status_of(meta) or TopologyStatus(ACTIVE)
            try:
                new = transition(status, event, self.clock(), wait)
            except LifecycleError as e:
                raise BadRequest(f"topology {name!r}: {e}") from None
            meta = {**sub.with_status(meta, new), **(extra or {})}
            state.set_topology(meta["id"], meta)
            log.info("nimbus %s: %s %s -> %s", self.id, event, meta["id"], meta["status"])
            self.tick()
            current = state.topology(meta["id"]) or meta
            return self._summary(current, state.assignment(meta["id"]))

    # --- reads (any nimbus) -------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return {"id": self.id, "leader": self.leading, "leader_address": self.leader_address(),
                "version": VERSION, "started": self.started}

    def list_topologies(self) -> list[dict[str, Any]]:
        """Every topology's summary and its last committed checkpoint (None if it has none)."""
        state = self._live_state()
        assignments = state.assignments()
        return sorted(({**self._summary(m, assignments.get(tid)),
                        "checkpoint": last_checkpoint(component_progress(
                            state.worker_heartbeats(tid).values()))}
                       for tid, m in state.topologies().items()), key=lambda s: s["name"])

    def topology_status(self, name: str) -> dict[str, Any]:
        state = self._live_state()
        meta = self._get(name)
        tid = meta["id"]
        assignment = state.assignment(tid)
        heartbeats = state.worker_heartbeats(tid)
        workers = []
        now = self.clock()
        for w in (assignment or {}).get("workers", []):
            hb = heartbeats.get(f"{w['host']}:{w['port']}") or {}
            since = self.liveness.last_change(tid, (w["supervisor"], w["port"]), now)
            workers.append({
                **w,
                "heartbeat_version": hb.get("version"),
                "state": hb.get("state"),
                "uptime_secs": hb.get("uptime"),
                "pid": hb.get("pid"),
                "secs_since_heartbeat": None if since is None else round(since, 3),
            })
        status = status_of(meta)
        progress = component_progress(heartbeats.values())
        return {
            **self._summary(meta, assignment),
            "components": meta["components"],
            "stats": component_stats(heartbeats.values()),
            "progress": progress,  # windows, checkpoints, sources (cluster.records)
            "checkpoint": last_checkpoint(progress),
            "acker_tasks": meta.get("acker_tasks", []),
            "conf": meta.get("conf", {}),
            "lifecycle": meta.get("lifecycle"),
            "allowed_actions": [e for e in allowed_events(status) if e in ACTIONS]
            if status else [],
            "assignment_version": (assignment or {}).get("version"),
            "log_levels": sub.live_log_levels_of(meta, self.wall()),
            "workers": workers,
            "errors": state.errors(tid),
        }

    def _summary(self, meta: Mapping[str, Any], assignment: Mapping[str, Any] | None
                 ) -> dict[str, Any]:
        return {
            "id": meta["id"],
            "name": meta["name"],
            "status": meta["status"],
            "owner": meta.get("owner"),
            "submitted": meta.get("submitted"),
            "uptime_secs": round(max(0.0, self.wall() - float(meta.get("submitted", 0))), 3),
            "num_workers": meta["num_workers"],
            "num_tasks": meta["num_tasks"],
            "code_version": meta.get("code_version"),
            "assigned_workers": len((assignment or {}).get("workers", [])),
        }

    def _find(self, name: str) -> dict[str, Any] | None:
        for meta in self._live_state().topologies().values():
            if meta.get("name") == name:
                return meta
        return None

    def _get(self, name: str) -> dict[str, Any]:
        meta = self._find(name)
        if meta is None:
            raise NotFound(f"no topology named {name!r}")
        return meta


def component_stats(heartbeats: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Per-component totals since start from workers' heartbeats (JSON-safe): the counters of
    cluster.records.aggregate_components, complete latency percentiles, and the emitted and
    transferred counts per output stream."""
    beats = heartbeats_of(heartbeats)
    streams = component_figures(beats, ALL_TIME)
    out = {}
    for cid, c in aggregate_components(beats).items():
        latency = c.pop("complete_latency")
        c["complete_latency_ms"] = {
            f"p{p}": round(latency.percentile(p) * 1000, 3) for p in (50, 99)
        } if latency.count else {}
        c["emitted_streams"] = dict(streams[cid].emitted)
        c["transferred_streams"] = dict(streams[cid].transferred_streams)
        out[cid] = c
    return out
