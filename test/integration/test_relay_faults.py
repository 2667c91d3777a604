"""Faults on the synchronous pass-through and the transparent relay (issue 9):
which upstream statuses eject a node and which only go back to the caller, the
deadline of a relayed call that has none, hop-by-hop headers, and rich error
details (grpc-status-details-bin). Real skyrelay, real fake OAP nodes, Debian's
python3-grpcio as the agent."""
import re
import time
import unittest
import urllib.request

from harness import Case, free_port, pipes, wait_until

SW = "/skywalking.v3."
FETCH = SW + "ConfigurationDiscoveryService/fetchConfigurations"
TASKS = SW + "ProfileTask/getProfileTaskCommands"
HANG = "/relay.test.Hang/Call"  # unknown to skyrelay: relayed

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')

HOP_BY_HOP = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade")


def pb_string(field, s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([field << 3 | 2, len(b)]) + b


class Base(Case):
    def relay_with_admin(self, oaps, upstream_extra=""):
        """A relay whose node ejection lasts the whole test (30 s backoff), with an admin port."""
        self.admin_port = free_port()
        return self.relay(oaps, "  backoff_initial: 30s\n  backoff_max: 60s\n" + upstream_extra +
                          pipes() + "telemetry:\n  prometheus_address: 127.0.0.1:%d\n"
                          % self.admin_port)

    def node_up(self):
        """{node address: skyrelay_upstream_node_up} from /metrics."""
        def scrape():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port,
                                            timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        body = wait_until(scrape, 10, "the admin port")
        out = {}
        for line in body.splitlines():
            m = SAMPLE.match(line)
            if m and m.group(1) == "skyrelay_upstream_node_up":
                node = re.search(r'node="([^"]*)"', m.group(2)).group(1)
                out[node] = float(m.group(3))
        return out

    def unary(self, ch, path, req=b"", metadata=(), timeout=5):
        """(code name, details, response, initial md, trailing md); never raises for a status."""
        grpc = self.grpc()
        try:
            resp, call = ch.unary_unary(path).with_call(req, metadata=list(metadata),
                                                        timeout=timeout)
            return ("OK", call.details(), resp, dict(call.initial_metadata()),
                    dict(call.trailing_metadata()))
        except grpc.RpcError as e:
            return (e.code().name, e.details(), None, dict(e.initial_metadata() or ()),
                    dict(e.trailing_metadata() or ()))


class NodeHealth(Base):
    def test_oap_answers_about_the_request_go_back_and_leave_the_single_node_up(self):
        # content and reject classes: OAP looked at the request and said no
        statuses = {FETCH: 13,                                       # INTERNAL
                    SW + "ProfileTask/reportTaskFinish": 3,          # INVALID_ARGUMENT
                    SW + "EBPFProfilingService/queryTasks": 8,       # RESOURCE_EXHAUSTED
                    SW + "ContinuousProfilingService/queryPolicies": 2,   # UNKNOWN
                    SW + "EBPFProcessService/reportProcesses": 16,   # UNAUTHENTICATED
                    "/relay.test.Unknown/Call": 12}                  # UNIMPLEMENTED, relayed
        extra = []
        for path, code in statuses.items():
            extra += ["--status-method", "%s=%d" % (path, code)]
        oap = self.oap("n0", extra)
        relay = self.relay_with_admin([oap])
        grpc = self.grpc()
        ch = grpc.insecure_channel(relay.address)
        for path, code in statuses.items():
            got = self.unary(ch, path, b"\x0a\x01x")
            self.assertEqual(got[0], next(c.name for c in grpc.StatusCode if c.value[0] == code),
                             path)
            self.assertEqual(got[1], "fake status", path)
            self.assertEqual(got[4].get("x-fake-oap"), "n0", path)  # OAP's trailers came back
            # right after, the same single node still answers
            req = pb_string(1, "after-%d" % code)
            ok = self.unary(ch, TASKS, req)
            self.assertEqual(ok[0], "OK", (path, ok))
            self.assertEqual(ok[2], pb_string(1, "n0") + pb_string(2, req))
        self.assertEqual(self.node_up(), {oap.address: 1.0})

    def _transport_failure_ejects(self, code):
        grpc = self.grpc()
        bad = self.oap("bad", ["--status-method", "%s=%d" % (FETCH, code)])
        good = self.oap("good")
        relay = self.relay_with_admin([bad, good])
        ch = grpc.insecure_channel(relay.address)
        codes = []
        for i in range(12):
            got = self.unary(ch, FETCH, pb_string(1, "c%d" % i))
            codes.append(got[0])
            if got[0] == "OK":
                self.assertEqual(got[4].get("x-fake-oap"), "good")
        # round robin reaches `bad` once among the first calls; its status goes back as
        # it is, and after it nothing goes there any more
        name = next(c.name for c in grpc.StatusCode if c.value[0] == code)
        self.assertEqual(codes.count(name), 1, codes)
        self.assertEqual(codes.count("OK"), 11, codes)
        self.assertEqual(self.node_up(), {bad.address: 0.0, good.address: 1.0})

    def test_unavailable_ejects_the_node_and_later_calls_go_to_the_other(self):
        self._transport_failure_ejects(14)

    def test_aborted_ejects_the_node_and_later_calls_go_to_the_other(self):
        self._transport_failure_ejects(10)


class Deadlines(Base):
    def test_relayed_call_without_deadline_ends_at_sync_timeout_and_ejects_the_silent_node(self):
        grpc = self.grpc()
        oap = self.oap("n0", ["--hang-method", HANG])
        relay = self.relay_with_admin([oap], "  sync_timeout: 1s\n")
        ch = grpc.insecure_channel(relay.address)
        t = time.time()
        fut = ch.unary_unary(HANG).future(b"\x08\x01")  # no deadline from the caller
        try:
            try:
                fut.result(timeout=10)
                self.fail("a call to a node that never answers succeeded")
            except grpc.FutureTimeoutError:
                self.fail("the relayed call was still open after 10 s (sync_timeout is 1 s)")
            except grpc.RpcError:
                pass
        finally:
            fut.cancel()
        took = time.time() - t
        self.assertEqual(fut.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertGreater(took, 0.8)
        self.assertLess(took, 3)
        # our own deadline expired: the node kept silent, it is ejected
        self.assertEqual(self.node_up(), {oap.address: 0.0})

    def test_caller_deadline_is_kept_and_its_expiry_does_not_eject_the_node(self):
        grpc = self.grpc()
        oap = self.oap("n0", ["--hang-method", HANG, "--hang-method", TASKS])
        relay = self.relay_with_admin([oap], "  sync_timeout: 1s\n")
        ch = grpc.insecure_channel(relay.address)
        t = time.time()
        got = self.unary(ch, HANG, b"\x08\x01", timeout=2.5)  # relayed: longer than sync_timeout
        self.assertEqual(got[0], "DEADLINE_EXCEEDED")
        self.assertGreater(time.time() - t, 2.2)
        got = self.unary(ch, TASKS, b"", timeout=0.5)  # synchronous: shorter than sync_timeout
        self.assertEqual(got[0], "DEADLINE_EXCEEDED")
        # the caller's budget ran out, not the node: it stays up and answers
        self.assertEqual(self.node_up(), {oap.address: 1.0})
        self.assertEqual(self.unary(ch, FETCH, b"")[0], "OK")


class Metadata(Base):
    SENT = (("authentication", "agent-token"), ("x-foo", "foo-1"),
            ("connection", "keep-alive"), ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"), ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"), ("te", "gzip"))

    def recorded(self, path):
        """The request metadata of the calls the fake node saw on `path`: [{key: value}]."""
        out = []
        with open(self.md_log) as f:
            for line in f.read().splitlines():
                fields = line.split("\t")
                if fields[0] == path:
                    out.append(dict(kv.split("=", 1) for kv in fields[1:]))
        return out

    def test_hop_by_hop_headers_are_not_forwarded_either_way(self):
        grpc = self.grpc()
        self.md_log = self.dir + "/md.log"
        reply = ["--reply-metadata", "x-foo-reply=bar"]
        for h in HOP_BY_HOP:
            reply += ["--reply-metadata", "%s=from-oap" % h]
        oap = self.oap("n0", ["--record-metadata", self.md_log] + reply)
        relay = self.relay([oap], pipes())
        ch = grpc.insecure_channel(relay.address)

        # the fake itself sees and sends them all (so the checks below can fail)
        direct = self.unary(grpc.insecure_channel(oap.address), FETCH, b"", self.SENT)
        self.assertEqual(direct[0], "OK")
        for h in HOP_BY_HOP:
            self.assertEqual(direct[3].get(h), "from-oap", h)
            self.assertEqual(direct[4].get(h), "from-oap", h)
            self.assertIn(h, self.recorded(FETCH)[0])

        # synchronous pass-through, and a relayed echo call
        got = self.unary(ch, FETCH, b"", self.SENT)
        self.assertEqual(got[0], "OK", got)
        echo = "/relay.test.Echo/Metadata"
        call = ch.stream_stream(echo)(iter([b"m1", b"m2"]), metadata=list(self.SENT), timeout=5)
        self.assertEqual(list(call), [b"n0:m1", b"n0:m2"])
        wait_until(lambda: len(self.recorded(FETCH)) == 2 and self.recorded(echo), 5,
                   "the node to record both calls")
        for path, initial, trailing in ((FETCH, got[3], got[4]),
                                        (echo, dict(call.initial_metadata()),
                                         dict(call.trailing_metadata()))):
            seen = self.recorded(path)[-1]
            self.assertEqual(seen.get("authentication"), "agent-token", path)
            self.assertEqual(seen.get("x-foo"), "foo-1", path)
            for h in HOP_BY_HOP + ("te",):
                self.assertNotIn(h, seen, path)
            self.assertEqual(initial.get("x-foo-reply"), "bar", path)
            self.assertEqual(trailing.get("x-foo-reply"), "bar", path)
            self.assertEqual(trailing.get("x-fake-oap"), "n0", path)
            for h in HOP_BY_HOP:
                self.assertNotIn(h, initial, path)
                self.assertNotIn(h, trailing, path)

    def test_status_details_bin_reaches_the_caller_byte_exact(self):
        grpc = self.grpc()
        # google.rpc.Status{code=3, message="bad field", details=[Any{type_url, value}]}
        # with bytes a text header could not carry (0x00, 0xff, a tab)
        any_msg = pb_string(1, "type.googleapis.com/google.rpc.BadRequest") + \
            pb_string(2, b"\x00\xff\x09\x0a\x80")
        details = b"\x08\x03" + pb_string(2, "bad field") + pb_string(3, any_msg)
        paths = (FETCH, "/relay.test.Details/Call")
        extra = ["--status-details", details.hex()]
        for p in paths:
            extra += ["--status-method", p + "=3"]
        oap = self.oap("n0", extra)
        relay = self.relay([oap], pipes())
        ch = grpc.insecure_channel(relay.address)
        for path in paths:
            got = self.unary(ch, path, b"\x0a\x01x")
            self.assertEqual(got[0], "INVALID_ARGUMENT", path)
            self.assertEqual(got[1], "fake status", path)
            self.assertEqual(got[4].get("grpc-status-details-bin"), details, path)


if __name__ == "__main__":
    unittest.main()
