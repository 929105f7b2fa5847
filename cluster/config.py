"""The one registry of configuration keys, and the immutable `Config` built from it.

Every key Squall reads is declared once in `KEYS` with its default, a validator and a line of
doc. `Config.load()` resolves defaults < TOML file < `-c key=value` overrides exactly once, at
start-up, validates every known key and hands back a read-only mapping that is passed down to
whoever needs it. Keys under `topology.` that are not in the registry are allowed (users add
their own, as in Storm), with a "did you mean" warning when one is a single edit away from a
known key (a typo); any other unknown key is an error with a "did you mean" hint.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import math
import os
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from topology.builder import MAX_TASKS, MAX_WORKERS
from topology.errors import ConfigError
from topology.state.providers import PROVIDERS

log = logging.getLogger(__name__)

CONF_ENV_VAR = "SQUALL_CONF"
USER_KEY_PREFIX = "topology."

Check = Callable[[Any], Any]
"""A validator: returns the (possibly normalised) value or raises TypeError/ValueError(reason)."""


# --- validators -------------------------------------------------------------------------------


def _int(lo: int | None = None, hi: int | None = None) -> Check:
    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError("expected an integer")
        if lo is not None and v < lo:
            raise ValueError(f"expected an integer >= {lo}")
        if hi is not None and v > hi:
            raise ValueError(f"expected an integer <= {hi}")
        return v

    return check


def _number(lo: float = 0.0) -> Check:
    def check(v: Any) -> float | int:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError("expected a number")
        if not math.isfinite(v):
            raise ValueError("expected a finite number")
        if v < lo:
            raise ValueError(f"expected a number >= {lo:g}")
        return v

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise TypeError("expected true or false")
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    return v


def _zk_root(v: Any) -> str:
    v = _text(v)
    if not v.startswith("/") or (len(v) > 1 and v.endswith("/")) or "//" in v:
        raise ValueError("expected an absolute ZooKeeper path like '/squall'")
    return v


def _path(v: Any) -> str:
    return os.path.expanduser(_text(v))


def _choice(*choices: str) -> Check:
    def check(v: Any) -> str:
        if v not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return str(v)

    return check


def _redis_url(v: Any) -> str:
    v = _text(v)
    if not v.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return v


def _requirements(v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(r, str) and r.strip() for r in v):
        raise ValueError("expected a list of requirement strings like ['requests==2.31.0']")
    return [r.strip() for r in v]


def _optional(check: Check) -> Check:
    def opt(v: Any) -> Any:
        return None if v is None else check(v)

    return opt


_port = _int(1, 65535)
_port_or_zero = _int(0, 65535)


def _port_list(v: Any) -> list[int]:
    # Empty is valid here: a config shared by a nimbus-only host offers no slots, and only a
    # supervisor needs some (it refuses to start without).
    if not isinstance(v, list):
        raise ValueError("expected a list of ports")
    ports = [_port(p) for p in v]
    if len(set(ports)) != len(ports):
        raise ValueError("expected distinct ports")
    return ports


def _host_port(v: Any) -> str:
    host, sep, port = _text(v).rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("expected 'host:port' entries")
    return v


def _host_port_list(v: Any) -> list[str]:
    if isinstance(v, str):  # "a:2181,b:2181", the ZooKeeper connect-string spelling
        v = [s.strip() for s in v.split(",") if s.strip()]
    if not isinstance(v, list) or not v:
        raise ValueError("expected a non-empty list of 'host:port'")
    return [_host_port(s) for s in v]


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One configuration key: its default, validator and a line of documentation."""

    name: str
    default: Any
    check: Check
    doc: str
    text: bool = False  # a string-valued key: an override is kept verbatim, never parsed
    default_factory: Callable[[], Any] | None = None

    def default_value(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        return copy.deepcopy(self.default)


def _default_local_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "squall")


_MiB = 1024 * 1024

KEYS: dict[str, Key] = {
    k.name: k
    for k in [
        Key("zookeeper.servers", ["127.0.0.1:2181"], _host_port_list,
            "ZooKeeper ensemble as a list of 'host:port'."),
        Key("zookeeper.root", "/squall", _zk_root,
            "ZooKeeper path under which all Squall state lives.", text=True),
        Key("zookeeper.session.timeout.secs", 10, _number(1),
            "ZooKeeper session timeout; ephemeral nodes vanish this long after a client dies."),
        Key("zookeeper.connect.timeout.secs", 15, _number(0.1),
            "How long a daemon waits for its first ZooKeeper connection."),
        Key("nimbus.host", "127.0.0.1", _text,
            "Address nimbus binds to and clients connect to.", text=True),
        Key("nimbus.port", 6627, _port, "Port of nimbus's submission API."),
        Key("nimbus.code.max.bytes", 64 * _MiB, _int(1),
            "Largest topology code package nimbus accepts, in bytes."),
        Key("nimbus.monitor.freq.secs", 1, _number(0.01),
            "How often nimbus checks heartbeats and recomputes assignments."),
        Key("nimbus.worker.timeout.secs", 5, _number(0.1),
            "Nimbus reassigns a worker's executors after this long without a heartbeat."),
        Key("nimbus.supervisor.timeout.secs", 5, _number(0.1),
            "Nimbus takes a supervisor for lost, and moves its work, after this long without "
            "its heartbeat changing."),
        Key("nimbus.task.launch.secs", 30, _number(0.1),
            "Grace period for a newly assigned worker to send its first heartbeat."),
        Key("nimbus.seeds", [], lambda v: [] if v in ([], "") else _host_port_list(v),
            "Every nimbus API endpoint as 'host:port', tried in order by clients; empty means "
            "nimbus.host:nimbus.port."),
        Key("nimbus.session.timeout.secs", 5, _number(1),
            "Nimbus's own ZooKeeper session timeout: a standby takes over about this long "
            "after the leader dies."),
        Key("nimbus.api.idle.timeout.secs", 10, _number(0.01),
            "Nimbus closes an API connection that sends nothing for this long."),
        Key("nimbus.api.request.timeout.secs", 30, _number(0.01),
            "Longest a client may take to send a request's line and headers to nimbus (a "
            "body gets this plus one second per 256 KiB)."),
        Key("nimbus.api.max.connections", 64, _int(1),
            "Most connections nimbus's API serves at once; more are answered 503 and closed."),
        Key("supervisor.host", "127.0.0.1", _text,
            "Host name workers of this supervisor are reachable at.", text=True),
        Key("supervisor.slots.ports", [6700, 6701, 6702, 6703], _port_list,
            "Ports of this supervisor's worker slots: one worker per port."),
        Key("supervisor.worker.timeout.secs", 5, _number(0.1),
            "The supervisor restarts a worker after this long without a local heartbeat."),
        Key("supervisor.worker.start.timeout.secs", 30, _number(0.1),
            "Time a new worker has to send its first heartbeat before it is restarted."),
        Key("supervisor.heartbeat.frequency.secs", 1, _number(0.01),
            "How often a supervisor writes its own heartbeat."),
        Key("supervisor.logviewer.port", 8000, _port_or_zero,
            "Port the supervisor serves its workers' logs on (0: a free port, advertised in "
            "its registration)."),
        Key("supervisor.monitor.freq.secs", 1, _number(0.01),
            "How often the supervisor syncs its workers with the assignments."),
        Key("supervisor.worker.stop.timeout.secs", 3, _number(0),
            "How long a worker being stopped gets after SIGTERM before it is sent SIGKILL."),
        Key("supervisor.worker.log.max.bytes", 100 * _MiB, _int(4096),
            "Size at which a worker's log is rotated (worker.log becomes worker.log.1)."),
        Key("supervisor.worker.log.backups", 9, _int(1, 99),
            "Rotated worker log files kept (worker.log.1 ... .N; at most 99)."),
        Key("ui.host", "127.0.0.1", _text, "Address the dashboard binds to.", text=True),
        Key("ui.port", 8080, _port, "Port of the dashboard and its REST API."),
        Key("ui.idle.timeout.secs", 10, _number(0.01),
            "The dashboard closes a connection that sends nothing for this long."),
        Key("ui.request.timeout.secs", 30, _number(0.01),
            "Longest a client may take to send a request to the dashboard."),
        Key("ui.max.connections", 64, _int(1),
            "Most connections the dashboard serves at once; more are answered 503 and closed."),
        Key("local.dir", None, _path,
            "Directory for daemon state: downloaded code, worker pids and logs.",
            text=True, default_factory=_default_local_dir),
        Key("cluster.secret", None, _optional(_text),
            "Shared secret for submissions, dashboard actions, ZooKeeper ACLs and worker "
            "traffic; None disables authentication.", text=True),
        Key("worker.heartbeat.frequency.secs", 1, _number(0.01),
            "How often a worker writes its heartbeat."),
        Key("worker.orphan.timeout.secs", 10, _number(0.1),
            "A worker that has not heard from its supervisor for this long exits; its spouts "
            "pause after half of nimbus.supervisor.timeout.secs."),
        Key("worker.max.message.bytes", 64 * _MiB, _int(1024),
            "Largest message a worker accepts from the network; larger ones are dropped unread."),
        Key("worker.batch.size", 1000, _int(1),
            "Most tuples a worker sends to a peer in one batch."),
        Key("worker.flush.interval.ms", 1, _number(0),
            "Longest a partial batch waits before it is sent."),
        Key("worker.queue.high.watermark", 20000, _int(1),
            "Queued tuples above which a worker applies backpressure."),
        Key("topology.workers", 1, _int(1, MAX_WORKERS),
            "Number of worker processes for a topology."),
        Key("topology.acker.executors", None, _optional(_int(0, MAX_TASKS)),
            "Acker executors; None means one per worker, 0 disables reliability."),
        Key("topology.message.timeout.secs", 30, _number(0.001),
            "A spout tuple not fully processed within this time is failed."),
        Key("topology.max.spout.pending", None, _optional(_int(1)),
            "Most pending (un-acked) tuples per spout task; None means unlimited."),
        Key("topology.tick.tuple.freq.secs", None, _optional(_number(0.001)),
            "Send each bolt a tick tuple this often; None disables ticks."),
        Key("topology.requirements", [], _requirements,
            "PyPI requirements the topology's workers run with: each supervisor builds (and "
            "caches) a virtual environment for them."),
        Key("topology.debug", False, _bool, "Log every emitted tuple."),
        Key("topology.max.error.report.per.interval", 5, _int(1),
            "Most errors a task reports per error throttle interval."),
        Key("topology.error.throttle.interval.secs", 10, _number(0.001),
            "Length of the error reporting throttle interval."),
        Key("topology.max.task.parallelism", None, _optional(_int(1)),
            "Upper bound on the parallelism of any component."),
        Key("topology.subprocess.timeout.secs", 30, _number(0.001),
            "A multilang subprocess silent and idle this long is taken for hung and restarted."),
        Key("topology.multilang.heartbeat.secs", 1, _number(0.001),
            "How often a quiet multilang bolt subprocess is sent a heartbeat tuple."),
        Key("topology.shellbolt.max.pending", 1000, _int(1),
            "Most tuples in flight to one multilang bolt subprocess."),
        Key("topology.multilang.max.message.bytes", 16 * _MiB, _int(1024),
            "Longest message a multilang subprocess may send."),
        Key("topology.multilang.spout.pipeline", 1, _int(1),
            "Commands a multilang spout subprocess may have outstanding (Storm: 1)."),
        Key("topology.code.dir", None, _optional(_text),
            "Directory shipped with a topology that has multilang components, where their "
            "commands run (relative: to the topology file; default: its directory).",
            text=True),
        Key("topology.state.checkpoint.interval.ms", 1000, _number(10),
            "How often a topology with stateful bolts checkpoints their state, in ms."),
        Key("topology.state.provider", "sqlite", _choice(*PROVIDERS),
            "Where checkpoints are kept: 'sqlite' (durable, under local.dir; one host), "
            "'redis' (topology.state.redis.url; hosts share it) or 'memory' (tests only).",
            text=True),
        Key("topology.state.redis.url", "redis://127.0.0.1:6379/0", _redis_url,
            "Redis server of the redis state provider, and RedisStreamSpout's default.",
            text=True),
    ]
}


