#!/bin/sh
# Installs the Debian packages skyrelay needs to build and test. Idempotent and
# quiet when everything is present; runs apt-get update once before the first
# install on a fresh machine. Needs root (or sudo) only when something is missing.
#
# REQUIRED: building and the tests that must run everywhere (clang: the libFuzzer targets CI runs).
# OPTIONAL: tools some tests use when present (they say so when they skip):
#   prometheus (promtool), nodejs + npm (the real Node.js agent test).
# With --bench (make bench-compare): nginx and nghttp2-client (h2load) too; nginx is installed
# with its service kept from starting (a policy-rc.d that refuses), so no web server is left
# running on port 80: the benchmark starts its own nginx on loopback.
set -e
REQUIRED="gcc make pkg-config libgrpc-dev protobuf-c-compiler libprotobuf-c-dev \
libuv1-dev libyaml-dev libcmocka-dev libcurl4-openssl-dev libjson-c-dev libisal-dev libssl-dev openssl \
python3 python3-grpcio python3-protobuf protobuf-compiler python3-yaml procps clang"
OPTIONAL="prometheus"
BENCH=""
[ "${1:-}" = "--bench" ] && BENCH="nginx nghttp2-client"
# a NodeSource nodejs conflicts with Debian's npm: only when no node is installed
command -v node >/dev/null 2>&1 || OPTIONAL="$OPTIONAL nodejs npm"

missing_of() {
    out=""
    for p in $1; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || out="$out $p"
    done
    echo "$out"
}
req=$(missing_of "$REQUIRED")
opt=$(missing_of "$OPTIONAL")
bench=$(missing_of "$BENCH")
[ -z "$req$opt$bench" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
echo "install-deps: installing:$req$opt$bench"
$SUDO apt-get update -qq
if [ -n "$req" ]; then
    $SUDO apt-get install -y -qq --no-install-recommends $req >/dev/null
fi
for p in $opt; do
    $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1 ||
        echo "install-deps: optional package $p could not be installed; the tests that use it will skip"
done
if [ -n "$bench" ]; then
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    $SUDO apt-get install -y -qq --no-install-recommends $bench >/dev/null 2>&1 ||
        echo "install-deps: $bench could not be installed; make bench-compare will skip what needs them"
    if [ -n "$guard" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi
