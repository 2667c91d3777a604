"""TLS on both hops (docs/security.md): the agents' port with and without client
certificates, TLS to OAP (CA, client certificate, server-name override, a wrong
CA), the connection limit in front of TLS, and certificate rotation without a
restart on both sides. A throwaway PKI is made with the openssl CLI per test
class; everything runs on 127.0.0.1."""
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

from harness import SKYRELAY, Background, Case, loadgen, pipes, wait_until

SEG = ("messages", "/skywalking.v3.TraceSegmentReportService/collect")
LOG_COLLECT = "/skywalking.v3.LogReportService/collect"


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30)


def make_pki(d):
    """CAs ca (ours), ca2 (signed nothing of ours but a rogue client), ca3 (the CA an
    upstream moves to); leaf certificates for 127.0.0.1 (IP SAN) and oap.test (DNS SAN)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "ca2", "ca3"):
        _openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".crt", "-days", "2",
                 "-subj", "/CN=" + ca, "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    leaves = [("server", "ca", "IP:127.0.0.1"), ("server_b", "ca", "IP:127.0.0.1"),
              ("client", "ca", "DNS:agent"), ("rogue", "ca2", "DNS:agent"),
              ("oap_dns", "ca", "DNS:oap.test"), ("oap_new", "ca3", "IP:127.0.0.1")]
    for name, ca, san in leaves:
        _openssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj",
                 "/CN=" + name, cwd=d)
        with open(os.path.join(d, name + ".ext"), "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n" % san)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
                 "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext",
                 cwd=d)


def fingerprint_of_file(path):
    out = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", path],
                         stdout=subprocess.PIPE, check=True, timeout=10).stdout.decode()
    return out.strip().split("=", 1)[1]


def presented_fingerprint(port, ca):
    """The SHA-256 fingerprint of the certificate a new handshake on port presents."""
    s = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-alpn", "h2",
                        "-CAfile", ca], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, timeout=10).stdout
    x = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256"], input=s,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10).stdout.decode()
    return x.strip().split("=", 1)[1] if "=" in x else None


def replace_by_rename(src, dst):
    """A new file renamed over the old one (a new inode), as cert-manager tools do."""
    tmp = dst + ".new"
    shutil.copyfile(src, tmp)
    os.rename(tmp, dst)


def overwrite_in_place(src, dst):
    """The same inode truncated and rewritten."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "r+b") as f:
        f.truncate(0)
        f.write(data)


def metrics(relay):
    port = int(re.search(r"admin port (\d+)", relay.output()).group(1))
    return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()


def tls_reloads(relay, side, result):
    m = re.search(r'^skyrelay_tls_reloads_total\{side="%s",result="%s"\} (\d+)$' % (side, result),
                  metrics(relay), re.M)
    return int(m.group(1)) if m else None


def final_node_failed_calls(relay):
    return sum(v.get("failed_calls", 0) for k, v in relay.final_stats().items()
               if k.startswith("node:"))


class TlsCase(Case):
    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.TemporaryDirectory(prefix="skyrelay-pki-")
        cls.pki = cls.pki_dir.name
        make_pki(cls.pki)

    @classmethod
    def tearDownClass(cls):
        cls.pki_dir.cleanup()

    def p(self, name):
        return os.path.join(self.pki, name)

    def tls_oap(self, name, cert="server", client_ca=True, port=None):
        extra = ["--tls-cert", self.p(cert + ".crt"), "--tls-key", self.p(cert + ".key")]
        if client_ca:
            extra += ["--tls-client-ca", self.p("ca.crt")]
        return self.oap(name, extra, port=port)

    def server_tls(self, cert="server", client_ca=False, extra="", files=None):
        c, k = files or (self.p(cert + ".crt"), self.p(cert + ".key"))
        y = "  tls:\n    cert_file: %s\n    key_file: %s\n" % (c, k)
        if client_ca:
            y += "    client_ca_file: %s\n" % self.p("ca.crt")
        return y + extra

    def upstream_tls(self, ca="ca.crt", client=True, extra=""):
        y = "  tls:\n    enabled: true\n    ca_file: %s\n" % (
            ca if os.path.isabs(ca) else self.p(ca))
        if client:
            y += "    cert_file: %s\n    key_file: %s\n" % (self.p("client.crt"),
                                                          self.p("client.key"))
        return y + extra

    def agent_tls(self, cert="client"):
        a = ["--tls-ca", self.p("ca.crt")]
        if cert:
            a += ["--tls-cert", self.p(cert + ".crt"), "--tls-key", self.p(cert + ".key")]
        return a


