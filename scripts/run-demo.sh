#!/bin/sh
# `make run`: two local fake OAP nodes, skyrelay in front of them with the
# shipped config, a short burst of agent-like traffic, per-node counts, and
# skyrelay keeps serving on :11800 until Ctrl-C.
# Ports: DEMO_PORT (default 11800) for skyrelay, DEMO_PORT+1 and +2 for the nodes.
set -u
cd "$(dirname "$0")/.."
PORT=${DEMO_PORT:-11800}
N1=$((PORT + 1))
N2=$((PORT + 2))
ADMIN=${DEMO_ADMIN_PORT:-1234}
DIR=$(mktemp -d /tmp/skyrelay-demo.XXXXXX)
PIDS=""

cleanup() {
    for p in $PIDS; do kill -TERM "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    echo "demo files left in $DIR"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

for port in $PORT $N1 $N2 $ADMIN; do
    if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "port $port is in use; set DEMO_PORT (or DEMO_ADMIN_PORT) to free ports" >&2
        exit 1
    fi
done 2>/dev/null

build/fake_oap --listen 127.0.0.1:$N1 --name oap-1 --summary "$DIR/oap-1.json" >"$DIR/oap-1.log" 2>&1 &
PIDS="$PIDS $!"
build/fake_oap --listen 127.0.0.1:$N2 --name oap-2 --summary "$DIR/oap-2.json" >"$DIR/oap-2.log" 2>&1 &
PIDS="$PIDS $!"

SATELLITE_GRPC_ADDRESS=0.0.0.0:$PORT \
SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS=127.0.0.1:$ADMIN \
SATELLITE_GRPC_CLIENT=127.0.0.1:$N1,127.0.0.1:$N2 \
    build/skyrelay --config config/skyrelay.yaml 2>"$DIR/skyrelay.log" &
RELAY=$!
PIDS="$RELAY $PIDS"
i=0
until grep -q "listening on" "$DIR/skyrelay.log" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $RELAY 2>/dev/null; then
        cat "$DIR/skyrelay.log"
        echo "skyrelay did not start" >&2
        exit 1
    fi
    sleep 0.1
done
echo "skyrelay is listening on :$PORT, upstream nodes 127.0.0.1:$N1 and 127.0.0.1:$N2"
echo "sending a burst: 8 segment streams, 4 log streams, 4 meter streams, 4 Envoy ALS streams ..."
build/loadgen --target 127.0.0.1:$PORT --kind segment --streams 8 --messages 500 >/dev/null &&
build/loadgen --target 127.0.0.1:$PORT --kind log --streams 4 --messages 200 --services 2 >/dev/null &&
build/loadgen --target 127.0.0.1:$PORT --kind meter --streams 4 --messages 100 --services 2 --instances 2 >/dev/null &&
build/loadgen --target 127.0.0.1:$PORT --kind als --streams 4 --messages 100 >/dev/null ||
    echo "loadgen reported failures" >&2
sleep 2.5 # default linger is 1 s
/usr/bin/python3 - "$DIR/oap-1.json" "$DIR/oap-2.json" <<'PY'
import json, sys
print("%-8s %9s %6s %7s %9s" % ("node", "segments", "logs", "meters", "als"))
for p in sys.argv[1:]:
    s = json.load(open(p))
    print("%-8s %9d %6d %7d %9d" % (s["name"], s["segments"]["total"], s["logs"]["total"],
                                    s["meters"]["total"], s["als"]["total"]))
print("(sent: 4000 segments, 800 logs, 400 meter data, 4000 ALS log entries in 400 messages;")
print(" meters are routed by instance (fixed), so their split follows the 4 instances)")
PY
echo
echo "skyrelay keeps serving on :$PORT (log: $DIR/skyrelay.log)."
echo "metrics: curl http://127.0.0.1:$ADMIN/metrics   readiness: curl http://127.0.0.1:$ADMIN/readyz"
echo "Ctrl-C to stop."
wait $RELAY
