"""`make bench-conns`: skyrelay's memory with many agent connections held open and streaming
(issue 13: RSS <= 64 MB with 1,000 agent connections). Not a test: it prints what it measured.

skyrelay runs with the shipped config/skyrelay.yaml (as it is) in front of 3 fake OAP nodes.
loadgen opens CONNS_CONNECTIONS (1000) channels, each with its own TCP connection and one
long-lived TraceSegmentReportService/collect stream, and paces all of them together at
CONNS_RATE (1000) segments/s (each stream: CONNS_RATE/CONNS_CONNECTIONS per second) for
CONNS_SECONDS (45) s, ~500-byte segments, every 7th stamped for latency. With several
CONNS_LOADGENS processes the connections are split between them.

Every second it samples skyrelay's VmRSS, its open fds and its established agent connections
(from /proc/PID/net/tcp: sockets to skyrelay's port). Steady state = the samples from the
moment every connection is up (+ CONNS_SETTLE s, 5) to the end of the load. Reported: VmRSS
before any connection, at steady state (min / median / max), VmHWM at the end, fds, CPU, and
that the nodes received every segment loadgen sent (each once), with the agent write ->
upstream receive latency (p50/p99) at this low rate, where the batches' 1 s linger shows.

CONNS_PROXY=floor measures build/grpc_floor (test/bench/grpc_floor.c: the gRPC C core receiving
and counting, nothing forwarded, no nodes) instead of skyrelay, with the same server args as
skyrelay's shipped config plus CONNS_FLOOR_ARGS (e.g. "--arg=grpc.http2.lookahead_bytes=16384"):
what gRPC itself keeps per connection.

Env: SKYRELAY_BUILD (binaries), CONNS_CONNECTIONS, CONNS_STREAMS (default: one per connection;
more: several streams per connection, to tell per-connection from per-stream memory), CONNS_RATE, CONNS_SECONDS, CONNS_SETTLE,
CONNS_LOADGENS (1), CONNS_EXTRA_ENV (extra environment for skyrelay, "K=V K=V"), CONNS_PROXY
(skyrelay | floor), CONNS_FLOOR_ARGS, CONNS_KEEP (1: keep the work directory)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from compare import Floor, Relay, cpu_seconds, percentile, status_kb  # noqa: E402
from harness import BUILD, LOADGEN, FakeOap, wait_until  # noqa: E402

STAMP_EVERY = 7


def fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def established(port):
    """Established TCP sockets whose local port is `port` (skyrelay's side of each agent
    connection), from /proc/net/tcp (the loadgen side has the port as remote)."""
    n = 0
    hexport = ":%04X" % port
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    if parts[1].endswith(hexport) and parts[3] == "01":
                        n += 1
        except OSError:
            pass
    return n


def main():
    for b in (LOADGEN, os.path.join(BUILD, "skyrelay"), os.path.join(BUILD, "fake_oap")):
        if not os.access(b, os.X_OK):
            print("bench-conns: %s is missing: build it first" % b)
            return 1
    conns = int(os.environ.get("CONNS_CONNECTIONS", 1000))
    streams = int(os.environ.get("CONNS_STREAMS", conns))  # > conns: several per connection
    rate = int(os.environ.get("CONNS_RATE", 1000))
    seconds = int(os.environ.get("CONNS_SECONDS", 45))
    settle = float(os.environ.get("CONNS_SETTLE", 5))
    nload = int(os.environ.get("CONNS_LOADGENS", 1))
    extra_env = dict(kv.split("=", 1) for kv in os.environ.get("CONNS_EXTRA_ENV", "").split())
    floor = os.environ.get("CONNS_PROXY", "skyrelay") == "floor"
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print("bench-conns: %d CPUs, load average %s, binaries from %s" % (os.cpu_count(), load,
                                                                       BUILD))
    workdir = tempfile.mkdtemp(prefix="skyrelay-conns-")
    oaps, px, loads = [], None, []
    ok = False
    try:
        if floor:
            px = Floor(workdir, "next", os.environ.get("CONNS_FLOOR_ARGS", "").split())
        else:
            for i in range(3):
                oaps.append(FakeOap(workdir, "n%d" % i,
                                    ["--latency", os.path.join(workdir, "n%d.lat" % i)]))
            if extra_env:
                os.environ.update(extra_env)  # Relay passes os.environ on to skyrelay
            px = Relay(workdir, [o.address for o in oaps], "collect_in_sync")  # shipped default
        pid = px.pid
        name = "grpc_floor" if floor else "skyrelay"
        time.sleep(1.0)
        rss0, fds0 = status_kb(pid, "VmRSS"), fds(pid)
        print("%s pid %d, %s, idle: VmRSS %.1f MB, %d fds" % (
            name, pid, "args " + os.environ.get("CONNS_FLOOR_ARGS", "(skyrelay's)") if floor
            else "shipped config", rss0 / 1024.0, fds0))
        # split the connections (and the rate) over the loadgen processes
        per_stream = max(1, round(seconds * rate / streams))  # messages per stream
        cpu0 = cpu_seconds(pid)
        t0 = time.time()
        for k in range(nload):
            c = conns // nload + (1 if k < conns % nload else 0)
            ns = streams // nload + (1 if k < streams % nload else 0)
            r = max(1, round(rate * ns / streams))
            summ = os.path.join(workdir, "loadgen-%d.json" % k)
            log = open(os.path.join(workdir, "loadgen-%d.log" % k), "wb")
            args = [LOADGEN, "--target", px.address, "--kind", "segment", "--streams", str(ns),
                    "--connections", str(c), "--messages", str(per_stream), "--rate", str(r),
                    "--size", "500", "--stamp-every", str(STAMP_EVERY), "--id-prefix",
                    "c%d" % k, "--summary", summ, "--deadline-ms", str((seconds + 120) * 1000)]
            loads.append((subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT), summ, log,
                          ns))
        print("loadgen: %d process(es), %d connections, %d streams, %d segments each at %d/s "
              "in all (%.2f/s per stream), ~500 B" % (nload, conns, streams, per_stream, rate,
                                                      rate / streams))
        samples = []  # (t, rss kB, fds, established)
        t_all = None
        while any(p.poll() is None for p, _, _, _ in loads):
            t = time.time() - t0
            est = established(px.port)
            samples.append((t, status_kb(pid, "VmRSS"), fds(pid), est))
            if t_all is None and est >= conns:
                t_all = t
            if t > seconds + 120:
                print("bench-conns: loadgen still running after %d s: stopping it" % t)
                break
            time.sleep(1.0)
        t_end = time.time() - t0
        for p, _, _, _ in loads:
            if p.poll() is None:
                p.kill()
            p.wait(10)
        sent = 0
        load_ok = True
        for p, summ, log, c in loads:
            log.close()
            try:
                with open(summ) as f:
                    s = json.load(f)
                sent += s["sent_entries"]
                if s["calls_ok"] != c or p.returncode != 0:
                    load_ok = False
                    print("loadgen: %d/%d streams ok: %s" % (s["calls_ok"], c,
                                                              s.get("first_error", "")))
            except (OSError, ValueError, KeyError):
                load_ok = False
                print("loadgen: no summary (exit %s)" % p.returncode)

        def got():
            if floor:
                return px.messages()
            return sum((o.summary() or {}).get("segments", {}).get("total", 0) for o in oaps)
        try:
            wait_until(lambda: got() >= sent, 30, "every segment upstream", interval=0.1)
        except AssertionError:
            pass
        cpu = cpu_seconds(pid) - cpu0
        hwm = status_kb(pid, "VmHWM")
        rss_end, fds_end = status_kb(pid, "VmRSS"), fds(pid)
        time.sleep(0.3)
        floor_count = px.messages() if floor else 0
        px.stop()
        px = None
        per_node, dups = ([floor_count] if floor else []), 0
        for o in oaps:
            o.stop()
            seg = (o.summary() or {}).get("segments", {})
            per_node.append(seg.get("total", 0))
            dups += seg.get("duplicates", 0)
        lats = []
        for i in range(3):
            try:
                with open(os.path.join(workdir, "n%d.lat" % i)) as f:
                    lats.extend(int(x) for x in f.read().split())
            except OSError:
                pass
        lats.sort()
        steady = [x for x in samples if t_all is not None and t_all + settle <= x[0]]
        ok = load_ok and sum(per_node) == sent and dups == 0 and bool(steady)
        print()
        print("every connection established after %s s; steady state %s" % (
            "%.0f" % t_all if t_all is not None else "never",
            "%.0f-%.0f s (%d samples)" % (steady[0][0], steady[-1][0], len(steady))
            if steady else "none"))
        if steady:
            rss = sorted(x[1] for x in steady)
            fd = sorted(x[2] for x in steady)
            print(name + " VmRSS steady: min %.1f / median %.1f / max %.1f MB; VmHWM %.1f MB; "
                  "idle before %.1f MB; after the load %.1f MB" % (
                      rss[0] / 1024.0, rss[len(rss) // 2] / 1024.0, rss[-1] / 1024.0,
                      hwm / 1024.0, rss0 / 1024.0, rss_end / 1024.0))
            print("steady median - idle: %.1f kB per connection, %.1f kB per stream" % (
                (rss[len(rss) // 2] - rss0) / conns, (rss[len(rss) // 2] - rss0) / streams))
            print(name + " fds: idle %d, steady %d-%d, after the load %d; agent connections "
                  "established (steady) %d-%d" % (fds0, fd[0], fd[-1], fds_end,
                                                   min(x[3] for x in steady),
                                                   max(x[3] for x in steady)))
        print(name + " CPU %.2f s over %.0f s (%.1f %% of one core), %.1f us/segment" % (
            cpu, t_end, 100.0 * cpu / t_end, cpu * 1e6 / max(1, sent)))
        print("segments: sent %d, nodes counted %d (%s), duplicates %d: %s" % (
            sent, sum(per_node), "/".join(str(n) for n in per_node), dups,
            "ok" if ok else "MISMATCH"))
        if lats:
            print("latency agent write -> upstream receive: p50 %.1f ms, p99 %.1f ms, max %.1f ms "
                  "(%d samples)" % (percentile(lats, 0.5) / 1000.0, percentile(lats, 0.99) / 1000.0,
                                    lats[-1] / 1000.0, len(lats)))
        with open(os.path.join(workdir, "samples.txt"), "w") as f:
            for x in samples:
                f.write("%.1f %d %d %d\n" % x)
    finally:
        for p, _, log, _ in loads:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        if px:
            px.stop()
        for o in oaps:
            if o.alive():
                o.stop()
        if os.environ.get("CONNS_KEEP") == "1":
            print("work directory kept: " + workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
