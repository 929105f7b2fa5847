#!/usr/bin/env bash
# Run a single-node ZooKeeper in the foreground until SIGTERM or Ctrl-C.
# Usage: deploy/start-zookeeper.sh PORT DATADIR
# Its log goes to DATADIR/zookeeper.log. Run deploy/install-zookeeper.sh first.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 PORT DATADIR" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
exec "${PYTHON:-python3}" -m cluster.zkserver --port "$1" --data-dir "$2"
