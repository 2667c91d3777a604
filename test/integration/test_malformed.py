"""Edge validation end to end: 2,000 malformed messages of every kind (random
bytes, truncated varints, LEN overruns at top and nested levels, wrong wire
types, nested garbage, invalid UTF-8 in strings), spread over every async
method of the pipe rows (src/core/pipes.c), each sent as its own call to the
real skyrelay.

Each call must end INVALID_ARGUMENT, or OK only if the message is valid
protobuf for its schema, which Python checks independently with classes that
Debian's protoc generates from proto/ (python3-protobuf, C++ parser: proto3
strings must be UTF-8, like OAP's Java parser). The kinds that are malformed
by construction (every kind but random bytes) must end INVALID_ARGUMENT.
Then a normal workload (segments, logs, meters, ALS from build/loadgen) on the
same skyrelay must reach the fake OAP nodes in full within 5 s.

Needs skyrelay with the schema check wired into the receive path: before
that, nested corruption (garbage, overruns and UTF-8 below the top level) is
answered OK and the test fails on it."""
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from harness import ROOT, Background, Case, pipes, wait_until

SW = "/skywalking.v3."
CALLS = 2000
SEED = 20240509
WINDOW = 64  # calls in flight at once

# the message a client sends on each async method (service/method -> module, message, shape)
SCHEMA = {
    "TraceSegmentReportService/collect": ("tracing_pb2", "SegmentObject", "stream"),
    "TraceSegmentReportService/collectInSync": ("tracing_pb2", "SegmentCollection", "unary"),
    "LogReportService/collect": ("logging_pb2", "LogData", "stream"),
    "MeterReportService/collect": ("meter_pb2", "MeterData", "stream"),
    "MeterReportService/collectBatch": ("meter_pb2", "MeterDataCollection", "stream"),
    "JVMMetricReportService/collect": ("jvm_metric_pb2", "JVMMetricCollection", "unary"),
    "CLRMetricReportService/collect": ("clr_metric_pb2", "CLRMetricCollection", "unary"),
    "EventService/collect": ("event_pb2", "Event", "stream"),
    "SpanAttachedEventReportService/collect": ("tracing_pb2", "SpanAttachedEvent", "stream"),
    "ProfileTask/collectSnapshot": ("profile_pb2", "ThreadSnapshot", "stream"),
    "EBPFProfilingService/collectProfilingData": ("ebpf_profiling_pb2", "EBPFProfilingData",
                                                  "stream"),
    "EBPFAccessLogService/collect": ("ebpf_accesslog_pb2", "EBPFAccessLogMessage", "stream"),
    "ManagementService/keepAlive": ("management_pb2", "InstancePingPkg", "unary"),
    "ManagementService/reportInstanceProperties": ("management_pb2", "InstanceProperties",
                                                   "unary"),
    "AccessLogService/StreamAccessLogs": ("envoy_als_pb2", "StreamAccessLogsMessage", "stream"),
    "MetricsService/StreamMetrics": ("envoy_metrics_pb2", "StreamMetricsMessage", "stream"),
}


def async_methods():
    """Every async method path of the pipe rows in src/core/pipes.c (both SkyWalking forms)."""
    with open(os.path.join(ROOT, "src", "core", "pipes.c")) as f:
        text = f.read()
    paths = []
    for path in re.findall(r'\bM\(\s*"([^"]+)"', text):
        paths += [path] if path.startswith("/") else [SW + path, "/" + path]
    return paths


def schema_key(path):
    svc, m = path.rsplit("/", 1)
    return svc.lstrip("/").rsplit(".", 1)[-1] + "/" + m


# ---- protobuf wire helpers ----

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def tag(num, wt):
    return varint(num << 3 | wt)


def ld(num, payload):
    return tag(num, 2) + varint(len(payload)) + payload


BAD_UTF8 = [b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\xaf", b"\xf0\x8f\xbf\xbf",  # overlong
            b"\xed\xa0\x80", b"\xed\xbf\xbf",                               # surrogates
            b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff",              # > U+10FFFF
            b"ok\xe2\x82", b"\xe2\x82z", b"\xf0\x9f\x98", b"\x80"]          # truncated, stray