def describe_keys() -> list[tuple[str, Any, str]]:
    """Return (key, default, doc) for every registered key, sorted by key."""
    return [(k.name, k.default_value(), k.doc) for k in sorted(KEYS.values(), key=_by_name)]


def _by_name(k: Key) -> str:
    return k.name


# --- parsing ----------------------------------------------------------------------------------


def parse_value(text: str) -> Any:
    """Parse an override value as a TOML or JSON literal; keep it as a string if neither."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_override(item: str) -> tuple[str, Any]:
    """Split a `-c key=value` override into its key and parsed value."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"config override {item!r}: expected key=value")
    raw = raw.strip()
    value = parse_value(raw)
    spec = KEYS.get(key)
    if spec is not None and spec.text and value is not None and not isinstance(value, str):
        return key, raw  # `cluster.secret=1234` means the string "1234"
    return key, value


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested TOML tables into dotted keys: {"a": {"b": 1}} -> {"a.b": 1}."""
    flat: dict[str, Any] = {}
    for k, v in table.items():
        name = f"{prefix}{k}"
        items = flatten(v, name + ".") if isinstance(v, dict) else {name: v}
        for fk, fv in items.items():
            if fk in flat:
                raise ConfigError(f"config key {fk!r} is given twice")
            flat[fk] = fv
    return flat


def read_toml(path: str) -> dict[str, Any]:
    """Read a TOML config file and return its keys flattened."""
    try:
        with open(path, "rb") as f:
            return flatten(tomllib.load(f))
    except OSError as e:
        raise ConfigError(f"config file {path!r}: cannot read it: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path!r}: invalid TOML: {e}") from e


def one_edit_apart(a: str, b: str) -> bool:
    """Whether `b` is `a` with exactly one character inserted, deleted, replaced, or two
    neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1
                                  and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]])
    short, long = (a, b) if len(a) < len(b) else (b, a)
    i = next((i for i, (x, y) in enumerate(zip(short, long[:len(short)], strict=True))
              if x != y), len(short))
    return short[i:] == long[i + 1:]


