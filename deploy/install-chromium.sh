#!/usr/bin/env bash
# Install Debian's headless-capable Chromium for the dashboard's browser tests, if missing.
# The tests drive /usr/bin/chromium with Playwright (a Python test dependency) and never
# download a browser of their own (`playwright install` is not needed and not run).
# Idempotent: does nothing when /usr/bin/chromium already exists.
# Usage: deploy/install-chromium.sh
set -euo pipefail

BIN=/usr/bin/chromium

die() { echo "install-chromium: $*" >&2; exit 1; }

if [ -x "$BIN" ]; then
    echo "install-chromium: already installed ($("$BIN" --version 2>/dev/null | tail -n 1))"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install Chromium at $BIN by hand"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: run this as root"
    SUDO="sudo"
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || die "apt-get update failed"
# fonts-liberation: readable text in screenshots on a minimal system
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium fonts-liberation || die "apt-get install chromium failed"

[ -x "$BIN" ] || die "$BIN still missing after installing the chromium package"
echo "install-chromium: installed $("$BIN" --version 2>/dev/null | tail -n 1)"
