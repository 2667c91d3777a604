#!/usr/bin/python3
"""Soak test (issue 10, item 9): one skyrelay, three fake OAP nodes, for SOAK_SECONDS.

Agents come and go: each traffic kind (segment collect and collectInSync, log, meter collect
and collectBatch, ALS) has a slot that runs one loadgen process after another, each for a random
duration at a moderate rate, with its own --id-prefix, so every id ever sent is known. Upstream,
the fake nodes are restarted, frozen and taken down on a seeded random schedule (printed), never
all at once except one planned full outage. skyrelay's RSS, open fds and /metrics are sampled
every 5 s.

At the end: every fake stopped with SIGTERM (each incarnation writes its --ids file), and
  sent       = ids of the loadgen runs that exited 0 (every call ended OK: acknowledged),
  delivered  = the union of the ids of every incarnation of every node,
  lost       = sent - delivered (must be 0),
  duplicated = items credited over all incarnations - distinct ids delivered,
plus the ids of the runs that failed (not acknowledged: counted apart, never "lost"), drops by
reason from skyrelay's /metrics, RSS min/max/last and its slope over the second half, fds.
Exit 0 only if nothing acknowledged was lost, RSS did not grow over the second half by more
than the margin, fds did not grow, and the accounting was exact (every incarnation wrote its
ids file, loadgen's own counts match the ids derived from its arguments).

Fake nodes are never SIGKILLed: a SIGKILLed fake writes no ids file, so what it had
acknowledged could not be told apart from a loss. Their "kill" is a SIGTERM (abrupt for
skyrelay: the fake cancels every call) optionally while frozen (hang, then die). With
SOAK_DISK=1 skyrelay itself runs with the disk queue and is SIGKILLed once and restarted.

Environment (or the matching --options): SOAK_SECONDS (3600), SOAK_SEED (random, printed),
SOAK_DISK (0), SOAK_DIR (work directory kept; default a temp dir, kept only on failure),
SOAK_RSS_MARGIN_MB (10), SOAK_RSS_MARGIN_PCT (10), SOAK_FD_MARGIN (20), SKYRELAY_BUILD.
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import FAKE_OAP, LOADGEN, Proc, SKYRELAY, free_port, wait_until  # noqa: E402
from test_faults import M_DROPPED, id_hash, mnum, mval, scrape  # noqa: E402

M_RECEIVED = "skyrelay_pipe_received_events_total"
M_SENT = "skyrelay_sender_sent_events_total"
M_QUEUE = "skyrelay_queue_events"
M_DISK_EVENTS = "skyrelay_queue_disk_events"
M_RETRIED = "skyrelay_sender_retried_events_total"
M_HEDGED = "skyrelay_sender_hedged_events_total"
M_STALLS = "skyrelay_upstream_node_stalls_total"
M_REPLAYED = "skyrelay_queue_disk_replayed_events_total"
COUNTERS = (M_RECEIVED, M_SENT, M_RETRIED, M_HEDGED, M_STALLS, M_REPLAYED)
PIPES = ("segment", "log", "meter", "als")

SAMPLE_EVERY = 5.0
NODES = 3

# Traffic per kind: items/s (all runs of the slot together), streams range, items per message.
# fake kind = the --ids file's kind; batched: ids "<P>-<s>-<seq>-<k>".
KINDS = {
    "segment":      dict(rate=300, streams=(2, 8), batch=None, fake="segment", pipe="segment"),
    "segment-sync": dict(rate=100, streams=(1, 4), batch=10, fake="segment", pipe="segment"),
    "log":          dict(rate=150, streams=(1, 6), batch=None, fake="log", pipe="log"),
    "meter":        dict(rate=100, streams=(1, 4), batch=None, fake="meter", pipe="meter"),
    "meter-batch":  dict(rate=100, streams=(1, 4), batch=10, fake="meter", pipe="meter"),
    "als":          dict(rate=100, streams=(1, 4), batch=10, fake="als", pipe="als"),
}
FAKE_KEYS = {"segment": "segments", "log": "logs", "meter": "meters", "als": "als"}

# skyrelay config: shipped defaults, except a smaller segment queue so that the planned full
# outage really back-pressures the agents in memory mode (300 segments/s fill 4,000 in ~13 s).
RELAY_YAML = """\
pipes:
  segment:
    queue: {max_events: 4000}
