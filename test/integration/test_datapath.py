"""End to end: real skyrelay, real fake OAP nodes, real load generator, all on
127.0.0.1. Every test counts messages end to end."""
import os
import signal
import subprocess
import time
import unittest

from harness import Case, Proc, ROOT, SKYRELAY, free_port, loadgen, pipes, wait_until


class Segments(Case):
    def test_eight_long_lived_streams_spread_evenly_over_three_nodes(self):
        oaps = [self.oap("n%d" % i, ["--count-only"]) for i in range(3)]
        relay = self.relay(oaps, pipes(batch=50))
        sent, _ = loadgen(relay.address, "segment", 8, 3000, self.dir)
        self.assertEqual(sent["calls_ok"], 8)
        path = ("messages", "/skywalking.v3.TraceSegmentReportService/collect")
        self.assertEqual(self.wait_total(oaps, path, 24000), 24000)
        per = [self.total([o], path) for o in oaps]
        self.assertGreater(min(per), 0, per)
        self.assertLessEqual(max(per) / min(per), 1.2, per)

    def test_every_segment_arrives_exactly_once(self):
        oaps = [self.oap("n%d" % i) for i in range(3)]
        relay = self.relay(oaps, pipes(batch=40))
        loadgen(relay.address, "segment", 6, 1000, self.dir)
        self.assertEqual(self.wait_total(oaps, "segments.unique", 6000), 6000)
        self.assertEqual(self.total(oaps, "segments.total"), 6000)
        self.assertEqual(self.total(oaps, "segments.duplicates"), 0)

    def test_package_less_legacy_path_is_served(self):
        oaps = [self.oap("n0")]
        relay = self.relay(oaps, pipes())
        loadgen(relay.address, "segment-legacy", 2, 300, self.dir)
        self.assertEqual(self.wait_total(oaps, "segments.unique", 600), 600)

    def test_collect_in_sync_segments_become_events(self):
        oaps = [self.oap("n%d" % i) for i in range(2)]
        relay = self.relay(oaps, pipes())
        s, _ = loadgen(relay.address, "segment-sync", 3, 500, self.dir, ["--batch", "10"])
        n = s["sent_entries"]
        self.assertGreater(n, 0)
        self.assertEqual(self.wait_total(oaps, "segments.unique", n), n)
        self.assertEqual(self.total(oaps, "segments.duplicates"), 0)

    def test_upstream_collect_in_sync_mode_sends_segment_collections(self):
        oaps = [self.oap("n%d" % i) for i in range(2)]
        relay = self.relay(oaps, pipes(segment_method="collect_in_sync"))
        loadgen(relay.address, "segment", 4, 500, self.dir)
        self.assertEqual(self.wait_total(oaps, "segments.unique", 2000), 2000)
        calls = self.total(oaps, ("calls", "/skywalking.v3.TraceSegmentReportService/collectInSync"))
        self.assertGreater(calls, 0)
        self.assertEqual(self.total(oaps, ("calls", "/skywalking.v3.TraceSegmentReportService/collect")), 0)


class StreamContext(Case):
    def test_logs_with_context_on_first_message_only_are_credited_to_their_instance(self):
        oaps = [self.oap("n%d" % i) for i in range(3)]
        relay = self.relay(oaps, pipes(batch=30))
        sent, _ = loadgen(relay.address, "log", 12, 400, self.dir,
                          ["--services", "3", "--instances", "2"])
        self.assertEqual(self.wait_total(oaps, "logs.total", 4800), 4800)
        self.assertEqual(self.merged(oaps, "logs.by_instance"), sent["expected"]["by_instance"])
        self.assertEqual(self.total(oaps, "logs.unattributed"), 0)
        self.assertEqual(self.total(oaps, "logs.duplicates"), 0)
        # the streams really were spread: more than one node got logs
        self.assertGreater(sum(1 for o in oaps if self.total([o], "logs.total") > 0), 1)

    def test_meter_collect_streams_are_credited_per_instance_never_mixed(self):
        oaps = [self.oap("n%d" % i) for i in range(3)]
        relay = self.relay(oaps, pipes(batch=25))
        sent, _ = loadgen(relay.address, "meter", 12, 300, self.dir,
                          ["--services", "2", "--instances", "3"])
        self.assertEqual(self.wait_total(oaps, "meters.total", 3600), 3600)
        self.assertEqual(self.merged(oaps, "meters.by_instance"), sent["expected"]["by_instance"])
        self.assertEqual(self.total(oaps, "meters.dropped"), 0)
        self.assertEqual(self.total(oaps, "meters.duplicates"), 0)

    def test_meter_collect_batch_collections_keep_their_instance(self):
        oaps = [self.oap("n%d" % i) for i in range(2)]
        relay = self.relay(oaps, pipes(batch=10))
        sent, _ = loadgen(relay.address, "meter-batch", 6, 100, self.dir,
                          ["--services", "2", "--instances", "3", "--batch", "5"])
        n = sent["sent_entries"]
        self.assertEqual(self.wait_total(oaps, "meters.total", n), n)
        self.assertEqual(self.merged(oaps, "meters.by_instance"), sent["expected"]["by_instance"])
        self.assertEqual(self.total(oaps, "meters.dropped"), 0)

    def _als(self, kind, als_method=None):
        oaps = [self.oap("n%d" % i) for i in range(3)]
        relay = self.relay(oaps, pipes(batch=40, als_method=als_method))
        sent, _ = loadgen(relay.address, kind, 10, 200, self.dir, ["--batch", "3"])
        n = sent["sent_entries"]
        self.assertEqual(self.wait_total(oaps, "als.total", n), n)
        self.assertEqual(self.merged(oaps, "als.by_identifier"), sent["expected"]["by_identifier"])
        self.assertEqual(self.total(oaps, "als.unidentified"), 0)
        self.assertEqual(self.total(oaps, "als.duplicates"), 0)
        return oaps

    def test_als_v3_one_upstream_stream_per_envoy_identity(self):
        self._als("als")

    def test_als_v2_is_accepted_and_forwarded(self):
        self._als("als-v2")

    def test_als_satellite_mode_uses_the_satellite_service(self):
        oaps = self._als("als", als_method="satellite")
        self.assertGreater(self.total(
            oaps, ("calls", "/satellite.envoy.accesslog.v3.SatelliteAccessLogService/StreamAccessLogs")), 0)


