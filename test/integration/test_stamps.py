"""The latency stamps of the benchmarks (loadgen --stamp-every, fake_oap --latency): every
stamped message of every streaming kind is found by the node, directly and after skyrelay's
context rewrite and re-batching (logs, meters, ALS), and nothing else is taken for a stamp."""
import os

from harness import Case, loadgen, pipes

STREAMS, MESSAGES, EVERY = 4, 50, 7
STAMPED = STREAMS * (MESSAGES // EVERY)  # messages 7, 14, ... 49 of each stream

# kind, the node summary block, items per message
KINDS = [("segment", "segments", 1), ("segment-legacy", "segments", 1), ("log", "logs", 1),
         ("meter", "meters", 1), ("meter-batch", "meters", 10), ("als", "als", 10)]


class Stamps(Case):
    def latencies(self, oaps):
        out = []
        for o in oaps:
            o.stop()
            with open(os.path.join(self.dir, o.name + ".lat")) as f:
                out.extend(int(x) for x in f.read().split())
        return out

    def run_kind(self, kind, block, batch, through_relay):
        tag = "%s-%s" % (kind, "relay" if through_relay else "direct")
        oaps = [self.oap("%s-n%d" % (tag, i),
                         ["--latency", os.path.join(self.dir, "%s-n%d.lat" % (tag, i))])
                for i in range(2 if through_relay else 1)]
        target, relay = oaps[0].address, None
        if through_relay:
            relay = self.relay(oaps, pipes(batch=30, segment_method="collect_in_sync"),
                               name="relay-" + tag)
            target = relay.address
        sent, _ = loadgen(target, kind, STREAMS, MESSAGES, self.dir,
                          ["--stamp-every", str(EVERY), "--services", "2", "--instances", "2",
                           "--id-prefix", tag])
        self.assertEqual(sent["calls_ok"], STREAMS)
        n = STREAMS * MESSAGES * batch
        self.assertEqual(self.wait_total(oaps, block + ".total", n), n, tag)
        if relay:
            relay.stop()
        lats = self.latencies(oaps)
        self.assertEqual(len(lats), STAMPED, tag)
        # receive - send on one machine's clock: positive, and well under the test's time
        self.assertTrue(all(0 <= v < 60 * 1000000 for v in lats), (tag, min(lats), max(lats)))

    def test_direct(self):
        for kind, block, batch in KINDS:
            with self.subTest(kind=kind):
                self.run_kind(kind, block, batch, False)

    def test_through_skyrelay(self):
        for kind, block, batch in KINDS:
            with self.subTest(kind=kind):
                self.run_kind(kind, block, batch, True)

    def test_off_by_default(self):
        o = self.oap("off", ["--latency", os.path.join(self.dir, "off.lat")])
        loadgen(o.address, "log", 2, 30, self.dir)
        self.assertEqual(self.wait_total([o], "logs.total", 60), 60)
        self.assertEqual(self.latencies([o]), [])
