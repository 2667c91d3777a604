"""Disk queue (queue.disk.*), with real processes on 127.0.0.1: an OAP outage longer than
memory holds, kill -9 and restart (twice), damaged segment files, a full disk budget (refused
after queue.full_wait, or resumed when OAP returns in time), two processes on one
directory, SIGTERM with OAP down, a restart with fewer workers, and how soon the backlog
starts draining once OAP is back.

Every test counts messages end to end: loadgen gives each item a unique id
("<prefix>-<stream>-<seq>"), the fake OAP nodes write the hashes of the ids they saw
(--ids), and the union over the nodes is compared with what the agents were told OK.
Each test collects every failed check and reports them together (FaultCase).

An OAP node that is "down" is a port reserved by a bound socket that does not listen:
connections to it are refused, and no other process can take the port before the fake
node starts on it (the fake binds with SO_REUSEPORT, as gRPC servers do)."""
import calendar
import glob
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import unittest
import urllib.error
import urllib.request
import zlib

from harness import LOADGEN, SKYRELAY, Background, Proc, free_port, loadgen, pipes, wait_until
from test_faults import FaultCase, agent_errors, id_hash, mnum, mval, poll, scrape
from test_faults import read_ids as read_ids_of

# ---- names skyrelay exports (docs/metrics.md); adapt here only ----
M_DISK_EVENTS = "skyrelay_queue_disk_events"
M_DISK_BYTES = "skyrelay_queue_disk_bytes"
M_DISK_AGE = "skyrelay_queue_disk_oldest_event_age_seconds"
M_DISK_REPLAYED = "skyrelay_queue_disk_replayed_events_total"
M_DISK_RECOVERED = "skyrelay_queue_disk_recovered_events_total"
M_DISK_CORRUPT = "skyrelay_queue_disk_corrupt_records_total"
M_DISK_FULL = "skyrelay_queue_disk_full_refusals_total"
M_DISK_WERR = "skyrelay_queue_disk_write_errors_total"
M_DISK_SYNCS = "skyrelay_queue_disk_syncs_total"
M_QUEUE = "skyrelay_queue_events"
M_RECEIVED = "skyrelay_pipe_received_events_total"
M_SENT = "skyrelay_sender_sent_events_total"
M_DROPPED = "skyrelay_dropped_events_total"            # {pipe, reason}
M_CALLS = "skyrelay_pipe_calls_total"                  # {pipe, status}
M_PAUSED = "skyrelay_pipe_paused_total"
M_NODE_FAILED = "skyrelay_upstream_node_failed_calls_total"  # {node}
LOG_IN_USE = re.compile(r"is in use by another skyrelay \(pid (\d+)\)")
LOG_KEPT = "kept in the disk queue for the next start"
LOG_RECOVERED = re.compile(r"disk queue (\w+)/(\d+): recovered (\d+) events \((\d+) bytes\) to "
                           r"replay, (\d+) damaged records skipped")

# ---- the segment file format (include/skyrelay/disklog.h) ----
REC_MAGIC = b"SRQ1"
REC_HEADER = 48

PIPES = ("segment", "log", "meter")  # the pipe names are also the fake's --ids kinds
WORKERS = 2
RSS_LIMIT_KB = 100 * 1024


class PortHold:
    """A reserved 127.0.0.1 port that refuses connections (bound, not listening): an OAP
    node that is down. release() once the fake node listens on it."""

    def __init__(self, port=0):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.s.bind(("127.0.0.1", port))
        self.port = self.s.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port

    def release(self):
        if self.s:
            self.s.close()
            self.s = None


class ConnWatcher(threading.Thread):
    """A node that is down, but whose connection attempts are seen: it accepts each TCP
    connection and closes it at once (gRPC fails the attempt as it does for a refused one).
    to_hold() swaps it for a PortHold on the same port, ready for the fake node."""

    def __init__(self):
        super().__init__(daemon=True)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(64)
        self.s.settimeout(0.05)
        self.port = self.s.getsockname()[1]
        self.address = "127.0.0.1:%d" % self.port
        self.attempts = []
        self.stop_ev = threading.Event()
        self.start()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.attempts.append(time.time())
            c.close()

    def to_hold(self):
        h = PortHold(self.port)
        self.release()
        return h

    def release(self):
        self.stop_ev.set()
        self.join(2)
        self.s.close()


class RssSampler(threading.Thread):
    """VmRSS of one process every `every` seconds: peak and samples (kB)."""

    def __init__(self, pid, every=0.5):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples = []
        self.peak = 0
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            kb = rss_kb(self.pid)
            if kb is not None:
                self.samples.append((time.time(), kb))
                self.peak = max(self.peak, kb)
            self.stop_ev.wait(self.every)

    def stop(self):
        self.stop_ev.set()
        self.join(5)


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def upstream_failures(output, address):
    """[(epoch seconds, error)] of skyrelay's "upstream call to <address> failed: ..." lines."""
    out = []
    pat = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z .*upstream call to %s "
                     r"failed: (.*)$" % re.escape(address))
    for line in output.splitlines():
        mm = pat.match(line)
        if mm:
            t = calendar.timegm(time.strptime(mm.group(1), "%Y-%m-%dT%H:%M:%S"))
            out.append((t + float(mm.group(2) or 0), mm.group(3)))
    return out


def recovered3_seg_ok(on_disk2, m3, delivered):
    """After a kill -9 in the drain: fewer segment events recovered than the whole backlog, as
    long as some were delivered and acknowledged before it."""
    rec = mnum(m3, M_DISK_RECOVERED, pipe="segment")
    return delivered == 0 or rec < on_disk2["segment"]


def hashes(prefix, streams, messages, only=None):
    """The id hashes loadgen sends for one run (only: the streams to include)."""
    out = set()
    for s in range(streams):
        if only is not None and s not in only:
            continue
        for seq in range(1, messages + 1):
            out.add(id_hash("%s-%d-%d" % (prefix, s, seq)))
    return out


def read_ids(oaps):
    """{kind: set of id hashes} over the nodes' --ids files (the nodes must have exited)."""
    return read_ids_of(oaps, PIPES)


def http_status(port, path, timeout=5):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, urllib.error.URLError):
        return None


def records(path):
    """[(offset, payload length)] of the records of a segment file, walked by their headers
    (a well-formed file: as skyrelay wrote it)."""
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos + REC_HEADER <= len(data):
        if data[pos:pos + 4] != REC_MAGIC:
            raise AssertionError("%s: no record header at offset %d" % (path, pos))
        hcrc, pcrc, plen = struct.unpack_from("<III", data, pos + 4)
        if zlib.crc32(data[pos + 8:pos + REC_HEADER]) != hcrc:
            raise AssertionError("%s: bad header checksum at offset %d" % (path, pos))
        out.append((pos, plen))
        pos += REC_HEADER + plen
    if pos != len(data):
        raise AssertionError("%s: %d bytes after the last whole record" % (path, len(data) - pos))
    return out, data


def seg_files(qdir, pipe):
    """{worker dir: sorted segment file paths} of a pipe."""
    out = {}
    for wdir in sorted(glob.glob(os.path.join(qdir, pipe, "*"))):
        out[wdir] = sorted(glob.glob(os.path.join(wdir, "*.seg")))
    return out


def seg_bytes(qdir, pipe):
    """Bytes of a pipe's segment files."""
    return sum(os.path.getsize(f) for fs in seg_files(qdir, pipe).values() for f in fs
               if os.path.exists(f))


