"""`squall local FILE`: run a topology on this machine with live progress."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from typing import Any

from cli.loader import load_topology_file
from cli.main import positive_seconds, seconds
from cluster.config import parse_override
from topology.errors import SquallError
from worker.stats import aggregate_components


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
    p.set_defaults(run=run)


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
    from topology.local import LocalCluster

    overrides = dict(parse_override(item) for item in args.overrides)
    topology = load_topology_file(args.file)
    name = args.name or topology.name

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    # Also when started in the background by a shell, which would leave SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    last = {"executed": 0}
    last_time = started
    summary: dict[str, Any] = {}
    with LocalCluster(overrides) as cluster:
        cluster.submit(topology, name=name)
        print(f"squall local: running {name!r} ({len(cluster.worker_pids(name))} workers); "
              f"Ctrl-C to stop", file=sys.stderr)
        server = None
        if not args.no_ui:
            from ui.local import serve_local

            server, url = serve_local(cluster, overrides)
            note = "" if overrides.get("cluster.secret") else \
                f" (secret for its buttons: {server.secret})"
            print(f"squall local: dashboard at {url}{note}", file=sys.stderr)
        try:
            while args.duration is None or time.monotonic() - started < args.duration:
                wait = args.interval
                if args.duration is not None:
                    wait = min(wait, args.duration - (time.monotonic() - started))
                time.sleep(max(0.0, wait))
                now_t = time.monotonic()
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
            return 0
        finally:
            if server is not None:
                server.close()
        final = totals(cluster.status(name))
        errors = cluster.status(name)["errors"]
        elapsed = time.monotonic() - started
        latency = final["latency"]
        summary = {
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
        }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"squall local: {name!r} ran {summary['seconds']} s: emitted "
              f"{summary['emitted']:,}, acked {summary['acked']:,}, failed "
              f"{summary['failed']:,}, {summary['executed_per_sec']:,} bolt tuples/s")
        for line in summary["errors"]:
            print(f"  last error: {line}")
    return 0
