#!/usr/bin/env bash
# Install everything the tests need (ZooKeeper, Redis, a virtual environment with Squall and
# its test dependencies), start a throwaway Redis server for them, and run the whole test
# suite. Extra arguments go to pytest.
# Usage: bash deploy/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-zookeeper.sh
bash deploy/install-redis.sh
if [ -f deploy/install-chromium.sh ]; then
    bash deploy/install-chromium.sh
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

# The Redis server of the tests (tests/redis_fixtures.py uses it through
# SQUALL_TEST_REDIS_URL; run alone, the fixture starts its own): on a free port, in a
# directory removed at the end, stopped however the tests end.
REDIS_PORT="$(.venv/bin/python -c 'from cluster.zkserver import free_port; print(free_port("127.0.0.1"))')"
REDIS_DIR="$(mktemp -d -t squall-test-redis-XXXXXX)"
bash deploy/start-redis.sh "$REDIS_PORT" "$REDIS_DIR" >"$REDIS_DIR/stdout.log" 2>&1 &
REDIS_PID=$!
cleanup() {
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    rm -rf "$REDIS_DIR"
}
trap cleanup EXIT
for _ in $(seq 1 200); do
    if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
        break
    fi
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$REDIS_DIR"/*.log >&2; exit 1; }
    sleep 0.1
done
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG || {
    echo "test.sh: redis did not answer PING on port $REDIS_PORT" >&2; exit 1; }
export SQUALL_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
