"""Integration test harness: runs the real skyrelay binary, fake OAP nodes and
the load generator on 127.0.0.1, with bounded time, and stops only the
processes it started (by PID)."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("SKYRELAY_BUILD") or os.path.join(ROOT, "build")
SKYRELAY = os.environ.get("SKYRELAY_BIN") or os.path.join(BUILD, "skyrelay")
FAKE_OAP = os.path.join(BUILD, "fake_oap")
LOADGEN = os.path.join(BUILD, "loadgen")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))


class Proc:
    def __init__(self, args, workdir, name, env=None):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=e)
        self.pid = self.p.pid

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.p.poll() is None:
            os.kill(self.pid, sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(5)
        self.log.close()
        return self.p.returncode


class FakeOap(Proc):
    def __init__(self, workdir, name, extra=(), port=None, listen_ip="127.0.0.1"):
        self.port = port or free_port()
        self.summary_path = os.path.join(workdir, name + ".json")
        self.ids_path = os.path.join(workdir, name + ".ids")
        super().__init__([FAKE_OAP, "--listen", "%s:%d" % (listen_ip, self.port), "--name", name,
                          "--summary", self.summary_path, "--ids", self.ids_path] + list(extra),
                         workdir, name)
        wait_until(lambda: "listening" in self.output(), 10, name + " to listen")
        self.address = "%s:%d" % (listen_ip, self.port)

    def summary(self):
        try:
            with open(self.summary_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None


class Skyrelay(Proc):
    def __init__(self, workdir, upstreams, yaml_extra="", env=None, name="skyrelay",
                 server_extra=""):
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.config = os.path.join(workdir, name + ".yaml")
        with open(self.config, "w") as f:
            f.write("server:\n  address: %s\n%s" % (self.address, server_extra))
            f.write("upstream:\n  addresses: %s\n" % ",".join(upstreams))
            f.write(yaml_extra)
            if "telemetry:" not in yaml_extra:
                # many relays run side by side: no fixed admin port
                f.write("telemetry:\n  prometheus_address: 127.0.0.1:0\n")
        super().__init__([SKYRELAY, "--config", self.config], workdir, name, env=env)
        wait_until(lambda: "listening on" in self.output() or not self.alive(), 10,
                   "skyrelay to listen")
        if not self.alive():
            raise AssertionError("skyrelay exited:\n" + self.output())

    def admin_port(self):
        """The admin port from the "admin port N" log line, which comes a moment after
        "listening on" (what the constructor waits for)."""
        import re
        m = wait_until(lambda: re.search(r"admin port (\d+)", self.output()), 10,
                       "skyrelay's admin port line")
        return int(m.group(1))

    def final_stats(self):
        """Parses the 'stats: final' lines printed at exit into {pipe: {k: v}}."""
        out = {}
        for line in self.output().splitlines():
            if "stats: final " not in line:
                continue
            rest = line.split("stats: final ", 1)[1]
            kv = dict(t.split("=", 1) for t in rest.split() if "=" in t)
            if rest.startswith("calls "):
                key = "calls"
            elif rest.startswith("connections "):
                key = "connections"
            else:
                key = kv.pop("pipe", None) or "node:" + kv.pop("node", "?")
            out[key] = {k: (int(v) if v.isdigit() else v) for k, v in kv.items()}
        return out


class Background:
    """A load generator running while the test does something else."""

    def __init__(self, target, kind, streams, messages, workdir, extra=()):
        self.summary_path = os.path.join(workdir, "bg-%s-%d.json" % (kind, int(time.time() * 1e6)))
        self.p = subprocess.Popen([LOADGEN, "--target", target, "--kind", kind, "--streams",
                                   str(streams), "--messages", str(messages), "--summary",
                                   self.summary_path] + list(extra),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait(self, timeout=120):
        rc = self.p.wait(timeout)
        with open(self.summary_path) as f:
            return json.load(f), rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait(5)


def loadgen(target, kind, streams, messages, workdir, extra=(), timeout=120, check=True):
    summary = os.path.join(workdir, "loadgen-%s-%d.json" % (kind, int(time.time() * 1e6)))
    args = [LOADGEN, "--target", target, "--kind", kind, "--streams", str(streams),
            "--messages", str(messages), "--summary", summary] + list(extra)
    r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    try:
        with open(summary) as f:
            s = json.load(f)
    except (OSError, ValueError):
        s = None
    if check and (r.returncode != 0 or s is None):
        raise AssertionError("loadgen %s failed (%d):\n%s" % (kind, r.returncode,
                                                               r.stdout.decode("utf-8", "replace")))
    return s, r.returncode


class Case(unittest.TestCase):
    """Base: a temp dir and the processes of one test, all stopped at the end."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="skyrelay-it-")
        self.dir = self.tmp.name
        self.procs = []

    def tearDown(self):
        for p in reversed(self.procs):
            try:
                p.stop(signal.SIGTERM, timeout=10)
            except Exception:
                pass
        self.tmp.cleanup()

    def grpc(self):
        """Debian's python3-grpcio, or a clear failure without it."""
        try:
            import grpc
            return grpc
        except ImportError:
            self.fail("python3-grpcio is required (scripts/install-deps.sh installs it)")

    def oap(self, name, extra=(), port=None, listen_ip="127.0.0.1"):
        p = FakeOap(self.dir, name, extra, port, listen_ip)
        self.procs.append(p)
        return p

    def relay(self, upstreams, yaml_extra="", env=None, name="skyrelay", server_extra=""):
        p = Skyrelay(self.dir, [u.address if hasattr(u, "address") else u for u in upstreams],
                     yaml_extra, env, name, server_extra)
        self.procs.append(p)
        return p

    def total(self, oaps, path):
        """Sums a dotted summary field over fake nodes."""
        t = 0
        keys = path.split(".") if isinstance(path, str) else path
        for o in oaps:
            v = o.summary() or {}
            for k in keys:
                v = v.get(k, {}) if isinstance(v, dict) else {}
            t += v if isinstance(v, int) else 0
        return t

    def merged(self, oaps, path):
        """Merges a dotted dict field (e.g. logs.by_instance) over fake nodes."""
        out = {}
        keys = path.split(".") if isinstance(path, str) else path
        for o in oaps:
            v = o.summary() or {}
            for k in keys:
                v = v.get(k, {}) if isinstance(v, dict) else {}
            for k, n in v.items():
                out[k] = out.get(k, 0) + n
        return out

    def union_ids(self, oaps, kind):
        """Stops the nodes and returns the set of distinct ids of `kind` they saw
        together (a batch re-sent to another node is unique on each node: only
        the union tells whether something was lost)."""
        ids = set()
        for o in oaps:
            o.stop()
            with open(o.ids_path) as f:
                ids.update(line.split()[1] for line in f if line.startswith(kind + " "))
        return ids

    def wait_total(self, oaps, path, expected, timeout=30):
        wait_until(lambda: self.total(oaps, path) >= expected, timeout,
                   "%s to reach %d" % (str(path), expected))
        time.sleep(0.3)  # let a wrong extra message show up
        return self.total(oaps, path)


