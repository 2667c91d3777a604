"""`make bench`: data-path benchmark. Not a test: it prints numbers.

64 concurrent long-lived segment streams of ~500-byte SegmentObjects from the
load generator -> skyrelay (shipped config) -> 3 fake OAP nodes (--count-only,
so they spend little CPU). Reports end-to-end messages/s, skyrelay CPU
microseconds per forwarded message (utime+stime from /proc, all of its threads,
gRPC's included), and skyrelay's peak RSS (VmHWM). Everything shares the
machine's cores, so compare ratios from one run.

Env: BENCH_MESSAGES (per stream, default 8000), BENCH_STREAMS (64),
BENCH_SIZE (500), BENCH_MODES (collect,collect_in_sync)."""
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
    # collectInSync packs a batch into one message: those nodes decode to count segments
    fake_args = ["--count-only"] if mode == "collect" else []
    oaps = [FakeOap(workdir, "%s-n%d" % (mode, i), fake_args) for i in range(3)]
    port = free_port()
    env = {"SATELLITE_GRPC_ADDRESS": "127.0.0.1:%d" % port,
           "SATELLITE_GRPC_CLIENT": ",".join(o.address for o in oaps),
           "SATELLITE_LOGGER_LEVEL": "warn"}
    cfg = os.path.join(ROOT, "config", "skyrelay.yaml")
    if mode != "collect":
        cfg = os.path.join(workdir, "bench-%s.yaml" % mode)
        with open(os.path.join(ROOT, "config", "skyrelay.yaml")) as src, open(cfg, "w") as dst:
            dst.write(src.read().replace("upstream_method: collect ", "upstream_method: %s " % mode))
    relay = Proc([SKYRELAY, "--config", cfg], workdir, "skyrelay-" + mode, env=env)
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
        return {"mode": mode, "messages": total, "calls_ok": sent["calls_ok"],
                "client_rate": sent["rate"], "e2e_rate": total / (t1 - t0),
                "cpu_s": cpu1 - cpu0, "us_per_msg": (cpu1 - cpu0) * 1e6 / total,
                "peak_rss_mb": hwm / 1024.0}
    finally:
        relay.stop()
        for o in oaps:
            o.stop()


def main():
    streams = int(os.environ.get("BENCH_STREAMS", 64))
    messages = int(os.environ.get("BENCH_MESSAGES", 8000))
    size = int(os.environ.get("BENCH_SIZE", 500))
    modes = os.environ.get("BENCH_MODES", "collect,collect_in_sync").split(",")
    print("skyrelay bench: %d streams x %d segments of ~%d B, 3 fake OAP nodes, %d CPUs" %
          (streams, messages, size, os.cpu_count()))
    with tempfile.TemporaryDirectory(prefix="skyrelay-bench-") as d:
        for mode in modes:
            r = run(mode, streams, messages, size, d)
            print("upstream=%-16s %8.0f msg/s end-to-end  %5.2f us CPU/msg  peak RSS %5.1f MB"
                  "  (loadgen send rate %.0f msg/s, %d/%d calls ok)" %
                  (r["mode"], r["e2e_rate"], r["us_per_msg"], r["peak_rss_mb"], r["client_rate"],
                   r["calls_ok"], streams))


if __name__ == "__main__":
    main()
