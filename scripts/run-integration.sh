#!/bin/sh
# Runs the integration tests (test/integration/test_*.py) against the real
# binaries in build/. Uses Debian's python3 (which has python3-grpcio).
set -e
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
cd test/integration
exec "$PY" -m unittest discover -v -p 'test_*.py' "$@"
