"""`squall supervisor`: run the supervisor daemon in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "supervisor", parents=[parent], help="run the supervisor daemon",
        description="Run a supervisor: offer this host's slots (supervisor.slots.ports) and run "
                    "the workers nimbus assigns to them. Workers keep running when the "
                    "supervisor stops; one restarted within nimbus.supervisor.timeout.secs "
                    "takes them over, else their work moves to other hosts and they exit "
                    "after worker.orphan.timeout.secs.")
    p.add_argument("--kill-workers", action="store_true",
                   help="stop this supervisor's workers when it stops (for dev clusters)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.main import load_config
    from supervisor.daemon import Supervisor

    supervisor = Supervisor(load_config(args), kill_workers=args.kill_workers)

    def stop(signum: int, frame: Any) -> None:
        supervisor.stop()  # only a flag: run() returns and shuts down in the main thread

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    supervisor.start()
    print(f"squall supervisor: {supervisor.id} on {supervisor.host}, slots "
          f"{supervisor.slots}, home {supervisor.home}", file=sys.stderr, flush=True)
    supervisor.run()
    return 0