class BothHops(TlsCase):
    def test_full_workload_over_mtls_on_both_hops_every_item_arrives_once(self):
        oaps = [self.tls_oap("n%d" % i) for i in range(2)]
        relay = self.relay(oaps, self.upstream_tls() + pipes(batch=40),
                           server_extra=self.server_tls(client_ca=True))
        tls = self.agent_tls()
        loadgen(relay.address, "segment", 4, 500, self.dir, tls)
        logs, _ = loadgen(relay.address, "log", 6, 200, self.dir,
                          tls + ["--services", "3", "--instances", "2"])
        meters, _ = loadgen(relay.address, "meter", 4, 150, self.dir,
                            tls + ["--services", "2", "--instances", "2"])
        als, _ = loadgen(relay.address, "als", 4, 100, self.dir, tls + ["--batch", "3"])

        self.assertEqual(self.wait_total(oaps, "segments.unique", 2000), 2000)
        self.assertEqual(self.total(oaps, "segments.duplicates"), 0)
        self.assertEqual(self.wait_total(oaps, "logs.total", 1200), 1200)
        self.assertEqual(self.merged(oaps, "logs.by_instance"), logs["expected"]["by_instance"])
        self.assertEqual(self.total(oaps, "logs.duplicates"), 0)
        self.assertEqual(self.wait_total(oaps, "meters.total", 600), 600)
        self.assertEqual(self.merged(oaps, "meters.by_instance"), meters["expected"]["by_instance"])
        n = als["sent_entries"]
        self.assertEqual(self.wait_total(oaps, "als.total", n), n)
        self.assertEqual(self.merged(oaps, "als.by_identifier"), als["expected"]["by_identifier"])
        self.assertEqual(self.total(oaps, "als.duplicates"), 0)
        # both nodes took batches: every upstream channel speaks TLS
        self.assertTrue(all(self.total([o], "segments.total") > 0 for o in oaps))
        self.assertIn("gRPC port: TLS", relay.output())

    def test_cleartext_client_is_refused_on_the_tls_port(self):
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(), server_extra=self.server_tls())
        s, rc = loadgen(relay.address, "segment", 1, 10, self.dir, ["--deadline-ms", "3000"],
                        check=False)
        self.assertNotEqual(rc, 0)
        self.assertEqual(s["calls_ok"], 0)
        # the same port over TLS works
        loadgen(relay.address, "segment", 1, 10, self.dir, ["--tls-ca", self.p("ca.crt"),
                                                           "--id-prefix", "t"])
        self.assertEqual(self.wait_total([oap], "segments.unique", 10), 10)

    def test_mtls_refuses_no_certificate_and_a_certificate_of_another_ca(self):
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(), server_extra=self.server_tls(client_ca=True))
        for name, args in (("no certificate", self.agent_tls(cert=None)),
                           ("rogue CA", self.agent_tls(cert="rogue"))):
            s, rc = loadgen(relay.address, "log", 1, 10, self.dir,
                            args + ["--deadline-ms", "3000", "--id-prefix", name[:2]], check=False)
            self.assertNotEqual(rc, 0, name)
            self.assertEqual(s["calls_ok"], 0, name)
            self.assertGreaterEqual(s["calls_failed"], 1, (name, s))
        loadgen(relay.address, "log", 2, 50, self.dir, self.agent_tls() + ["--id-prefix", "ok"])
        self.assertEqual(self.wait_total([oap], "logs.total", 100), 100)
        time.sleep(0.5)
        self.assertEqual(self.total([oap], "logs.total"), 100)  # nothing of the refused ones
        # refused in the handshake: no gRPC call of theirs reached the relay
        self.assertEqual(relay.stop(), 0)
        self.assertEqual(relay.final_stats()["log"]["received"], 100)


