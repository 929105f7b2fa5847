"""`squall submit|list|status|kill|activate|deactivate|rebalance`: talk to nimbus.

Each takes `--json` for machine output. `submit --requirements FILE` adds the file's PyPI
requirements to `topology.requirements` (the supervisors build the environment). A topology
with shell components is submitted with its code directory (cluster.resources).
`-c key=value` configures this client (nimbus.seeds, cluster.secret, ...); for `submit`,
the `topology.*` and `worker.*` ones are also sent with the topology as its config overrides.
`kill` and `rebalance` take Storm's `-w SECS`; `rebalance -t key=value` (or Storm's
`-t '{"key": value}'`) changes config keys a running topology may change
(nimbus.submission.RUNTIME_KEYS, and users' own keys).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from cli.main import seconds
from cluster.assignment import runs_version
from topology.errors import SquallError

SENT_PREFIXES = ("topology.", "worker.")


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--json", action="store_true", help="machine-readable output")
    parents = [parent, out]

    p = subparsers.add_parser("submit", parents=parents, help="submit a topology to nimbus",
                              description="Submit FILE's topology to the cluster.")
    p.add_argument("file", metavar="FILE", help="Python file defining `topology`")
    p.add_argument("--name", default=None, help="topology name (default: the topology's)")
    p.add_argument("--wait", action="store_true",
                   help="wait until every worker runs the assignment, showing progress")
    p.add_argument("--timeout", type=seconds, default=60.0, metavar="S",
                   help="how long --wait waits (default 60)")
    p.add_argument("--requirements", metavar="FILE", default=None,
                   help="PyPI requirements the workers need (added to topology.requirements): "
                        "each supervisor installs them once into a cached virtual environment")
    p.set_defaults(run=submit)

    p = subparsers.add_parser("list", parents=parents, help="list the running topologies")
    p.set_defaults(run=list_cmd)

    p = subparsers.add_parser("status", parents=parents, help="show a topology's status")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(run=status)

    p = subparsers.add_parser("kill", parents=parents, help="kill a topology",
                              description="Deactivate NAME's spouts, wait, then remove it.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-w", "--wait", type=float, default=None, metavar="S",
                   help="seconds between deactivation and removal "
                        "(default: topology.message.timeout.secs)")
    p.set_defaults(run=lambda args: _simple(args, "kill", wait=args.wait))

    for action in ("activate", "deactivate"):
        p = subparsers.add_parser(action, parents=parents, help=f"{action} a topology's spouts")
        p.add_argument("name", metavar="NAME")
        p.set_defaults(run=_action_runner(action))

    p = subparsers.add_parser("rebalance", parents=parents,
                              help="change a topology's workers, parallelism or config",
                              description="Redistribute NAME over WORKERS workers, change "
                                          "components' parallelism and/or config keys that a "
                                          "running topology may change (its workers restart "
                                          "with them).")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-n", "--num-workers", type=int, default=None, metavar="WORKERS")
    p.add_argument("-e", "--executors", action="append", default=[], metavar="COMPONENT=N",
                   help="new parallelism of a component (repeatable)")
    p.add_argument("-t", "--topology-conf", dest="conf", action="append", default=[],
                   metavar="KEY=VALUE",
                   help="new value of a config key, e.g. topology.max.spout.pending=500, or "
                        "Storm's JSON object '{\"key\": value}' (repeatable)")
    p.add_argument("-w", "--wait", type=float, default=None, metavar="S",
                   help="seconds the topology is deactivated before the change "
                        "(default: topology.message.timeout.secs)")
    p.set_defaults(run=rebalance)


def _client(args: argparse.Namespace) -> Any:
    from cli.main import load_config
    from nimbus.client import NimbusClient

    return NimbusClient.from_config(load_config(args))


def _emit(args: argparse.Namespace, data: Any, text: str) -> int:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)
    return 0


def _action_runner(action: str) -> Callable[[argparse.Namespace], int]:
    return lambda args: _simple(args, action)


def _simple(args: argparse.Namespace, action: str, **kwargs: Any) -> int:
    reply = getattr(_client(args), action)(args.name, **kwargs)
    past = {"kill": "killed", "activate": "activated", "deactivate": "deactivated"}[action]
    return _emit(args, reply, f"squall {action}: {past} {reply['name']!r} "
                              f"({reply['id']}, now {reply['status']})")


# --- submit -------------------------------------------------------------------------------------


def submit(args: argparse.Namespace) -> int:
    import cloudpickle

    from cli.loader import load_topology_file
    from cli.main import load_config
    from cluster.config import parse_override
    from cluster.config import validate as validate_config
    from nimbus.client import NimbusClient
    from topology.builder import validate

    config = load_config(args)
    topology = load_topology_file(args.file)
    if args.name:
        topology.name = args.name
    problems = validate(topology)
    if problems:
        raise SquallError(f"{args.file}: topology {topology.name!r} is invalid: "
                          f"{'; '.join(problems)}")
    overrides = {k: v for k, v in (parse_override(o) for o in args.overrides)
                 if k.startswith(SENT_PREFIXES)}
    if args.requirements is not None:
        overrides["topology.requirements"] = requirements_of(topology.config, overrides,
                                                             args.requirements)
    package: dict[str, Any] = {"topology": topology, "overrides": overrides}
    resources = resources_of(topology, overrides, args.file, config)
    if resources is not None:
        package["resources"] = resources
    try:
        blob = cloudpickle.dumps(package)
    except Exception as e:  # the user's objects may not pickle
        raise SquallError(f"{args.file}: cannot pickle the topology: {type(e).__name__}: "
                          f"{e}") from e
    try:  # the topology's own keys: a refusal now, and typo warnings where the user looks
        validate_config(topology.config, source=f"{args.file}'s topology config")
    except SquallError as e:
        raise SquallError(f"{args.file}: {e}") from e
    client = NimbusClient.from_config(config)
    reply = client.submit(blob, topology.name, overrides)
    if args.wait:
        reply = wait_running(client, reply["name"], args.timeout,
                             None if args.json else _progress)
    return _emit(args, reply, f"squall submit: submitted {reply['name']!r} as {reply['id']} "
                              f"({reply['num_workers']} workers, {reply['num_tasks']} tasks)"
                              + (", running" if args.wait else ""))


def resources_of(topology: Any, overrides: dict[str, Any], path: str,
                 config: Any) -> bytes | None:
    """The code directory shipped with a topology that has shell components (a tar.gz,
    cluster.resources), bounded by `nimbus.code.max.bytes`; None without shell components."""
    from cluster.resources import code_dir_of, has_shell_components, pack

    if not has_shell_components(topology):
        return None
    directory = code_dir_of(topology.config, overrides, path)
    return pack(directory, int(config["nimbus.code.max.bytes"]))


def requirements_of(conf: Any, overrides: dict[str, Any], path: str) -> list[str]:
    """`--requirements FILE`: the topology's own list, then `-c`'s, then the file's."""
    from cluster.requirements import merge_requirements, read_requirements_file

    return merge_requirements(conf.get("topology.requirements") or [],
                              overrides.get("topology.requirements") or [],
                              read_requirements_file(path))


