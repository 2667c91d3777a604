"""upstream.finder: dns — every address is re-resolved; each A/AAAA record is a node."""
import unittest

from harness import Case, loadgen, pipes, wait_until


class DnsFinder(Case):
    def test_records_of_a_name_become_nodes_and_carry_the_traffic(self):
        oap = self.oap("n0")
        # "localhost" gives 127.0.0.1 (and ::1 where configured): the nodes come from DNS,
        # not from the list; a record nobody listens on is ejected like any failed node
        relay = self.relay(["localhost:%d" % oap.port],
                           "  finder: dns\n  refresh_interval: 200ms\n" + pipes(batch=50))
        # the finder logs its resolution, then the main thread applies it: wait for the node
        joined = "node 127.0.0.1:%d (weight 1) joins the node set" % oap.port
        wait_until(lambda: joined in relay.output(), 10, "the first resolution to apply")
        loadgen(relay.address, "segment", 4, 500, self.dir)
        self.wait_total([oap], "segments.total", 2000)
        relay.stop()
        self.assertEqual(len(self.union_ids([oap], "segment")), 2000)
        st = relay.final_stats()
        self.assertEqual(st["segment"]["sent"], 2000)
        self.assertEqual(st["node:127.0.0.1:%d" % oap.port]["up"], 1)

    def test_unresolvable_name_keeps_data_queued_not_lost(self):
        relay = self.relay(["no-such-host.invalid:11800"],
                           "  finder: dns\n  refresh_interval: 200ms\n" + pipes(batch=50) +
                           "shutdown:\n  grace_period: 2s\n")
        s, rc = loadgen(relay.address, "segment", 1, 100, self.dir, check=False)
        self.assertEqual(rc, 0)  # accepted: queued while no node exists
        wait_until(lambda: "cannot resolve no-such-host.invalid" in relay.output(), 10, "the error")
        relay.stop(timeout=40)
        st = relay.final_stats()["segment"]
        self.assertEqual(st["received"], 100)
        self.assertEqual(st["dropped_shutdown"], 100)  # counted at exit, never hidden


if __name__ == "__main__":
    unittest.main()
