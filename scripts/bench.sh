#!/bin/sh
# `make bench`: prints msg/s, skyrelay CPU us/msg and peak RSS (see test/bench/bench.py).
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
exec "$PY" test/bench/bench.py "$@"