def _progress(line: str) -> None:
    print(f"squall submit: {line}", file=sys.stderr, flush=True)


def wait_running(client: Any, name: str, timeout: float,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Poll until every assigned worker heartbeats with the current assignment version,
    telling `progress` each step (assigned, workers starting, running) and the errors nimbus,
    supervisors or workers report while the topology starts."""
    deadline = time.monotonic() + timeout
    said: set[str] = set()
    tell = progress or (lambda line: None)
    while True:
        st = client.status(name)
        version, workers = st.get("assignment_version"), st.get("workers") or []
        running = sum(1 for w in workers if runs_version(w.get("heartbeat_version"), version))
        for line in _steps(name, st, workers, running):
            if line not in said:
                said.add(line)
                tell(line)
        if version is not None and workers and running == len(workers):
            return dict(st)
        if time.monotonic() >= deadline:
            raise SquallError(f"topology {name!r}: {running} of {len(workers)} workers running "
                              f"after {timeout:g} s")
        time.sleep(0.25)


def _steps(name: str, st: dict[str, Any], workers: list[dict[str, Any]],
           running: int) -> list[str]:
    """What there is to say about a starting topology now (each line is said once)."""
    lines = []
    if workers:
        hosts = sorted({f"{w.get('host')}" for w in workers})
        lines.append(f"{name}: assigned {len(workers)} worker(s) on {', '.join(hosts)}")
        lines.append(f"{name}: workers starting: {running} of {len(workers)} running"
                     if running < len(workers) else
                     f"{name}: running: {running} of {len(workers)} workers")
    else:
        lines.append(f"{name}: waiting for an assignment (are supervisors with free slots "
                     "registered?)")
    for cid, errors in sorted((st.get("errors") or {}).items()):
        if cid.startswith("__"):  # the daemons' and workers' own problems
            lines += [f"{name}: {e.get('error')}" for e in errors if isinstance(e, dict)]
    return lines


# --- list / status / rebalance ------------------------------------------------------------------


def list_cmd(args: argparse.Namespace) -> int:
    topologies = _client(args).list()
    if args.json:
        return _emit(args, topologies, "")
    if not topologies:
        print("no topologies running")
        return 0
    rows = [("NAME", "ID", "STATUS", "WORKERS", "TASKS", "UPTIME", "OWNER", "CHECKPOINT")]
    rows += [(t["name"], t["id"], t["status"], f"{t['assigned_workers']}/{t['num_workers']}",
              str(t["num_tasks"]), _duration(t["uptime_secs"]), str(t.get("owner") or ""),
              _txid(t.get("checkpoint")))
             for t in topologies]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def status(args: argparse.Namespace) -> int:
    st = _client(args).status(args.name)
    if args.json:
        return _emit(args, st, "")
    print(f"{st['name']} ({st['id']}): {st['status']}, {st['assigned_workers']}/"
          f"{st['num_workers']} workers, {st['num_tasks']} tasks, up {_duration(st['uptime_secs'])}"
          f", owner {st.get('owner')}, assignment v{st.get('assignment_version')}")
    stats = st.get("stats", {})
    for cid, comp in sorted(st["components"].items()):
        s = stats.get(cid)
        line = f"  {comp['type']:5} {cid}: parallelism {comp['parallelism']}"
        if s:
            line += (f", emitted {s['emitted']:,}, acked {s['acked']:,}, failed {s['failed']:,}")
            if comp["type"] == "bolt":
                line += f", executed {s['executed']:,}"
            lat = s.get("complete_latency_ms")
            if lat:
                line += f", complete latency p50 {lat['p50']} ms p99 {lat['p99']} ms"
        print(line)
        for detail in progress_lines(st.get("progress", {}).get(cid) or {}, time.time()):
            print(f"        {detail}")
    if st.get("checkpoint"):
        print(f"  last committed checkpoint: {checkpoint_text(st['checkpoint'], time.time())}")
    if st.get("log_levels"):
        from cli.loglevel_cmd import describe

        print(f"  log levels (set-log-level): {describe(st['log_levels'])}")
    for w in st["workers"]:
        hb = "no heartbeat" if w.get("heartbeat_version") is None else \
            f"running v{_assignment_of(w['heartbeat_version'])}"
        print(f"  worker {w['host']}:{w['port']} tasks {w['tasks']}: {hb}")
    for cid, errors in sorted(st.get("errors", {}).items()):
        last = errors[-1]
        print(f"  last error of {cid}: {last.get('error', last)}")
    return 0


def _txid(checkpoint: Any) -> str:
    return f"txid {checkpoint.get('txid')}" if isinstance(checkpoint, dict) else ""


def checkpoint_text(c: dict[str, Any], now: float) -> str:
    """A last committed checkpoint in words: txid, when, how long it took, failures."""
    when = c.get("time")
    ago = f", {_duration(max(0.0, now - when))} ago" if isinstance(when, (int, float)) else ""
    took = c.get("duration")
    took_text = f", took {took * 1000:.0f} ms" if isinstance(took, (int, float)) else ""
    failed = f", {c['failed']} failed since" if c.get("failed") else ""
    return f"txid {c.get('txid')}{ago}{took_text}{failed}"


def _watermark(mark: Any) -> str:
    """Event time in words: a unix time as a UTC date, a smaller number as it is."""
    if not isinstance(mark, (int, float)):
        return "none yet (processing time, or no tuple seen)"
    if mark > 1e9:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(mark))
    return f"{mark:g}"


def progress_lines(p: dict[str, Any], now: float) -> list[str]:
    """A component's windows, checkpoint and source (cluster.records.component_progress)."""
    lines = []
    if w := p.get("windowing"):
        lines.append(f"window {w.get('spec')}: watermark {_watermark(w.get('watermark'))}, "
                     f"{w.get('late', 0):,} late")
    if c := p.get("checkpoint"):
        lines.append(f"checkpoint {checkpoint_text(c, now)}")
    if src := p.get("source"):
        behind = src.get("behind")
        where = ", ".join(f"{t.get('name')} at {t.get('offset')}" for t in src.get("tasks", []))
        lines.append(f"source {src.get('kind')}: {where}"
                     + ("" if behind is None else f", {behind:,.0f} behind"))
    return lines


def rebalance(args: argparse.Namespace) -> int:
    parallelism: dict[str, int] = {}
    for item in args.executors:
        cid, sep, n = item.partition("=")
        if not sep or not cid or not n.strip().isdigit() or int(n) < 1:
            raise SquallError(f"-e {item!r}: expected COMPONENT=N with N >= 1")
        parallelism[cid.strip()] = int(n)
    conf = conf_changes(args.conf)
    if args.num_workers is None and not parallelism and not conf:
        raise SquallError("rebalance: give -n WORKERS, -e COMPONENT=N and/or -t KEY=VALUE")
    reply = _client(args).rebalance(args.name, args.num_workers, parallelism, args.wait, conf)
    return _emit(args, reply, f"squall rebalance: {reply['name']!r} is {reply['status']} "
                              f"({reply['num_workers']} workers, {reply['num_tasks']} tasks)")


def conf_changes(items: list[str]) -> dict[str, Any]:
    """`-t` arguments: key=value (the value read as in `-c`), or Storm's JSON object."""
    from cluster.config import parse_override
    from nimbus.protocol import loads_finite

    changes: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):
            try:
                value = loads_finite(item, f"-t {item!r}")
            except SquallError as e:
                raise SquallError(str(e)) from None
            if not isinstance(value, dict):
                raise SquallError(f"-t {item!r}: expected KEY=VALUE or a JSON object")
            changes.update(value)
            continue
        try:
            key, value = parse_override(item)
        except SquallError:
            raise SquallError(f"-t {item!r}: expected KEY=VALUE or a JSON object") from None
        changes[key] = value
    return changes


def _assignment_of(version: Any) -> Any:
    """The assignment number in a worker's reported version (cluster.assignment)."""
    return version.get("assignment") if isinstance(version, dict) else version


def _duration(secs: float) -> str:
    secs = int(secs)
    if secs < 3600:
        return f"{secs // 60}m{secs % 60:02d}s"
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m"
