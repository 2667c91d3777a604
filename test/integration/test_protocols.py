"""Protocol coverage end to end: the async pipes beyond traces/logs/meters/ALS,
synchronous pass-through (byte-exact answers, metadata, deadlines), the
transparent relay (bidi and unknown methods), and tokens. Real skyrelay, real
fake OAP nodes, Debian's python3-grpcio as the agent."""
import re
import time
import unittest

from harness import Case, pipes, wait_until

SW = "/skywalking.v3."

SYNC_METHODS = [
    SW + "ConfigurationDiscoveryService/fetchConfigurations",
    SW + "ProfileTask/getProfileTaskCommands",
    SW + "ProfileTask/reportTaskFinish",
    SW + "EBPFProcessService/reportProcesses",
    SW + "EBPFProcessService/keepAlive",
    SW + "EBPFProfilingService/queryTasks",
    SW + "ContinuousProfilingService/queryPolicies",
    SW + "ContinuousProfilingService/reportProfilingTask",
    "/skywalking.v10.AsyncProfilerTask/getAsyncProfilerTaskCommands",
    "/skywalking.v10.PprofTask/getPprofTaskCommands",
]


def pb_string(field, s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([field << 3 | 2, len(b)]) + b


def expected_sync_answer(node_name, request):
    """fake_oap's deterministic sync answer: field 1 = its name, field 2 = the request."""
    return pb_string(1, node_name) + pb_string(2, request)


class Base(Case):
    """(harness.Case has the grpc() import helper.)"""


class SyncPassThrough(Base):
    def test_every_sync_method_returns_the_upstream_answer_byte_exact(self):
        grpc = self.grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes())
        ch = grpc.insecure_channel(relay.address)
        for i, path in enumerate(SYNC_METHODS):
            req = pb_string(1, "svc-%d" % i) + pb_string(2, "inst")
            resp, call = ch.unary_unary(path).with_call(
                req, metadata=(("authentication", "agent-token"),), timeout=5)
            self.assertEqual(resp, expected_sync_answer("n0", req), path)
            trailing = dict(call.trailing_metadata())
            self.assertEqual(trailing.get("x-fake-oap"), "n0", path)
            self.assertEqual(trailing.get("x-request-auth"), "agent-token", path)  # token passed on
            self.assertEqual(dict(call.initial_metadata()).get("x-fake-oap-initial"), "n0", path)
        # the fake writes its summary every 100 ms
        wait_until(lambda: all((oap.summary() or {}).get("calls", {}).get(p) for p in SYNC_METHODS),
                   5, "the node to count every call")
        s = oap.summary()
        for path in SYNC_METHODS:
            self.assertEqual(s["calls"].get(path), 1, path)

    def test_upstream_status_and_details_reach_the_caller(self):
        grpc = self.grpc()
        path = SW + "ConfigurationDiscoveryService/fetchConfigurations"
        oap = self.oap("n0", ["--status-method", path + "=9"])
        relay = self.relay([oap], pipes())
        ch = grpc.insecure_channel(relay.address)
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_unary(path)(b"", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(e.exception.details(), "fake status")

    def test_upstream_that_never_answers_gives_deadline_exceeded_within_the_deadline(self):
        grpc = self.grpc()
        path = SW + "ProfileTask/getProfileTaskCommands"
        oap = self.oap("n0", ["--hang-method", path])
        relay = self.relay([oap], pipes())
        ch = grpc.insecure_channel(relay.address)
        t = time.time()
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_unary(path)(b"", timeout=0.8)
        took = time.time() - t
        self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(took, 1.5)

    def test_sync_timeout_caps_a_caller_without_deadline(self):
        grpc = self.grpc()
        path = SW + "ProfileTask/getProfileTaskCommands"
        oap = self.oap("n0", ["--hang-method", path])
        # yaml_extra follows the `upstream:` section's addresses line
        from harness import Skyrelay
        r = Skyrelay(self.dir, [oap.address], "  sync_timeout: 500ms\n" + pipes(), name="cap3")
        self.procs.append(r)
        ch = grpc.insecure_channel(r.address)
        t = time.time()
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_unary(path)(b"")  # no deadline from the caller
        self.assertEqual(e.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(time.time() - t, 3)


class Relay(Base):
    def _echo(self, path, n=50):
        grpc = self.grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes())
        ch = grpc.insecure_channel(relay.address)
        msgs = [("m%03d" % i).encode() for i in range(n)]
        call = ch.stream_stream(path)(iter(msgs), timeout=10)
        got = list(call)
        self.assertEqual(got, [b"n0:" + m for m in msgs])
        self.assertEqual(dict(call.trailing_metadata()).get("x-echo-count"), str(n))
        return relay

    def test_bidi_async_profiler_collect_is_relayed_both_ways(self):
        self._echo("/skywalking.v10.AsyncProfilerTask/collect")

    def test_bidi_pprof_collect_is_relayed_both_ways(self):
        self._echo("/skywalking.v10.PprofTask/collect")

    def test_unknown_method_is_relayed_not_unimplemented(self):
        relay = self._echo("/relay.test.Echo/Chat", 200)
        relay.stop()
        calls = relay.final_stats()["calls"]
        self.assertEqual(calls["relay"], 1)
        self.assertEqual(calls["relay_msgs_up"], 200)
        self.assertEqual(calls["relay_msgs_down"], 200)

    def test_method_unknown_to_oap_too_gets_oaps_unimplemented(self):
        grpc = self.grpc()
        relay = self.relay([self.oap("n0")], pipes())
        ch = grpc.insecure_channel(relay.address)
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_unary("/no.such.Service/method")(b"", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_no_upstream_node_gives_unavailable(self):
        grpc = self.grpc()
        relay = self.relay(["127.0.0.1:1"], pipes())
        ch = grpc.insecure_channel(relay.address)
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_unary(SW + "ConfigurationDiscoveryService/fetchConfigurations")(b"", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)


class AsyncPipes(Base):
    def test_every_async_method_round_trips(self):
        grpc = self.grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(batch=10))
        ch = grpc.insecure_channel(relay.address)
        ident = pb_string(1, pb_string(1, "envoy-a"))  # eBPF access log: node{name}
        envoy_ident = pb_string(1, pb_string(1, pb_string(1, "envoy-a")))  # identifier{node{id}}
        # every message is valid for its schema (skyrelay validates them deeply): nested
        # message fields are left empty
        cases = [
            # (downstream path, shape, messages, upstream path)
            (SW + "JVMMetricReportService/collect", "u", [pb_string(2, "s") + pb_string(3, "i")],
             SW + "JVMMetricReportService/collect"),
            ("/CLRMetricReportService/collect", "u", [pb_string(2, "s") + pb_string(3, "i")],
             SW + "CLRMetricReportService/collect"),
            (SW + "EventService/collect", "cs", [pb_string(1, "e1"), pb_string(1, "e2")],
             SW + "EventService/collect"),
            (SW + "SpanAttachedEventReportService/collect", "cs", [pb_string(1, "")] * 3,
             SW + "SpanAttachedEventReportService/collect"),
            (SW + "ProfileTask/collectSnapshot", "cs", [pb_string(1, "t")] * 4,
             SW + "ProfileTask/collectSnapshot"),
            (SW + "EBPFProfilingService/collectProfilingData", "cs", [pb_string(1, "")] * 2,
             SW + "EBPFProfilingService/collectProfilingData"),
            (SW + "EBPFAccessLogService/collect", "cs", [ident, pb_string(2, "")],
             SW + "EBPFAccessLogService/collect"),
            (SW + "ManagementService/reportInstanceProperties", "u",
             [pb_string(1, "s") + pb_string(2, "i")], SW + "ManagementService/reportInstanceProperties"),
            ("/ManagementService/keepAlive", "u", [pb_string(1, "s") + pb_string(2, "i")],
             SW + "ManagementService/keepAlive"),
            ("/envoy.service.metrics.v2.MetricsService/StreamMetrics", "cs", [envoy_ident, pb_string(2, "")],
             "/envoy.service.metrics.v3.MetricsService/StreamMetrics"),
            ("/envoy.service.metrics.v3.MetricsService/StreamMetrics", "cs", [envoy_ident, pb_string(2, "")],
             "/envoy.service.metrics.v3.MetricsService/StreamMetrics"),
        ]
        expected = {}
        for path, shape, msgs, up in cases:
            try:
                if shape == "u":
                    got = ch.unary_unary(path)(msgs[0], timeout=5)
                else:
                    got = ch.stream_unary(path)(iter(msgs), timeout=5)
            except grpc.RpcError as e:
                self.fail("%s: %s %s\n%s" % (path, e.code(), e.details(), relay.output()[-2000:]))
            self.assertEqual(got, b"", path)
            expected[up] = expected.get(up, 0) + len(msgs)
        # unary reports of one instance are merged (JVM/CLR) or collapsed (management) per batch,
        # so count calls that arrived, and messages for the streaming ones
        def arrived():
            s = oap.summary() or {}
            m = s.get("messages", {})
            return all(m.get(up, 0) > 0 for up in expected)
        wait_until(arrived, 15, "every async method upstream")
        m = oap.summary()["messages"]
        for path, shape, msgs, up in cases:
            if shape == "cs":
                self.assertGreaterEqual(m[up], len(msgs), up)
        relay.stop()
        st = relay.final_stats()
        for pipe in ("jvm", "clr", "event", "span_attached_event", "profile_snapshot",
                     "ebpf_profiling", "ebpf_access_log", "keepalive", "instance_properties",
                     "envoy_metrics"):
            self.assertGreater(st[pipe]["received"], 0, pipe)
            self.assertEqual(st[pipe]["sent"], st[pipe]["received"], pipe)

    def test_keepalives_of_many_agents_credited_per_instance(self):
        grpc = self.grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(batch=50))
        ch = grpc.insecure_channel(relay.address)
        for i in range(20):
            ping = pb_string(1, "svc") + pb_string(2, "inst-%d" % (i % 5))
            ch.unary_unary(SW + "ManagementService/keepAlive")(ping, timeout=5)
        wait_until(lambda: len((oap.summary() or {}).get("management", {})
                               .get("keepalive_by_instance", {})) == 5, 10, "5 instances")
        got = oap.summary()["management"]["keepalive_by_instance"]
        self.assertEqual(sorted(got), ["svc|inst-%d" % i for i in range(5)])


