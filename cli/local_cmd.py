"""`squall local FILE`: run a topology on this machine with live progress.

The workers' output (their log records, the components' `print()` and tracebacks) streams
to stderr as it is written, each line prefixed by the component and task it comes from
(`[split:4] ...`), or by the worker when that cannot be told (cluster.logtags); `--quiet`
turns that off. A run that had errors (a component raised, a worker died, the run itself
failed) keeps the workers' log files and prints where they are.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.loader import load_topology_file
from cli.main import positive_seconds, seconds
from cluster.config import parse_override
from cluster.logfollow import Follower, LocalSource
from cluster.logtags import LineLabeler, short_form, worker_tasks
from cluster.records import aggregate_components
from topology.errors import SquallError

if TYPE_CHECKING:
    from topology.local import LocalCluster

LOG_POLL_SECS = 0.2  # how often the workers' log files are read for new lines


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("local", parents=[parent], help="run a topology in local mode",
                              description="Run FILE's topology on this machine (no ZooKeeper).")
    p.add_argument("file", metavar="FILE", help="Python file defining `topology`")
    p.add_argument("--duration", type=seconds, default=None, metavar="S",
                   help="stop after S seconds (default: run until Ctrl-C)")
    p.add_argument("--name", default=None, help="topology name (default: the file's)")
    p.add_argument("--interval", type=positive_seconds, default=2.0, metavar="S",
                   help="seconds between progress lines (default 2)")
    p.add_argument("--json", action="store_true", help="print the final summary as JSON")
    p.add_argument("--no-ui", action="store_true", help="do not serve the dashboard")
    p.add_argument("--quiet", action="store_true",
                   help="do not stream the workers' output (logs, print(), tracebacks)")
    p.add_argument("--requirements", metavar="FILE", default=None,
                   help="PyPI requirements the workers need (added to topology.requirements): "
                        "installed once into a cached virtual environment")
    p.set_defaults(run=run)


class LogStream:
    """The worker logs of one local topology as labelled lines, read as they grow."""

    def __init__(self, cluster: LocalCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.root = Path(cluster.logs_dir)
        self.source = LocalSource(str(self.root))
        self._logs: dict[Path, tuple[Follower, LineLabeler]] = {}

    def poll(self) -> list[str]:
        """New complete lines of every worker log, each as `[label] line` (the line in its
        short form: cluster.logtags.short_form)."""
        out = []
        for path in sorted(self.root.glob("*/worker-*.log")):
            if path not in self._logs:
                self._logs[path] = self._open(path)
            follower, labeler = self._logs[path]
            out += [f"[{labeler.label(line)}] {short_form(line)}" for line in follower.poll()]
        return out

    def _open(self, path: Path) -> tuple[Follower, LineLabeler]:
        port = int(path.name.split("-", 1)[1].split(".", 1)[0])
        tid = path.parent.name
        meta = self.cluster.state.topology(tid) or {}
        tasks = worker_tasks(self.cluster.state.assignment(tid), meta.get("components") or {},
                             meta.get("acker_tasks") or [])
        mine = next((t for (_, p), t in tasks.items() if p == port), {})
        return (Follower(self.source, f"{tid}/{port}/worker.log"),
                LineLabeler(str(port), mine))


def totals(status: dict[str, Any]) -> dict[str, Any]:
    comps = aggregate_components(status["workers"].values())
    spouts = [c for c in comps.values() if c["type"] == "spout"]
    bolts = [c for c in comps.values() if c["type"] == "bolt"]
    latency = None
    for c in spouts:
        latency = c["complete_latency"] if latency is None else latency
        if c is not spouts[0]:
            latency.merge(c["complete_latency"])
    return {
        "emitted": sum(c["emitted"] for c in spouts),
        "acked": sum(c["acked"] for c in spouts),
        "failed": sum(c["failed"] for c in spouts),
        "executed": sum(c["executed"] for c in bolts),
        "latency": latency,
        "components": comps,
    }


def _line(elapsed: float, now: dict[str, Any], rate: float) -> str:
    return (f"{elapsed:7.1f}s  emitted {now['emitted']:>12,}  acked {now['acked']:>12,}  "
            f"failed {now['failed']:>8,}  {rate:>12,.0f} tuples/s")


def run(args: argparse.Namespace) -> int:
    from cluster.requirements import merge_requirements, read_requirements_file
    from topology.local import LocalCluster

    overrides = dict(parse_override(item) for item in args.overrides)
    topology = load_topology_file(args.file)
    name = args.name or topology.name
    if args.requirements is not None:
        overrides["topology.requirements"] = merge_requirements(
            topology.config.get("topology.requirements") or [],
            overrides.get("topology.requirements") or [],
            read_requirements_file(args.requirements))

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    # Also when started in the background by a shell, which would leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with LocalCluster(overrides) as cluster:
        cluster.submit(topology, name=name)
        print(f"squall local: running {name!r} ({cluster.status(name)['num_workers']} "
              f"workers); Ctrl-C to stop", file=sys.stderr)
        stream = None if args.quiet else LogStream(cluster, name)
        summary = _run_until_done(args, cluster, name, overrides, stream)
        if summary is None:
            return 0
        if summary["errors"] or summary["worker_restarts"]:
            cluster.keep_logs = True
            print(f"squall local: the run had errors; worker logs kept in {cluster.logs_dir}",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"squall local: {name!r} ran {summary['seconds']} s: emitted "
              f"{summary['emitted']:,}, acked {summary['acked']:,}, failed "
              f"{summary['failed']:,}, {summary['executed_per_sec']:,} bolt tuples/s")
        for line in summary["errors"]:
            print(f"  last error: {line}")
    return 0


def _run_until_done(args: argparse.Namespace, cluster: LocalCluster, name: str,
                    overrides: dict[str, Any], stream: LogStream | None
                    ) -> dict[str, Any] | None:
    """Progress lines and worker output until the duration is over or Ctrl-C; the summary
    (None when the topology was killed from the dashboard)."""
    started = time.monotonic()
    last = {"executed": 0}
    last_time = next_progress = started
    server = None
    if not args.no_ui:
        from ui.local import serve_local

        server, url = serve_local(cluster, overrides)
        note = "" if overrides.get("cluster.secret") else \
            f" (secret for its buttons: {server.secret})"
        print(f"squall local: dashboard at {url}{note}", file=sys.stderr)
    try:
        next_progress += args.interval
        while args.duration is None or time.monotonic() - started < args.duration:
            wait = next_progress - time.monotonic()
            if stream is not None:
                wait = min(wait, LOG_POLL_SECS)
            if args.duration is not None:
                wait = min(wait, args.duration - (time.monotonic() - started))
            time.sleep(max(0.0, wait))
            _print_lines(stream)
            now_t = time.monotonic()
            if now_t >= next_progress:
                next_progress = now_t + args.interval
                now = totals(cluster.status(name))
                rate = (now["executed"] - last["executed"]) / max(1e-9, now_t - last_time)
                print(_line(now_t - started, now, rate), file=sys.stderr)
                last, last_time = now, now_t
    except KeyboardInterrupt:
        # Stopping is bounded (workers get a grace period, then SIGKILL): a second
        # Ctrl-C while it runs must not cut the summary short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(file=sys.stderr)
    except SquallError:  # killed from the dashboard
        print(f"squall local: {name!r} was killed", file=sys.stderr)
        return None
    finally:
        if server is not None:
            server.close()
    _print_lines(stream)
    return _summary(cluster, name, time.monotonic() - started)


def _print_lines(stream: LogStream | None) -> None:
    if stream is None:
        return
    try:
        for line in stream.poll():
            print(line, file=sys.stderr)
    except OSError:  # a log file going away under us: the next poll reads what is there
        pass


def _summary(cluster: LocalCluster, name: str, elapsed: float) -> dict[str, Any]:
    status = cluster.status(name)
    final = totals(status)
    errors = status["errors"]
    latency = final["latency"]
    return {
        "topology": name,
        "seconds": round(elapsed, 2),
        "emitted": final["emitted"],
        "acked": final["acked"],
        "failed": final["failed"],
        "bolt_executed": final["executed"],
        "executed_per_sec": round(final["executed"] / max(elapsed, 1e-9)),
        "complete_latency_ms": {
            p: round(latency.percentile(p) * 1000, 3)
            for p in (50, 99) if latency is not None and latency.count
        },
        "errors": [f"{e['component']}: {e['error']}" for e in errors[-5:]],
        "worker_restarts": status["restarts"],
    }