def near_miss(key: str) -> str | None:
    """The registered key one edit away from `key` (a likely typo), if there is one."""
    return next((k for k in sorted(KEYS) if one_edit_apart(key, k)), None)


def validate(values: Mapping[str, Any], source: str = "") -> dict[str, Any]:
    """Check every key of `values`; return them normalised. Raise ConfigError on the first bad.
    A user key (under `topology.`, not registered) one edit away from a registered key is
    kept, with a warning naming the key it looks like."""
    where = f" (from {source})" if source else ""
    out: dict[str, Any] = {}
    for key, value in values.items():
        spec = KEYS.get(key)
        if spec is None:
            if key.startswith(USER_KEY_PREFIX):
                typo = near_miss(key)
                if typo is not None:
                    log.warning("config key %r%s is not a Squall key; it is kept as your own "
                                "key: did you mean %r?", key, where, typo)
                out[key] = value
                continue
            near = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"unknown config key {key!r}{where}{hint}")
        try:
            out[key] = spec.check(value)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"config key {key!r}{where}: {e}, got {value!r}") from None
    return out


def _override_items(overrides: Mapping[str, Any] | Sequence[str]) -> dict[str, Any]:
    if isinstance(overrides, Mapping):
        return dict(overrides)
    if isinstance(overrides, str):
        overrides = [overrides]
    return dict(parse_override(item) for item in overrides)


# --- the Config object ------------------------------------------------------------------------


class Config(Mapping[str, Any]):
    """An immutable, validated mapping of every configuration key to its value.

    Build it with `Config.load()` (or `Config.from_mapping()` in tests); derive a changed copy
    with `with_overrides()`. Reading a list value returns a copy, so the config never changes.
    """

    __slots__ = ("_values", "source")

    def __init__(self, values: Mapping[str, Any], source: str = "defaults") -> None:
        # Assumes `values` is already validated: use load() or from_mapping() from outside.
        self._values: dict[str, Any] = dict(values)
        self.source = source

    @classmethod
    def load(
        cls,
        path: str | None = None,
        overrides: Mapping[str, Any] | Sequence[str] = (),
        env: Mapping[str, str] = os.environ,
    ) -> Config:
        """Resolve defaults < TOML file (`path`, else $SQUALL_CONF) < overrides, validated."""
        values = {k.name: k.default_value() for k in KEYS.values()}
        path = path or env.get(CONF_ENV_VAR) or None
        if path is not None:
            values.update(validate(read_toml(path), source=path))
        values.update(validate(_override_items(overrides), source="overrides"))
        log.debug("config: loaded from %s", path or "defaults")
        return cls(values, source=path or "defaults")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Config:
        """Defaults updated with `values` (validated); no file, no environment."""
        return cls.load(None, overrides=values, env={})

    def with_overrides(self, overrides: Mapping[str, Any] | Sequence[str]) -> Config:
        """A copy of this config with `overrides` applied and validated."""
        values = dict(self._values)
        values.update(validate(_override_items(overrides), source="overrides"))
        return Config(values, source=self.source)

    def to_dict(self) -> dict[str, Any]:
        """A deep, mutable copy of every key and value (for JSON, for workers)."""
        return copy.deepcopy(self._values)

    def __getitem__(self, key: str) -> Any:
        value = self._values[key]
        return copy.deepcopy(value) if isinstance(value, (list, dict)) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        shown = {k: ("***" if k == "cluster.secret" and v else v) for k, v in self._values.items()}
        return f"Config(source={self.source!r}, {shown!r})"


def require_secret_off_loopback(config: Mapping[str, Any], host_key: str, who: str) -> None:
    """Refuse to expose code-running endpoints without authentication.

    A daemon whose `host_key` address is not a loopback address accepts work from the
    network; without `cluster.secret` anyone who reaches it could run code, so it must not
    start. On loopback only local users can reach it, so it starts with a warning.
    """
    import ipaddress

    host = str(config[host_key])
    if config.get("cluster.secret"):
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        loopback = False
    if not loopback:
        raise ConfigError(
            f"{who}: {host_key} is {host!r} but cluster.secret is not set: refusing to accept "
            "work from the network without authentication (set cluster.secret)"
        )
    log.warning("%s: cluster.secret is not set: any local user can submit code", who)
