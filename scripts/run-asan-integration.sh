#!/bin/sh
# Runs integration tests against build-asan/skyrelay (AddressSanitizer, LeakSanitizer,
# UndefinedBehaviorSanitizer) and fails if a sanitizer wrote any report.
# Usage: scripts/run-asan-integration.sh [test modules...]
set -u
cd "$(dirname "$0")/.."
LOGS=$(mktemp -d /tmp/skyrelay-asan.XXXXXX)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
MODULES=${*:-"test_datapath test_protocols test_telemetry test_discovery_dns test_connections test_routing test_faults.Poison test_relay_faults test_config_discovery"}
cd test/integration
SKYRELAY_BIN="$(pwd)/../../build-asan/skyrelay" \
ASAN_OPTIONS="detect_leaks=1:log_path=$LOGS/asan" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$LOGS/ubsan" \
    "$PY" -m unittest $MODULES
rc=$?
if [ -n "$(ls -A "$LOGS")" ]; then
    echo "sanitizer reports in $LOGS:"
    cat "$LOGS"/* | head -200
    exit 1
fi
rm -rf "$LOGS"
exit $rc
