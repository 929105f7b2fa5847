"""`squall monitor NAME [-i SECS] [-m COMPONENT]`: live throughput, as `storm monitor` prints it.

Every interval it asks nimbus for the topology's status and prints, per component (or only
`-m COMPONENT`), the tuples it emitted (or transferred, `-w transferred`) on one stream
(`-s STREAM`, default "default") since the last line and the rate, tab-separated under
Storm's header:

    topology  component  parallelism  stream  time-diff ms  emitted  throughput (Kt/s)

A count that goes down (a worker restarted and counts from 0 again) counts as nothing new.
It runs until Ctrl-C, or for `--count N` lines per component.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from cli.main import positive_seconds
from cluster.status import Status, status_of_record
from topology.errors import SquallError
from topology.model import ACKER_COMPONENT

HEADER = ("topology", "component", "parallelism", "stream", "time-diff ms", "{watch}",
          "throughput (Kt/s)")


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("monitor", parents=[parent],
                              help="print a topology's live throughput (like storm monitor)",
                              description="Print NAME's throughput every interval, per "
                                          "component, as `storm monitor` does.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-i", "--interval", type=positive_seconds, default=4.0, metavar="SECS",
                   help="seconds between lines (default 4)")
    p.add_argument("-m", "--component", default=None, metavar="COMPONENT",
                   help="only this component (default: every component)")
    p.add_argument("-s", "--stream", default="default", metavar="STREAM",
                   help="the output stream to watch (default: default)")
    p.add_argument("-w", "--watch", choices=("emitted", "transferred"), default="emitted",
                   help="count emitted (default) or transferred tuples")
    p.add_argument("--count", type=_positive_int, default=None, metavar="N",
                   help="stop after N lines per component (default: until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(run=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def watched(status: dict[str, Any], component: str | None, stream: str) -> list[str]:
    """The components to print, checked against the topology; SquallError names a component
    or stream it does not have."""
    components = {cid: spec for cid, spec in (status.get("components") or {}).items()
                  if cid != ACKER_COMPONENT}
    name = status.get("name")
    if component is not None:
        if component not in components:
            raise SquallError(f"topology {name!r} has no component {component!r} (components: "
                              f"{', '.join(sorted(components))})")
        chosen = [component]
    else:
        chosen = sorted(components)
    streams = {s for cid in chosen for s in (components[cid].get("outputs") or {})}
    if stream not in streams:
        what = f"component {component!r}" if component else f"topology {name!r}"
        raise SquallError(f"{what} has no output stream {stream!r} (streams: "
                          f"{', '.join(sorted(streams)) or 'none'})")
    return chosen


def counts(status: dict[str, Any], components: list[str], stream: str,
           watch: str) -> dict[str, int]:
    """Per component, its `watch` count on `stream` since its tasks started."""
    key = "emitted_streams" if watch == "emitted" else "transferred_streams"
    stats = status.get("stats") or {}
    return {cid: int((stats.get(cid) or {}).get(key, {}).get(stream, 0)) for cid in components}


def lines(status: dict[str, Any], before: dict[str, int], after: dict[str, int],
          millis: int, stream: str) -> list[tuple[Any, ...]]:
    """One row per component: Storm's columns."""
    rows = []
    for cid, n in after.items():
        diff = max(0, n - before.get(cid, 0))
        parallelism = (status["components"][cid] or {}).get("parallelism")
        rows.append((status.get("name"), cid, parallelism, stream, millis, diff,
                     round(diff / millis, 4) if millis else 0.0))
    return rows


def run(args: argparse.Namespace) -> int:
    from cli.main import load_config
    from nimbus.client import NimbusClient

    client = NimbusClient.from_config(load_config(args))
    status = client.status(args.name)
    components = watched(status, args.component, args.stream)
    state = status_of_record(status)
    if state is not Status.ACTIVE:
        print(f"squall monitor: {args.name} is {state or status.get('status')}: its spouts "
              "emit nothing until it is activated", file=sys.stderr)
    header = tuple(h.format(watch=args.watch) for h in HEADER)
    if not args.json:
        print("\t".join(header), flush=True)
    before, then = counts(status, components, args.stream, args.watch), time.monotonic()
    done = 0
    while args.count is None or done < args.count:
        time.sleep(args.interval)  # the pace of the output, as storm monitor's
        status = client.status(args.name)
        now = time.monotonic()
        after = counts(status, components, args.stream, args.watch)
        for row in lines(status, before, after, int((now - then) * 1000), args.stream):
            print(json.dumps(dict(zip(header, row, strict=True))) if args.json
                  else "\t".join(str(x) for x in row), flush=True)
        before, then = after, now
        done += 1
    return 0
