#!/usr/bin/env bash
# Run a throwaway Redis server in the foreground until SIGTERM or Ctrl-C.
# Usage: deploy/start-redis.sh PORT DIR
# It listens on 127.0.0.1:PORT (set REDIS_BIND to listen elsewhere), keeps its data in DIR
# (an append-only file, fsynced every second, so a restarted server has it back) and logs
# to DIR/redis.log. Run deploy/install-redis.sh first.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 PORT DIR" >&2
    exit 2
fi
command -v redis-server >/dev/null 2>&1 || {
    echo "start-redis: redis-server not found: run deploy/install-redis.sh" >&2
    exit 1
}
mkdir -p "$2"
exec redis-server \
    --port "$1" \
    --bind "${REDIS_BIND:-127.0.0.1}" \
    --dir "$(cd "$2" && pwd)" \
    --logfile redis.log \
    --daemonize no \
    --save "" \
    --appendonly yes \
    --appendfsync everysec