class Backpressure(Case):
    def test_slow_upstream_pushes_back_without_losing_anything(self):
        # A tiny queue and a slow node: receivers pause (flow control), nothing is lost.
        oaps = [self.oap("slow", ["--delay-ms", "150"])]
        relay = self.relay(oaps, pipes(batch=20, max_inflight=1,
                                       queue={"max_events": 40, "full_wait": "30s"}))
        loadgen(relay.address, "segment", 4, 300, self.dir)
        self.assertEqual(self.wait_total(oaps, "segments.unique", 1200), 1200)
        relay.stop()
        st = relay.final_stats()["segment"]
        self.assertGreater(st["paused"], 0, st)
        self.assertEqual(st["rejected"], 0, st)
        self.assertEqual(st["received"], 1200)
        self.assertEqual(st["sent"], 1200)

    def test_full_queue_past_full_wait_fails_the_call_with_resource_exhausted(self):
        # No upstream at all: the queue fills, the stream waits full_wait, then fails.
        dead = "127.0.0.1:1"  # nothing listens on port 1 on loopback
        relay = self.relay([dead], pipes(batch=10, queue={"max_events": 20, "full_wait": "300ms"}))
        s, rc = loadgen(relay.address, "segment", 2, 200, self.dir, check=False)
        self.assertNotEqual(rc, 0)
        self.assertEqual(s["calls_failed"], 2)
        self.assertEqual(set(s["status"].keys()), {"8"})  # RESOURCE_EXHAUSTED
        relay.stop(timeout=40)
        st = relay.final_stats()["segment"]
        self.assertEqual(st["refused_calls"], 2, st)
        self.assertGreater(st["rejected"], 0, st)
        # accepted events that could not be delivered are counted at exit, never hidden
        self.assertEqual(st["received"], st["dropped_shutdown"] + st["sent"], st)


class Failures(Case):
    def test_batch_of_a_failing_node_is_retried_on_another_node(self):
        oaps = [self.oap("bad", ["--fail-after", "300"]), self.oap("good1"), self.oap("good2")]
        relay = self.relay(oaps, pipes(batch=50))
        loadgen(relay.address, "segment", 4, 1500, self.dir)
        self.wait_total(oaps, "segments.total", 6000)
        relay.stop()
        self.assertEqual(len(self.union_ids(oaps, "segment")), 6000)
        st = relay.final_stats()["segment"]
        self.assertGreater(st["upstream_failed"], 0, st)
        self.assertGreater(st["retried_events"], 0, st)
        self.assertEqual(st["dropped_retry_exhausted"] + st["dropped_upstream_rejected"], 0, st)

    def test_sigterm_delivers_everything_accepted(self):
        oaps = [self.oap("n%d" % i) for i in range(2)]
        relay = self.relay(oaps, pipes(batch=200, linger="5s"))  # long linger: data sits queued
        # 4 x 260: no split of the streams over the workers is a multiple of the batch size
        loadgen(relay.address, "segment", 4, 260, self.dir)
        time.sleep(0.2)
        self.assertLess(self.total(oaps, "segments.unique"), 1040)  # some still queued
        rc = relay.stop(signal.SIGTERM, timeout=30)
        self.assertEqual(rc, 0)
        self.assertEqual(self.wait_total(oaps, "segments.unique", 1040, timeout=10), 1040)
        st = relay.final_stats()["segment"]
        self.assertEqual(st["dropped_shutdown"], 0, st)