class Upstream(TlsCase):
    def test_upstream_with_a_certificate_of_another_ca_receives_nothing_and_relay_stays_up(self):
        oap = self.tls_oap("n0", client_ca=False)
        relay = self.relay([oap], self.upstream_tls(ca="ca2.crt", client=False)
                           + "  retry_max: 2s\n  backoff_max: 500ms\n" + pipes())
        s, _ = loadgen(relay.address, "segment", 2, 100, self.dir)
        self.assertEqual(s["calls_ok"], 2)  # the agents are answered: the events are queued
        time.sleep(3)
        self.assertTrue(relay.alive())
        self.assertEqual(self.total([oap], "segments.total"), 0)
        self.assertEqual(self.total([oap], ("calls", "/skywalking.v3.TraceSegmentReportService/collect")), 0)
        self.assertEqual(relay.stop(), 0)
        self.assertGreater(final_node_failed_calls(relay), 0)

    def test_server_name_override_reaches_a_node_by_ip_with_a_dns_only_certificate(self):
        oap = self.tls_oap("n0", cert="oap_dns")
        relay = self.relay([oap], self.upstream_tls(extra="    server_name: oap.test\n") + pipes())
        loadgen(relay.address, "segment", 2, 200, self.dir)
        self.assertEqual(self.wait_total([oap], "segments.unique", 400), 400)
        # without the override the name check fails: nothing arrives
        oap2 = self.tls_oap("n1", cert="oap_dns")
        relay2 = self.relay([oap2], self.upstream_tls() + "  retry_max: 1s\n" + pipes(),
                            name="relay2")
        loadgen(relay2.address, "segment", 1, 50, self.dir, ["--id-prefix", "x"])
        time.sleep(2)
        self.assertEqual(self.total([oap2], "segments.total"), 0)

    def test_insecure_skip_verify_accepts_any_certificate_and_warns(self):
        oap = self.tls_oap("n0", cert="oap_new", client_ca=False)  # a CA the relay does not know
        relay = self.relay([oap], "  tls:\n    enabled: true\n    insecure_skip_verify: true\n"
                           + pipes())
        self.assertIn("insecure_skip_verify", relay.output())
        loadgen(relay.address, "segment", 2, 100, self.dir)
        self.assertEqual(self.wait_total([oap], "segments.unique", 200), 200)