class Tokens(Base):
    def test_server_token_refuses_calls_without_it_and_counts_them(self):
        grpc = self.grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(), server_extra="  authentication: s3cret\n")
        ch = grpc.insecure_channel(relay.address)
        log = SW + "LogReportService/collect"
        for md in ((), (("authentication", "wrong"),)):
            with self.assertRaises(grpc.RpcError) as e:
                ch.stream_unary(log)(iter([pb_string(2, "svc")]), metadata=md, timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_unary(SW + "ConfigurationDiscoveryService/fetchConfigurations")(b"", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        ok = ch.stream_unary(log)(iter([pb_string(2, "svc") + pb_string(3, "i")]),
                                  metadata=(("authentication", "s3cret"),), timeout=5)
        self.assertEqual(ok, b"")
        wait_until(lambda: (oap.summary() or {}).get("logs", {}).get("total", 0) == 1, 10, "log")
        relay.stop()
        self.assertEqual(relay.final_stats()["calls"]["unauthenticated"], 3)

    def test_health_check_needs_no_token_but_health_watch_does(self):
        # kubelet's gRPC probe sends no metadata: Health/Check is exempt (docs/security.md)
        grpc = self.grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(), server_extra="  authentication: s3cret\n")
        ch = grpc.insecure_channel(relay.address)
        check = ch.unary_unary("/grpc.health.v1.Health/Check")
        wait_until(lambda: check(b"", timeout=3) == b"\x08\x01", 10, "SERVING without a token")
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_stream("/grpc.health.v1.Health/Watch")(b"", timeout=5).next()
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAUTHENTICATED)

    def test_token_left_empty_by_a_missing_variable_is_warned_about_at_start(self):
        oap = self.oap("n0")
        env = {"SKYRELAY_SERVER_AUTHENTICATION": ""}
        relay = self.relay([oap], pipes(), env=env,
                           server_extra="  authentication: ${SKYRELAY_SERVER_AUTHENTICATION:}\n")
        warning = re.compile(r"warn  main: server\.authentication is empty because environment "
                             r"variable SKYRELAY_SERVER_AUTHENTICATION is not set")
        wait_until(lambda: warning.search(relay.output()), 5, "the warning")
        quiet = self.relay([oap], pipes(), name="quiet")  # no placeholder: no token on purpose
        wait_until(lambda: "admin port" in quiet.output(), 5, "the start-up lines after it")
        self.assertNotIn("server.authentication is empty", quiet.output())

    def test_upstream_token_is_sent_on_batches_and_replaces_the_agents_on_sync_calls(self):
        grpc = self.grpc()
        oap = self.oap("n0", ["--token", "oap-token"])  # the node refuses calls without it
        from harness import Skyrelay
        relay = Skyrelay(self.dir, [oap.address], "  authentication: oap-token\n" + pipes(),
                         name="tok")
        self.procs.append(relay)
        ch = grpc.insecure_channel(relay.address)
        resp, call = ch.unary_unary(SW + "ConfigurationDiscoveryService/fetchConfigurations") \
            .with_call(b"", metadata=(("authentication", "agent-token"),), timeout=5)
        self.assertEqual(dict(call.trailing_metadata()).get("x-request-auth"), "oap-token")
        ch.stream_unary(SW + "LogReportService/collect")(
            iter([pb_string(2, "svc") + pb_string(3, "i")] * 5), timeout=5)
        ch.unary_unary(SW + "ManagementService/keepAlive")(pb_string(1, "s") + pb_string(2, "i"),
                                                           timeout=5)
        wait_until(lambda: (oap.summary() or {}).get("logs", {}).get("total", 0) == 5, 10, "logs")
        wait_until(lambda: (oap.summary() or {}).get("management", {})
                   .get("keepalive_by_instance", {}).get("s|i") == 1, 10, "keepalive")
        self.assertEqual(oap.summary().get("auth_rejected", 0), 0)


if __name__ == "__main__":
    unittest.main()
