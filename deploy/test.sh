#!/usr/bin/env bash
# Install everything the tests need (ZooKeeper, a virtual environment with Squall and its
# test dependencies) and run the whole test suite. Extra arguments go to pytest.
# Usage: bash deploy/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-zookeeper.sh
if [ -f deploy/install-chromium.sh ]; then
    bash deploy/install-chromium.sh
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