def pipes(batch=50, linger="20ms", segment_method="collect", als_method=None, queue=None,
          max_inflight=None):
    """A `pipes:` section with fast flush settings (tests do not wait on the 1 s
    default linger), plus optional modes and per-pipe queue overrides. Segments go
    upstream with `collect` unless segment_method says otherwise (many tests count
    the messages of that method; the built-in default is collect_in_sync)."""
    out = ["pipes:"]
    for name in ("segment", "log", "meter", "als", "jvm", "clr", "event", "span_attached_event",
                 "profile_snapshot", "ebpf_profiling", "ebpf_access_log", "keepalive",
                 "instance_properties", "envoy_metrics"):
        out.append("  %s:" % name)
        if name == "segment" and segment_method:
            out.append("    upstream_method: %s" % segment_method)
        if name == "als" and als_method:
            out.append("    upstream_method: %s" % als_method)
        if queue:
            out.append("    queue: {%s}" % ", ".join("%s: %s" % kv for kv in queue.items()))
        sender = "max_batch_events: %d, linger: %s" % (batch, linger)
        if max_inflight:
            sender += ", max_inflight: %d" % max_inflight
        out.append("    sender: {%s}" % sender)
    return "\n".join(out) + "\n"


# ---- raw gRPC calls (Debian's python3-grpcio, no serializers: bytes in, bytes out) ----

class RawResult:
    """The outcome of one raw call: status code name ("OK", "DEADLINE_EXCEEDED", ...),
    details, the response message(s) as bytes, and both metadata as dicts."""

    def __init__(self, code, details, responses, initial, trailing):
        self.code = code
        self.details = details
        self.responses = responses  # list of bytes (unary: 0 or 1 element)
        self.initial = initial
        self.trailing = trailing

    @property
    def response(self):
        return self.responses[0] if self.responses else None

    def __repr__(self):
        return "RawResult(%s, %r, %r, initial=%r, trailing=%r)" % (
            self.code, self.details, self.responses, self.initial, self.trailing)


def _md(m):
    return {k: v for k, v in (m or ())}


def raw_call(address, path, requests, kind="unary", metadata=(), timeout=5.0):
    """Calls `path` at `address` with raw request bytes and returns a RawResult; never
    raises for a non-OK status. kind: "unary" (requests = one bytes), "client_stream",
    "bidi" (requests = a list or an iterator of bytes; a generator may block to interleave).
    The call has a deadline of `timeout` seconds."""
    import grpc
    with grpc.insecure_channel(address) as ch:
        if kind == "bidi":
            call = ch.stream_stream(path)(iter(requests), metadata=list(metadata),
                                          timeout=timeout)
            out = []
            try:
                for r in call:
                    out.append(r)
            except grpc.RpcError:
                pass
            return RawResult(call.code().name, call.details(), out,
                             _md(call.initial_metadata()), _md(call.trailing_metadata()))
        if kind == "unary":
            mc = ch.unary_unary(path)
            arg = requests
        elif kind == "client_stream":
            mc = ch.stream_unary(path)
            arg = iter(requests)
        else:
            raise ValueError("kind: " + kind)
        try:
            resp, call = mc.with_call(arg, metadata=list(metadata), timeout=timeout)
            return RawResult(call.code().name, call.details(), [resp],
                             _md(call.initial_metadata()), _md(call.trailing_metadata()))
        except grpc.RpcError as e:
            return RawResult(e.code().name, e.details(), [], _md(e.initial_metadata()),
                             _md(e.trailing_metadata()))


def wait_summary(oap, pred, timeout, what, interval=0.2):
    """Polls a fake node's summary until pred(summary) is true; returns that summary.
    Fails with the last summary seen after `timeout` seconds."""
    deadline = time.time() + timeout
    s = None
    while True:
        s = oap.summary()
        if s is not None:
            try:
                if pred(s):
                    return s
            except (KeyError, TypeError):
                pass
        if time.time() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s; last summary: %s"
                                 % (timeout, what, json.dumps(s)))
        time.sleep(interval)
