#!/bin/sh
# Runs every unit test binary given; fails if any fails.
fail=0
for t in "$@"; do
    if ! "$t"; then
        echo "FAILED: $t"
        fail=1
    fi
done
exit $fail
