"""`make bench-compare`: skyrelay side by side with nginx `grpc_pass` (issue 13). Not a test:
it prints one table.

The same load goes through each proxy in one run, each time into 3 fresh fake OAP nodes
(`--count-only`, except behind skyrelay's `collect_in_sync`, where the nodes decode to count the
segments of each SegmentCollection):

  none             the load generator straight into one fake node: the ceiling of the tools
  nginx            Debian's nginx, `grpc_pass grpc://backend`, round robin over the 3 nodes
                   (per HTTP/2 stream: each agent stream or h2load request goes to one node)
  skyrelay collect           the shipped config/skyrelay.yaml (batches of 200 per node)
  skyrelay collect_in_sync   the same with pipes.segment.upstream_method: collect_in_sync
  floor-next       build/grpc_floor (test/bench/grpc_floor.c), 2 threads with a next
                   completion queue each: receives every message with one RECV_MESSAGE, counts
                   it, forwards nothing (no nodes): the receive-only floor of the gRPC C core
  floor-callback   the same with callback completion queues
  (COMPARE_FLOOR_ARGS: extra grpc_floor options, e.g. "--lookahead 1048576")

A row can be a variant, to compare before/after in one run: NAME~OPTION~OPTION..., where an
OPTION is @DIR (the skyrelay or grpc_floor binary from build directory DIR), KEY=VALUE (skyrelay:
an environment variable) or --option=value (grpc_floor: an option and its value), e.g.
COMPARE_PROXIES=nginx,collect_in_sync~@/tmp/before,collect_in_sync,floor-next~--lookahead=1048576

Two load shapes, each ~500-byte SegmentObjects on TraceSegmentReportService/collect:

  loadgen  build/loadgen, COMPARE_STREAMS (64) long-lived streams over 8 connections,
           COMPARE_MESSAGES (8000) segments each, as `make bench`; every 7th segment carries
           its send time (loadgen --stamp-every) and the nodes record receive - send
           (fake_oap --latency): p50/p99 agent write -> upstream receive
  h2load   h2load (nghttp2-client), 8 connections x 1 stream, COMPARE_H2_REQUESTS (512)
           requests, each a body of 1,000 length-prefixed gRPC frames (one SegmentObject each)

Columns: msg/s = messages / (load start -> the nodes counted the last one); proxy CPU us/msg =
utime+stime of all the proxy's processes and threads over that interval (nginx: master and
workers) / messages; peak RSS = VmHWM (nginx: summed over its processes); per node = messages
each node counted; the load generator's CPU (wait4 rusage) and the 3 nodes' CPU per message,
since all of them share the machine's cores. Every row checks that the nodes counted exactly
the messages sent.

The other pipes (COMPARE_KINDS, default segment,log,meter,als; segment = the two shapes above),
one loadgen shape each, COMPARE_STREAMS streams over 8 connections, every 7th message stamped,
through none / nginx / skyrelay (the shipped config as it is): counted per forwarded ITEM, and
the nodes decode every message to count the items (total = sent, no duplicates, nothing
unattributed/dropped/unidentified):

  log      LogReportService/collect, 1 LogData (~500 B) per message, COMPARE_MESSAGES per
           stream, COMPARE_SERVICES (8) x COMPARE_INSTANCES (8) = 64 distinct service
           instances (skyrelay rewrites the stream context)
  meter    MeterReportService/collectBatch (loadgen --kind meter-batch), 10 MeterData (~100 B)
           per collection, COMPARE_MESSAGES/10 collections per stream, 64 instances as logs
  als      Envoy AccessLogService v3 StreamAccessLogs, 10 HTTP entries (~500 B) per message,
           COMPARE_MESSAGES/10 messages per stream, one Envoy identity per stream

Env: SKYRELAY_BUILD (binaries, default build/), COMPARE_KINDS, COMPARE_STREAMS, COMPARE_MESSAGES,
COMPARE_SERVICES, COMPARE_INSTANCES, COMPARE_RATE (loadgen --rate: items/s over all streams for every
loadgen shape, for latency at a paced rate; 0 = as fast as possible),
COMPARE_STAMP_EVERY (7: every 7th message of a stream carries its send time),
COMPARE_H2_REQUESTS, COMPARE_SHAPES (loadgen,h2load), COMPARE_PROXIES
(none,nginx,collect,collect_in_sync; also floor-next,floor-callback), COMPARE_FLOOR_ARGS,
COMPARE_KEEP (1: keep the work directory)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import BUILD, LOADGEN, ROOT, SKYRELAY, FakeOap, Proc, free_port, wait_until  # noqa

TICK = os.sysconf("SC_CLK_TCK")
COLLECT = "/skywalking.v3.TraceSegmentReportService/collect"
# coprime with loadgen's write hint (16): stamps fall on every position; 1 = every message
STAMP_EVERY = int(os.environ.get("COMPARE_STAMP_EVERY", 7))
H2_SEGMENTS = 1000
H2_CLIENTS = 8


def cpu_seconds(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid, key):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    return out


# ---- the h2load body: 1,000 gRPC frames of SegmentObjects shaped like loadgen's ----------

def _varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    key = _varint(num << 3 | wire)
    if wire == 0:
        return key + _varint(payload)
    if isinstance(payload, str):
        payload = payload.encode()
    return key + _varint(len(payload)) + payload


def segment(k, size=500, t=1700000000000):
    """tracing.proto SegmentObject: 1 Entry/Http span with a padded tag, like loadgen's."""
    def enc(pad):
        tag = _field(1, 2, "pad") + _field(2, 2, pad)
        span = (_field(2, 0, -1) + _field(3, 0, t) + _field(4, 0, t + 1) +
                _field(6, 2, "/loadgen/op") + _field(9, 0, 3) + _field(10, 0, 1) +
                _field(12, 2, tag))
        # spanId 0 and spanType Entry (0) are proto3 defaults: left out, as loadgen's encoder does
        return (_field(1, 2, "h-trace-%d" % k) + _field(2, 2, "h-%d" % k) + _field(3, 2, span) +
                _field(4, 2, "svc-0") + _field(5, 2, "inst-0-0"))
    pad = max(0, size - len(enc("")))
    while pad and len(enc("x" * pad)) > size:  # the tag's length prefixes grow with the pad
        pad -= 1
    return enc("x" * pad)


