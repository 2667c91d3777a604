"""The admin HTTP port (telemetry.prometheus_address): /metrics counts what the
load generator sent, end to end; /healthz and /readyz answer as Kubernetes
probes expect; the exposition passes promtool."""
import os
import re
import select
import shutil
import socket
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from harness import ROOT, Case, free_port, loadgen, pipes, wait_until

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
UNESCAPE = re.compile(r'\\(.)')


def unescape(v):
    return UNESCAPE.sub(lambda e: "\n" if e.group(1) == "n" else e.group(1), v)


def parse_metrics(text):
    """{(name, ((label, value), ...)): float} of every sample; labels sorted."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise AssertionError("not a sample line: %r" % line)
        labels = tuple(sorted((k, unescape(v)) for k, v in LABEL.findall(m.group(2) or "")))
        key = (m.group(1), labels)
        if key in out:
            raise AssertionError("duplicate series: %r" % line)
        out[key] = float(m.group(3))
    return out


class Admin(Case):
    def admin_relay(self, upstreams, extra=""):
        self.admin_port = free_port()
        return self.relay(upstreams, pipes(batch=50) + extra +
                          "telemetry:\n  prometheus_address: 127.0.0.1:%d\n" % self.admin_port)

    def get(self, path, method="GET"):
        """(status, headers, body) of one request; waits for the port to listen."""
        url = "http://127.0.0.1:%d%s" % (self.admin_port, path)

        def once():
            req = urllib.request.Request(url, method=method)
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status, r.headers, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.headers, e.read().decode()
            except (ConnectionError, urllib.error.URLError):
                return None

        return wait_until(once, 10, "the admin port to answer " + path)

    def metrics(self):
        status, headers, body = self.get("/metrics")
        self.assertEqual(status, 200, body)
        self.assertEqual(headers["Content-Type"], "text/plain; version=0.0.4; charset=utf-8")
        self.assertEqual(int(headers["Content-Length"]), len(body.encode()))
        return body, parse_metrics(body)

    def test_metrics_show_the_finder_and_its_node_list(self):
        oap = self.oap("n0")
        self.admin_port = free_port()
        self.relay(["localhost:%d" % oap.port],
                   "  finder: dns\n  refresh_interval: 200ms\n" + pipes(batch=50) +
                   "telemetry:\n  prometheus_address: 127.0.0.1:%d\n" % self.admin_port)

        def resolved():
            _, m = self.metrics()
            return m if m.get(("skyrelay_discovery_updates_total", (("finder", "dns"),)), 0) >= 1 \
                else None
        m = wait_until(resolved, 10, "/metrics to show the first DNS resolution")
        self.assertGreaterEqual(m[("skyrelay_discovery_nodes", (("finder", "dns"),))], 1)
        self.assertEqual(m[("skyrelay_discovery_errors_total", (("finder", "dns"),))], 0)
        self.assertIn(("skyrelay_discovery_relists_total", (("finder", "dns"),)), m)

    def test_metrics_count_every_event_loadgen_sent(self):
        oaps = [self.oap("n%d" % i) for i in range(2)]
        relay = self.admin_relay(oaps)
        loadgen(relay.address, "segment", 3, 500, self.dir)
        loadgen(relay.address, "log", 2, 300, self.dir)
        self.assertEqual(self.wait_total(oaps, "segments.unique", 1500), 1500)
        self.assertEqual(self.wait_total(oaps, "logs.total", 600), 600)

        def delivered():
            _, m = self.metrics()
            done = (m[("skyrelay_sender_sent_events_total", (("pipe", "segment"),))] == 1500 and
                    m[("skyrelay_sender_sent_events_total", (("pipe", "log"),))] == 600 and
                    m[("skyrelay_queue_events", (("pipe", "segment"),))] == 0 and
                    m[("skyrelay_queue_events", (("pipe", "log"),))] == 0 and
                    m[("skyrelay_server_connections", ())] == 0)
            return m if done else None
        m = wait_until(delivered, 10, "/metrics to show every event delivered")

        def pipe(name, p, **labels):
            return m[(name, tuple(sorted(dict(pipe=p, **labels).items())))]
        for p, n, calls in (("segment", 1500, 3), ("log", 600, 2)):
            self.assertEqual(pipe("skyrelay_pipe_received_events_total", p), n)
            self.assertEqual(pipe("skyrelay_sender_sent_events_total", p), n)
            self.assertGreater(pipe("skyrelay_pipe_received_bytes_total", p), n * 100)
            self.assertEqual(pipe("skyrelay_pipe_calls_total", p, status="ok"), calls)
            for status in ("invalid_argument", "resource_exhausted", "broken"):
                self.assertEqual(pipe("skyrelay_pipe_calls_total", p, status=status), 0)
            for reason in ("retry_exhausted", "upstream_rejected", "shutdown"):
                self.assertEqual(pipe("skyrelay_dropped_events_total", p, reason=reason), 0)
            self.assertEqual(pipe("skyrelay_sender_upstream_failed_calls_total", p), 0)
            self.assertEqual(pipe("skyrelay_sender_retried_events_total", p), 0)
            self.assertGreaterEqual(pipe("skyrelay_sender_batches_total", p), n / 50)
            # every upstream call is in the histogram; buckets are cumulative
            calls_up = pipe("skyrelay_sender_upstream_calls_total", p)
            self.assertEqual(pipe("skyrelay_upstream_call_duration_seconds_count", p), calls_up)
            self.assertEqual(pipe("skyrelay_upstream_call_duration_seconds_bucket", p, le="+Inf"),
                             calls_up)
            buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items()
                             if k[0] == "skyrelay_upstream_call_duration_seconds_bucket" and
                             dict(k[1])["pipe"] == p)
            self.assertEqual([v for _, v in buckets], sorted(v for _, v in buckets))
            self.assertGreater(pipe("skyrelay_upstream_call_duration_seconds_sum", p), 0)
            self.assertGreater(pipe("skyrelay_queue_capacity_events", p), 0)
        self.assertEqual(pipe("skyrelay_pipe_received_events_total", "meter"), 0)

        nodes = {dict(k[1])["node"]: v for k, v in m.items()
                 if k[0] == "skyrelay_upstream_node_sent_events_total"}
        self.assertEqual(set(nodes), {o.address for o in oaps})
        self.assertEqual(sum(nodes.values()), 2100)
        for o in oaps:
            self.assertEqual(m[("skyrelay_upstream_node_up", (("node", o.address),))], 1)
            self.assertEqual(
                m[("skyrelay_upstream_node_failed_calls_total", (("node", o.address),))], 0)
        # one loadgen connection per run; both closed
        self.assertEqual(m[("skyrelay_server_connections_accepted_total", ())], 2)
        self.assertEqual(m[("skyrelay_server_connections_refused_total", ())], 0)
        self.assertEqual(m[("skyrelay_server_ready", ())], 1)
        self.assertGreater(m[("process_resident_memory_bytes", ())], 0)
        self.assertGreater(m[("process_start_time_seconds", ())], time.time() - 600)
        info = [k for k in m if k[0] == "skyrelay_build_info"]
        self.assertEqual(len(info), 1)
        with open(os.path.join(ROOT, "VERSION")) as f:
            self.assertEqual(dict(info[0][1])["version"], f.read().strip())
        self.assertEqual(m[info[0]], 1)

        # the stats log at exit agrees with the last scrape
        relay.stop()
        final = relay.final_stats()
        self.assertEqual(final["segment"]["received"], 1500)
        self.assertEqual(final["log"]["sent"], 600)

    def test_healthz_and_readyz_with_a_live_oap(self):
        oaps = [self.oap("n0")]
        self.admin_relay(oaps)
        self.assertEqual(self.get("/healthz")[0::2], (200, "ok"))
        # no traffic yet: the probe itself makes the idle channel connect
        wait_until(lambda: self.get("/readyz")[0] == 200, 10, "/readyz to turn 200")
        self.assertEqual(self.get("/readyz")[2], "ready")
        self.assertEqual(self.get("/readyz?verbose=1")[0], 200)

    def test_readyz_is_503_when_the_only_upstream_is_dead(self):
        relay = self.admin_relay(["127.0.0.1:1"], "shutdown:\n  grace_period: 500ms\n")
        loadgen(relay.address, "segment", 1, 20, self.dir)
        wait_until(lambda: self.metrics()[1][("skyrelay_upstream_node_failed_calls_total",
                                               (("node", "127.0.0.1:1"),))] >= 1,
                   10, "a failed upstream call")
        status, _, body = self.get("/readyz")
        self.assertEqual((status, body), (503, "not ready"))
        _, m = self.metrics()
        self.assertEqual(m[("skyrelay_server_ready", ())], 0)
        self.assertEqual(m[("skyrelay_pipe_received_events_total", (("pipe", "segment"),))], 20)
        self.assertEqual(m[("skyrelay_sender_sent_events_total", (("pipe", "segment"),))], 0)
        self.assertGreaterEqual(m[("skyrelay_sender_upstream_failed_calls_total",
                                   (("pipe", "segment"),))], 1)
        self.assertEqual(self.get("/healthz")[0::2], (200, "ok"))  # alive, just not ready

    def test_only_get_on_known_paths(self):
        self.admin_relay([self.oap("n0")])
        status, headers, _ = self.get("/metrics", method="POST")
        self.assertEqual(status, 405)
        self.assertEqual(headers["Allow"], "GET")
        self.assertEqual(self.get("/nothing-here")[0], 404)
        self.assertEqual(self.get("/healthz")[1]["Connection"], "close")

    def test_export_none_keeps_the_probes_without_metrics(self):
        self.admin_port = free_port()
        self.relay([self.oap("n0")], "telemetry:\n  export: none\n"
                   "  prometheus_address: 127.0.0.1:%d\n" % self.admin_port)
        self.assertEqual(self.get("/metrics")[0], 404)
        self.assertEqual(self.get("/healthz")[0::2], (200, "ok"))
        wait_until(lambda: self.get("/readyz")[0] == 200, 10, "/readyz to turn 200")

    def test_metrics_body_passes_promtool_check(self):
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool not installed (Debian package `prometheus`, "
                          "scripts/install-deps.sh)")
        oaps = [self.oap("n0")]
        relay = self.admin_relay(oaps)
        loadgen(relay.address, "segment", 2, 100, self.dir)
        self.wait_total(oaps, "segments.unique", 200)
        body, _ = self.metrics()
        r = subprocess.run([promtool, "check", "metrics"], input=body.encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout.decode())
        self.assertEqual(r.stdout.decode().strip(), "", "promtool lint findings")


class AdminHardening(Case):
    """telemetry.admin.*: one client cannot keep the probes out (docs/security.md)."""

    def hardened_relay(self, admin_yaml, env=None):
        self.admin_port = free_port()
        return self.relay(["127.0.0.1:1"], pipes(batch=50) +
                          "telemetry:\n  prometheus_address: 127.0.0.1:%d\n  admin:\n%s"
                          % (self.admin_port, admin_yaml), env=env)

    def connect(self, src):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        s.bind((src, 0))
        s.connect(("127.0.0.1", self.admin_port))
        return s

    def request(self, path, src="127.0.0.2", headers=""):
        """(status, body, seconds) of GET path from source address src (any of 127/8)."""
        t0 = time.monotonic()
        data = b""
        with self.connect(src) as s:
            s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, headers)).encode())
            while b"\r\n\r\n" not in data or len(data) < self.expected_len(data):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        took = time.monotonic() - t0
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), body.decode(), took

    @staticmethod
    def expected_len(data):
        head, _, _ = data.partition(b"\r\n\r\n")
        m = re.search(rb"Content-Length: (\d+)", head)
        return len(head) + 4 + (int(m.group(1)) if m else 0)

    def metric(self, name, labels=(), src="127.0.0.8", headers=""):
        status, body, _ = self.request("/metrics", src, headers)
        self.assertEqual(status, 200, body)
        return parse_metrics(body).get((name, labels), 0)

    def wait_listening(self):
        wait_until(lambda: self.request("/healthz", "127.0.0.9")[0] == 200, 10, "the admin port")

    def test_200_idle_connections_from_one_client_leave_healthz_answered_within_100ms(self):
        self.hardened_relay("    header_timeout: 30s\n")  # the idle ones outlive the test
        self.wait_listening()
        idle = [self.connect("127.0.0.1") for _ in range(200)]
        try:
            refused = ("skyrelay_admin_connections_refused_total", (("reason", "peer_limit"),))
            wait_until(lambda: self.metric(*refused) == 200 - 16, 10,
                       "all but 16 idle connections refused")
            # another client (kubelet comes from the node's address); best of 5 on a busy machine
            answers = [self.request("/healthz") for _ in range(5)]
            self.assertEqual({a[0:2] for a in answers}, {(200, "ok")})
            self.assertLess(min(a[2] for a in answers), 0.1, answers)
            self.assertEqual(self.metric("skyrelay_admin_connections"), 16 + 1)  # + this scrape
        finally:
            for s in idle:
                s.close()

    def test_connections_from_many_clients_evict_the_oldest_idle_one(self):
        self.hardened_relay("    max_connections: 32\n    header_timeout: 30s\n")
        self.wait_listening()
        idle = [self.connect("127.0.0.%d" % (1 + i // 16)) for i in range(48)]  # 3 clients
        try:
            evicted = ("skyrelay_admin_connections_closed_total", (("reason", "evicted"),))
            wait_until(lambda: self.metric(*evicted) >= 16, 10, "16 oldest idle ones closed")
            self.assertEqual(self.request("/healthz", "127.0.0.5")[0:2], (200, "ok"))
            # the first client's connections were the oldest: they are the ones closed
            idle[0].settimeout(2)
            self.assertEqual(idle[0].recv(1), b"")
        finally:
            for s in idle:
                s.close()

    def test_slowloris_is_closed_after_the_header_deadline(self):
        self.hardened_relay("    max_connections_per_peer: 16\n")  # header_timeout: 2s default
        self.wait_listening()
        s = self.connect("127.0.0.2")
        t0 = time.monotonic()
        closed_after = None
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n":  # a byte per second
            r, _, _ = select.select([s], [], [], 1.0)
            if r:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"", "no answer to a request never completed")
                closed_after = time.monotonic() - t0
                break
            try:
                s.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - t0
                break
        s.close()
        self.assertIsNotNone(closed_after, "the slow client was never closed")
        self.assertGreaterEqual(closed_after, 1.9)
        self.assertLess(closed_after, 3.5)
        self.assertEqual(self.metric("skyrelay_admin_connections_closed_total",
                                     (("reason", "header_timeout"),)), 1)

    def test_metrics_needs_the_bearer_token_when_one_is_set(self):
        self.hardened_relay("    token: ${SKYRELAY_ADMIN_TOKEN:}\n",
                            env={"SKYRELAY_ADMIN_TOKEN": "s3cret"})
        self.wait_listening()
        for headers in ("", "Authorization: Bearer wrong\r\n", "Authorization: Basic czNjcmV0\r\n",
                        "Authorization: Bearer s3cret2\r\n"):
            status, body, _ = self.request("/metrics", headers=headers)
            self.assertEqual(status, 401, headers)
            self.assertNotIn("skyrelay_", body)
        self.assertEqual(self.request("/healthz")[0], 200)  # probes need no token
        self.assertIn(self.request("/readyz")[0], (200, 503))
        self.assertEqual(self.metric("skyrelay_admin_unauthorized_total",
                                     headers="Authorization: Bearer s3cret\r\n"), 4)


if __name__ == "__main__":
    unittest.main()