class Gen:
    """Random valid messages and corruptions of them, from the Python descriptors."""

    def __init__(self, rnd, fd_mod):
        self.rnd = rnd
        self.FD = fd_mod

    def _scalar(self, f):
        FD, r = self.FD, self.rnd
        t = f.type
        if t == FD.TYPE_STRING:
            return "".join(r.choice("abcxyz-/._09 \u00e9\u20ac\U0001f600")
                           for _ in range(r.randint(0, 24)))
        if t == FD.TYPE_BYTES:
            return r.randbytes(r.randint(0, 8))
        if t == FD.TYPE_BOOL:
            return r.random() < 0.5
        if t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
            return r.random() * 1000
        if t == FD.TYPE_ENUM:
            return r.choice(f.enum_type.values).number
        if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
            return r.randint(0, 2**32 - 1)
        if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
            return r.randint(0, 2**64 - 1)
        if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
            return r.randint(-2**31, 2**31 - 1)
        return r.randint(-2**63, 2**63 - 1)

    def fill(self, m, depth=0):
        """Sets a random subset of m's fields (nested messages to depth 3)."""
        FD, r = self.FD, self.rnd
        for f in m.DESCRIPTOR.fields:
            if r.random() < 0.4:
                continue
            is_msg = f.type == FD.TYPE_MESSAGE
            if is_msg and depth >= 3:
                continue
            if is_msg and f.message_type.GetOptions().map_entry:
                kf, vf = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
                mp = getattr(m, f.name)
                for _ in range(r.randint(1, 2)):
                    k = self._scalar(kf)
                    if vf.type == FD.TYPE_MESSAGE:
                        self.fill(mp[k], depth + 1)
                    else:
                        mp[k] = self._scalar(vf)
            elif f.label == FD.LABEL_REPEATED:
                rep = getattr(m, f.name)
                for _ in range(r.randint(1, 2)):
                    if is_msg:
                        self.fill(rep.add(), depth + 1)
                    else:
                        rep.append(self._scalar(f))
            elif is_msg:
                self.fill(getattr(m, f.name), depth + 1)
                getattr(m, f.name).SetInParent()
            else:
                setattr(m, f.name, self._scalar(f))
        return m

    def message_paths(self, desc, want, depth=0, prefix=()):
        """Paths (tuples of field descriptors) from desc to the fields want(f) accepts,
        through message fields, at most 3 levels down."""
        out = []
        for f in desc.fields:
            if want(f):
                out.append(prefix + (f,))
            if f.type == self.FD.TYPE_MESSAGE and depth < 3:
                out += self.message_paths(f.message_type, want, depth + 1, prefix + (f,))
        return out

    @staticmethod
    def wrap(path, inner):
        """Encodes inner as the content of the last message field of path, wrapped
        in each enclosing message field."""
        for f in reversed(path):
            inner = ld(f.number, inner)
        return inner

    def wire_type(self, f):
        FD = self.FD
        if f.type in (FD.TYPE_STRING, FD.TYPE_BYTES, FD.TYPE_MESSAGE):
            return 2
        if f.type in (FD.TYPE_FIXED64, FD.TYPE_SFIXED64, FD.TYPE_DOUBLE):
            return 1
        if f.type in (FD.TYPE_FIXED32, FD.TYPE_SFIXED32, FD.TYPE_FLOAT):
            return 5
        return 0

    # ---- the kinds; each returns (bytes, malformed by construction) ----

    def random_bytes(self, cls):
        return self.rnd.randbytes(self.rnd.randint(1, 120)), False

    def truncated_varint(self, cls):
        r = self.rnd
        base = self.fill(cls()).SerializeToString()
        choice = r.randint(0, 3)
        if choice == 0:    # a varint field's value cut short
            return base + tag(r.randint(1, 40), 0) + b"\x80" * r.randint(1, 9), True
        if choice == 1:    # a tag cut short
            return base + b"\xff" * r.randint(1, 4), True
        if choice == 2:    # a length cut short
            return base + tag(r.randint(1, 40), 2) + b"\x80" * r.randint(1, 4), True
        # 11 bytes: longer than any varint
        return base + tag(r.randint(1, 40), 0) + b"\xff" * 10 + b"\x01", True

    def len_overrun(self, cls):
        r = self.rnd
        base = self.fill(cls()).SerializeToString()
        paths = self.message_paths(cls.DESCRIPTOR, lambda f: f.type == self.FD.TYPE_MESSAGE)
        if paths and r.random() < 0.6:
            # nested: the innermost field claims more than its message holds; the bytes
            # exist after it in the buffer, so only a nested check sees the overrun
            path = r.choice(paths)
            inner = tag(r.randint(1, 20), 2) + varint(r.randint(5, 40)) + b"abc"
            return base + self.wrap(path, inner) + ld(999, b"\x00" * 48), True
        n = r.randint(1, 30)
        return base + tag(r.randint(1, 40), 2) + varint(n + r.randint(1, 50)) + b"x" * n, True

    def bad_wire_type(self, cls):
        r = self.rnd
        base = self.fill(cls()).SerializeToString()
        paths = self.message_paths(cls.DESCRIPTOR, lambda f: True)
        path = r.choice(paths)
        f = path[-1]
        right = self.wire_type(f)
        choices = [w for w in (0, 1, 2, 5) if w != right]
        if f.label == self.FD.LABEL_REPEATED and right != 2:
            choices.remove(2)  # a repeated scalar may come packed
        wt = r.choice(choices)
        payload = {0: varint(7), 1: b"\x01" * 8, 2: varint(3) + b"abc", 5: b"\x01" * 4}[wt]
        if r.random() < 0.15:
            wt, payload = r.choice((6, 7)), b""  # no such wire type
        field = tag(f.number, wt) + payload
        return base + (self.wrap(path[:-1], field) if len(path) > 1 else field), True

    def nested_garbage(self, cls):
        r = self.rnd
        base = self.fill(cls()).SerializeToString()
        paths = self.message_paths(cls.DESCRIPTOR, lambda f: f.type == self.FD.TYPE_MESSAGE)
        if not paths:  # InstancePingPkg: no message field; garbage in a string then
            f = r.choice(cls.DESCRIPTOR.fields)
            return base + ld(f.number, b"\xff\xff"), True
        path = r.choice(paths)
        if r.random() < 0.5:
            return base + self.wrap(path, b"\xff\xff"), True
        return base + self.wrap(path, r.randbytes(r.randint(1, 16))), False

    def bad_utf8(self, cls):
        r = self.rnd
        base = self.fill(cls()).SerializeToString()
        FD = self.FD
        paths = self.message_paths(cls.DESCRIPTOR, lambda f: f.type == FD.TYPE_STRING and
                                   f.containing_type.file.syntax == "proto3")
        path = r.choice(paths)
        s = "pre-".encode() * r.randint(0, 3) + r.choice(BAD_UTF8) + b"-post" * r.randint(0, 3)
        return base + self.wrap(path[:-1], ld(path[-1].number, s)), True