def h2_body(path, n=H2_SEGMENTS, size=500):
    with open(path, "wb") as f:
        for k in range(n):
            m = segment(k, size)
            f.write(b"\x00" + len(m).to_bytes(4, "big") + m)
    return len(segment(0, size))


# ---- the other pipes: one loadgen shape per kind, counted per forwarded item ----------------

# shape -> loadgen kind, items per message, loadgen options, the node summary's block and its
# count of items credited to nobody (must stay 0), the unit counted
PIPE_LOADS = {
    "log": {"kind": "log", "batch": 1, "block": "logs", "uncredited": "unattributed",
            "unit": "LogData", "args": ["--size", "500"], "identities": True},
    "meter": {"kind": "meter-batch", "batch": 10, "block": "meters", "uncredited": "dropped",
              "unit": "MeterData", "args": ["--batch", "10", "--size", "100"], "identities": True},
    "als": {"kind": "als", "batch": 10, "block": "als", "uncredited": "unidentified",
            "unit": "HTTP entry", "args": ["--batch", "10", "--size", "500"]},
}


def pipe_proxies(proxies):
    """The rows of the other pipes: none, nginx, and one "skyrelay" (the shipped config as it
    is) for collect / collect_in_sync, which only differ on segments (a variant keeps its
    options); the floors count messages, not items: left out."""
    out = []
    for p in proxies:
        name, _, rest = p.partition("~")
        if name in ("collect", "collect_in_sync", "skyrelay"):
            p = "skyrelay" + ("~" + rest if rest else "")
        elif name not in ("none", "nginx"):
            continue
        if p not in out:
            out.append(p)
    return out


# ---- proxies -------------------------------------------------------------------------------

class Nginx:
    def __init__(self, workdir, upstreams, name="nginx"):
        self.dir = os.path.join(workdir, name)
        os.makedirs(self.dir)
        os.chmod(workdir, 0o755)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        d = self.dir
        conf = """worker_processes 2;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    client_max_body_size 0;
    upstream backend {
%(servers)s        keepalive 64;
    }
    server {
        listen %(addr)s http2;
        location / {
            grpc_pass grpc://backend;
            grpc_read_timeout 600s;
            grpc_send_timeout 600s;
        }
    }
}
""" % {"d": d, "addr": self.address,
       "servers": "".join("        server %s;\n" % u for u in upstreams)}
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        self.log = open(os.path.join(d, "stdout.log"), "wb")
        self.p = subprocess.Popen(["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c",
                                   os.path.join(d, "nginx.conf"), "-g", "daemon off;"],
                                  stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.p.pid

        def up():
            if self.p.poll() is not None:
                raise AssertionError("nginx exited:\n" + self.errors())
            if len(children(self.pid)) < 2:
                return False
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_until(up, 10, "nginx to listen")

    def errors(self):
        out = ""
        for name in ("stdout.log", "error.log"):
            try:
                with open(os.path.join(self.dir, name)) as f:
                    out += f.read()
            except OSError:
                pass
        return out

    def pids(self):
        return [self.pid] + children(self.pid)

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.pid, signal.SIGQUIT)  # graceful: workers finish, then the master exits
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGTERM)
                self.p.wait(10)
        self.log.close()


