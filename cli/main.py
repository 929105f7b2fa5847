"""`squall`: one entry point, a subcommand per module (each has `register(subparsers)`).

Only this layer turns errors into messages and exit codes: a SquallError becomes one line
on stderr and exit status 1; argparse's usage errors exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
from collections.abc import Sequence

from topology.errors import SquallError

log = logging.getLogger(__name__)

COMMAND_MODULES = [
    "cli.config_cmd",
    "cli.local_cmd",
    "cli.cluster_cmds",
    "cli.monitor_cmd",
    "cli.logs_cmd",
    "cli.loglevel_cmd",
    "cli.nimbus_cmd",
    "cli.supervisor_cmd",
    "cli.devcluster_cmd",
    "cli.ui_cmd",
]


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0 (NaN would make a deadline that
    never passes, and inf one that is never reached)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds >= 0, "
                                         f"got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0."""
    value = seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def common_options() -> argparse.ArgumentParser:
    """Options every subcommand accepts (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="PATH", help="TOML config file (default: $SQUALL_CONF)")
    p.add_argument("-c", dest="overrides", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key (repeatable)")
    p.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default)")
    return p


class _Version(argparse.Action):
    """`--version`: the installed Squall's version (looked up only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print Squall's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from ui.api import squall_version

        print(f"squall {squall_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squall", description="Squall stream processing")
    parser.add_argument("--version", action=_Version)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    parent = common_options()
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(subparsers, parent)
    return parser


def load_config(args: argparse.Namespace):  # -> cluster.config.Config
    from cluster.config import Config

    return Config.load(args.config, overrides=list(args.overrides))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "WARNING").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except SquallError as e:
        print(f"squall {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
