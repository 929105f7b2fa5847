"""`squall ui`: serve the dashboard and its REST API in the foreground until SIGTERM/Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from topology.errors import SquallError


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser(
        "ui", parents=[parent], help="serve the web dashboard and REST API",
        description="Serve the dashboard on ui.host:ui.port: Storm UI's REST API "
                    "(/api/v1/...), a web page and Prometheus metrics (/metrics), reading the "
                    "cluster state from ZooKeeper; actions go to the leader nimbus.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.main import load_config
    from cluster.state import open_state
    from nimbus.client import NimbusClient
    from ui.actions import NimbusActions
    from ui.server import UiServer

    config = load_config(args)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()  # only a flag: the main thread shuts the server down

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with open_state(config) as state:
        try:
            server = UiServer(state, NimbusActions(NimbusClient.from_config(config)),
                              config["ui.host"], config["ui.port"], config["cluster.secret"],
                              config=config.to_dict())
        except OSError as e:
            raise SquallError(f"cannot serve on {config['ui.host']}:{config['ui.port']}: "
                              f"{e.strerror or e}") from e
        server.start()
        print(f"squall ui: serving on {server.url}", file=sys.stderr, flush=True)
        if not config["cluster.secret"]:
            print("squall ui: warning: no cluster.secret is set; the dashboard's actions are "
                  "disabled", file=sys.stderr, flush=True)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            server.close()
    return 0