class Relay:
    def __init__(self, workdir, upstreams, method, variant=()):
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        cfg = os.path.join(ROOT, "config", "skyrelay.yaml")
        own = os.path.join(os.path.dirname(os.path.abspath(variant_build(variant))), "config",
                           "skyrelay.yaml")
        if variant_build(variant) != BUILD and os.path.exists(own):
            cfg = own  # another tree's binary: that tree's shipped config
        env = {"SKYRELAY_SEGMENT_UPSTREAM_METHOD": method,  # the shipped config's placeholder
               "SATELLITE_GRPC_ADDRESS": self.address,
               "SATELLITE_GRPC_CLIENT": ",".join(upstreams),
               "SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS": "127.0.0.1:0",
               "SATELLITE_LOGGER_LEVEL": "warn"}
        env.update(v.split("=", 1) for v in variant if "=" in v and not v.startswith("@"))
        binary = os.path.join(variant_build(variant), "skyrelay")
        self.proc = Proc([binary, "--config", cfg], workdir, "skyrelay-" + method, env=env)
        self.pid = self.proc.pid

        def up():
            if not self.proc.alive():
                raise AssertionError("skyrelay exited:\n" + self.proc.output())
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_until(up, 10, "skyrelay to listen")

    def pids(self):
        return [self.pid]

    def stop(self):
        self.proc.stop()


class Floor:
    """build/grpc_floor: receives and counts, forwards nothing (its own count is the check)."""

    def __init__(self, workdir, cq, variant=()):
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.summary_path = os.path.join(workdir, "floor-%s-%d.json" % (cq, self.port))
        extra = os.environ.get("COMPARE_FLOOR_ARGS", "").split()
        for v in variant:
            if v.startswith("--"):
                extra += v.split("=", 1)
        self.proc = Proc([os.path.join(variant_build(variant), "grpc_floor"), "--listen", self.address, "--threads",
                          "2", "--cq", cq, "--summary", self.summary_path] + extra, workdir,
                         "floor-%s" % cq)
        self.pid = self.proc.pid

        def up():
            if not self.proc.alive():
                raise AssertionError("grpc_floor exited:\n" + self.proc.output())
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_until(up, 10, "grpc_floor to listen")

    def messages(self):
        try:
            with open(self.summary_path) as f:
                return json.load(f).get("messages", 0)
        except (OSError, ValueError):
            return 0

    def pids(self):
        return [self.pid]

    def stop(self):
        self.proc.stop()


# ---- one row -------------------------------------------------------------------------------

def run_load(args):
    """Runs a load generator to its end; returns (stdout, exit code, its CPU seconds)."""
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return out.decode("utf-8", "replace"), p.returncode, ru.ru_utime + ru.ru_stime


def percentile(sorted_v, q):
    if not sorted_v:
        return None
    return sorted_v[min(len(sorted_v) - 1, int(q * len(sorted_v)))]


def split_variant(spec):
    """NAME~OPTION~... -> (NAME, [OPTION, ...]) (module docstring)."""
    items = spec.split("~")
    return items[0], items[1:]


def variant_build(variant):
    return next((v[1:] for v in variant if v.startswith("@")), BUILD)


