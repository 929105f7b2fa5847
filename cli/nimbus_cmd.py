"""`squall nimbus`: run the nimbus daemon in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
from typing import Any


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "nimbus", parents=[parent], help="run the nimbus daemon",
        description="Run nimbus: the submission API, the scheduler and failure detection. "
                    "Several may run; one leads, the others stand by.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.main import load_config
    from nimbus.daemon import Nimbus

    nimbus = Nimbus(load_config(args))

    def stop(signum: int, frame: Any) -> None:
        nimbus.request_stop()  # only a flag: the loop ends and close() runs in the main thread

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    nimbus.serve()
    return 0
