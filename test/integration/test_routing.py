"""Routing and delivery guarantees, end to end: weighted round-robin shares,
fixed (rendezvous) routing of meter instances across replicas, retries on the
next node, an outage of every node, and SIGTERM under load."""
import signal
import time
import unittest

from harness import Background, Case, free_port, loadgen, pipes, wait_until

SEG = ("messages", "/skywalking.v3.TraceSegmentReportService/collect")


def routing(policy, pipes_section):
    """Adds `routing: {policy: X}` to every pipe of a pipes() section."""
    return pipes_section.replace("    sender: {", "    routing: {policy: %s}\n    sender: {" % policy)


class Weighted(Case):
    def test_weights_3_2_1_give_shares_within_5_percent(self):
        oaps = [self.oap("w%d" % w, ["--count-only"]) for w in (3, 2, 1)]
        ups = ["%s#%d" % (o.address, w) for o, w in zip(oaps, (3, 2, 1))]
        relay = self.relay(ups, routing("weighted_round_robin", pipes(batch=20)))
        loadgen(relay.address, "segment", 8, 3000, self.dir)
        self.assertEqual(self.wait_total(oaps, SEG, 24000), 24000)
        shares = [self.total([o], SEG) / 24000.0 for o in oaps]
        for got, want in zip(shares, (3 / 6.0, 2 / 6.0, 1 / 6.0)):
            self.assertLess(abs(got - want), 0.05, shares)


class Fixed(Case):
    def _instances_on_one_node(self, oaps):
        seen = {}
        for o in oaps:
            for inst, n in (o.summary() or {}).get("meters", {}).get("by_instance", {}).items():
                seen.setdefault(inst, []).append(o.name)
        return seen

    def test_every_meter_instance_reaches_exactly_one_node_across_two_replicas(self):
        oaps = [self.oap("n%d" % i) for i in range(3)]
        # two replicas, the node list in different orders: rendezvous must agree
        a = self.relay(oaps, pipes(batch=10), name="replica-a")
        b = self.relay([oaps[2], oaps[0], oaps[1]], pipes(batch=10), name="replica-b")
        total = 0
        for rnd in range(3):  # agents reconnect: new streams, alternately to each replica
            for relay in (a, b):
                s, _ = loadgen(relay.address, "meter", 12, 50, self.dir,
                               ["--services", "3", "--instances", "4", "--id-prefix",
                                "r%d%s" % (rnd, relay.name[-1])])
                total += s["sent_entries"]
        self.assertEqual(self.wait_total(oaps, "meters.total", total), total)
        seen = self._instances_on_one_node(oaps)
        self.assertEqual(len(seen), 12, seen)
        for inst, nodes in seen.items():
            self.assertEqual(len(nodes), 1, "%s reached %s" % (inst, nodes))
        self.assertGreater(len({n[0] for n in seen.values()}), 1, "all instances on one node")
        self.assertEqual(self.total(oaps, "meters.dropped"), 0)
        self.assertEqual(self.total(oaps, "meters.duplicates"), 0)


class Failover(Case):
    def test_node_failing_after_500_messages_loses_nothing(self):
        oaps = [self.oap("dies", ["--fail-after", "500"]), self.oap("ok1"), self.oap("ok2")]
        relay = self.relay(oaps, pipes(batch=50))
        sent, _ = loadgen(relay.address, "segment", 6, 2000, self.dir)
        self.assertEqual(sent["calls_ok"], 6)
        self.wait_total(oaps, "segments.total", 12000)
        relay.stop()
        total = self.total(oaps, "segments.total")
        self.assertEqual(len(self.union_ids(oaps, "segment")), 12000)  # nothing lost
        dups = total - 12000  # on the same node or across nodes
        self.assertLessEqual(dups, 120, "duplicates over 1 %")
        st = relay.final_stats()["segment"]
        self.assertEqual(st["received"], 12000)
        self.assertEqual(st["sent"], 12000, st)
        self.assertGreater(st["retried_events"], 0, st)
        self.assertGreaterEqual(st["retried_events"], dups)

    def test_node_shut_down_mid_traffic_loses_nothing(self):
        # a real process going away while streams to it are open (its in-flight calls
        # end UNAVAILABLE, the connection closes), not a simulated failure status
        oaps = [self.oap("n%d" % i) for i in range(3)]
        relay = self.relay(oaps, pipes(batch=50))
        bg = Background(relay.address, "segment", 4, 50000, self.dir)
        wait_until(lambda: self.total(oaps[:1], "segments.total") > 2000, 30, "traffic on n0")
        oaps[0].stop()  # SIGTERM: the node is gone; its ids file is written
        sent, rc = bg.wait(timeout=120)
        self.assertEqual(rc, 0, sent)
        self.assertGreater(bg_left := 200000 - self.total(oaps[:1], "segments.total"), 0)
        self.wait_total(oaps[1:], "segments.total", bg_left, timeout=60)
        relay.stop()
        st = relay.final_stats()["segment"]
        self.assertEqual(st["sent"], 200000, st)
        self.assertGreater(st["upstream_failed"] + st["retried_events"], 0,
                           "the node went away while it still had traffic")
        self.assertEqual(len(self.union_ids(oaps, "segment")), 200000)  # nothing lost

    def test_all_nodes_down_for_10_seconds_then_back_loses_nothing(self):
        ports = [free_port() for _ in range(3)]
        # a queue smaller than the load: the agents' streams must wait (backpressure)
        relay = self.relay(["127.0.0.1:%d" % p for p in ports],
                           pipes(batch=50, queue={"max_events": 400, "full_wait": "60s"}))
        bg = Background(relay.address, "segment", 4, 1000, self.dir)
        time.sleep(10)
        self.assertIsNone(bg.p.poll(), "the agents' streams must wait, not fail")
        oaps = [self.oap("late%d" % i, port=p) for i, p in enumerate(ports)]
        sent, rc = bg.wait(timeout=90)
        self.assertEqual(rc, 0, sent)
        self.assertEqual(self.wait_total(oaps, "segments.unique", 4000, timeout=60), 4000)
        relay.stop()
        st = relay.final_stats()["segment"]
        self.assertEqual(st["sent"], 4000, st)
        self.assertGreater(st["upstream_failed"], 0, st)
        self.assertGreater(st["paused"], 0, st)
        self.assertEqual(st["rejected"], 0, st)


class Drain(Case):
    def test_sigterm_under_load_delivers_everything_accepted(self):
        oaps = [self.oap("n%d" % i, ["--count-only"]) for i in range(2)]
        relay = self.relay(oaps, pipes(batch=100, linger="200ms"))
        bg = Background(relay.address, "segment", 8, 200000, self.dir)
        wait_until(lambda: self.total(oaps, SEG) > 20000, 30, "traffic to flow")
        rc = relay.stop(signal.SIGTERM, timeout=40)
        bg.kill()
        self.assertEqual(rc, 0)
        st = relay.final_stats()["segment"]
        self.assertGreater(st["received"], 20000)
        self.assertEqual(st["dropped_shutdown"], 0, st)
        self.assertEqual(st["sent"], st["received"], st)
        # the nodes counted exactly what skyrelay had accepted
        self.assertEqual(self.wait_total(oaps, SEG, st["received"], timeout=5), st["received"])


if __name__ == "__main__":
    unittest.main()