def run_row(shape, proxy, workdir, cfg):
    spec = proxy
    proxy, variant = split_variant(spec)
    tag = "".join(c if c.isalnum() or c in "_.-" else "_" for c in "%s-%s" % (shape, spec))
    pipe = PIPE_LOADS.get(shape)
    # SegmentCollections and the other pipes' items: decode to count them
    decode = proxy == "collect_in_sync" or pipe is not None
    fake_args = [] if decode else ["--count-only"]
    floor = proxy.startswith("floor-")
    nodes = 0 if floor else 1 if proxy == "none" else 3
    lat = (shape == "loadgen" or pipe is not None) and not floor
    oaps = []
    px = None
    try:
        for i in range(nodes):
            extra = list(fake_args)
            if lat:
                extra += ["--latency", os.path.join(workdir, "%s-n%d.lat" % (tag, i))]
            oaps.append(FakeOap(workdir, "%s-n%d" % (tag, i), extra))
        ups = [o.address for o in oaps]
        if proxy == "none":
            target = ups[0]
        elif proxy == "nginx":
            px = Nginx(workdir, ups, "nginx-" + shape)
            target = px.address
        elif floor:
            px = Floor(workdir, proxy[len("floor-"):], variant)
            target = px.address
        else:
            # other pipes: "skyrelay", the shipped config (its default segment method)
            px = Relay(workdir, ups, "collect_in_sync" if proxy == "skyrelay" else proxy, variant)
            target = px.address
        time.sleep(0.5)

        def per_node():
            if floor:  # no nodes: the floor's own count
                return [px.messages()]
            out = []
            for o in oaps:
                s = o.summary() or {}
                if pipe:
                    out.append(s.get(pipe["block"], {}).get("total", 0))
                elif decode:
                    out.append(s.get("segments", {}).get("total", 0))
                else:
                    out.append(s.get("messages", {}).get(COLLECT, 0))
            return out

        if shape == "loadgen":
            total = cfg["streams"] * cfg["messages"]
            args = [LOADGEN, "--target", target, "--kind", "segment", "--streams",
                    str(cfg["streams"]), "--messages", str(cfg["messages"]), "--size", "500",
                    "--connections", "8", "--stamp-every", str(STAMP_EVERY)]
            if cfg["rate"]:
                args += ["--rate", str(cfg["rate"])]
        elif pipe:
            per_stream = max(1, cfg["messages"] // pipe["batch"])  # messages: items / batch
            total = cfg["streams"] * per_stream * pipe["batch"]
            args = [LOADGEN, "--target", target, "--kind", pipe["kind"], "--streams",
                    str(cfg["streams"]), "--messages", str(per_stream), "--connections", "8",
                    "--stamp-every", str(STAMP_EVERY)] + pipe["args"]
            if pipe.get("identities"):  # logs, meters: stream s is one of S x I instances
                args += ["--services", str(cfg["services"]), "--instances", str(cfg["instances"])]
            if cfg["rate"]:  # items/s over all streams -> messages/s
                args += ["--rate", str(max(1, cfg["rate"] // pipe["batch"]))]
        else:
            total = cfg["h2_requests"] * H2_SEGMENTS
            args = ["h2load", "-n", str(cfg["h2_requests"]), "-c", str(H2_CLIENTS), "-m", "1",
                    "-d", cfg["body"], "-H", "content-type: application/grpc", "-H", "te: trailers",
                    "--header=:method: POST", "http://%s%s" % (target, COLLECT)]
        pids = px.pids() if px else []
        cpu0 = sum(cpu_seconds(p) for p in pids)
        fcpu0 = sum(cpu_seconds(o.pid) for o in oaps)
        t0 = time.time()
        out, rc, load_cpu = run_load(args)
        t_load = time.time()
        load_ok = rc == 0
        detail = ""
        if shape == "loadgen" or pipe:
            try:
                s = json.loads(out.strip().splitlines()[-1])
                load_ok = load_ok and s["calls_ok"] == cfg["streams"]
                load_ok = load_ok and (not pipe or s["sent_entries"] == total)
                detail = "%d/%d streams ok" % (s["calls_ok"], cfg["streams"])
            except (ValueError, IndexError, KeyError):
                load_ok = False
        else:
            for line in out.splitlines():
                if line.startswith("requests:"):
                    detail = line.split(":", 1)[1].strip()
                    load_ok = load_ok and (" %d succeeded" % cfg["h2_requests"]) in line
        if not load_ok:
            detail = "load generator failed (exit %d): %s" % (rc, out.strip()[-400:])
        try:
            wait_until(lambda: sum(per_node()) >= total, 120, "all messages upstream",
                       interval=0.02)
        except AssertionError:
            pass
        t1 = time.time()
        cpu1 = sum(cpu_seconds(p) for p in (px.pids() if px else []))
        fcpu1 = sum(cpu_seconds(o.pid) for o in oaps)
        rss = sum(status_kb(p, "VmHWM") for p in (px.pids() if px else []))
        nproc = len(px.pids()) if px else 0
        time.sleep(0.3)  # an extra message would show up now
        counts = per_node()
        if px:
            px.stop()
            px = None
        for o in oaps:
            o.stop()
        if pipe:  # the final summaries: no item twice, none credited to nobody
            dups = unc = 0
            for o in oaps:
                b = (o.summary() or {}).get(pipe["block"], {})
                dups += b.get("duplicates", 0)
                unc += b.get(pipe["uncredited"], 0)
            if dups or unc:
                load_ok = False
                detail += "; %d duplicates, %d %s" % (dups, unc, pipe["uncredited"])
        lats = []
        if lat:
            for i in range(nodes):
                try:
                    with open(os.path.join(workdir, "%s-n%d.lat" % (tag, i))) as f:
                        lats.extend(int(x) for x in f.read().split())
                except OSError:
                    pass
            lats.sort()
        got = sum(counts)
        return {"shape": shape, "proxy": proxy, "spec": spec, "messages": total, "counted": got,
                "ok": load_ok and got == total, "detail": detail,
                "rate": total / (t1 - t0), "seconds": t1 - t0, "tail": t1 - t_load,
                "cpu_us": (cpu1 - cpu0) * 1e6 / total if pids else None,
                "rss_mb": rss / 1024.0 if pids else None, "nproc": nproc,
                "nodes": counts, "load_cpu_us": load_cpu * 1e6 / total,
                "fake_cpu_us": (fcpu1 - fcpu0) * 1e6 / total,
                "p50_ms": percentile(lats, 0.50) / 1000.0 if lats else None,
                "p99_ms": percentile(lats, 0.99) / 1000.0 if lats else None,
                "samples": len(lats)}
    finally:
        if px:
            px.stop()
        for o in oaps:
            if o.alive():
                o.stop()


# ---- the table -----------------------------------------------------------------------------

LABEL = {"none": "none (direct, 1 node)", "nginx": "nginx grpc_pass",
         "skyrelay": "skyrelay (shipped config)",
         "collect": "skyrelay collect", "collect_in_sync": "skyrelay collect_in_sync",
         "floor-next": "floor (next CQ, no upstream)",
         "floor-callback": "floor (callback CQ, no upstream)"}


def shape_label(shape):
    pipe = PIPE_LOADS.get(shape)
    if not pipe:
        return shape
    return "loadgen %s (per %s, %d/msg)" % (pipe["kind"], pipe["unit"], pipe["batch"])


def label(spec):
    name, variant = split_variant(spec)
    return LABEL[name] + ("" if not variant else " [%s]" % " ".join(variant))


def fmt(v, f):
    return "-" if v is None else f % v


def print_table(rows):
    print()
    print("| load | proxy | msg/s | proxy CPU us/msg | CPU vs nginx | msg/s vs nginx | peak RSS MB "
          "| per node | p50 / p99 ms | load gen CPU us/msg | fake OAPs CPU us/msg | check |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ng = next((x for x in rows if x["shape"] == r["shape"] and x["proxy"] == "nginx"), None)
        cr = rr = None
        if ng and r["proxy"] not in ("none", "nginx") and ng["cpu_us"]:
            cr = r["cpu_us"] / ng["cpu_us"]
            rr = r["rate"] / ng["rate"]
        nodes = "/".join("%dk" % round(n / 1000.0) for n in r["nodes"])
        if r["proxy"].startswith("floor-"):
            nodes = "(counted %dk itself)" % round(r["counted"] / 1000.0)
        if len(r["nodes"]) > 1 and sum(r["nodes"]):
            mean = sum(r["nodes"]) / len(r["nodes"])
            nodes += " (±%.1f%%)" % (100.0 * max(abs(n - mean) for n in r["nodes"]) / mean)
        lat = "-" if r["p50_ms"] is None else "%.1f / %.1f" % (r["p50_ms"], r["p99_ms"])
        rss = fmt(r["rss_mb"], "%.1f")
        if r["proxy"] == "nginx" and r["rss_mb"] is not None:
            rss += " (%d procs)" % r["nproc"]
        check = "ok" if r["ok"] else "MISMATCH: sent %d, counted %d; %s" % (
            r["messages"], r["counted"], r["detail"])
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f | %.2f | %s |" % (
            shape_label(r["shape"]), label(r["spec"]), "{:,.0f}".format(r["rate"]), fmt(r["cpu_us"], "%.2f"),
            fmt(cr, "%.2fx"), fmt(rr, "%.2fx"), rss, nodes, lat, r["load_cpu_us"],
            r["fake_cpu_us"], check))


def main():
    if not shutil.which("nginx"):
        print("bench-compare: SKIPPED: nginx is not installed (Debian package nginx; "
              "scripts/install-deps.sh installs it as an optional package)")
        return 0
    for b in (SKYRELAY, LOADGEN, os.path.join(BUILD, "fake_oap")):
        if not os.access(b, os.X_OK):
            print("bench-compare: %s is missing: build it first (make, or make BUILD=...)" % b)
            return 1
    cfg = {"streams": int(os.environ.get("COMPARE_STREAMS", 64)),
           "messages": int(os.environ.get("COMPARE_MESSAGES", 8000)),
           "h2_requests": int(os.environ.get("COMPARE_H2_REQUESTS", 512)),
           "services": int(os.environ.get("COMPARE_SERVICES", 8)),
           "instances": int(os.environ.get("COMPARE_INSTANCES", 8)),
           "rate": int(os.environ.get("COMPARE_RATE", 0))}
    shapes = os.environ.get("COMPARE_SHAPES", "loadgen,h2load").split(",")
    proxies = os.environ.get("COMPARE_PROXIES", "none,nginx,collect,collect_in_sync").split(",")
    kinds = os.environ.get("COMPARE_KINDS", "segment,log,meter,als").split(",")
    if "segment" not in kinds:
        shapes = []
    shapes += [k for k in PIPE_LOADS if k in kinds]
    if "h2load" in shapes and not shutil.which("h2load"):
        print("bench-compare: the h2load load shape is SKIPPED: h2load is not installed (Debian "
              "package nghttp2-client; scripts/install-deps.sh installs it as an optional package)")
        shapes.remove("h2load")
    nginx_v = subprocess.run(["nginx", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print("bench-compare: %d CPUs, load average %s, %s, binaries from %s" %
          (os.cpu_count(), load, nginx_v.stdout.decode().strip(), BUILD))
    workdir = tempfile.mkdtemp(prefix="skyrelay-compare-")
    rows = []
    try:
        if "h2load" in shapes:
            cfg["body"] = os.path.join(workdir, "body.bin")
            seg = h2_body(cfg["body"])
            print("h2load body: %d gRPC frames of %d-byte SegmentObjects, %d bytes" %
                  (H2_SEGMENTS, seg, os.path.getsize(cfg["body"])))
        for shape in shapes:
            if shape == "loadgen":
                print("loadgen: %d streams x %d segments of ~500 B over 8 connections "
                      "(every %dth stamped for latency)" % (cfg["streams"], cfg["messages"],
                                                            STAMP_EVERY))
            elif shape in PIPE_LOADS:
                pipe = PIPE_LOADS[shape]
                print("loadgen %s: %d streams x %d messages of %d %s over 8 connections "
                      "(every %dth message stamped for latency)" % (
                          pipe["kind"], cfg["streams"], max(1, cfg["messages"] // pipe["batch"]),
                          pipe["batch"], pipe["unit"], STAMP_EVERY))
            else:
                print("h2load: %d requests x %d segments, %d connections x 1 stream" %
                      (cfg["h2_requests"], H2_SEGMENTS, H2_CLIENTS))
            row_proxies = proxies
            if shape in PIPE_LOADS:
                row_proxies = pipe_proxies(proxies)
            for proxy in row_proxies:
                r = run_row(shape, proxy, workdir, cfg)
                rows.append(r)
                print("  %-26s %9.0f msg/s (%.2f s, last %.2f s after the load generator ended)  "
                      "%s us CPU/msg  %s MB  nodes %s  p50/p99 %s/%s ms  %s" % (
                    label(proxy), r["rate"], r["seconds"], r["tail"], fmt(r["cpu_us"], "%.2f"),
                    fmt(r["rss_mb"], "%.1f"),
                    r["nodes"], fmt(r["p50_ms"], "%.1f"), fmt(r["p99_ms"], "%.1f"),
                    "ok" if r["ok"] else "MISMATCH " + r["detail"]), flush=True)
        print_table(rows)
    finally:
        if os.environ.get("COMPARE_KEEP") == "1":
            print("work directory kept: " + workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