class ConnectionLimit(TlsCase):
    def test_over_limit_connections_are_refused_before_the_handshake_on_a_tls_port(self):
        from test_connections import _grpc, admin_metrics, log_data
        grpc = _grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(), server_extra="  max_connections: 3\n"
                           + self.server_tls())
        with open(self.p("ca.crt"), "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        channels, codes = [], []
        for i in range(5):
            ch = grpc.secure_channel(relay.address, creds,
                                     options=[("grpc.use_local_subchannel_pool", 1)])
            try:
                ch.stream_unary(LOG_COLLECT)(iter([log_data(b"tls-%d" % i)]), timeout=5)
                codes.append("OK")
                channels.append(ch)
            except grpc.RpcError as e:
                codes.append(e.code().name)
                ch.close()
        self.assertEqual(codes, ["OK"] * 3 + ["UNAVAILABLE"] * 2)
        self.assertEqual(self.wait_total([oap], "logs.unique", 3), 3)
        m = admin_metrics(relay)
        self.assertEqual(m["skyrelay_server_connections"], 3, m)
        self.assertEqual(m["skyrelay_server_connections_refused_total"], 2, m)
        for ch in channels:
            ch.close()


class Rotation(TlsCase):
    def test_server_certificate_rotation_under_load_new_handshakes_see_it_nothing_lost(self):
        live = os.path.join(self.dir, "live")
        os.mkdir(live)
        cert, key = os.path.join(live, "tls.crt"), os.path.join(live, "tls.key")
        shutil.copyfile(self.p("server.crt"), cert)
        shutil.copyfile(self.p("server.key"), key)
        fp_a, fp_b = fingerprint_of_file(cert), fingerprint_of_file(self.p("server_b.crt"))
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(), server_extra=self.server_tls(
            files=(cert, key), extra="    reload_interval: 200ms\n"))
        self.assertEqual(presented_fingerprint(relay.port, self.p("ca.crt")), fp_a)
        bg = Background(relay.address, "segment", 4, 1500, self.dir,
                        ["--tls-ca", self.p("ca.crt"), "--rate", "1000"])
        try:
            # 1. new files renamed over the old ones (key first: a new cert never meets an old key)
            replace_by_rename(self.p("server_b.key"), key)
            replace_by_rename(self.p("server_b.crt"), cert)
            wait_until(lambda: presented_fingerprint(relay.port, self.p("ca.crt")) == fp_b, 15,
                       "the new certificate on new handshakes")
            # 2. a half-written certificate: refused, counted, the port keeps serving b
            with open(cert, "r+b") as f:
                f.truncate(120)
            # the files are looked at on new handshakes only: make some while waiting
            wait_until(lambda: presented_fingerprint(relay.port, self.p("ca.crt")) and
                       (tls_reloads(relay, "server", "failed") or 0) >= 1, 15,
                       "the broken file to be refused")
            self.assertEqual(presented_fingerprint(relay.port, self.p("ca.crt")), fp_b)
            # 3. rewritten in place (same inodes) back to a
            overwrite_in_place(self.p("server.key"), key)
            overwrite_in_place(self.p("server.crt"), cert)
            wait_until(lambda: presented_fingerprint(relay.port, self.p("ca.crt")) == fp_a, 15,
                       "the in-place rewrite on new handshakes")
            s, rc = bg.wait(120)
        finally:
            bg.kill()
        self.assertEqual(rc, 0, s)
        self.assertEqual(s["calls_ok"], 4)
        self.assertEqual(self.wait_total([oap], "segments.unique", 6000), 6000)
        self.assertEqual(self.total([oap], "segments.duplicates"), 0)
        self.assertGreaterEqual(tls_reloads(relay, "server", "ok"), 2)
        self.assertTrue(relay.alive())

    def test_upstream_ca_rotation_resumes_delivery_nothing_lost(self):
        ca = os.path.join(self.dir, "upstream-ca.crt")
        shutil.copyfile(self.p("ca.crt"), ca)
        oap = self.tls_oap("n0", client_ca=False)
        port = oap.port
        relay = self.relay([oap], self.upstream_tls(ca=ca, client=False,
                                                    extra="    reload_interval: 200ms\n")
                           + "  backoff_max: 300ms\n" + pipes())
        loadgen(relay.address, "segment", 2, 100, self.dir, ["--id-prefix", "a"])
        self.assertEqual(self.wait_total([oap], "segments.unique", 200), 200)
        first = self.union_ids([oap], "segment")

        # the node comes back with a certificate of a new CA: its handshakes fail ...
        oap2 = self.tls_oap("n0b", cert="oap_new", client_ca=False, port=port)
        loadgen(relay.address, "segment", 2, 100, self.dir, ["--id-prefix", "b"])
        time.sleep(1.5)
        self.assertEqual(self.total([oap2], "segments.total"), 0)
        # ... until the CA file is replaced: new channels, and the queued batches go out
        replace_by_rename(self.p("ca3.crt"), ca)
        self.assertEqual(self.wait_total([oap2], "segments.unique", 200, timeout=30), 200)
        self.assertGreaterEqual(tls_reloads(relay, "upstream", "ok"), 1)
        self.assertEqual(len(first | self.union_ids([oap2], "segment")), 400)  # nothing lost
        self.assertIn("node channel(s) replaced", relay.output())


