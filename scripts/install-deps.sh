#!/bin/sh
# Installs the Debian packages skyrelay needs to build and test. Idempotent and
# quiet when everything is present; runs apt-get update once before the first
# install on a fresh machine. Needs root (or sudo) only when something is missing.
set -e
PKGS="gcc make pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev \
libuv1-dev libyaml-dev libcmocka-dev python3 python3-grpcio procps"
missing=""
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
