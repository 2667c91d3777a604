#!/bin/sh
# Installs the Debian packages skyrelay needs to build and test. Idempotent and
# quiet when everything is present; runs apt-get update once before the first
# install on a fresh machine. Needs root (or sudo) only when something is missing.
set -e
PKGS="gcc make pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev \
libuv1-dev libyaml-dev libcmocka-dev libcurl4-openssl-dev libjson-c-dev openssl python3 python3-grpcio python3-yaml procps prometheus"
missing=""
# Node.js for the real-agent test: only when no node is installed (a NodeSource
# nodejs conflicts with Debian's npm package)
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
