#!/bin/sh
# Instruction count per message under valgrind's callgrind (repeatable, unlike CPU time on a
# shared 2-core machine).
#
#   skyrelay (collect | collect_in_sync): one worker, 3 fake OAP nodes; the segment upstream mode
#     is selected by the shipped config's placeholder SKYRELAY_SEGMENT_UPSTREAM_METHOD
#   floor-next | floor-callback: build/grpc_floor (1 thread), the receive-only floor of the gRPC
#     C core (test/bench/grpc_floor.c), no nodes; CG_FLOOR_ARGS adds options ("--lookahead N")
#
# Load (CG_LOAD): loadgen (default) = 16 segment streams x CG_MESSAGES (2000) over 4
# connections; h2load = CG_REQUESTS (16) requests x 1,000 framed SegmentObjects over 8
# connections (the body of test/bench/compare.py). Includes start-up and shutdown: compare two
# message counts for the marginal cost. BUILD: build directory (default build). CG_KEEP=DIR
# keeps callgrind.out in DIR (for callgrind_annotate), named by mode, load, messages and CG_TAG.
# Usage: test/bench/callgrind.sh [collect|collect_in_sync|floor-next|floor-callback]
set -eu
cd "$(dirname "$0")/../.."
MODE=${1:-collect}
B=${BUILD:-build}
LOAD=${CG_LOAD:-loadgen}
D=$(mktemp -d /tmp/skyrelay-cg.XXXXXX)
BASE=${CG_PORT:-17930}
PIDS=""
RP=""
# whatever happens, nothing started here outlives the script (a fake node left behind would
# also keep holding the fd of a `flock` around it)
cleanup() {
    for p in $RP $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
    rm -rf "$D"
}
trap cleanup EXIT
case $MODE in
floor-*)
    valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$B/grpc_floor" \
        --listen 127.0.0.1:$BASE --threads 1 --cq "${MODE#floor-}" ${CG_FLOOR_ARGS:-} \
        >"$D/cg.log" 2>&1 &
    RP=$!
    ;;
*)
    for i in 1 2 3; do
        "$B/fake_oap" --listen 127.0.0.1:$((BASE + i)) --count-only >/dev/null 2>&1 &
        PIDS="$PIDS $!"
    done
    SKYRELAY_SEGMENT_UPSTREAM_METHOD=$MODE \
    SATELLITE_GRPC_ADDRESS=127.0.0.1:$BASE \
    SATELLITE_GRPC_CLIENT=127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3)) \
    SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS=127.0.0.1:0 \
    SATELLITE_LOGGER_LEVEL=warn SKYRELAY_WORKERS=1 \
        valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$B/skyrelay" \
        -c config/skyrelay.yaml >"$D/cg.log" 2>&1 &
    RP=$!
    ;;
esac
# until the port accepts (valgrind starts slowly; loadgen would wait, h2load would not)
/usr/bin/python3 -c "
import socket, sys, time
for _ in range(1200):
    with socket.socket() as s:
        if s.connect_ex(('127.0.0.1', $BASE)) == 0:
            sys.exit(0)
    time.sleep(0.1)
sys.exit('nothing listens on port $BASE')"
if [ "$LOAD" = h2load ]; then
    /usr/bin/python3 -c "import sys; sys.path.insert(0, 'test/bench'); import compare; compare.h2_body('$D/body.bin')"
    N=$((${CG_REQUESTS:-16} * 1000))
    h2load -n ${CG_REQUESTS:-16} -c 8 -m 1 -d "$D/body.bin" -H 'content-type: application/grpc' \
        -H 'te: trailers' --header=':method: POST' \
        "http://127.0.0.1:$BASE/skywalking.v3.TraceSegmentReportService/collect" >"$D/load.log"
    grep -q " ${CG_REQUESTS:-16} succeeded" "$D/load.log" || { cat "$D/load.log"; exit 1; }
else
    N=$((16 * ${CG_MESSAGES:-2000}))
    SATELLITE_LOGGER_LEVEL=warn "$B/loadgen" --target 127.0.0.1:$BASE --kind segment --streams 16 \
        --messages ${CG_MESSAGES:-2000} --connections 4 >"$D/load.log"
fi
sleep 3
kill -TERM $RP
wait $RP || true
RP=""
case $MODE in floor-*) grep "\"messages\"" "$D/cg.log" || true ;; esac # the floor's own count
TOTAL=$(callgrind_annotate "$D/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "mode=$MODE load=$LOAD messages=$N instructions=$TOTAL per_message=$((TOTAL / N))"
callgrind_annotate "$D/cg.out" 2>/dev/null | grep -E "/work/|src/|test/bench" | head -12
if [ -n "${CG_KEEP:-}" ]; then
    mkdir -p "$CG_KEEP"
    cp "$D/cg.out" "$CG_KEEP/callgrind.out.$MODE.$LOAD.$N${CG_TAG:+.$CG_TAG}"
fi
