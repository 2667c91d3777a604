"""Hot reload (SIGHUP, issue 10 item 6), with the real binary: a new node list
under load, a broken file, settings that need a restart, a new token.

The configuration file the harness wrote is rewritten in place and skyrelay is
sent SIGHUP; the test then waits for its "reload:" log line."""
import os
import re
import signal
import time

from harness import Background, Case, pipes, raw_call, wait_until
from test_faults import id_hash, loadgen_ids, scrape

SEGMENTS = "/skywalking.v3.TraceSegmentReportService/collect"
KEEPALIVE = "/skywalking.v3.ManagementService/keepAlive"


def admin_port(relay):
    return relay.admin_port()


def metric(port, name, **labels):
    m = scrape(port) or {}
    return m.get((name, frozenset(labels.items())))


class Reload(Case):
    def rewrite(self, relay, addresses, extra="", server_extra=""):
        """The file as the harness writes it, with new addresses and extra yaml."""
        with open(relay.config + ".new", "w") as f:
            f.write("server:\n  address: %s\n%s" % (relay.address, server_extra))
            f.write("upstream:\n  addresses: %s\n" % ",".join(a.address for a in addresses))
            f.write(extra)
            f.write("telemetry:\n  prometheus_address: 127.0.0.1:0\n")
        os.rename(relay.config + ".new", relay.config)

    def hup(self, relay, expect):
        """SIGHUP, then waits for the n-th reload outcome line containing `expect`."""
        before = relay.output().count(expect)
        os.kill(relay.pid, signal.SIGHUP)
        wait_until(lambda: relay.output().count(expect) > before, 10, "reload: " + expect)

    def test_new_node_list_under_load_moves_traffic_and_loses_nothing(self):
        a = self.oap("a")
        b = self.oap("b")
        extra = pipes(batch=50, linger="20ms")
        relay = self.relay([a], extra)
        streams, messages = 4, 4000
        bg = Background(relay.address, "segment", streams, messages, self.dir,
                        ["--rate", "2000", "--id-prefix", "rl"])
        wait_until(lambda: self.total([a], ["segments", "total"]) > 1000, 20, "traffic on a")
        self.rewrite(relay, [b], extra)
        self.hup(relay, "applied")
        # batches already on their way to a finish there; then a gets nothing more
        time.sleep(1.0)
        on_a = self.total([a], ["segments", "total"])
        summary, rc = bg.wait(60)
        self.assertEqual(rc, 0, summary)
        wait_until(lambda: self.total([a, b], ["segments", "total"]) >= streams * messages, 30,
                   "every segment upstream")
        self.assertEqual(self.total([a], ["segments", "total"]), on_a,
                         "the removed node got batches after the reload")
        self.assertGreater(self.total([b], ["segments", "total"]), 0)
        ids = self.union_ids([a, b], "segment")
        want = {id_hash(i) for i in loadgen_ids("rl", streams, messages)}
        self.assertEqual(len(want - ids), 0, "segments lost across the reload")
        self.assertIn("node 127.0.0.1:%d" % b.port, relay.output())

    def test_a_broken_file_is_refused_and_the_running_config_stays(self):
        a = self.oap("a")
        relay = self.relay([a], pipes(batch=10, linger="20ms"))
        port = admin_port(relay)
        with open(relay.config, "a") as f:
            f.write("pipes:\n  segment:\n    sender: {linger: soon}\n")  # and a duplicate key
        self.hup(relay, "is not valid")
        out = relay.output()
        self.assertRegex(out, r"reload: .*skyrelay\.yaml:\d+:\d+: ")
        self.assertIn("the running configuration stays", out)
        self.assertEqual(metric(port, "skyrelay_config_reloads_total", result="failed"), 1)
        self.assertEqual(metric(port, "skyrelay_config_reloads_total", result="ok"), 0)
        # still serving with the old settings
        from harness import loadgen
        s, rc = loadgen(relay.address, "segment", 2, 100, self.dir)
        self.assertEqual(rc, 0)
        self.assertEqual(self.wait_total([a], ["segments", "total"], 200), 200)
        self.assertTrue(relay.alive())

    def test_settings_that_need_a_restart_keep_their_value_and_are_named(self):
        a = self.oap("a")
        relay = self.relay([a], pipes(batch=10, linger="20ms"))
        port = admin_port(relay)
        self.rewrite(relay, [a], pipes(batch=10, linger="20ms") +
                     "queue:\n  total_max_bytes: 64MiB\n",
                     server_extra="  workers: 7\n")
        self.hup(relay, "applied")
        out = relay.output()
        self.assertRegex(out, r"need a restart and keep their running value: .*server\.workers")
        self.assertIn("queue.total_max_bytes", out)
        self.assertEqual(metric(port, "skyrelay_config_restart_pending_settings"), 2)
        self.assertEqual(metric(port, "skyrelay_config_reloads_total", result="ok"), 1)
        from harness import loadgen
        _, rc = loadgen(relay.address, "segment", 2, 50, self.dir)
        self.assertEqual(rc, 0)
        self.assertEqual(self.wait_total([a], ["segments", "total"], 100), 100)

    def test_a_new_token_and_log_level_apply_at_once(self):
        a = self.oap("a")
        relay = self.relay([a], pipes(batch=10, linger="20ms"),
                           server_extra="  authentication: first\n")
        ok = raw_call(relay.address, KEEPALIVE, b"", metadata=[("authentication", "first")])
        self.assertEqual(ok.code, "OK", ok.details)
        self.rewrite(relay, [a], pipes(batch=10, linger="20ms") + "log:\n  level: error\n",
                     server_extra="  authentication: second\n")
        self.hup(relay, "applied")
        # workers pick the new configuration up at their next loop turn (<= 100 ms)
        wait_until(lambda: raw_call(relay.address, KEEPALIVE, b"",
                                    metadata=[("authentication", "second")]).code == "OK",
                   5, "the new token to be accepted")
        old = raw_call(relay.address, KEEPALIVE, b"", metadata=[("authentication", "first")])
        self.assertEqual(old.code, "UNAUTHENTICATED")
        # log.level error: the next reload's info line is not written, its error is
        reading = relay.output().count("SIGHUP: reading")
        with open(relay.config, "a") as f:
            f.write("bogus_section: 1\n")
        self.hup(relay, "is not valid")
        self.assertEqual(relay.output().count("SIGHUP: reading"), reading)
