#!/bin/sh
# Instruction count of skyrelay per forwarded message, under valgrind's callgrind
# (repeatable, unlike CPU time on a shared 2-core machine). One worker, 16
# segment streams x 2000 messages (CG_MESSAGES) of ~500 B into 3 fake OAP nodes.
# Includes start-up and shutdown: compare two message counts for the marginal cost.
# Usage: test/bench/callgrind.sh [collect|collect_in_sync]   (prints Ir/msg)
set -eu
cd "$(dirname "$0")/../.."
MODE=${1:-collect}
D=$(mktemp -d /tmp/skyrelay-cg.XXXXXX)
BASE=${CG_PORT:-17930}
PIDS=""
for i in 1 2 3; do
    build/fake_oap --listen 127.0.0.1:$((BASE + i)) --count-only >/dev/null 2>&1 &
    PIDS="$PIDS $!"
done
sed "s/upstream_method: collect /upstream_method: $MODE /" config/skyrelay.yaml >"$D/c.yaml"
SATELLITE_GRPC_ADDRESS=127.0.0.1:$BASE \
SATELLITE_GRPC_CLIENT=127.0.0.1:$((BASE + 1)),127.0.0.1:$((BASE + 2)),127.0.0.1:$((BASE + 3)) \
SATELLITE_LOGGER_LEVEL=warn SKYRELAY_WORKERS=1 \
    valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" build/skyrelay -c "$D/c.yaml" 2>"$D/cg.log" &
RP=$!
i=0
until grep -q "listening on" "$D/cg.log" 2>/dev/null || [ $i -gt 300 ]; do sleep 0.1; i=$((i + 1)); done
SATELLITE_LOGGER_LEVEL=warn build/loadgen --target 127.0.0.1:$BASE --kind segment --streams 16 \
    --messages ${CG_MESSAGES:-2000} --connections 4 >/dev/null
sleep 3
kill -TERM $RP
wait $RP || true
for p in $PIDS; do kill -TERM "$p"; done
TOTAL=$(callgrind_annotate "$D/cg.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
N=$((16 * ${CG_MESSAGES:-2000}))
echo "mode=$MODE messages=$N instructions=$TOTAL per_message=$((TOTAL / N))"
callgrind_annotate "$D/cg.out" 2>/dev/null | grep -E "/work/|src/" | head -12
rm -rf "$D"