KINDS = ["random_bytes", "truncated_varint", "len_overrun", "bad_wire_type", "nested_garbage",
         "bad_utf8"]


class Malformed(Case):
    @classmethod
    def setUpClass(cls):
        if not shutil.which("protoc"):
            raise AssertionError("protoc is required (protobuf-compiler: scripts/install-deps.sh)")
        cls.pydir = tempfile.TemporaryDirectory(prefix="skyrelay-pb2-")
        protos = sorted(os.path.join(ROOT, "proto", p) for p in os.listdir(
            os.path.join(ROOT, "proto")) if p.endswith(".proto"))
        subprocess.run(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"),
                        "--python_out=" + cls.pydir.name] + protos, check=True)
        sys.path.insert(0, cls.pydir.name)

    @classmethod
    def tearDownClass(cls):
        sys.path.remove(cls.pydir.name)
        cls.pydir.cleanup()

    def _classes(self):
        import importlib
        out = {}
        for key, (mod, name, shape) in SCHEMA.items():
            out[key] = (getattr(importlib.import_module(mod), name), shape)
        return out

    @staticmethod
    def _valid(cls, data):
        try:
            cls.FromString(data)
            return True
        except Exception:  # google.protobuf.message.DecodeError
            return False

    @staticmethod
    def _quiet_stderr():
        """The C++ parser logs every invalid UTF-8 string on fd 2: silenced while
        the messages are checked; returns the fd to restore."""
        sys.stderr.flush()
        saved = os.dup(2)
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        return saved

    def _send_all(self, address, calls):
        """Sends every (path, shape, bytes) as its own call, WINDOW at a time on one
        channel; returns the status code names in order."""
        import grpc
        codes = []
        with grpc.insecure_channel(address) as ch:
            for i in range(0, len(calls), WINDOW):
                futs = []
                for path, shape, data in calls[i:i + WINDOW]:
                    if shape == "unary":
                        futs.append(ch.unary_unary(path).future(data, timeout=10))
                    else:
                        futs.append(ch.stream_unary(path).future(iter([data]), timeout=10))
                for f in futs:
                    try:
                        f.result()
                        codes.append("OK")
                    except grpc.RpcError as e:
                        codes.append(e.code().name)
        return codes

    def test_malformed_messages_are_refused_and_good_traffic_still_flows(self):
        start = time.time()
        from google.protobuf.descriptor import FieldDescriptor
        classes = self._classes()
        paths = async_methods()
        self.assertGreaterEqual(len(paths), 32)
        for p in paths:
            self.assertIn(schema_key(p), classes, "no schema in this test for " + p)

        rnd = random.Random(SEED)
        gen = Gen(rnd, FieldDescriptor)
        calls, meta = [], []
        saved = self._quiet_stderr()
        try:
            for i in range(CALLS):  # every method gets every kind
                path = paths[i % len(paths)]
                kind = KINDS[(i // len(paths)) % len(KINDS)]
                cls, shape = classes[schema_key(path)]
                data, malformed = getattr(gen, kind)(cls)
                valid = self._valid(cls, data)
                calls.append((path, shape, data))
                meta.append((path, kind, malformed, valid, data))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        for path, kind, malformed, valid, data in meta:
            if malformed:  # the generator's own check: Python agrees it is malformed
                self.assertFalse(valid and kind != "bad_wire_type",
                                 "%s built a valid message for %s: %s" % (kind, path, data.hex()))

        oaps = [self.oap("n0"), self.oap("n1")]
        relay = self.relay(oaps, pipes())
        codes = self._send_all(relay.address, calls)
        self.assertTrue(relay.alive(), relay.output()[-2000:])

        bad = []
        tally = {}
        for code, (path, kind, malformed, valid, data) in zip(codes, meta):
            t = tally.setdefault(kind, {})
            t[code] = t.get(code, 0) + 1
            ok = code == "INVALID_ARGUMENT" or (code == "OK" and valid and not malformed)
            if not ok:
                bad.append("%s %s -> %s (python: %s) %s" % (
                    path, kind, code, "valid" if valid else "invalid", data[:48].hex()))
        self.assertEqual(bad, [], "%d of %d calls wrong; by kind: %r; first ones:\n%s" % (
            len(bad), CALLS, tally, "\n".join(bad[:15])))
        self.assertGreater(tally["nested_garbage"].get("INVALID_ARGUMENT", 0), CALLS // 24)

        # what was accepted (valid random bytes) drains before the workload
        def settled(prev=[None]):
            cur = [o.summary() for o in oaps]
            same = cur == prev[0] and None not in cur
            prev[0] = cur
            return same
        wait_until(settled, 10, "the accepted calls to drain", interval=0.3)
        base = {k: self.total(oaps, k) for k in ("segments.unique", "logs.total", "meters.total",
                                                  "als.total")}

        runs = [Background(relay.address, kind, streams, msgs, self.dir,
                           ["--id-prefix", "wl", "--services", "2", "--instances", "2"])
                for kind, streams, msgs in (("segment", 4, 100), ("log", 4, 100),
                                            ("meter", 4, 100), ("als", 2, 20))]
        sums = [r.wait(30) for r in runs]
        for (s, rc), name in zip(sums, ("segment", "log", "meter", "als")):
            self.assertEqual(rc, 0, "loadgen %s: %r" % (name, s.get("errors")))
        want = {"segments.unique": sums[0][0]["expected"]["total"],
                "logs.total": sums[1][0]["expected"]["total"],
                "meters.total": sums[2][0]["expected"]["total"],
                "als.total": sums[3][0]["expected"]["total"]}
        wait_until(lambda: all(self.total(oaps, k) - base[k] >= n for k, n in want.items()), 5,
                   "the workload to reach the nodes")
        time.sleep(0.3)  # let a wrong extra message show up
        self.assertEqual({k: self.total(oaps, k) - base[k] for k in want}, want)
        for key, (s, _) in (("logs.by_instance", sums[1]), ("meters.by_instance", sums[2])):
            got = self.merged(oaps, key)
            for inst, n in s["expected"]["by_instance"].items():
                self.assertEqual(got.get(inst, 0), n, key + " " + inst)
        self.assertLess(time.time() - start, 60)


if __name__ == "__main__":
    unittest.main()
