"""`make bench`: data-path benchmark. Not a test: it prints numbers.

64 concurrent long-lived segment streams of ~500-byte SegmentObjects from the
load generator -> skyrelay (shipped config) -> 3 fake OAP nodes (--count-only,
so they spend little CPU). Reports end-to-end messages/s, skyrelay CPU
microseconds per forwarded message (utime+stime from /proc, all of its threads,
gRPC's included), and skyrelay's peak RSS (VmHWM). Everything shares the
machine's cores, so compare ratios from one run.

A mode with "+disk" runs the same with the disk queue on (queue.disk.dir in a
temporary directory, default sync: interval). "drain" measures the disk queue
after an outage: the OAP nodes are down while BENCH_DRAIN_MESSAGES segments are
accepted, then they start; it reports how fast the backlog drains.

Env: BENCH_MESSAGES (per stream, default 8000), BENCH_STREAMS (64),
BENCH_SIZE (500), BENCH_MODES (collect,collect+disk,collect_in_sync,
collect_in_sync+disk,drain), BENCH_DRAIN_MESSAGES (200000)."""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from harness import FAKE_OAP, LOADGEN, ROOT, SKYRELAY, FakeOap, Proc, free_port, wait_until  # noqa

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def run(mode, streams, messages, size, workdir):
    label, disk = mode, mode.endswith("+disk")
    mode = mode.replace("+disk", "")
    # collectInSync packs a batch into one message: those nodes decode to count segments
    fake_args = ["--count-only"] if mode == "collect" else []
    oaps = [FakeOap(workdir, "%s-n%d" % (label, i), fake_args) for i in range(3)]
    port = free_port()
    env = {"SATELLITE_GRPC_ADDRESS": "127.0.0.1:%d" % port,
           "SATELLITE_GRPC_CLIENT": ",".join(o.address for o in oaps),
           "SATELLITE_LOGGER_LEVEL": "warn"}
    if disk:
        env["SKYRELAY_QUEUE_DIR"] = os.path.join(workdir, "queue-" + label)
    env["SKYRELAY_SEGMENT_UPSTREAM_METHOD"] = mode  # the shipped config's placeholder
    cfg = os.path.join(ROOT, "config", "skyrelay.yaml")
    relay = Proc([SKYRELAY, "--config", cfg], workdir, "skyrelay-" + label, env=env)
    try:
        wait_until(lambda: relay.alive() and os.path.exists("/proc/%d" % relay.pid) and
                   status_kb(relay.pid, "VmRSS") > 0, 5, "skyrelay")
        time.sleep(0.5)
        total = streams * messages
        methods = ("/skywalking.v3.TraceSegmentReportService/collect",
                   "/skywalking.v3.TraceSegmentReportService/collectInSync")

        def arrived():
            n = 0
            for o in oaps:
                s = o.summary() or {}
                if mode == "collect":
                    n += s.get("messages", {}).get(methods[0], 0)
                else:
                    n += s.get("segments", {}).get("total", 0)
            return n

        cpu0 = cpu_seconds(relay.pid)
        t0 = time.time()
        lg = subprocess.run([LOADGEN, "--target", "127.0.0.1:%d" % port, "--kind", "segment",
                             "--streams", str(streams), "--messages", str(messages),
                             "--size", str(size), "--connections", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        sent = json.loads(lg.stdout.decode().strip().splitlines()[-1])
        wait_until(lambda: arrived() >= total, 120, "all messages upstream", interval=0.02)
        t1 = time.time()
        cpu1 = cpu_seconds(relay.pid)
        hwm = status_kb(relay.pid, "VmHWM")
        return {"mode": label, "messages": total, "calls_ok": sent["calls_ok"],
                "client_rate": sent["rate"], "e2e_rate": total / (t1 - t0),
                "cpu_s": cpu1 - cpu0, "us_per_msg": (cpu1 - cpu0) * 1e6 / total,
                "peak_rss_mb": hwm / 1024.0}
    finally:
        relay.stop()
        for o in oaps:
            o.stop()


def drain(streams, size, workdir):
    """OAP down while n segments are accepted into the disk queue, then up: the drain rate."""
    n = int(os.environ.get("BENCH_DRAIN_MESSAGES", 200000))
    ports = [free_port() for _ in range(3)]
    port = free_port()
    env = {"SATELLITE_GRPC_ADDRESS": "127.0.0.1:%d" % port,
           "SATELLITE_GRPC_CLIENT": ",".join("127.0.0.1:%d" % p for p in ports),
           "SATELLITE_LOGGER_LEVEL": "error", "SKYRELAY_QUEUE_DIR": os.path.join(workdir, "queue-drain"),
           "SKYRELAY_SEGMENT_UPSTREAM_METHOD": "collect",  # counted per upstream message
           "SKYRELAY_QUEUE_TOTAL_MAX_BYTES": "16MiB"}
    relay = Proc([SKYRELAY, "--config", os.path.join(ROOT, "config", "skyrelay.yaml")], workdir,
                 "skyrelay-drain", env=env)
    oaps = []
    try:
        wait_until(lambda: relay.alive() and os.path.exists("/proc/%d" % relay.pid), 5, "skyrelay")
        time.sleep(0.5)
        per = max(1, n // streams)
        lg = subprocess.run([LOADGEN, "--target", "127.0.0.1:%d" % port, "--kind", "segment",
                             "--streams", str(streams), "--messages", str(per), "--size", str(size),
                             "--connections", "8"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        sent = json.loads(lg.stdout.decode().strip().splitlines()[-1])
        total = streams * per
        accept_rate = sent["rate"]
        oaps = [FakeOap(workdir, "drain-n%d" % i, ["--count-only"], port=p)
                for i, p in enumerate(ports)]
        method = "/skywalking.v3.TraceSegmentReportService/collect"
        first = []

        def arrived():
            k = sum((o.summary() or {}).get("messages", {}).get(method, 0) for o in oaps)
            if k and not first:
                first.append(time.time())
            return k

        cpu0 = cpu_seconds(relay.pid)
        wait_until(lambda: arrived() >= total, 300, "the backlog upstream", interval=0.02)
        t1 = time.time()
        cpu1 = cpu_seconds(relay.pid)
        return {"messages": total, "accept_rate": accept_rate, "calls_ok": sent["calls_ok"],
                "drain_rate": total / (t1 - first[0]), "us_per_msg": (cpu1 - cpu0) * 1e6 / total,
                "peak_rss_mb": status_kb(relay.pid, "VmHWM") / 1024.0}
    finally:
        relay.stop()
        for o in oaps:
            o.stop()


def main():
    streams = int(os.environ.get("BENCH_STREAMS", 64))
    messages = int(os.environ.get("BENCH_MESSAGES", 8000))
    size = int(os.environ.get("BENCH_SIZE", 500))
    modes = os.environ.get("BENCH_MODES", "collect,collect+disk,collect_in_sync,"
                           "collect_in_sync+disk,drain").split(",")
    print("skyrelay bench: %d streams x %d segments of ~%d B, 3 fake OAP nodes, %d CPUs" %
          (streams, messages, size, os.cpu_count()))
    with tempfile.TemporaryDirectory(prefix="skyrelay-bench-") as d:
        for mode in modes:
            if mode == "drain":
                r = drain(streams, size, d)
                print("drain (disk queue, OAP down then up): %d segments accepted at %.0f msg/s "
                      "(%d/%d calls ok), drained at %.0f msg/s, %5.2f us CPU/msg while draining, "
                      "peak RSS %5.1f MB" % (r["messages"], r["accept_rate"], r["calls_ok"], streams,
                                             r["drain_rate"], r["us_per_msg"], r["peak_rss_mb"]))
                continue
            r = run(mode, streams, messages, size, d)
            print("upstream=%-16s %8.0f msg/s end-to-end  %5.2f us CPU/msg  peak RSS %5.1f MB"
                  "  (loadgen send rate %.0f msg/s, %d/%d calls ok)" %
                  (r["mode"], r["e2e_rate"], r["us_per_msg"], r["peak_rss_mb"], r["client_rate"],
                   r["calls_ok"], streams))


if __name__ == "__main__":
    main()
