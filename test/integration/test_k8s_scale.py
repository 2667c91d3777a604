"""The Kubernetes finder inside skyrelay: OAP pods found through a fake API
server (HTTPS, token) while traffic flows. The three fake OAP "pods" listen on
127.0.0.1, 127.0.0.2 and 127.0.0.3 (all loopback on this host: a pod's node
address is podIP:extra_port, so three pods need three IPs on one port)."""
import shutil
import time
import unittest

from fake_k8s import FakeK8s
from harness import Background, Case, free_port, pipes, wait_until


class KubernetesFinder(Case):
    def setUp(self):
        super().setUp()
        if not shutil.which("openssl"):
            self.skipTest("openssl is required for the fake API server's certificate")
        self.k8s = FakeK8s(self.dir)

    def tearDown(self):
        super().tearDown()
        self.k8s.stop()

    def relay_k8s(self, port, extra=""):
        k = self.k8s
        return self.relay(["127.0.0.1:1"],  # ignored by this finder
                          "  finder: kubernetes\n  kubernetes:\n    namespaces: default\n"
                          "    label_selector: app=oap\n"
                          "    extra_port: %d\n    api_server: %s\n    bearer_token_file: %s\n"
                          "    ca_file: %s\n" % (port, k.url, k.token_file, k.ca_file)
                          + extra + pipes(batch=50))

    def test_scale_from_one_to_three_pods_spreads_batches_and_loses_nothing(self):
        port = free_port()
        oaps = [self.oap("pod%d" % i, port=port, listen_ip="127.0.0.%d" % (i + 1))
                for i in range(3)]
        self.k8s.add_pod("oap-0", "127.0.0.1")
        relay = self.relay_k8s(port)
        wait_until(lambda: "joins the node set" in relay.output(), 10, "the first pod")
        bg = Background(relay.address, "segment", 4, 40000, self.dir)
        wait_until(lambda: self.total(oaps[:1], "segments.total") > 20000, 30, "traffic on pod 0")
        self.k8s.add_pod("oap-1", "127.0.0.2")
        self.k8s.add_pod("oap-2", "127.0.0.3")
        sent, rc = bg.wait(timeout=120)
        self.assertEqual(rc, 0, sent)
        total = sent["sent_messages"]
        self.wait_total(oaps, "segments.total", total, timeout=60)
        per = [self.total([o], "segments.total") for o in oaps]
        self.assertGreater(per[1], 0, per)  # the new pods got batches while traffic flowed
        self.assertGreater(per[2], 0, per)
        relay.stop()
        self.assertEqual(len(self.union_ids(oaps, "segment")), total)  # nothing lost
        st = relay.final_stats()["segment"]
        self.assertEqual(st["sent"], st["received"])

    def test_not_ready_pod_leaves_the_node_set_and_gets_no_new_batches(self):
        port = free_port()
        oaps = [self.oap("pod%d" % i, port=port, listen_ip="127.0.0.%d" % (i + 1))
                for i in range(2)]
        self.k8s.add_pod("oap-0", "127.0.0.1")
        self.k8s.add_pod("oap-1", "127.0.0.2")
        relay = self.relay_k8s(port)
        wait_until(lambda: relay.output().count("joins the node set") == 2, 10, "two pods")
        self.k8s.set_ready("oap-1", False)
        wait_until(lambda: "node 127.0.0.2:%d left the node set" % port in relay.output(), 10,
                   "the pod to leave")
        before = self.total(oaps[1:], "segments.total")
        bg = Background(relay.address, "segment", 2, 2000, self.dir)
        sent, rc = bg.wait(timeout=60)
        self.assertEqual(rc, 0)
        self.wait_total(oaps, "segments.total", before + 4000)
        time.sleep(0.3)
        self.assertEqual(self.total(oaps[1:], "segments.total"), before)
        self.k8s.set_ready("oap-1", True)
        wait_until(lambda: "node 127.0.0.2:%d is back in the node set" % port in relay.output(), 10,
                   "the pod to come back")


if __name__ == "__main__":
    unittest.main()