"""
DISK_YAML = """\
queue:
  disk:
    dir: ${SKYRELAY_QUEUE_DIR:}
"""


def log(fmt, *args):
    sys.stdout.write("[soak %s] %s\n" % (time.strftime("%H:%M:%S"), fmt % args if args else fmt))
    sys.stdout.flush()


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted("signal %d" % signum)


# ---------------------------------------------------------------- processes

class Node:
    """One fake OAP node on a fixed port; every incarnation has its own files."""

    def __init__(self, workdir, index, port):
        self.workdir, self.index, self.port = workdir, index, port
        self.name = "n%d" % index
        self.address = "127.0.0.1:%d" % port
        self.incarnations = []   # (name, summary_path, ids_path, clean exit)
        self.proc = None
        self.frozen = False

    def start(self):
        """A new incarnation on the node's port (files <name>.<k>.{json,ids,log})."""
        for attempt in range(5):
            inc = "%s.%d" % (self.name, len(self.incarnations))
            summary, ids = (os.path.join(self.workdir, inc + e) for e in (".json", ".ids"))
            self.incarnations.append([inc, summary, ids, None])
            p = Proc([FAKE_OAP, "--listen", self.address, "--name", inc, "--summary", summary,
                      "--ids", ids], self.workdir, inc)
            self.proc, self.frozen = p, False
            try:
                wait_until(lambda: "listening" in p.output() or not p.alive(), 10, inc + " to listen")
            except AssertionError:
                pass
            if p.alive() and "listening" in p.output():
                return
            # could not listen (yet): this incarnation received nothing
            self.terminate()
            self.incarnations[-1][3] = "failed start"
            time.sleep(1)
        raise RuntimeError("%s: cannot listen on %s" % (self.name, self.address))

    def up(self):
        return self.proc is not None and self.proc.alive()

    def freeze(self):
        if self.up() and not self.frozen:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.frozen = True

    def thaw(self):
        if self.proc is not None and self.frozen:
            if self.proc.alive():
                os.kill(self.proc.pid, signal.SIGCONT)
            self.frozen = False

    def terminate(self):
        """SIGTERM (a frozen node gets it, then SIGCONT: it wakes up to die). The fake cancels
        every call and writes its summary and ids file. Escalates to SIGKILL only if it hangs
        for 60 s: that incarnation's ids are then unknown (reported, the soak fails)."""
        if self.proc is None:
            return
        p = self.proc
        if p.alive():
            os.kill(p.pid, signal.SIGTERM)
            if self.frozen:
                os.kill(p.pid, signal.SIGCONT)
        self.frozen = False
        try:
            p.p.wait(60)
        except subprocess.TimeoutExpired:
            log("%s: no exit 60 s after SIGTERM: SIGKILL (its ids are lost to the count)",
                self.incarnations[-1][0])
            os.kill(p.pid, signal.SIGKILL)
            p.p.wait(10)
        p.log.close()
        self.incarnations[-1][3] = p.p.returncode == 0 and os.path.exists(self.incarnations[-1][2])
        self.proc = None


class Relay:
    """skyrelay on a fixed port and admin port (restartable in disk mode)."""

    def __init__(self, workdir, upstreams, disk_dir):
        self.workdir = workdir
        self.port, self.admin = free_port(), free_port()
        self.address = "127.0.0.1:%d" % self.port
        self.config = os.path.join(workdir, "skyrelay.yaml")
        with open(self.config, "w") as f:
            f.write("server:\n  address: %s\n" % self.address)
            f.write("upstream:\n  addresses: %s\n" % ",".join(upstreams))
            f.write(RELAY_YAML)
            if disk_dir:
                f.write(DISK_YAML)
            f.write("telemetry:\n  prometheus_address: 127.0.0.1:%d\n" % self.admin)
        self.env = {"SKYRELAY_QUEUE_DIR": disk_dir} if disk_dir else {}
        self.incarnation = -1
        self.proc = None
        self.final_metrics = []   # last scrape of every finished incarnation
        self.last_metrics = None

    def start(self):
        self.incarnation += 1
        self.proc = Proc([SKYRELAY, "--config", self.config], self.workdir,
                         "skyrelay.%d" % self.incarnation, env=self.env)
        wait_until(lambda: "listening on" in self.proc.output() or not self.proc.alive(), 30,
                   "skyrelay to listen")
        if not self.proc.alive():
            raise RuntimeError("skyrelay exited:\n" + self.proc.output()[-4000:])
        wait_until(lambda: scrape(self.admin) is not None, 10, "skyrelay's admin port")
        self.last_metrics = scrape(self.admin)

    def scrape(self):
        m = scrape(self.admin)
        if m:
            self.last_metrics = m
        return m

    def finish_incarnation(self):
        self.final_metrics.append(self.last_metrics or {})
        self.last_metrics = None

    def kill9(self):
        self.scrape()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.p.wait(10)
        self.proc.log.close()
        self.finish_incarnation()

    def stop(self):
        self.scrape()
        rc = self.proc.stop(signal.SIGTERM, timeout=60)
        self.finish_incarnation()
        return rc