class BadInput(Case):
    def test_malformed_message_fails_only_its_call(self):
        grpc = self.grpc()
        oaps = [self.oap("n0")]
        relay = self.relay(oaps, pipes())
        ch = grpc.insecure_channel(relay.address)
        call = ch.stream_unary("/skywalking.v3.LogReportService/collect")
        with self.assertRaises(grpc.RpcError) as e:
            call(iter([b"\x12\xff\x01abc"]), timeout=5)  # field 2, length 255 > message
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # the process and other streams go on
        loadgen(relay.address, "log", 2, 100, self.dir)
        self.assertEqual(self.wait_total(oaps, "logs.total", 200), 200)
        relay.stop()
        self.assertEqual(relay.final_stats()["log"]["invalid_calls"], 1)

    def test_validate_deep_refuses_nested_garbage_top_lets_it_through(self):
        # pipes.<name>.validate: deep (default) stops it at the door; top only checks the
        # framing, so it reaches OAP (which may refuse it: poison isolation, test_faults.py)
        grpc = self.grpc()
        bad = b"\x0a\x02ab" + b"\x32\x02\xff\xff"  # traceId, then spans = ff ff (broken)
        for depth in ("deep", "top"):
            oaps = [self.oap("n-%s" % depth)]
            relay = self.relay(oaps, pipes() + "pipe_defaults:\n  validate: %s\n" % depth,
                               name="skyrelay-" + depth)
            call = grpc.insecure_channel(relay.address).stream_unary(
                "/skywalking.v3.TraceSegmentReportService/collect")
            if depth == "deep":
                with self.assertRaises(grpc.RpcError) as e:
                    call(iter([bad]), timeout=5)
                self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            else:
                self.assertEqual(call(iter([bad]), timeout=5), b"")  # accepted at the door
            loadgen(relay.address, "segment", 2, 100, self.dir)
            want = 200 if depth == "deep" else 201
            self.assertEqual(self.wait_total(oaps, "segments.total", want), want)
            relay.stop()
            st = relay.final_stats()["segment"]
            self.assertEqual(st["invalid_calls"], 1 if depth == "deep" else 0, st)
            self.assertEqual(st["sent"], want, st)

    def test_oversize_message_fails_with_resource_exhausted(self):
        grpc = self.grpc()
        oaps = [self.oap("n0")]
        relay = self.relay(oaps, pipes(), server_extra="  max_receive_message_size: 1KiB\n")
        ch = grpc.insecure_channel(relay.address)
        call = ch.stream_unary("/skywalking.v3.TraceSegmentReportService/collect")
        big = b"\x22" + b"\x90\x10" + b"x" * 2064  # field 4, 2064 bytes > 1 KiB
        with self.assertRaises(grpc.RpcError) as e:
            call(iter([b"\x0a\x02ab", big]), timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        # only that call failed
        self.assertEqual(call(iter([b"\x0a\x02ab"]), timeout=5), b"")

    def test_unknown_method_is_unimplemented(self):
        grpc = self.grpc()
        relay = self.relay([self.oap("n0")], pipes())
        ch = grpc.insecure_channel(relay.address)
        with self.assertRaises(grpc.RpcError) as e:
            ch.unary_unary("/no.such.Service/method")(b"", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


class Config(Case):
    def test_check_config_accepts_the_shipped_config(self):
        r = subprocess.run([SKYRELAY, "--check-config", "--config",
                            os.path.join(ROOT, "config", "skyrelay.yaml")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout)

    def test_bad_config_names_file_line_col_key_and_exits_non_zero(self):
        p = os.path.join(self.dir, "bad.yaml")
        with open(p, "w") as f:
            f.write("server:\n  address: 127.0.0.1:1\n  workers: lots\nupstream:\n  addresses: x\n")
        r = subprocess.run([SKYRELAY, "--config", p], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=10)
        out = r.stdout.decode()
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("bad.yaml:3:12: server.workers:", out)
        self.assertIn("bad.yaml:5:14: upstream.addresses:", out)

    def test_env_placeholders_of_satellite_names_are_honoured(self):
        oaps = [self.oap("n0")]
        port = free_port()
        env = {"SATELLITE_GRPC_ADDRESS": "127.0.0.1:%d" % port, "SATELLITE_GRPC_CLIENT": oaps[0].address,
               "SATELLITE_TRACINGPIPE_SENDER_FLUSH_TIME": "20",
               # the shipped admin port (1234) may be taken on a shared machine
               "SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS": "127.0.0.1:0"}
        p = Proc([SKYRELAY, "--config", os.path.join(ROOT, "config", "skyrelay.yaml")], self.dir,
                 "envrelay", env=env)
        self.procs.append(p)
        wait_until(lambda: "listening on" in p.output(), 10, "skyrelay to listen")
        loadgen("127.0.0.1:%d" % port, "segment", 1, 10, self.dir)
        self.assertEqual(self.wait_total(oaps, "segments.unique", 10, timeout=5), 10)


if __name__ == "__main__":
    unittest.main()
