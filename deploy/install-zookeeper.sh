#!/usr/bin/env bash
# Install ZooKeeper (Debian's `zookeeper` package) and a Java runtime, if they are missing.
# Idempotent: does nothing when /usr/share/java/zookeeper.jar and `java` already exist.
# Usage: deploy/install-zookeeper.sh
set -euo pipefail

JAR=/usr/share/java/zookeeper.jar

die() { echo "install-zookeeper: $*" >&2; exit 1; }

if [ -f "$JAR" ] && command -v java >/dev/null 2>&1; then
    echo "install-zookeeper: already installed ($JAR, $(command -v java))"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ZooKeeper 3.8+ and Java by hand"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: run this as root"
    SUDO="sudo"
fi

packages=()
[ -f "$JAR" ] || packages+=(zookeeper)
command -v java >/dev/null 2>&1 || packages+=(default-jre-headless)

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q || die "apt-get update failed"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${packages[@]}" || die "apt-get install ${packages[*]} failed"

[ -f "$JAR" ] || die "$JAR still missing after installing the zookeeper package"
command -v java >/dev/null 2>&1 || die "java still missing after installing default-jre-headless"
echo "install-zookeeper: installed ${packages[*]}"
