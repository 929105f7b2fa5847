"""`squall config`: show every configuration key, or the configuration in effect."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cluster.config import describe_keys


def register(subparsers: Any, parent: argparse.ArgumentParser) -> None:
    p = subparsers.add_parser("config", parents=[parent], help="show configuration keys",
                              description="Print the configuration in effect (after --config "
                                          "and -c), or with --keys every key and its doc.")
    p.add_argument("--keys", action="store_true", help="list every key, default and doc")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cli.main import load_config

    if args.keys:
        keys = describe_keys()
        if args.json:
            print(json.dumps([{"key": k, "default": d, "doc": doc} for k, d, doc in keys],
                             indent=2))
        else:
            for key, default, doc in keys:
                print(f"{key:42s} {default!r:28s} {doc}")
        return 0
    conf = load_config(args).to_dict()
    if conf.get("cluster.secret"):
        conf["cluster.secret"] = "***"
    if args.json:
        print(json.dumps(conf, indent=2, sort_keys=True))
    else:
        for key in sorted(conf):
            print(f"{key} = {conf[key]!r}")
    return 0
