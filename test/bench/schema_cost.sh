#!/bin/sh
# Instructions sr_schema_check spends per ~500-byte SegmentObject, under valgrind's
# callgrind (counted inside sr_schema_check only), for the two shapes of
# test/bench/schema_cost.c. Compare with the proxy's marginal cost per message in
# docs/performance.md ("Edge validation cost").
# Usage: test/bench/schema_cost.sh            (BUILD=build-x to use another build dir)
set -eu
cd "$(dirname "$0")/../.."
B=${BUILD:-build}
make --no-print-directory -s BUILD="$B" "$B/libskyrelay.a"
D=$(mktemp -d /tmp/skyrelay-schema-cost.XXXXXX)
trap 'rm -rf "$D"' EXIT
${CC:-cc} -O2 -g -std=c11 -D_GNU_SOURCE -Iinclude -I"$B/proto" test/bench/schema_cost.c \
    "$B/libskyrelay.a" $(pkg-config --libs libprotobuf-c) -o "$D/schema_cost"
for shape in loadgen rich; do
    "$D/schema_cost" "$shape" >"$D/out"
    valgrind --tool=callgrind --toggle-collect=sr_schema_check \
        --callgrind-out-file="$D/cg.$shape" "$D/schema_cost" "$shape" >/dev/null 2>"$D/log" ||
        { cat "$D/log"; exit 1; }
    IR=$(callgrind_annotate "$D/cg.$shape" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    IT=$(sed 's/.*iterations=//' "$D/out")
    echo "$(cat "$D/out") instructions=$IR per_message=$((IR / IT))"
done
