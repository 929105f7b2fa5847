#!/usr/bin/env bash
# Install Redis (Debian's `redis-server` package, which also brings `redis-cli`), if missing.
# Idempotent: does nothing when `redis-server` is already on PATH. The package's own service
# is left as Debian configures it; Squall's tests start throwaway servers with
# deploy/start-redis.sh on ports of their own.
# Usage: deploy/install-redis.sh
set -euo pipefail

die() { echo "install-redis: $*" >&2; exit 1; }

if command -v redis-server >/dev/null 2>&1; then
    echo "install-redis: already installed ($(command -v redis-server))"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install Redis 6.2+ by hand"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: run this as root"
    SUDO="sudo"
fi

# Without systemd (containers, CI) the package's post-install cannot start its service;
# policy-rc.d tells invoke-rc.d not to try, so the install does not fail on it.
if [ ! -d /run/systemd/system ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi

$SUDO apt-get update -q || die "apt-get update failed"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    redis-server || die "apt-get install redis-server failed"

command -v redis-server >/dev/null 2>&1 || die "redis-server still missing after installing it"
echo "install-redis: installed redis-server ($(redis-server --version | head -n 1))"
