"""The Kubernetes finder (src/discovery/kubernetes.c) against a fake API server.

build/k8s_watch runs the finder alone and prints every node list it publishes
as a JSON line; fake_k8s.FakeK8s runs in this process over HTTPS on 127.0.0.1
and is driven directly (add a pod, flip readiness, cut the watch, expire the
resourceVersion, ...). Every wait is bounded; k8s_watch is stopped by PID.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from fake_k8s import FakeK8s
from harness import BUILD, wait_until

# SKYRELAY_K8S_WATCH: run another build of the tool (an ASan/TSan one, say)
K8S_WATCH = os.environ.get("SKYRELAY_K8S_WATCH") or os.path.join(BUILD, "k8s_watch")
T = 10  # seconds any single expectation may take (retries back off from 1 s)


class K8sWatch:
    """build/k8s_watch with a generated config; collects its stdout JSON lines."""

    def __init__(self, workdir, fake, namespaces="default", kind="pod", selector="app=oap",
                 token_file=None, port=11800, field_selector="", extra=""):
        self.config = os.path.join(workdir, "k8s_watch.yaml")
        with open(self.config, "w") as f:
            f.write("log:\n  level: debug\n"
                    "upstream:\n  finder: kubernetes\n  kubernetes:\n"
                    "    namespaces: %s\n    kind: %s\n    label_selector: %s\n"
                    "    field_selector: '%s'\n    extra_port: %d\n    api_server: %s\n"
                    "    bearer_token_file: %s\n    ca_file: %s\n%s"
                    % (namespaces, kind, selector, field_selector, port, fake.url,
                       token_file or fake.token_file, fake.ca_file, extra))
        self.log_path = os.path.join(workdir, "k8s_watch.log")
        self.log = open(self.log_path, "wb")
        self.cond = threading.Condition()
        self.published = []  # every node list, in order
        self.stats_lines = []
        self.p = subprocess.Popen([K8S_WATCH, "--config", self.config], stdout=subprocess.PIPE,
                                  stderr=self.log)
        self.pid = self.p.pid
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.p.stdout:
            msg = json.loads(raw)
            with self.cond:
                if "nodes" in msg:
                    self.published.append(msg["nodes"])
                else:
                    self.stats_lines.append(msg)
                self.cond.notify_all()

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def lists(self):
        with self.cond:
            return list(self.published)

    def last(self):
        with self.cond:
            return self.published[-1] if self.published else None

    def wait_nodes(self, expected, timeout=T):
        expected = sorted(expected)
        try:
            wait_until(lambda: self.last() == expected, timeout, "nodes %s" % expected)
        except AssertionError:
            raise AssertionError("published %r, wanted %r\n%s"
                                 % (self.lists(), expected, self.output()[-4000:]))

    def stats(self):
        with self.cond:
            n = len(self.stats_lines)
        os.kill(self.pid, signal.SIGUSR1)
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.stats_lines) > n, T):
                raise AssertionError("no stats line")
            return self.stats_lines[-1]["stats"]

    def stop(self):
        if self.p.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.p.wait(T)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(5)
                raise AssertionError("k8s_watch did not stop on SIGTERM")
        self.reader.join(5)
        self.p.stdout.close()
        self.log.close()
        with self.cond:
            final = self.stats_lines[-1] if self.stats_lines else None
        return self.p.returncode, final


def addr(ip, port=11800):
    return "%s:%d" % (ip, port)


class K8sFinderTest(unittest.TestCase):
    def setUp(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl CLI not installed")
        self.workdir = tempfile.mkdtemp(prefix="skyrelay-k8s-")
        self.fake = FakeK8s(self.workdir)
        self.watcher = None

    def tearDown(self):
        try:
            if self.watcher:
                rc, _ = self.watcher.stop()
                if rc != 0:  # a crash, or a sanitizer report at exit
                    raise AssertionError("k8s_watch exited %r:\n%s"
                                         % (rc, self.watcher.output()[-4000:]))
        finally:
            self.fake.stop()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self, **kw):
        self.watcher = K8sWatch(self.workdir, self.fake, **kw)
        return self.watcher

    def wait_watching(self, n=1, ns=None):
        wait_until(lambda: self.fake.open_watch_count(ns) >= n, T, "%d open watch(es)" % n)

    def stop_watcher(self):
        rc, final = self.watcher.stop()
        self.watcher = None
        self.assertEqual(rc, 0)
        return final

    # ---- pods ----

    def test_first_list_is_published_even_when_empty(self):
        w = self.start()
        w.wait_nodes([])
        self.wait_watching()
        self.fake.add_pod("oap-0", "10.0.0.1")
        w.wait_nodes([addr("10.0.0.1")])
        self.assertEqual(w.lists(), [[], [addr("10.0.0.1")]])
        lst = self.fake.lists(kind="pods", ns="default")[0]
        self.assertEqual(lst["query"]["labelSelector"], "app=oap")
        watch = self.fake.watches()[0]["query"]
        self.assertEqual(watch["allowWatchBookmarks"], "true")
        self.assertEqual(watch["timeoutSeconds"], "300")

    def test_pods_join_as_they_become_ready_and_leave_when_not(self):
        self.fake.add_pod("oap-0", "10.0.0.1", ready=True)
        self.fake.add_pod("oap-1", "10.0.0.2", ready=False)
        self.fake.add_pod("oap-2", "10.0.0.3", ready=True, phase="Pending")
        self.fake.add_pod("other", "10.0.0.9", ready=True, labels={"app": "ui"})
        w = self.start()
        w.wait_nodes([addr("10.0.0.1")])
        self.wait_watching()
        self.fake.set_ready("oap-1", True)
        w.wait_nodes([addr("10.0.0.1"), addr("10.0.0.2")])
        self.fake.set_ready("oap-0", False)
        w.wait_nodes([addr("10.0.0.2")])
        # a pod being deleted leaves at once, Ready or not
        self.fake.set_ready("oap-0", True)
        w.wait_nodes([addr("10.0.0.1"), addr("10.0.0.2")])
        self.fake.terminate_pod("oap-0")
        w.wait_nodes([addr("10.0.0.2")])
        self.assertNotIn(addr("10.0.0.9"), sum(w.lists(), []))

    def test_scale_up_to_three_and_down(self):
        w = self.start()
        w.wait_nodes([])
        self.wait_watching()
        self.fake.add_pod("oap-0", "10.0.0.1")
        w.wait_nodes([addr("10.0.0.1")])
        self.fake.add_pod("oap-1", "10.0.0.2")
        self.fake.add_pod("oap-2", "10.0.0.3")
        w.wait_nodes([addr("10.0.0.1"), addr("10.0.0.2"), addr("10.0.0.3")])
        self.fake.delete_pod("oap-1")
        w.wait_nodes([addr("10.0.0.1"), addr("10.0.0.3")])
        self.fake.delete_pod("oap-0")
        self.fake.delete_pod("oap-2")
        w.wait_nodes([])
        st = w.stats()
        self.assertEqual(st["nodes"], 0)
        self.assertEqual(st["errors"], 0)
        self.assertEqual(st["relists"], 1)
        self.assertEqual(st["updates"], len(w.lists()))
        # every publication is a change
        for a, b in zip(w.lists(), w.lists()[1:]):
            self.assertNotEqual(a, b)

    def test_ipv6_pod_is_bracketed_and_extra_port_used(self):
        self.fake.add_pod("oap-0", "fd00:10:244::17")
        w = self.start(port=12800)
        w.wait_nodes(["[fd00:10:244::17]:12800"])

    def test_bookmark_moves_the_resource_version_and_changes_nothing(self):
        self.fake.add_pod("oap-0", "10.0.0.1")
        w = self.start()
        w.wait_nodes([addr("10.0.0.1")])
        self.wait_watching()
        self.fake.add_pod("elsewhere", "10.9.9.9", ns="kube-system")  # moves RV only
        rv = self.fake.current_rv()
        self.assertEqual(self.fake.send_bookmark(), 1)
        # a normal end of the watch (after the bookmark, same stream) then shows the RV
        # the finder kept: the bookmark's
        self.assertEqual(self.fake.end_watches(), 1)
        wait_until(lambda: len(self.fake.watches()) >= 2, T, "a second watch")
        self.assertEqual(self.fake.watches()[1]["query"]["resourceVersion"], str(rv))
        self.assertEqual(len(self.fake.lists()), 1, "a normal watch end must not re-list")
        self.assertEqual(w.lists(), [[addr("10.0.0.1")]])
        self.assertEqual(w.stats()["errors"], 0)

    def test_watch_cut_recovers_with_a_relist(self):
        self.fake.add_pod("oap-0", "10.0.0.1")
        w = self.start()
        w.wait_nodes([addr("10.0.0.1")])
        self.wait_watching()
        self.assertEqual(self.fake.cut_watch(), 1)
        # changes while the finder is away are found by the re-list
        self.fake.add_pod("oap-1", "10.0.0.2")
        self.fake.delete_pod("oap-0")
        w.wait_nodes([addr("10.0.0.2")])
        wait_until(lambda: len(self.fake.lists()) >= 2, T, "a re-list")
        self.wait_watching()
        self.fake.add_pod("oap-2", "10.0.0.3")
        w.wait_nodes([addr("10.0.0.2"), addr("10.0.0.3")])
        st = w.stats()
        self.assertGreaterEqual(st["errors"], 1)
        self.assertEqual(st["relists"], 2)
        # the node set never went empty on the way
        self.assertNotIn([], w.lists())

    def test_expired_resource_version_410_recovers_with_a_relist(self):
        self.fake.add_pod("oap-0", "10.0.0.1")
        w = self.start()
        w.wait_nodes([addr("10.0.0.1")])
        self.wait_watching()
        self.fake.add_pod("oap-1", "10.0.0.2")
        w.wait_nodes([addr("10.0.0.1"), addr("10.0.0.2")])
        self.assertEqual(self.fake.expire(), 1)
        wait_until(lambda: len(self.fake.lists()) >= 2, T, "a re-list after 410")
        self.wait_watching()
        watch = self.fake.watches()[-1]["query"]
        self.assertGreaterEqual(int(watch["resourceVersion"]), self.fake.compacted)
        self.fake.set_ready("oap-0", False)
        w.wait_nodes([addr("10.0.0.2")])
        st = w.stats()
        self.assertEqual(st["errors"], 0, "410 is part of the protocol, not an error")
        self.assertEqual(st["relists"], 2)

    def test_repeated_410_at_once_backs_off_instead_of_relisting_in_a_loop(self):
        self.fake.add_pod("oap-0", "10.0.0.1")
        w = self.start()
        w.wait_nodes([addr("10.0.0.1")])
        self.fake.always_gone = True  # e.g. a caching proxy that cannot watch from any RV
        self.fake.expire()
        t0 = time.time()
        time.sleep(4)  # waits are 250 ms doubling, jittered to [d/2, d]: at most ~8 lists in 4 s
        lists = [r for r in self.fake.lists() if r["time"] >= t0]
        self.assertGreaterEqual(len(lists), 2, "it does list again after a 410")
        self.assertLessEqual(len(lists), 10, "a relist loop: %d lists in 4 s" % len(lists))
        st = w.stats()
        self.assertEqual(st["errors"], 0, "410 is part of the protocol, not an error")
        self.assertGreaterEqual(st["relists"], len(lists))
        self.assertEqual(w.last(), [addr("10.0.0.1")], "the nodes stay published meanwhile")
        self.assertIn("answered 410 Gone at once", w.output())
        # a server that can watch again ends the backoff
        self.fake.always_gone = False
        self.fake.add_pod("oap-1", "10.0.0.2")
        w.wait_nodes([addr("10.0.0.1"), addr("10.0.0.2")], timeout=40)

    def test_wrong_token_counts_errors_and_publishes_nothing(self):
        bad = os.path.join(self.workdir, "bad-token")
        with open(bad, "w") as f:
            f.write("not-the-token\n")
        self.fake.add_pod("oap-0", "10.0.0.1")
        w = self.start(token_file=bad)
        # the second attempt (after 1 s) proves the retry loop
        wait_until(lambda: len(self.fake.lists(ok=False)) >= 2, T, "retried lists")
        st = w.stats()
        self.assertGreaterEqual(st["errors"], 1)
        self.assertEqual(st["updates"], 0)
        self.assertEqual(w.lists(), [])
        self.assertIn("HTTP 401", w.output())
        # the token file is re-read on every attempt: fixing it recovers
        with open(bad, "w") as f:
            f.write(self.fake.token + "\n")
        w.wait_nodes([addr("10.0.0.1")], timeout=T)

    def test_stop_is_prompt_during_a_watch(self):
        w = self.start()
        w.wait_nodes([])
        self.wait_watching()
        final = self.stop_watcher()
        self.assertLess(final["stop_ms"], 1000)

    # ---- endpoint slices ----

    def test_endpoint_slices_give_ready_endpoints(self):
        self.fake.put_slice("oap-abc", [
            {"addresses": ["10.1.0.1"], "ready": True},
            {"addresses": ["10.1.0.2"], "ready": False},
            {"addresses": ["10.1.0.3"], "ready": None},
        ])
        self.fake.put_slice("ui-xyz", [{"addresses": ["10.1.9.9"], "ready": True}],
                            labels={"kubernetes.io/service-name": "ui"})
        w = self.start(kind="endpoints", selector="kubernetes.io/service-name=oap")
        w.wait_nodes([addr("10.1.0.1"), addr("10.1.0.3")])
        self.wait_watching()
        self.assertEqual(self.fake.lists()[0]["path"],
                         "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices")
        self.fake.put_slice("oap-abc", [
            {"addresses": ["10.1.0.1"], "ready": True},
            {"addresses": ["10.1.0.2"], "ready": True},
        ])
        w.wait_nodes([addr("10.1.0.1"), addr("10.1.0.2")])
        self.fake.put_slice("oap-def", [{"addresses": ["10.1.1.1"], "ready": True}])
        w.wait_nodes([addr("10.1.0.1"), addr("10.1.0.2"), addr("10.1.1.1")])
        self.fake.delete_slice("oap-abc")
        w.wait_nodes([addr("10.1.1.1")])

    # ---- namespaces ----

    def test_two_namespaces_publish_the_union(self):
        self.fake.add_pod("oap-0", "10.2.0.1", ns="sw-a")
        self.fake.add_pod("oap-0", "10.3.0.1", ns="sw-b")
        w = self.start(namespaces="sw-a, sw-b")
        w.wait_nodes([addr("10.2.0.1"), addr("10.3.0.1")])
        self.wait_watching(ns="sw-a")
        self.wait_watching(ns="sw-b")
        self.fake.add_pod("oap-1", "10.3.0.2", ns="sw-b")
        w.wait_nodes([addr("10.2.0.1"), addr("10.3.0.1"), addr("10.3.0.2")])
        self.fake.delete_pod("oap-0", ns="sw-a")
        w.wait_nodes([addr("10.3.0.1"), addr("10.3.0.2")])
        # the same pod IP in both namespaces (hostNetwork) is one node
        self.fake.add_pod("oap-9", "10.3.0.1", ns="sw-a")
        self.fake.add_pod("oap-8", "10.2.0.8", ns="sw-a")
        w.wait_nodes([addr("10.2.0.8"), addr("10.3.0.1"), addr("10.3.0.2")])
        self.assertEqual(len(self.fake.lists(ns="sw-a")), 1)
        self.assertEqual(len(self.fake.lists(ns="sw-b")), 1)
        # a watch cut in one namespace leaves the other's nodes alone
        self.fake.cut_watch()
        wait_until(lambda: len(self.fake.lists()) >= 4, T, "re-lists in both namespaces")
        self.assertNotIn([], w.lists())

    def test_field_selector_is_passed_on(self):
        w = self.start(field_selector="status.phase=Running")
        w.wait_nodes([])
        self.assertEqual(self.fake.lists()[0]["query"].get("fieldSelector"), "status.phase=Running")



class K8sCleartextTest(unittest.TestCase):
    """An http:// API server would get the bearer token in cleartext: refused unless
    upstream.kubernetes.allow_insecure_http says otherwise."""

    def setUp(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl CLI not installed")
        self.workdir = tempfile.mkdtemp(prefix="skyrelay-k8s-")
        self.fake = FakeK8s(self.workdir, tls=False)

    def tearDown(self):
        self.fake.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def test_http_api_server_is_refused_without_allow_insecure_http(self):
        self.fake.add_pod("oap-0", "10.0.0.1")
        w = K8sWatch(self.workdir, self.fake)
        w.p.wait(T)
        rc, _ = w.stop()
        self.assertEqual(rc, 2)
        out = w.output()
        self.assertIn("cleartext http://", out)
        self.assertIn("upstream.kubernetes.allow_insecure_http", out)
        self.assertEqual(w.lists(), [])
        self.assertEqual(self.fake.requests(), [], "not one request: the token never left")

    def test_http_api_server_is_used_when_explicitly_allowed(self):
        self.fake.add_pod("oap-0", "10.0.0.1")
        w = K8sWatch(self.workdir, self.fake, extra="    allow_insecure_http: true\n")
        try:
            w.wait_nodes([addr("10.0.0.1")])
            self.assertIn("the bearer token is sent unencrypted", w.output())
        finally:
            rc, _ = w.stop()
        self.assertEqual(rc, 0)


if __name__ == "__main__":
    unittest.main()