class CheckConfig(TlsCase):
    """skyrelay --check-config opens the TLS files as a start would: a key of another
    certificate, a missing file or a CA file without a certificate fail it (exit 1) with
    a message naming the config key and the file."""

    def check(self, server="", upstream=""):
        cfg = os.path.join(self.dir, "check.yaml")
        with open(cfg, "w") as f:
            f.write("server:\n  address: 127.0.0.1:0\n" + server)
            f.write("upstream:\n  addresses: 127.0.0.1:1\n" + upstream)
        p = subprocess.run([SKYRELAY, "--check-config", "--config", cfg], capture_output=True,
                           text=True, timeout=30)
        return p.returncode, p.stdout + p.stderr

    def test_good_files_pass(self):
        rc, out = self.check(self.server_tls(client_ca=True), self.upstream_tls())
        self.assertEqual(rc, 0, out)
        self.assertIn(": OK", out)
        # insecure_skip_verify: the CA file is not used, so not opened either
        rc, out = self.check(upstream="  tls:\n    enabled: true\n    ca_file: /nonexistent/ca.crt\n"
                             "    insecure_skip_verify: true\n")
        self.assertEqual(rc, 0, out)
        # upstream TLS off: its keys are ignored, as at start
        rc, out = self.check(upstream="  tls:\n    enabled: false\n    ca_file: /nonexistent/ca.crt\n")
        self.assertEqual(rc, 0, out)

    def test_key_of_another_certificate_fails_naming_key_and_files(self):
        rc, out = self.check(self.server_tls(files=(self.p("server.crt"), self.p("client.key"))))
        self.assertEqual(rc, 1, out)
        self.assertIn("server.tls.key_file: key %s does not belong to certificate %s"
                      % (self.p("client.key"), self.p("server.crt")), out)
        self.assertNotIn(": OK", out)
        rc, out = self.check(upstream="  tls:\n    enabled: true\n    cert_file: %s\n"
                             "    key_file: %s\n" % (self.p("client.crt"), self.p("rogue.key")))
        self.assertEqual(rc, 1, out)
        self.assertIn("upstream.tls.key_file: key %s does not belong to certificate %s"
                      % (self.p("rogue.key"), self.p("client.crt")), out)

    def test_missing_or_unparsable_file_fails_naming_key_and_file(self):
        missing = os.path.join(self.dir, "missing.crt")
        rc, out = self.check(self.server_tls(files=(missing, self.p("server.key"))))
        self.assertEqual(rc, 1, out)
        self.assertIn("server.tls.cert_file: certificate %s: cannot open" % missing, out)
        rc, out = self.check(self.server_tls(), self.upstream_tls(ca=missing))
        self.assertEqual(rc, 1, out)
        self.assertIn("upstream.tls.ca_file: CA file %s: cannot open" % missing, out)
        # a CA file that is a key, not a certificate; an empty key file
        empty = os.path.join(self.dir, "empty.key")
        open(empty, "w").close()
        rc, out = self.check(self.server_tls(files=(self.p("server.crt"), empty),
                                             extra="    client_ca_file: %s\n" % self.p("ca.key")))
        self.assertEqual(rc, 1, out)
        self.assertIn("server.tls.key_file: key %s: empty" % empty, out)
        self.assertIn("server.tls.client_ca_file: CA file %s: no PEM certificate in it"
                      % self.p("ca.key"), out)


if __name__ == "__main__":
    unittest.main()
