"""`squall set-log-level NAME LOGGER=LEVEL... [-t SECS] [-r LOGGER]`: change loggers' levels
in a running topology's workers, as Storm's `set_log_level` does.

    squall set-log-level wordcount my_bolts=DEBUG -t 60   # DEBUG for a minute, then back
    squall set-log-level wordcount ROOT=WARN              # until reset
    squall set-log-level wordcount -r ROOT                # back to the worker's own level
    squall set-log-level wordcount -l my_bolts=DEBUG:30   # Storm's spelling (LEVEL[:SECS])

Nimbus stores the levels with the topology and puts them in its assignment; each supervisor
hands them to its workers, whose parent thread applies them (also in a worker started
later) and puts each logger back to its own level when its time is over. LOGGER is a Python
logger name ("ROOT": the root logger); LEVEL one of ALL, TRACE, DEBUG, INFO, WARN(ING),
ERROR, FATAL/CRITICAL, OFF.
"""

from __future__ import annotations

import argparse
from typing import Any

from cli.main import seconds
from topology.errors import SquallError


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "set-log-level", aliases=["set_log_level"], parents=[parent],
        help="change loggers' levels in a running topology's workers",
        description="Set LOGGER's level in every worker of topology NAME, for -t SECS or "
                    "until reset (-r LOGGER). LOGGER is a Python logger name, ROOT the root "
                    "logger; LEVEL one of ALL, TRACE, DEBUG, INFO, WARN, ERROR, FATAL, OFF.")
    p.add_argument("name", metavar="NAME")
    p.add_argument("levels", nargs="*", metavar="LOGGER=LEVEL")
    p.add_argument("-l", dest="storm_levels", action="append", default=[],
                   metavar="LOGGER=LEVEL[:SECS]", help="Storm's spelling (repeatable)")
    p.add_argument("-t", "--timeout", type=seconds, default=None, metavar="SECS",
                   help="put the loggers back to their own level after SECS "
                        "(default: until reset)")
    p.add_argument("-r", "--reset", action="append", default=[], metavar="LOGGER",
                   help="put LOGGER back to its own level (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run, command="set-log-level")


def parse_level(item: str, option: str, with_timeout: bool) -> tuple[str, str, float | None]:
    """LOGGER=LEVEL (or LOGGER=LEVEL:SECS for Storm's -l) as (logger, level, secs)."""
    logger, sep, level = item.partition("=")
    timeout: float | None = None
    if with_timeout and ":" in level:
        level, _, secs = level.partition(":")
        try:
            timeout = seconds(secs)
        except argparse.ArgumentTypeError as e:
            raise SquallError(f"{option} {item!r}: {e}") from None
    if not sep or not logger.strip() or not level.strip():
        spelled = "LOGGER=LEVEL[:SECS]" if with_timeout else "LOGGER=LEVEL"
        raise SquallError(f"{option}{' ' if option else ''}{item!r}: expected {spelled}, "
                          "e.g. ROOT=DEBUG")
    return logger.strip(), level.strip(), timeout


def run(args: argparse.Namespace) -> int:
    import json

    from cli.main import load_config
    from nimbus.client import NimbusClient

    groups: dict[float | None, dict[str, str]] = {}
    for item in args.levels:
        logger, level, _ = parse_level(item, "", False)
        groups.setdefault(args.timeout, {})[logger] = level
    for item in args.storm_levels:
        logger, level, timeout = parse_level(item, "-l", True)
        groups.setdefault(timeout if timeout is not None else args.timeout, {})[logger] = level
    if not groups and not args.reset:
        raise SquallError("give LOGGER=LEVEL (e.g. ROOT=DEBUG) and/or -r LOGGER")
    client = NimbusClient.from_config(load_config(args))
    reply: dict[str, Any] = {}
    for timeout, levels in groups.items() or [(None, {})]:
        reply = client.set_log_levels(args.name, levels, timeout, args.reset)
        args.reset = []  # sent once
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
        return 0
    print(f"squall set-log-level: {reply['name']!r}: {describe(reply.get('log_levels') or {})}")
    return 0


def describe(levels: dict[str, Any]) -> str:
    """The levels a topology's workers have set, in one line."""
    if not levels:
        return "every logger at its own level"
    import time

    now = time.time()
    parts = []
    for name, entry in sorted(levels.items()):
        until = entry.get("until")
        left = "" if until is None else f" for {max(0, round(until - now))} s"
        parts.append(f"{name}={entry.get('level')}{left}")
    return ", ".join(parts)