def proc_status(pid):
    """(RSS bytes, open fds) of a process, or (None, None)."""
    try:
        rss = None
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        return rss, len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None, None


# ---------------------------------------------------------------- agents

def run_ids(run):
    """Every id a loadgen run sends (docs/test-tools.md): "<P>-<s>-<seq>", or "<P>-<s>-<seq>-<k>"
    for the batched kinds; segment-sync: call seq carries min(B, M - (seq-1)B) segments."""
    p, n, m, b = run["prefix"], run["streams"], run["messages"], run["batch"]
    kind = run["kind"]
    for s in range(n):
        if kind == "segment-sync":
            for seq in range(1, (m + b - 1) // b + 1):
                for k in range(min(b, m - (seq - 1) * b)):
                    yield "%s-%d-%d-%d" % (p, s, seq, k)
        elif b:
            for seq in range(1, m + 1):
                for k in range(b):
                    yield "%s-%d-%d-%d" % (p, s, seq, k)
        else:
            for seq in range(1, m + 1):
                yield "%s-%d-%d" % (p, s, seq)


class Slot:
    """One agent population: loadgen runs of one kind, one after another."""

    def __init__(self, kind, rng):
        self.kind = kind
        self.spec = KINDS[kind]
        self.rng = rng
        self.run = None
        self.next_start = rng.uniform(0, 3)

    def plan(self, seq, now, horizon, max_len):
        """A run: duration, streams, messages per stream; None if too little time is left."""
        d = min(self.rng.uniform(3, max_len), horizon - now)
        if d < 2:
            return None
        spec = self.spec
        streams = self.rng.randint(*spec["streams"])
        b = spec["batch"]
        items = spec["rate"] * d
        if self.kind == "segment-sync":
            # segments per stream, a whole number of calls
            m = max(b, int(items / streams) // b * b)
            rate = spec["rate"]
        elif b:
            m = max(1, int(items / b / streams))
            rate = max(1, spec["rate"] // b)
        else:
            m = max(1, int(items / streams))
            rate = spec["rate"]
        code = {"segment": "sg", "segment-sync": "ss", "log": "lg", "meter": "mt",
                "meter-batch": "mb", "als": "al"}[self.kind]
        return dict(kind=self.kind, prefix="%s%05d" % (code, seq), streams=streams, messages=m,
                    batch=b, rate=rate,
                    duration=d)


def start_run(run, target, workdir):
    run["summary"] = os.path.join(workdir, "runs", run["prefix"] + ".json")
    args = [LOADGEN, "--target", target, "--kind", run["kind"], "--streams", str(run["streams"]),
            "--messages", str(run["messages"]), "--id-prefix", run["prefix"],
            "--rate", str(run["rate"]), "--services", "3", "--instances", "2",
            "--size", "300", "--summary", run["summary"],
            "--deadline-ms", str(int((run["duration"] + 120) * 1000))]
    if run["batch"]:
        args += ["--batch", str(run["batch"])]
    run["started"] = time.time()
    run["p"] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish_run(run):
    run["rc"] = run["p"].returncode
    run["ended"] = time.time()
    try:
        with open(run["summary"]) as f:
            s = json.load(f)
    except (OSError, ValueError):
        s = None
    run["sent_entries"] = s.get("sent_entries") if s else None
    run["expected_total"] = (s.get("expected") or {}).get("total") if s else None
    run["status"] = s.get("status") if s else None
    run["calls_failed"] = s.get("calls_failed") if s else None
    # acknowledged: every call ended OK (exit 0, a summary that says so)
    run["acked"] = run["rc"] == 0 and s is not None and s.get("calls_failed") == 0
    del run["p"]


# ---------------------------------------------------------------- the fault schedule

def make_schedule(rng, duration, disk):
    """[(t, op, node)] sorted; op: stop (SIGSTOP), cont, term, start, relay-kill9, relay-start.
    Also returns readable fault lines. At most 2 of the 3 nodes are faulted at any time, except
    the planned full outage."""
    warm = max(10.0, duration * 0.05)
    cool = max(15.0, duration * 0.05)
    out_len = min(30.0, duration * 0.2)
    out_at = max(warm + 5, duration * 0.25)
    out_end = out_at + out_len
    ops, lines = [], []
    for n in range(NODES):
        ops.append((out_at, "term", n))
        ops.append((out_end, "start", n))
    lines.append("%7.1fs full outage: all %d nodes SIGTERMed for %.0f s" % (out_at, NODES, out_len))
    kill_at = None
    if disk:
        kill_at = max(duration * 0.4, out_end + 8)
        ops.append((kill_at, "relay-kill9", None))
        ops.append((kill_at + 1.0, "relay-start", None))
        lines.append("%7.1fs skyrelay SIGKILL, restarted 1 s later on the same queue dir" % kill_at)
    busy = [0.0] * NODES   # node faulted until
    t = warm
    gap = (8.0, 30.0) if duration >= 600 else (4.0, 12.0)
    while True:
        t += rng.uniform(*gap)
        kind = rng.choices(["restart", "freeze", "down", "hang-die"], [3, 4, 3, 2])[0]
        if kind == "restart":
            length, parts = 2.0, None
        elif kind == "freeze":
            length = rng.uniform(5, 20)
        elif kind == "down":
            length = rng.uniform(3, 20)
        else:
            hang = rng.uniform(3, 10)
            length = hang + rng.uniform(2, 10)
        end = t + length
        if end > duration - cool:
            break
        if t < out_end + 3 and end > out_at - 3:   # keep clear of the planned outage
            continue
        if kill_at is not None and t < kill_at + 5 and end > kill_at - 3:
            continue
        idle = [n for n in range(NODES) if busy[n] < t - 1]
        if len(idle) < 2:   # 2 faulted already would make 3 with this one
            continue
        n = rng.choice(idle)
        busy[n] = end
        if kind == "restart":
            ops += [(t, "term", n), (t + 0.01, "start", n)]
            lines.append("%7.1fs n%d restart (SIGTERM, start again)" % (t, n))
        elif kind == "freeze":
            ops += [(t, "stop", n), (end, "cont", n)]
            lines.append("%7.1fs n%d freeze %.1f s (SIGSTOP, SIGCONT)" % (t, n, length))
        elif kind == "down":
            ops += [(t, "term", n), (end, "start", n)]
            lines.append("%7.1fs n%d down %.1f s (SIGTERM, start again)" % (t, n, length))
        else:
            ops += [(t, "stop", n), (t + hang, "term", n), (end, "start", n)]
            lines.append("%7.1fs n%d hang %.1f s then die (SIGSTOP, SIGTERM+SIGCONT), down %.1f s"
                         % (t, n, hang, length - hang))
    ops.sort(key=lambda o: o[0])
    return ops, sorted(lines, key=lambda l: float(l.split("s", 1)[0])), (out_at, out_end), kill_at


# ---------------------------------------------------------------- analysis

def slope(points):
    """Least-squares slope of [(t, v)] (v per second); 0 with fewer than 2 points."""
    if len(points) < 2:
        return 0.0
    mt = sum(t for t, _ in points) / len(points)
    mv = sum(v for _, v in points) / len(points)
    den = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (v - mv) for t, v in points) / den if den else 0.0


def metric_sum(metrics_list, name, **labels):
    return sum(mnum(m, name, **labels) for m in metrics_list if m)


def drops_by_reason(metrics_list):
    out = {}
    for m in metrics_list:
        for (n, ls), v in (m or {}).items():
            if n == M_DROPPED and v:
                d = dict(ls)
                k = "%s/%s" % (d.get("pipe", "?"), d.get("reason", "?"))
                out[k] = out.get(k, 0) + int(v)
    return out


def account(nodes, runs):
    """The exact id accounting (see the module doc)."""
    delivered = {k: set() for k in FAKE_KEYS}
    credited = {k: 0 for k in FAKE_KEYS}
    fake_dups = {k: 0 for k in FAKE_KEYS}
    uncredited = {k: 0 for k in FAKE_KEYS}
    holes = []
    for node in nodes:
        for inc, summary_path, ids_path, clean in node.incarnations:
            if clean == "failed start":
                continue
            if not clean:
                holes.append(inc)
            try:
                with open(summary_path) as f:
                    s = json.load(f)
            except (OSError, ValueError):
                holes.append(inc + " (summary)")
                s = {}
            for k, key in FAKE_KEYS.items():
                sec = s.get(key) or {}
                credited[k] += sec.get("total", 0)
                fake_dups[k] += sec.get("duplicates", 0)
                uncredited[k] += (sec.get("unattributed", 0) + sec.get("dropped", 0) +
                                  sec.get("unidentified", 0))
            if os.path.exists(ids_path):
                with open(ids_path) as f:
                    for line in f:
                        kind, _, h = line.partition(" ")
                        if kind in delivered:
                            delivered[kind].add(int(h, 16))
    res = {k: dict(sent=0, failed_runs_ids=0, failed_delivered=0, delivered=len(delivered[k]),
                   lost=0, duplicated=credited[k] - len(delivered[k]),
                   duplicated_within_node=fake_dups[k], uncredited_at_fake=uncredited[k],
                   unknown=0) for k in FAKE_KEYS}
    lost_examples, mismatches = [], []
    known = {k: set() for k in FAKE_KEYS}
    for run in runs:
        k = KINDS[run["kind"]]["fake"]
        got = delivered[k]
        n = 0
        for i in run_ids(run):
            h = int(id_hash(i), 16)
            n += 1
            known[k].add(h)
            if run["acked"]:
                res[k]["sent"] += 1
                if h not in got:
                    res[k]["lost"] += 1
                    if len(lost_examples) < 20:
                        lost_examples.append((i, run["prefix"], run["kind"]))
            else:
                res[k]["failed_runs_ids"] += 1
                if h in got:
                    res[k]["failed_delivered"] += 1
        if run["acked"] and run["sent_entries"] != n:
            mismatches.append("%s: loadgen sent_entries %s, ids derived %d"
                              % (run["prefix"], run["sent_entries"], n))
    for k in FAKE_KEYS:
        res[k]["unknown"] = len(delivered[k] - known[k])
    return res, lost_examples, holes, mismatches


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 3600)))
    ap.add_argument("--seed", type=int, default=int(os.environ["SOAK_SEED"])
                    if os.environ.get("SOAK_SEED") else None)
    ap.add_argument("--disk", action="store_true",
                    default=os.environ.get("SOAK_DISK", "0") not in ("", "0"))
    ap.add_argument("--dir", default=os.environ.get("SOAK_DIR"))
    ap.add_argument("--rss-margin-mb", type=float,
                    default=float(os.environ.get("SOAK_RSS_MARGIN_MB", 10)))
    ap.add_argument("--rss-margin-pct", type=float,
                    default=float(os.environ.get("SOAK_RSS_MARGIN_PCT", 10)))
    ap.add_argument("--fd-margin", type=int, default=int(os.environ.get("SOAK_FD_MARGIN", 20)))
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1, 2 ** 31)
    rng = random.Random(seed)
    keep = a.dir is not None
    workdir = a.dir or tempfile.mkdtemp(prefix="skyrelay-soak-")
    os.makedirs(os.path.join(workdir, "runs"), exist_ok=True)
    disk_dir = os.path.join(workdir, "queue") if a.disk else None
    duration = a.seconds
    log("duration %.0f s, seed %d, mode %s, work dir %s, skyrelay %s", duration, seed,
        "disk queue" if a.disk else "memory", workdir, SKYRELAY)

    ops, lines, outage, kill_at = make_schedule(rng, duration, a.disk)
    log("fault schedule (%d faults):\n  %s", len(lines), "\n  ".join(lines))
    with open(os.path.join(workdir, "schedule.txt"), "w") as f:
        f.write("seed %d\n%s\n" % (seed, "\n".join(lines)))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    nodes = [Node(workdir, i, free_port()) for i in range(NODES)]
    relay = None
    slots = [Slot(k, rng) for k in KINDS]
    runs, samples, problems = [], [], []
    seqno = 0
    ok = False
    interrupted = False
    try:
        for n in nodes:
            n.start()
        relay = Relay(workdir, [n.address for n in nodes], disk_dir)
        relay.start()
        rss0, fd0 = proc_status(relay.proc.pid)
        log("skyrelay pid %d on %s (admin %d): RSS %.1f MB, %d fds before traffic",
            relay.proc.pid, relay.address, relay.admin, rss0 / 1e6, fd0)
        t0 = time.time()
        next_sample = 0.0
        next_report = 60.0
        sample_file = open(os.path.join(workdir, "samples.jsonl"), "w")
        max_len = max(5.0, min(90.0, duration / 4))
        # ---- the soak ----
        while True:
            now = time.time() - t0
            while ops and ops[0][0] <= now:
                _, op, n = ops.pop(0)
                if op == "stop":
                    nodes[n].freeze()
                elif op == "cont":
                    nodes[n].thaw()
                elif op == "term":
                    nodes[n].terminate()
                elif op == "start":
                    nodes[n].start()
                elif op == "relay-kill9":
                    log("skyrelay SIGKILL (pid %d)", relay.proc.pid)
                    relay.kill9()
                elif op == "relay-start":
                    relay.start()
                    log("skyrelay restarted: pid %d", relay.proc.pid)
            for sl in slots:
                if sl.run is not None and sl.run["p"].poll() is not None:
                    finish_run(sl.run)
                    sl.run = None
                    sl.next_start = now + sl.rng.uniform(0, 5)  # agent away for a while
                if sl.run is None and now >= sl.next_start and now < duration:
                    seqno += 1
                    r = sl.plan(seqno, now, duration, max_len)
                    if r is None:
                        sl.next_start = duration
                    else:
                        start_run(r, relay.address, workdir)
                        runs.append(r)
                        sl.run = r
            if now >= next_sample:
                next_sample += SAMPLE_EVERY
                rss, fds = proc_status(relay.proc.pid) if relay.proc and relay.proc.alive() \
                    else (None, None)
                m = relay.scrape() if relay.proc and relay.proc.alive() else None
                smp = dict(t=round(now, 1), inc=relay.incarnation, rss=rss, fds=fds,
                           nodes="".join("F" if x.frozen else ("U" if x.up() else "D")
                                         for x in nodes))
                if m:
                    for name in (M_RECEIVED, M_SENT, M_RETRIED, M_HEDGED, M_QUEUE, M_DROPPED):
                        smp[name] = int(mnum(m, name))
                samples.append(smp)
                sample_file.write(json.dumps(smp) + "\n")
                sample_file.flush()
            if now >= next_report:
                next_report += 60
                last = [s for s in samples if s.get("rss")][-1:]
                done = [r for r in runs if "rc" in r]
                log("t=%4.0fs runs %d (%d failed), RSS %.1f MB, fds %s, nodes %s, received %s, "
                    "queued %s, dropped %s", now, len(done), sum(1 for r in done if not r["acked"]),
                    last[0]["rss"] / 1e6 if last else 0, last[0]["fds"] if last else "?",
                    samples[-1]["nodes"], samples[-1].get(M_RECEIVED), samples[-1].get(M_QUEUE),
                    samples[-1].get(M_DROPPED))
            if now >= duration and all(sl.run is None for sl in slots) and not ops:
                break
            if now >= duration + 300:
                problems.append("loadgen runs still going 300 s after the end: killed")
                for sl in slots:
                    if sl.run is not None:
                        sl.run["p"].kill()
                        sl.run["p"].wait(10)
                        finish_run(sl.run)
                        sl.run = None
                break
            time.sleep(0.1)
        end_traffic = time.time() - t0
        # ---- drain: every node up, queues empty ----
        for n in nodes:
            n.thaw()
            if not n.up():
                n.start()

        def drained():
            m = relay.scrape()
            if not m:
                return False
            return all(mval(m, M_QUEUE, pipe=p) in (0, None) and
                       mval(m, M_DISK_EVENTS, pipe=p) in (0, None) for p in PIPES)
        t_drain = time.time()
        try:
            wait_until(drained, 180, "skyrelay's queues to drain", interval=0.5)
            time.sleep(2)
            wait_until(drained, 30, "skyrelay's queues to drain", interval=0.5)
        except AssertionError as e:
            problems.append(str(e))
        log("traffic ended at %.0f s; queues drained in %.1f s", end_traffic, time.time() - t_drain)
        rss_end, fd_end = proc_status(relay.proc.pid)
        relay_rc = relay.stop()
        if relay_rc != 0:
            problems.append("skyrelay exited %s at SIGTERM" % relay_rc)
        for n in nodes:
            n.terminate()
        sample_file.close()

        # ---- the numbers ----
        acct, lost_examples, holes, mismatches = account(nodes, runs)
        done = [r for r in runs if "rc" in r]
        failed = [r for r in done if not r["acked"]]
        fail_status = {}
        for r in failed:
            for c, v in (r["status"] or {"no-summary/rc%s" % r["rc"]: 1}).items():
                fail_status[c] = fail_status.get(c, 0) + v
        ms = relay.final_metrics
        drops = drops_by_reason(ms)
        last_inc = relay.incarnation
        pts = [(s["t"], s["rss"]) for s in samples if s["rss"] and s["inc"] == last_inc]
        pts_all = [s["rss"] for s in samples if s["rss"]]
        half = duration / 2
        second = [(t, v) for t, v in pts if t >= max(half, pts[0][0] if pts else 0)]
        sl = slope(second)
        span = (second[-1][0] - second[0][0]) if len(second) > 1 else 0
        growth = sl * span
        base = statistics.mean(v for _, v in second) if second else 0
        margin = max(a.rss_margin_mb * 1e6, base * a.rss_margin_pct / 100)
        fds_all = [s["fds"] for s in samples if s["fds"]]
        fds_last = [s["fds"] for s in samples if s["fds"] and s["inc"] == last_inc]
        q = len(fds_last) // 4
        fd_q2 = statistics.median(fds_last[q:2 * q]) if q else None
        fd_q4 = statistics.median(fds_last[3 * q:]) if q else None

        tot = {k: sum(acct[x][k] for x in acct) for k in acct["segment"]}
        report = dict(seed=seed, seconds=duration, mode="disk" if a.disk else "memory",
                      workdir=workdir, faults=len(lines), runs=len(done), runs_failed=len(failed),
                      failed_run_status=fail_status, ids=acct, total=tot, dropped=drops,
                      received=int(metric_sum(ms, M_RECEIVED)), sent_upstream=int(metric_sum(ms, M_SENT)),
                      retried=int(metric_sum(ms, M_RETRIED)), hedged=int(metric_sum(ms, M_HEDGED)),
                      stalls=int(metric_sum(ms, M_STALLS)), replayed=int(metric_sum(ms, M_REPLAYED)),
                      skyrelay_incarnations=last_inc + 1,
                      rss_mb=dict(before=rss0 / 1e6, min=min(pts_all) / 1e6, max=max(pts_all) / 1e6,
                                  last=pts_all[-1] / 1e6, end=(rss_end or 0) / 1e6,
                                  second_half_slope_mb_per_h=sl * 3600 / 1e6,
                                  second_half_growth_mb=growth / 1e6, margin_mb=margin / 1e6),
                      fds=dict(before=fd0, min=min(fds_all), max=max(fds_all), last=fds_all[-1],
                               end=fd_end, median_q2=fd_q2, median_q4=fd_q4),
                      lost_examples=lost_examples, accounting_holes=holes,
                      count_mismatches=mismatches[:20])
        with open(os.path.join(workdir, "report.json"), "w") as f:
            json.dump(report, f, indent=1)

        log("RESULT (seed %d, %s mode, %.0f s, %d faults, %d agent runs, %d failed: %s)",
            seed, report["mode"], duration, len(lines), len(done), len(failed), fail_status)
        print("  %-8s %10s %10s %10s %8s %10s %12s %12s" % ("kind", "sent(ack)", "delivered",
              "duplicated", "lost", "unacked", "unacked-dlv", "uncredited"))
        for k in list(FAKE_KEYS) + ["total"]:
            r = tot if k == "total" else acct[k]
            print("  %-8s %10d %10d %10d %8d %10d %12d %12d" % (
                k, r["sent"], r["delivered"], r["duplicated"], r["lost"], r["failed_runs_ids"],
                r["failed_delivered"], r["uncredited_at_fake"]))
        print("  skyrelay: received %d, sent upstream %d, retried %d, hedged %d, stalls %d, "
              "replayed %d, incarnations %d" % (report["received"], report["sent_upstream"],
                                                report["retried"], report["hedged"],
                                                report["stalls"], report["replayed"],
                                                last_inc + 1))
        print("  dropped by reason: %s" % (drops or "none"))
        r_ = report["rss_mb"]
        print("  RSS MB: before %.1f, min %.1f, max %.1f, last %.1f, after drain %.1f; second half "
              "slope %+.2f MB/h (%+.2f MB over %.0f s, margin %.1f)" % (
                  r_["before"], r_["min"], r_["max"], r_["last"], r_["end"],
                  r_["second_half_slope_mb_per_h"], r_["second_half_growth_mb"], span,
                  r_["margin_mb"]))
        f_ = report["fds"]
        print("  fds: before %d, min %d, max %d, last %d, after drain %d; median 2nd quarter %s, "
              "4th quarter %s" % (f_["before"], f_["min"], f_["max"], f_["last"], f_["end"],
                                  f_["median_q2"], f_["median_q4"]))
        # ---- verdict ----
        if tot["lost"]:
            problems.append("%d acknowledged ids never reached a node, e.g. %s" %
                            (tot["lost"], lost_examples[:5]))
        if tot["unknown"]:
            problems.append("%d ids at the nodes that no agent sent" % tot["unknown"])
        if holes:
            problems.append("accounting incomplete: no ids file/summary for %s" % holes)
        if mismatches:
            problems.append("loadgen's counts differ from the derived ids: %s" % mismatches[:3])
        if tot["uncredited_at_fake"]:
            problems.append("%d items the fakes could not credit (identity lost)"
                            % tot["uncredited_at_fake"])
        if growth > margin:
            problems.append("RSS grew %.1f MB over the second half (margin %.1f MB)"
                            % (growth / 1e6, margin / 1e6))
        if fd_end is not None and fd_end - fd0 > a.fd_margin:
            problems.append("fds grew from %d to %d (quiescent, before/after traffic)"
                            % (fd0, fd_end))
        if fd_q2 is not None and fd_q4 - fd_q2 > a.fd_margin:
            problems.append("fds grew in steady state: median %s (2nd quarter) -> %s (4th)"
                            % (fd_q2, fd_q4))
        if not done:
            problems.append("no agent run finished")
        if tot["sent"] == 0:
            problems.append("nothing acknowledged: the soak measured nothing")
        ok = not problems
    except Interrupted as e:
        interrupted = True
        log("interrupted (%s): stopping everything", e)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup(slots, nodes, relay)
    if interrupted:
        log("work dir kept: %s", workdir)
        return 130
    for p in problems:
        log("FAIL: %s", p)
    if ok:
        log("PASS: nothing acknowledged lost, RSS flat, no fd growth")
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    else:
        log("work dir kept: %s", workdir)
    return 0 if ok else 1


def cleanup(slots, nodes, relay):
    """Stops every process this script started, by PID."""
    for sl in slots:
        r = sl.run
        if r is not None and "p" in r and r["p"].poll() is None:
            r["p"].kill()
            r["p"].wait(10)
    if relay is not None and relay.proc is not None and relay.proc.alive():
        try:  # first, while the nodes are up: its drain is quick
            relay.proc.stop(signal.SIGTERM, timeout=30)
        except Exception:
            pass
    for n in nodes:
        try:
            n.terminate()
        except Exception:
            pass


if __name__ == "__main__":
    sys.exit(main())