class RunLoop(threading.Thread):
    """Sequential loadgen runs of one kind until stopped, each its own process with its own
    --id-prefix ("<prefix><i>"): a run that exited 0 was told OK on every stream, so all
    its ids were acknowledged. runs: [(prefix, exit status, summary or None)]."""

    def __init__(self, workdir, target, kind, prefix, streams, messages, rate, extra=()):
        super().__init__(daemon=True)
        self.workdir, self.target, self.kind, self.prefix = workdir, target, kind, prefix
        self.streams, self.messages, self.rate, self.extra = streams, messages, rate, list(extra)
        self.runs = []
        self.stop_ev = threading.Event()
        self.current = None

    def run(self):
        i = 0
        while not self.stop_ev.is_set():
            pfx = "%s%d" % (self.prefix, i)
            summary = os.path.join(self.workdir, "run-%s.json" % pfx)
            self.current = subprocess.Popen(
                [LOADGEN, "--target", self.target, "--kind", self.kind, "--streams",
                 str(self.streams), "--messages", str(self.messages), "--rate", str(self.rate),
                 "--id-prefix", pfx, "--summary", summary, "--deadline-ms", "30000"] + self.extra,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                rc = self.current.wait(60)
            except subprocess.TimeoutExpired:
                self.current.kill()
                rc = self.current.wait(5)
            try:
                with open(summary) as f:
                    sm = json.load(f)
            except (OSError, ValueError):
                sm = None
            self.runs.append((pfx, rc, sm))
            i += 1

    def ok_ids(self):
        """Hashes of the ids of the runs that exited 0."""
        out = set()
        for pfx, rc, _ in self.runs:
            if rc == 0:
                out |= hashes(pfx, self.streams, self.messages)
        return out

    def all_ids(self):
        out = set()
        for pfx, _, _ in self.runs:
            out |= hashes(pfx, self.streams, self.messages)
        return out

    def stop(self):
        self.stop_ev.set()
        self.join(90)
        if self.current and self.current.poll() is None:
            self.current.kill()
            self.current.wait(5)


class DiskQueue(FaultCase):
    """The disk queue end to end. Fast flush settings (pipes()), 2 workers, 2 fake nodes."""

    def setUp(self):
        super().setUp()
        self.holds = []

    def tearDown(self):
        for h in self.holds:
            h.release()
        super().tearDown()

    # ---- processes ----

    def hold(self):
        h = PortHold()
        self.holds.append(h)
        return h

    def nodes_up(self, holds, names=("n0", "n1"), extra=()):
        """Starts fake nodes on the held ports (then lets the ports go)."""
        oaps = []
        for h, name in zip(holds, names):
            oaps.append(self.oap(name, extra, port=h.port))
            h.release()
        return oaps

    def disk_config(self, qdir, total="16MiB", disk_max="1GiB", full_wait="5s", batch=200,
                    sync="interval", grace="2s", upstream_keys=""):
        """(yaml after the harness's upstream.addresses, environment, admin port) of a
        skyrelay with a disk queue on qdir, set through the environment names of
        config/skyrelay.yaml."""
        admin = free_port()
        y = (upstream_keys + pipes(batch=batch) +
             "queue:\n"
             "  full_wait: %s\n"
             "  total_max_bytes: ${SKYRELAY_QUEUE_TOTAL_MAX_BYTES:0}\n"
             "  disk:\n"
             "    dir: ${SKYRELAY_QUEUE_DIR:}\n"
             "    max_bytes: ${SKYRELAY_QUEUE_DISK_MAX_BYTES:1GiB}\n"
             "    sync: ${SKYRELAY_QUEUE_DISK_SYNC:interval}\n"
             "shutdown:\n  grace_period: %s\n"
             "telemetry:\n  prometheus_address: 127.0.0.1:%d\n" % (full_wait, grace, admin))
        env = {"SKYRELAY_QUEUE_DIR": qdir, "SKYRELAY_QUEUE_TOTAL_MAX_BYTES": total,
               "SKYRELAY_QUEUE_DISK_MAX_BYTES": disk_max, "SKYRELAY_QUEUE_DISK_SYNC": sync}
        return y, env, admin

    def disk_relay(self, qdir, upstreams, name="skyrelay", workers=WORKERS, **kw):
        """skyrelay with a disk queue on qdir (disk_config); its admin port is r.admin."""
        y, env, admin = self.disk_config(qdir, **kw)
        r = self.relay([u.address for u in upstreams], y, env=env, name=name,
                       server_extra="  workers: %d\n" % workers)
        r.admin = admin
        wait_until(lambda: scrape(admin) is not None or not r.alive(), 10, name + "'s admin port")
        return r

    def m(self, r):
        return scrape(r.admin) or {}

    def wait_m(self, r, pred, timeout):
        """Scrapes r until pred(metrics) holds; those metrics, or None after `timeout`."""
        def once():
            m = scrape(r.admin)
            return m if m and pred(m) else None
        return poll(once, timeout)

    @staticmethod
    def drained(m, pipes_=PIPES):
        """Nothing left: no event in memory or on disk, for every pipe."""
        return all(mval(m, M_QUEUE, pipe=p) == 0 and mval(m, M_DISK_EVENTS, pipe=p) == 0
                   for p in pipes_)

    def unique_at(self, oaps, kind):
        key = {"segment": "segments", "log": "logs", "meter": "meters"}[kind]
        return self.total(oaps, key + ".unique")

    def stop_nodes(self, oaps):
        for o in oaps:
            o.stop()

    def check_no_drops(self, m, pipes_=PIPES, where=""):
        everywhere = mnum(m, M_DROPPED)
        self.check(everywhere == 0, "%s%s = %d over all pipes, want 0" % (where, M_DROPPED,
                                                                          everywhere))
        for p in pipes_:
            d = mnum(m, M_DROPPED, pipe=p)
            self.check(d == 0, "%s%s: %s = %d, want 0 (by reason: %s)" % (
                where, p, M_DROPPED, d, {dict(ls).get("reason"): v for (n, ls), v in m.items()
                                         if n == M_DROPPED and dict(ls).get("pipe") == p and v}))

    def check_files_gone(self, qdir, pipes_=PIPES):
        """Every acknowledged segment file deleted: at most the active one per worker, empty."""
        def left():
            out = []
            for p in pipes_:
                for wdir, files in seg_files(qdir, p).items():
                    sizes = [os.path.getsize(f) for f in files if os.path.exists(f)]
                    if len(sizes) > 1 or sum(sizes) > 0:
                        out.append("%s: %s" % (os.path.relpath(wdir, qdir),
                                               list(zip([os.path.basename(f) for f in files],
                                                        sizes))))
            return out
        if not poll(lambda: not left(), 5):
            self.check(False, "segment files left after the drain (want at most the active "
                       "one per worker, empty): %s" % left())

    def check_ids(self, got, want, kind, allowed=None):
        """got must hold every id of `want`; with `allowed`, nothing outside it either."""
        missing = want - got
        self.check(not missing, "%s: %d of %d acknowledged ids never reached OAP"
                   % (kind, len(missing), len(want)))
        if allowed is not None:
            unknown = got - allowed
            self.check(not unknown, "%s: %d ids at OAP that no agent sent" % (kind, len(unknown)))

    # ---- 1. a long outage ----

    OUT_SECONDS = 60
    OUT_SEG = (4, 75000, 5000)   # streams, messages per stream, messages/s: 300,000 in 60 s
    OUT_LOG = (2, 15000, 500)    # 30,000 in 60 s
    OUT_METER = (4, 3000, 200)   # 12,000 in 60 s

    def test_outage_beyond_memory_delivers_everything(self):
        """Both OAP nodes down for 60 s under 5,000 segments/s plus logs and meters, memory
        bound 16 MiB: no agent error, RSS < 100 MB, then every id delivered and the disk
        drains."""
        qdir = os.path.join(self.dir, "q")
        holds = [self.hold(), self.hold()]
        # retry_max far below the outage: with a disk queue batches wait for OAP regardless
        relay = self.disk_relay(qdir, holds, total="16MiB", upstream_keys="  retry_max: 10s\n")
        rss = RssSampler(relay.pid)
        rss.start()
        runs = {"segment": ("sg", self.OUT_SEG, ["--connections", "2"]),
                "log": ("lg", self.OUT_LOG, []),
                "meter": ("mt", self.OUT_METER, ["--services", "4"])}
        want = {}
        hasher = threading.Thread(target=lambda: want.update(
            {k: hashes(pfx, s, n) for k, (pfx, (s, n, _), _) in runs.items()}), daemon=True)
        gens, results = [], {}
        oaps = []
        try:
            t0 = time.time()
            for kind, (pfx, (streams, msgs, rate), extra) in runs.items():
                gens.append((kind, Background(relay.address, kind, streams, msgs, self.dir,
                                              ["--rate", str(rate), "--id-prefix", pfx] + extra)))
            hasher.start()
            for kind, bg in gens:
                try:
                    results[kind] = bg.wait(timeout=max(1.0, t0 + self.OUT_SECONDS + 30 -
                                                        time.time()))
                except Exception as e:  # a timeout or no summary: report, do not hang
                    results[kind] = (None, repr(e))
            t_load = time.time() - t0
            m_out = self.m(relay)
            backlog = {p: mnum(m_out, M_DISK_EVENTS, pipe=p) for p in PIPES}
            disk_bytes = sum(mnum(m_out, M_DISK_BYTES, pipe=p) for p in PIPES)
            in_mem = sum(mnum(m_out, M_QUEUE, pipe=p) for p in PIPES)
            in_mem_bytes = mnum(m_out, "skyrelay_queue_bytes")
            age = max(mnum(m_out, M_DISK_AGE, pipe=p) for p in PIPES)
            sent_early = sum(mnum(m_out, M_SENT, pipe=p) for p in PIPES)
            received = {p: mnum(m_out, M_RECEIVED, pipe=p) for p in PIPES}
            # the nodes come back on the same ports
            t_back = time.time()
            oaps = self.nodes_up(holds)
            n_total = sum(s * n for _, (s, n, _), _ in runs.values())
            first = poll(lambda: sum(self.unique_at(oaps, k) for k in PIPES) > 0, 60, 0.1)
            t_first = time.time()
            done = poll(lambda: all(self.unique_at(oaps, k) >= runs[k][1][0] * runs[k][1][1]
                                    for k in PIPES), 120, 0.1)
            t_done = time.time()
            m = self.wait_m(relay, self.drained, 30)
            self.check(m, "skyrelay did not drain (memory and disk) within 30 s of the last "
                          "delivery: %s" % {p: (mval(self.m(relay), M_QUEUE, pipe=p),
                                                mval(self.m(relay), M_DISK_EVENTS, pipe=p))
                                            for p in PIPES})
            m = m or self.m(relay)
            # the active segments are truncated by the housekeeping tick (every second)
            self.check(self.wait_m(relay, lambda x: all(mval(x, M_DISK_BYTES, pipe=p) == 0
                                                        for p in PIPES), 5),
                       "%s after the drain: %s, want 0" % (M_DISK_BYTES, {
                           p: mval(self.m(relay), M_DISK_BYTES, pipe=p) for p in PIPES}))
        finally:
            for _, bg in gens:
                bg.kill()
            rss.stop()
        self.check_files_gone(qdir)
        hasher.join(60)
        relay.stop()
        self.stop_nodes(oaps)
        ids = read_ids(oaps)

        # 1. no agent saw an error
        for kind, (s, rc) in results.items():
            errs = agent_errors(s)
            self.check(not errs and rc == 0, "%s: agent-visible errors (rc %r): %s"
                       % (kind, rc, json.dumps(errs)))
        # 2. memory stayed bounded while everything else waited on disk
        self.check(rss.peak and rss.peak < RSS_LIMIT_KB, "skyrelay RSS peaked at %d kB (limit "
                   "%d kB)" % (rss.peak, RSS_LIMIT_KB))
        self.check(sent_early == 0, "%d events reported sent while every node was down"
                   % sent_early)
        self.check(sum(backlog.values()) == n_total, "disk queue held %s events at the end of "
                   "the outage, want %d (all accepted, none sent)" % (backlog, n_total))
        self.check(received == {k: runs[k][1][0] * runs[k][1][1] for k in PIPES},
                   "%s: %s, want every event sent" % (M_RECEIVED, received))
        self.check(age >= t_load - 5, "%s = %d at the end of a %.0f s outage" % (
            M_DISK_AGE, age, t_load))
        self.check(mnum(m, M_DISK_WERR) == 0, "%s = %d" % (M_DISK_WERR, mnum(m, M_DISK_WERR)))
        self.check(in_mem_bytes <= 16 * 1024 * 1024, "skyrelay_queue_bytes = %d at the end of "
                   "the outage > queue.total_max_bytes 16 MiB" % in_mem_bytes)
        self.check(max(mnum(m, M_DISK_AGE, pipe=p) for p in PIPES) == 0,
                   "%s after the drain: %s, want 0" % (M_DISK_AGE, {
                       p: mval(m, M_DISK_AGE, pipe=p) for p in PIPES}))
        # 3. every id delivered, nothing else, nothing dropped
        self.check(first, "nothing reached the nodes within 60 s of their start")
        self.check(done, "not everything reached the nodes within 120 s: %s" %
                   {k: self.unique_at(oaps, k) for k in PIPES})
        for kind in PIPES:
            self.check_ids(ids[kind], want.get(kind, set()), kind, allowed=want.get(kind))
        for o in oaps:
            s = o.summary() or {}
            self.check(s.get("decode_errors", 0) == 0, "%s: %s decode errors"
                       % (o.name, s.get("decode_errors")))
        self.check_no_drops(m)
        credited = sum(self.total(oaps, k + ".total") for k in ("segments", "logs", "meters"))
        dups = credited - sum(len(ids[k]) for k in PIPES)
        drain_s = t_done - t_back
        self.note("outage %.0f s: backlog %d events %s, %.1f MB of segment files; in memory %d "
                  "events, %.1f MB; oldest %.0f s; RSS peak %.1f MB (%d samples)",
                  t_load, sum(backlog.values()), backlog, disk_bytes / 1e6, in_mem,
                  in_mem_bytes / 1e6, age, rss.peak / 1024.0, len(rss.samples))
        self.note("nodes back -> first delivery %.1f s, all %d delivered %.1f s after the nodes' "
                  "return: %.0f events/s; %.0f events/s from the first delivery; duplicates %d",
                  t_first - t_back, n_total, drain_s, n_total / drain_s if drain_s > 0 else 0,
                  n_total / (t_done - t_first) if t_done > t_first else 0, dups)
        self.report()

    # ---- 2. kill -9 in the middle of an outage ----

    KILL_AFTER = 15.0  # seconds of load before the kill
    KILL_RUNS = {"segment": ("ks", 4, 1250, 5000, ["--connections", "2"]),  # 1 s per run
                 "log": ("kl", 2, 250, 500, []),
                 "meter": ("km", 2, 100, 200, ["--services", "2"])}

    def test_kill9_mid_outage_then_restart_delivers_every_acknowledged_event(self):
        """SIGKILL mid-outage after some runs were told OK; restart on the same directory: every
        acknowledged id delivered once the nodes are back. A second SIGKILL in the middle of
        the drain: what was delivered but not yet acknowledged on disk comes again, so
        duplicates at OAP <= replayed events, and still nothing acknowledged is lost."""
        qdir = os.path.join(self.dir, "q")
        holds = [self.hold(), self.hold()]
        relay = self.disk_relay(qdir, holds)
        loops = {k: RunLoop(self.dir, relay.address, k, pfx, st, msgs, rate, extra)
                 for k, (pfx, st, msgs, rate, extra) in self.KILL_RUNS.items()}
        oaps, post, post_rc, relay2, relay3 = [], None, None, None, None
        m2_kill, m3, on_disk2, at_kill2, at_kill2_seg = {}, {}, {p: 0 for p in PIPES}, 0, 0
        try:
            t0 = time.time()
            for lp in loops.values():
                lp.start()
            time.sleep(self.KILL_AFTER)  # the load's length, not a wait for a condition
            m_kill = self.m(relay)
            for lp in loops.values():
                lp.stop_ev.set()
            os.kill(relay.pid, signal.SIGKILL)
            t_kill = time.time() - t0
            relay.stop()
            for lp in loops.values():
                lp.stop()
            # restart on the same directory; the nodes are still down
            relay2 = self.disk_relay(qdir, holds, name="skyrelay2")
            m_start = self.m(relay2)
            post, post_rc = loadgen(relay2.address, "segment", 2, 1000, self.dir,
                                    ["--id-prefix", "kpost"], timeout=60, check=False)
            want = {k: lp.ok_ids() for k, lp in loops.items()}
            want["segment"] |= hashes("kpost", 2, 1000) if post_rc == 0 else set()
            n_want = sum(len(v) for v in want.values())
            on_disk2 = {p: mnum(self.m(relay2), M_DISK_EVENTS, pipe=p) for p in PIPES}
            # the nodes come back, slowed down (each batch answered 200 ms late: at most
            # 2 workers x 4 calls x 200 events / 0.2 s = 8,000 segments/s), ...
            oaps = self.nodes_up(holds, extra=["--delay-ms", "200"])
            first = poll(lambda: sum(self.unique_at(oaps, k) for k in PIPES) > 0, 90, 0.05)
            t_first = time.time()
            # ... and skyrelay dies again in the middle of the drain, a few acknowledgement
            # ticks (1 s) after it began
            mid = first and poll(lambda: time.time() >= t_first + 3.0 and sum(
                self.unique_at(oaps, k) for k in PIPES) >= n_want * 4 // 10, 90, 0.02)
            m2_kill = self.m(relay2)
            os.kill(relay2.pid, signal.SIGKILL)
            at_kill2 = sum(self.unique_at(oaps, k) for k in PIPES)
            at_kill2_seg = self.unique_at(oaps, "segment")
            relay2.stop()
            relay3 = self.disk_relay(qdir, oaps, name="skyrelay3")
            delivered = poll(lambda: all(self.unique_at(oaps, k) >= len(want[k]) for k in PIPES),
                             90, 0.2)
            m3 = self.wait_m(relay3, self.drained, 30)
            self.check(m3, "the restarted skyrelay did not drain within 30 s of the deliveries")
            m3 = m3 or self.m(relay3)
        finally:
            for lp in loops.values():
                lp.stop()
        if relay3:
            relay3.stop()
        self.stop_nodes(oaps)
        ids = read_ids(oaps)

        ok_runs = {k: sum(1 for _, rc, _ in lp.runs if rc == 0) for k, lp in loops.items()}
        failed = {k: [(pfx, rc, agent_errors(sm)[:2]) for pfx, rc, sm in lp.runs if rc != 0]
                  for k, lp in loops.items()}
        for k in PIPES:
            self.check(ok_runs[k] >= 3, "%s: only %d runs ended OK before the kill at %.1f s"
                       % (k, ok_runs[k], t_kill))
        self.check(post_rc == 0 and not agent_errors(post), "a run after the restart (nodes still "
                   "down) failed: rc %s, %s" % (post_rc, json.dumps(agent_errors(post))))
        self.check(mid, "the drain did not reach 40 %% of %d events within 90 s" % n_want)
        # the acknowledgement mark: the second restart replays from the first unacknowledged
        # record, not every record of the segments that are still there
        self.check(recovered3_seg_ok(on_disk2, m3, at_kill2_seg),
                   "%s{pipe=segment} = %d at the second restart, with %d segments in the backlog "
                   "at the first restart and %d delivered before the second kill: want fewer "
                   "than the whole backlog (replayed from the acknowledgement mark)"
                   % (M_DISK_RECOVERED, mnum(m3, M_DISK_RECOVERED, pipe="segment"),
                      on_disk2["segment"], at_kill2_seg))
        self.check(delivered, "not every acknowledged id reached the nodes within 90 s: %s"
                   % {k: (self.unique_at(oaps, k), len(want[k])) for k in PIPES})
        allowed = {k: lp.all_ids() for k, lp in loops.items()}
        allowed["segment"] |= hashes("kpost", 2, 1000)
        for k in PIPES:
            self.check_ids(ids[k], want[k], k, allowed=allowed[k])
        lost = {k: len(allowed[k] - ids[k]) for k in PIPES}
        recovered = {p: mnum(m_start, M_DISK_RECOVERED, pipe=p) for p in PIPES}
        recovered3 = {p: mnum(m3, M_DISK_RECOVERED, pipe=p) for p in PIPES}
        replayed2 = sum(mnum(m2_kill, M_DISK_REPLAYED, pipe=p) for p in PIPES)
        replayed3 = sum(mnum(m3, M_DISK_REPLAYED, pipe=p) for p in PIPES)
        self.check(replayed2 > 0, "%s = %d at the first restart, want > 0"
                   % (M_DISK_REPLAYED, replayed2))
        self.check(replayed3 > 0, "%s = %d at the second restart, want > 0"
                   % (M_DISK_REPLAYED, replayed3))
        for p in PIPES:
            acked = len(loops[p].ok_ids())
            self.check(recovered[p] >= acked, "%s{pipe=%s} = %d at the restart, want >= %d (the "
                       "acknowledged events)" % (M_DISK_RECOVERED, p, recovered[p], acked))
            for mm, which in ((m_start, "first"), (m3, "second")):
                self.check(mnum(mm, M_DISK_CORRUPT, pipe=p) <= WORKERS,
                           "%s{pipe=%s} = %d at the %s restart (a kill -9 leaves at most one "
                           "torn tail per worker)" % (M_DISK_CORRUPT, p,
                                                      mnum(mm, M_DISK_CORRUPT, pipe=p), which))
        self.check(LOG_RECOVERED.findall(relay2.output()),
                   "no 'disk queue <pipe>/<worker>: recovered N events' line at the restart")
        credited = sum(self.total(oaps, k + ".total") for k in ("segments", "logs", "meters"))
        dups = credited - sum(len(ids[k]) for k in PIPES)
        self.check(dups <= replayed3, "%d duplicates at the nodes > %d events replayed after the "
                   "kill in the drain" % (dups, replayed3))
        self.check_no_drops(m3)
        for o in oaps:
            s = o.summary() or {}
            self.check(s.get("decode_errors", 0) == 0, "%s: %s decode errors"
                       % (o.name, s.get("decode_errors")))
        self.note("kill -9 at %.1f s; runs OK %s, failed %s; on disk at the kill %s; recovered %s, "
                  "replayed %d; backlog at the nodes' return %s; second kill -9 with %d of %d "
                  "delivered (segments %d): recovered %s, replayed %d; "
                  "duplicates %d; unacknowledged ids lost %s",
                  t_kill, ok_runs, failed, {p: mval(m_kill, M_DISK_EVENTS, pipe=p) for p in PIPES},
                  recovered, replayed2, on_disk2, at_kill2, n_want, at_kill2_seg, recovered3,
                  replayed3, dups, lost)
        self.report()

    # ---- 3. a torn tail and a corrupt record ----

    def test_torn_tail_and_corrupt_record_are_skipped_and_counted(self):
        """A segment file cut mid-record and a record with one flipped payload byte: exactly
        those two events are lost and counted, every other one delivered, no garbage at OAP."""
        qdir = os.path.join(self.dir, "q")
        holds = [self.hold(), self.hold()]
        relay = self.disk_relay(qdir, holds, sync="always")
        streams, msgs = 4, 500
        sent, rc = loadgen(relay.address, "segment", streams, msgs, self.dir,
                           ["--id-prefix", "tc", "--connections", "4"], timeout=60, check=False)
        self.assertEqual(rc, 0, "loadgen with the nodes down: %s" % json.dumps(agent_errors(sent)))
        syncs = mnum(self.m(relay), M_DISK_SYNCS, pipe="segment")
        self.check(syncs >= 1, "sync: always, %d calls told OK: %s{pipe=segment} = %d"
                   % (streams, M_DISK_SYNCS, syncs))
        os.kill(relay.pid, signal.SIGKILL)
        relay.stop()
        # damage: the last record of the fullest file torn; a record in the middle of the other
        # worker's file (or of the same file when one worker took everything) flipped
        files = sorted((f for fs in seg_files(qdir, "segment").values() for f in fs
                        if os.path.getsize(f) > 0), key=os.path.getsize, reverse=True)
        self.assertTrue(files, "no segment file with data in %s" % qdir)
        torn_file, flip_file = files[0], files[1] if len(files) > 1 else files[0]
        torn_recs, torn_data = records(torn_file)
        flip_recs, flip_data = records(flip_file)
        n_recs = sum(len(records(f)[0]) for f in files)
        self.assertEqual(n_recs, streams * msgs, "records in the segment files")
        pos, plen = torn_recs[-1]
        torn_id = self._record_id(torn_data, pos, plen)
        pos2, plen2 = flip_recs[len(flip_recs) // 2]
        flip_id = self._record_id(flip_data, pos2, plen2)
        with open(flip_file, "r+b") as f:
            at = pos2 + REC_HEADER + plen2 // 2
            f.seek(at)
            b = f.read(1)
            f.seek(at)
            f.write(bytes([b[0] ^ 0x5a]))
        os.truncate(torn_file, pos + REC_HEADER + plen // 2)
        # restart with the nodes up
        oaps = self.nodes_up(holds)
        relay2 = self.disk_relay(qdir, oaps, name="skyrelay2")
        good = streams * msgs - 2
        m = self.wait_m(relay2, lambda x: self.drained(x, ("segment",)) and
                        mnum(x, M_DISK_REPLAYED, pipe="segment") >= good, 30)
        self.check(m, "the restarted skyrelay did not replay and drain within 30 s")
        m = m or self.m(relay2)
        delivered = poll(lambda: self.unique_at(oaps, "segment") >= good, 10)
        time.sleep(0.3)  # let a wrong extra message show up
        relay2.stop()
        self.stop_nodes(oaps)
        ids = read_ids(oaps)["segment"]

        want = hashes("tc", streams, msgs) - {id_hash(torn_id), id_hash(flip_id)}
        self.check(delivered, "%d of %d good segments reached the nodes"
                   % (self.unique_at(oaps, "segment"), good))
        self.check_ids(ids, want, "segment", allowed=want)
        for i in (torn_id, flip_id):
            self.check(id_hash(i) not in ids, "the damaged record %s reached OAP" % i)
        corrupt = mnum(m, M_DISK_CORRUPT, pipe="segment")
        self.check(corrupt == 2, "%s{pipe=segment} = %d, want 2 (one torn tail, one bad "
                   "checksum)" % (M_DISK_CORRUPT, corrupt))
        self.check(mnum(m, M_DISK_RECOVERED, pipe="segment") == good,
                   "%s{pipe=segment} = %d, want %d" % (M_DISK_RECOVERED,
                                                      mnum(m, M_DISK_RECOVERED, pipe="segment"),
                                                      good))
        self.check(mnum(m, M_DISK_REPLAYED, pipe="segment") == good,
                   "%s{pipe=segment} = %d, want %d" % (M_DISK_REPLAYED,
                                                      mnum(m, M_DISK_REPLAYED, pipe="segment"),
                                                      good))
        lines = [x for x in LOG_RECOVERED.findall(relay2.output()) if x[0] == "segment"]
        self.check(sum(int(x[2]) for x in lines) == good and sum(int(x[4]) for x in lines) == 2,
                   "start log lines of pipe segment %s: want %d recovered, 2 damaged in all"
                   % (lines, good))
        for o in oaps:
            s = o.summary() or {}
            self.check(s.get("decode_errors", 0) == 0, "%s: %s decode errors (garbage sent)"
                       % (o.name, s.get("decode_errors")))
        dups = self.total(oaps, "segments.total") - len(ids)
        self.check(dups == 0, "%d duplicate segments" % dups)
        self.check_no_drops(m, ("segment",))
        self.note("%d records in %d file(s); torn %s in %s, flipped %s in %s; corrupt %d, "
                  "recovered %d, delivered %d", n_recs, len(files), torn_id,
                  os.path.relpath(torn_file, qdir), flip_id, os.path.relpath(flip_file, qdir),
                  corrupt, mnum(m, M_DISK_RECOVERED, pipe="segment"), len(ids))
        self.report()

    @staticmethod
    def _record_id(data, pos, plen):
        """The one loadgen segment id in a record's payload."""
        found = set(re.findall(rb"tc-[0-9]+-[0-9]+", data[pos + REC_HEADER:pos + REC_HEADER +
                                                             plen]))
        if len(found) != 1:
            raise AssertionError("record at %d: ids %r, want exactly one" % (pos, found))
        return found.pop().decode()

    # ---- 4. the disk budget reached ----

    def test_disk_budget_reached_backpressure_then_resource_exhausted(self):
        """queue.disk.max_bytes 2 MiB, memory 1 MiB, nodes down: agents are paused, then get
        RESOURCE_EXHAUSTED after queue.full_wait; skyrelay stays up; what was told OK is
        delivered once the nodes are back, and the budget is usable again."""
        qdir = os.path.join(self.dir, "q")
        holds = [self.hold(), self.hold()]
        relay = self.disk_relay(qdir, holds, total="1MiB", disk_max="2MiB", full_wait="1s")
        first, rc1 = loadgen(relay.address, "segment", 2, 500, self.dir,
                             ["--id-prefix", "d1"], timeout=60, check=False)
        t = time.time()
        over, rc2 = loadgen(relay.address, "segment", 4, 2000, self.dir,
                            ["--id-prefix", "d2", "--connections", "2"], timeout=60, check=False)
        over_s = time.time() - t
        alive = relay.alive()
        health = http_status(relay.admin, "/healthz")
        m_full = self.m(relay)
        oaps = self.nodes_up(holds)
        errs = (over or {}).get("errors", [])
        failed_streams = {e.get("stream") for e in errs}
        want = hashes("d1", 2, 500) if rc1 == 0 else set()
        want |= hashes("d2", 4, 2000, only=set(range(4)) - failed_streams)
        m = self.wait_m(relay, lambda x: self.drained(x, ("segment",)), 60)
        self.check(m, "skyrelay did not drain within 60 s of the nodes' return")
        # the budget is free again: a new run is accepted and delivered
        after, rc3 = loadgen(relay.address, "segment", 2, 500, self.dir,
                             ["--id-prefix", "d3"], timeout=60, check=False)
        if rc3 == 0:
            want |= hashes("d3", 2, 500)
        delivered = poll(lambda: self.unique_at(oaps, "segment") >= len(want), 30)
        m = self.wait_m(relay, lambda x: self.drained(x, ("segment",)), 30) or self.m(relay)
        relay.stop()
        self.stop_nodes(oaps)
        ids = read_ids(oaps)["segment"]

        self.check(rc1 == 0 and not agent_errors(first), "the first run (within the budget) "
                   "failed: %s" % json.dumps(agent_errors(first)))
        codes = {e.get("status") for e in errs}
        self.check(rc2 != 0 and errs and codes == {"RESOURCE_EXHAUSTED"},
                   "the run past the disk budget: rc %s, errors %s; want some streams failed "
                   "with RESOURCE_EXHAUSTED only" % (rc2, json.dumps(errs[:4])))
        self.check(over_s >= 1.0, "the run past the budget ended after %.2f s: the calls were not "
                   "held for queue.full_wait (1 s) first" % over_s)
        self.check(alive and health == 200, "skyrelay with a full disk queue: alive %s, /healthz "
                   "%s" % (alive, health))
        refusals = mnum(m_full, M_DISK_FULL, pipe="segment")
        self.check(refusals > 0, "%s{pipe=segment} = %d, want > 0" % (M_DISK_FULL, refusals))
        self.check(mnum(m_full, M_PAUSED, pipe="segment") > 0, "%s{pipe=segment} = %s, want > 0 "
                   "(backpressure before the refusal)" % (M_PAUSED, mval(m_full, M_PAUSED,
                                                                         pipe="segment")))
        refused_calls = mnum(m_full, M_CALLS, pipe="segment", status="resource_exhausted")
        self.check(refused_calls == len(errs), "%s{pipe=segment,status=resource_exhausted} = %d, "
                   "loadgen saw %d" % (M_CALLS, refused_calls, len(errs)))
        disk_bytes = sum(mnum(m_full, M_DISK_BYTES, pipe=p) for p in PIPES)
        # the budget is checked before a record is added, not reserved: each other worker may
        # add one record past it (test_disk_budget_holds_when_several_workers_fill_it_at_once)
        slack = (WORKERS - 1) * 1024
        self.check(disk_bytes <= 2 * 1024 * 1024 + slack, "disk queue at %d bytes > 2 MiB + %d"
                   % (disk_bytes, slack))
        self.check(rc3 == 0 and not agent_errors(after), "a run after the drain failed: %s"
                   % json.dumps(agent_errors(after)))
        self.check(delivered, "%d of %d acknowledged segments reached the nodes"
                   % (self.unique_at(oaps, "segment"), len(want)))
        allowed = hashes("d1", 2, 500) | hashes("d2", 4, 2000) | hashes("d3", 2, 500)
        self.check_ids(ids, want, "segment", allowed=allowed)
        self.check_no_drops(m, ("segment",))
        self.note("run past the budget: %.2f s, %d of 4 streams refused (%s), %d messages sent by "
                  "loadgen; disk refusals %d, disk %d bytes; delivered %d ids (%d acknowledged)",
                  over_s, len(errs), sorted(codes), (over or {}).get("sent_messages", -1),
                  refusals, disk_bytes, len(ids), len(want))
        self.report()

    def test_disk_budget_reached_calls_wait_and_resume_when_oap_returns(self):
        """The same full disk budget, but the nodes come back within queue.full_wait: the paused
        calls resume and every stream ends OK; every event delivered."""
        qdir = os.path.join(self.dir, "q")
        holds = [self.hold(), self.hold()]
        relay = self.disk_relay(qdir, holds, total="1MiB", disk_max="2MiB", full_wait="15s",
                                upstream_keys="  backoff_initial: 100ms\n  backoff_max: 500ms\n")
        t0 = time.time()
        bg = Background(relay.address, "segment", 4, 2000, self.dir,
                        ["--id-prefix", "rw", "--connections", "2"])
        oaps = []
        try:
            m_full = self.wait_m(relay, lambda x: mnum(x, M_DISK_FULL, pipe="segment") > 0 and
                                 mnum(x, M_PAUSED, pipe="segment") > 0, 20)
            t_full = time.time() - t0
            oaps = self.nodes_up(holds)
            t_up = time.time()
            try:
                sent, rc = bg.wait(60)
            except Exception as e:  # a timeout or no summary: report, do not hang
                sent, rc = None, repr(e)
            t_end = time.time()
        finally:
            bg.kill()
        delivered = poll(lambda: self.unique_at(oaps, "segment") >= 8000, 30)
        m = self.wait_m(relay, lambda x: self.drained(x, ("segment",)), 30) or self.m(relay)
        relay.stop()
        self.stop_nodes(oaps)
        ids = read_ids(oaps)["segment"]

        self.check(m_full, "the disk budget was not reached (or no call paused) within 20 s: "
                   "%s = %s, %s = %s" % (M_DISK_FULL, mval(self.m(relay), M_DISK_FULL,
                                                           pipe="segment"),
                                         M_PAUSED, mval(self.m(relay), M_PAUSED, pipe="segment")))
        self.check(rc == 0 and not agent_errors(sent), "paused calls did not resume when the "
                   "nodes came back: rc %r, %s" % (rc, json.dumps(agent_errors(sent))))
        self.check(t_end - t_up < 15.0, "the calls ended %.1f s after the nodes' return: they "
                   "waited out queue.full_wait" % (t_end - t_up))
        refused = mnum(m, M_CALLS, pipe="segment", status="resource_exhausted")
        self.check(refused == 0, "%d calls refused with RESOURCE_EXHAUSTED" % refused)
        self.check(delivered, "%d of 8000 segments delivered" % self.unique_at(oaps, "segment"))
        self.check_ids(ids, hashes("rw", 4, 2000), "segment", allowed=hashes("rw", 4, 2000))
        self.check_no_drops(m, ("segment",))
        self.note("disk budget reached after %.2f s (refusals %s, paused %s); nodes back, the "
                  "calls ended OK %.1f s later", t_full, mval(m_full, M_DISK_FULL, pipe="segment"),
                  mval(m_full, M_PAUSED, pipe="segment"), t_end - t_up)
        self.report()

    BUDGET_ROUNDS = 3

    def test_disk_budget_holds_when_several_workers_fill_it_at_once(self):
        """queue.disk.max_bytes is the most the segment files hold, also when every worker
        appends at once: 4 workers, 8 agent streams of 100 kB segments, a 1 MiB budget, nodes
        down. (A budget that is checked, then charged, lets each worker add one record past
        it.) Up to BUDGET_ROUNDS fresh starts, as the overlap is a matter of timing."""
        limit = 1024 * 1024
        rounds = []
        for i in range(self.BUDGET_ROUNDS):
            qdir = os.path.join(self.dir, "q%d" % i)
            relay = self.disk_relay(qdir, [self.hold()], name="skyrelay%d" % i, workers=4,
                                    total="1MiB", disk_max="1MiB", full_wait="500ms")
            sent, rc = loadgen(relay.address, "segment", 8, 20, self.dir,
                               ["--id-prefix", "hc%d" % i, "--size", "100000", "--connections",
                                "8"], timeout=60, check=False)
            # what was taken and not told OK is written out by the next tick (every second)
            m = self.wait_m(relay, lambda x: mnum(x, M_DISK_BYTES, pipe="segment") ==
                            seg_bytes(qdir, "segment"), 5) or self.m(relay)
            metric = mnum(m, M_DISK_BYTES)
            on_disk = seg_bytes(qdir, "segment")
            refusals = mnum(m, M_DISK_FULL, pipe="segment")
            relay.stop(signal.SIGKILL)
            codes = sorted({e.get("status") for e in (sent or {}).get("errors", [])})
            rounds.append((metric, on_disk, refusals, codes))
            self.check(refusals > 0 and codes == ["RESOURCE_EXHAUSTED"],
                       "round %d: the budget was not reached (%s = %d, agents saw %s)"
                       % (i, M_DISK_FULL, refusals, codes))
            if max(metric, on_disk) > limit:
                break
        worst = max(max(r[0], r[1]) for r in rounds)
        self.check(worst <= limit, "queue.disk.max_bytes 1 MiB (%d bytes), but the segment files "
                   "reached %d bytes (%+d, %.0f %%): the budget is checked (used + record > max) "
                   "and charged later, so workers appending at once all pass the check; rounds "
                   "(%s bytes, file sizes, %s): %s"
                   % (limit, worst, worst - limit, 100.0 * (worst - limit) / limit, M_DISK_BYTES,
                      M_DISK_FULL, [(int(a), b, int(c)) for a, b, c, _ in rounds]))
        self.note("rounds (metric bytes, file bytes, refusals): %s",
                  [(int(a), b, int(c)) for a, b, c, _ in rounds])
        self.report()

    # ---- 5. one directory, two processes ----

    def test_second_skyrelay_on_the_same_directory_refuses_to_start(self):
        """A second skyrelay on a directory in use exits non-zero and names the first one's
        pid; the first keeps its lock and keeps working; the lock goes with the process."""
        qdir = os.path.join(self.dir, "q")
        oaps = [self.oap("n0")]
        relay = self.disk_relay(qdir, oaps)
        y, env, _ = self.disk_config(qdir)
        cfg = os.path.join(self.dir, "second.yaml")
        with open(cfg, "w") as f:
            f.write("server:\n  address: 127.0.0.1:%d\n  workers: %d\n" % (free_port(), WORKERS))
            f.write("upstream:\n  addresses: %s\n" % oaps[0].address)
            f.write(y)
        second = Proc([SKYRELAY, "--config", cfg], self.dir, "second", env=env)
        self.procs.append(second)
        exited = poll(lambda: not second.alive(), 15)
        rc = second.p.poll()
        out = second.output()
        self.check(exited and rc not in (None, 0), "the second skyrelay: exit status %r (want "
                   "non-zero)" % rc)
        mm = LOG_IN_USE.search(out)
        self.check(mm and int(mm.group(1)) == relay.pid, "the second skyrelay's log does not say "
                   "the directory is in use by pid %d:\n%s" % (relay.pid, out[-1500:]))
        self.check("listening on" not in out, "the second skyrelay started listening")
        # the first one keeps working
        with open(os.path.join(qdir, "LOCK")) as f:
            lock_pid = f.read().strip()
        self.check(lock_pid == str(relay.pid), "LOCK holds %r, want the first's pid %d"
                   % (lock_pid, relay.pid))
        sent, lrc = loadgen(relay.address, "segment", 2, 500, self.dir, ["--id-prefix", "s1"],
                            timeout=60, check=False)
        self.check(lrc == 0 and not agent_errors(sent), "the first skyrelay refused agents: %s"
                   % json.dumps(agent_errors(sent)))
        m = self.wait_m(relay, lambda x: self.drained(x, ("segment",)) and
                        mnum(x, M_SENT, pipe="segment") >= 1000, 20)
        self.check(m, "the first skyrelay did not deliver 1000 segments within 20 s")
        relay.stop()
        self.stop_nodes(oaps)
        ids = read_ids(oaps)["segment"]
        self.check_ids(ids, hashes("s1", 2, 500), "segment", allowed=hashes("s1", 2, 500))
        # the lock goes with the process: the next one starts
        third = self.disk_relay(qdir, [self.hold()], name="third")
        self.check(third.alive(), "a skyrelay on the directory after the first stopped did not "
                   "start")
        self.note("second: exit %r, %r", rc, mm.group(0) if mm else None)
        self.report()

    # ---- 6. SIGTERM with OAP down ----

    def test_sigterm_with_oap_down_keeps_events_for_the_next_start(self):
        """SIGTERM with every node down: what was not delivered stays on disk (not counted as
        dropped at shutdown), and the next start, with the nodes up, delivers all of it."""
        qdir = os.path.join(self.dir, "q")
        holds = [self.hold(), self.hold()]
        relay = self.disk_relay(qdir, holds)
        runs = {"segment": ("ts", 4, 1000, ["--connections", "2"]),
                "log": ("tl", 2, 500, []),
                "meter": ("tm", 2, 250, ["--services", "2"])}
        res = {}
        for kind, (pfx, st, n, extra) in runs.items():
            res[kind] = loadgen(relay.address, kind, st, n, self.dir,
                                ["--id-prefix", pfx] + extra, timeout=60, check=False)
        m_before = self.m(relay)
        t = time.time()
        rc = relay.stop(signal.SIGTERM, timeout=30)
        stop_s = time.time() - t
        out = relay.output()
        stats = relay.final_stats()
        files = {p: seg_bytes(qdir, p) for p in PIPES}
        oaps = self.nodes_up(holds)
        relay2 = self.disk_relay(qdir, oaps, name="skyrelay2")
        total = sum(st * n for _, st, n, _ in runs.values())
        m = self.wait_m(relay2, lambda x: self.drained(x) and
                        sum(mnum(x, M_DISK_REPLAYED, pipe=p) for p in PIPES) >= total, 30)
        self.check(m, "the restarted skyrelay did not replay and drain within 30 s")
        m = m or self.m(relay2)
        delivered = poll(lambda: all(self.unique_at(oaps, k) >= runs[k][1] * runs[k][2]
                                     for k in PIPES), 10)
        relay2.stop()
        self.stop_nodes(oaps)
        ids = read_ids(oaps)

        for kind, (s, lrc) in res.items():
            self.check(lrc == 0 and not agent_errors(s), "%s: agent-visible errors: %s"
                       % (kind, json.dumps(agent_errors(s))))
        self.check(rc == 0, "skyrelay exit status %r after SIGTERM" % rc)
        self.check(LOG_KEPT in out, "no '%s' log line at the stop" % LOG_KEPT)
        for p in PIPES:
            st = stats.get(p, {})
            self.check(st.get("dropped_shutdown") == 0, "%s: stats final dropped_shutdown=%r, "
                       "want 0" % (p, st.get("dropped_shutdown")))
            self.check(files[p] > 0, "%s: no data in the segment files after the stop" % p)
            self.check(mnum(m, M_DISK_RECOVERED, pipe=p) == runs[p][1] * runs[p][2],
                       "%s: %s = %d, want %d" % (p, M_DISK_RECOVERED,
                                                 mnum(m, M_DISK_RECOVERED, pipe=p),
                                                 runs[p][1] * runs[p][2]))
        self.check(delivered, "not every event reached the nodes: %s"
                   % {k: self.unique_at(oaps, k) for k in PIPES})
        for kind, (pfx, st, n, _) in runs.items():
            w = hashes(pfx, st, n)
            self.check_ids(ids[kind], w, kind, allowed=w)
        self.check_no_drops(m)
        self.note("stopped in %.1f s with %s events on disk (%s bytes of segment files); "
                  "replayed %d", stop_s, {p: mval(m_before, M_DISK_EVENTS, pipe=p) for p in PIPES},
                  files, sum(mnum(m, M_DISK_REPLAYED, pipe=p) for p in PIPES))
        self.report()

    # ---- 7. the drain starts once the nodes are back ----

    BACKOFF_MAX = 0.5      # upstream.backoff_max of this test, seconds
    FIRST_DELIVERY = 3.0   # backoff_max + jitter + connecting + one batch, with slack
    BACK_AFTER = 9.0       # the node comes back right after the first connection attempt
                           # this long into the outage (gRPC's next one: >= 5.2 s later)

    def test_backlog_drain_starts_within_backoff_max_of_the_node_return(self):
        """upstream.backoff_max bounds how long a failed node is skipped; so once the node
        answers again, the disk backlog starts draining within about that long. The node
        comes back right after one of skyrelay's connection attempts, ~9 s into the outage
        (the moment that shows whether something else decides when the node is tried)."""
        qdir = os.path.join(self.dir, "q")
        watch = ConnWatcher()
        self.holds.append(watch)
        t0 = time.time()
        relay = self.disk_relay(qdir, [watch], upstream_keys="  backoff_initial: 100ms\n"
                                "  backoff_max: %dms\n" % int(self.BACKOFF_MAX * 1000))
        sent, rc = loadgen(relay.address, "segment", 2, 1000, self.dir, ["--id-prefix", "bk"],
                           timeout=60, check=False)
        seen = poll(lambda: watch.attempts and watch.attempts[-1] - t0 >= self.BACK_AFTER,
                    60, 0.02)
        hold = watch.to_hold()
        self.holds.append(hold)
        oap = self.nodes_up([hold], ("n0",))[0]
        t_back = time.time()
        failed_back = mnum(self.m(relay), M_NODE_FAILED, node=hold.address)
        first = poll(lambda: self.unique_at([oap], "segment") > 0, 60, 0.05)
        delay = time.time() - t_back
        failed_first = mnum(self.m(relay), M_NODE_FAILED, node=hold.address)
        m = self.wait_m(relay, lambda x: self.drained(x, ("segment",)), 30) or self.m(relay)
        relay.stop()
        oap.stop()
        ids = read_ids([oap])["segment"]
        attempts = ["%.1f" % (a - t0) for a in watch.attempts]
        errors_back = [e for t, e in upstream_failures(relay.output(), hold.address) if t > t_back]

        self.check(rc == 0 and not agent_errors(sent), "agents saw errors with the node down: %s"
                   % json.dumps(agent_errors(sent)))
        self.check(seen, "no connection attempt %.0f s into the outage (attempts at %s s)"
                   % (self.BACK_AFTER, attempts))
        self.check(first and delay <= self.FIRST_DELIVERY,
                   "the node listened again, but the first segment reached it only %.1f s later "
                   "(upstream.backoff_max %.1f s; want <= %.1f s). Meanwhile %d upstream calls to "
                   "it failed (%s), e.g. %r. skyrelay's connection attempts, in s from its start: "
                   "%s: gRPC's own reconnect backoff (1 s x 1.6 per attempt, up to 120 s) decides "
                   "when the node is tried, not upstream.backoff_max"
                   % (delay, self.BACKOFF_MAX, self.FIRST_DELIVERY, failed_first - failed_back,
                      M_NODE_FAILED, errors_back[0] if errors_back else None, attempts))
        self.check_ids(ids, hashes("bk", 2, 1000), "segment", allowed=hashes("bk", 2, 1000))
        self.check_no_drops(m, ("segment",))
        self.note("connection attempts at %s s; node back at %.1f s; first delivery %.1f s later; "
                  "%d calls to the node failed in between", attempts, t_back - t0, delay,
                  failed_first - failed_back)
        self.report()

    # ---- 8. a restart with fewer workers ----

    def test_restart_with_fewer_workers_replays_every_worker_s_events(self):
        """Stopped with OAP down on 2 workers, restarted on 1 (a smaller machine): the segments of
        worker 1 are moved to worker 0 and replayed with its own, in full."""
        qdir = os.path.join(self.dir, "q")
        holds = [self.hold(), self.hold()]
        relay = self.disk_relay(qdir, holds, workers=2)
        sent, rc = loadgen(relay.address, "segment", 4, 500, self.dir,
                           ["--id-prefix", "fw", "--connections", "4"], timeout=60, check=False)
        relay.stop(signal.SIGTERM, timeout=30)
        per_worker = {os.path.relpath(w, qdir): sum(os.path.getsize(f) for f in fs)
                      for w, fs in seg_files(qdir, "segment").items()}
        oaps = self.nodes_up(holds)
        relay2 = self.disk_relay(qdir, oaps, name="skyrelay2", workers=1)
        m = self.wait_m(relay2, lambda x: self.drained(x, ("segment",)) and
                        mnum(x, M_DISK_REPLAYED, pipe="segment") >= 2000, 30)
        self.check(m, "the restart on 1 worker did not replay and drain 2000 events within 30 s")
        m = m or self.m(relay2)
        delivered = poll(lambda: self.unique_at(oaps, "segment") >= 2000, 10)
        relay2.stop()
        self.stop_nodes(oaps)
        ids = read_ids(oaps)["segment"]

        self.check(rc == 0 and not agent_errors(sent), "agents saw errors: %s"
                   % json.dumps(agent_errors(sent)))
        self.check(all(v > 0 for v in per_worker.values()) and len(per_worker) == 2,
                   "both workers should hold events before the restart: %s" % per_worker)
        self.check(mnum(m, M_DISK_RECOVERED, pipe="segment") == 2000,
                   "%s{pipe=segment} = %d on 1 worker, want 2000 (both workers' events)"
                   % (M_DISK_RECOVERED, mnum(m, M_DISK_RECOVERED, pipe="segment")))
        self.check(delivered, "%d of 2000 segments delivered" % self.unique_at(oaps, "segment"))
        self.check_ids(ids, hashes("fw", 4, 500), "segment", allowed=hashes("fw", 4, 500))
        self.check(not os.path.exists(os.path.join(qdir, "segment", "1")) or
                   not glob.glob(os.path.join(qdir, "segment", "1", "*.seg")),
                   "segment files left in worker 1's directory after a run on 1 worker: %s"
                   % glob.glob(os.path.join(qdir, "segment", "1", "*")))
        self.check_no_drops(m, ("segment",))
        self.note("before the restart: %s bytes; after it on 1 worker: recovered %d, replayed %d, "
                  "delivered %d", per_worker, mnum(m, M_DISK_RECOVERED, pipe="segment"),
                  mnum(m, M_DISK_REPLAYED, pipe="segment"), len(ids))
        self.report()


if __name__ == "__main__":
    unittest.main()
