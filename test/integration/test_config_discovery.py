"""ConfigurationDiscoveryService/fetchConfigurations (issue 13, item 5): identical
polls in flight coalesce into one upstream call, a fresh answer is kept per
service for upstream.config_discovery.cache_ttl, and while no OAP node answers
the last good answer is served. Real skyrelay (2 workers), real fake OAP nodes
answering with OAP's rule (fake_oap --cds-uuid), Debian's python3-grpcio as
the agents."""
import concurrent.futures
import os
import signal
import time
import unittest

from harness import Case, free_port, pipes, wait_until
from test_faults import scrape

FETCH = "/skywalking.v3.ConfigurationDiscoveryService/fetchConfigurations"
FETCH_COMPAT = "/ConfigurationDiscoveryService/fetchConfigurations"


def pb_string(field, s):
    b = s.encode() if isinstance(s, str) else s
    return bytes([field << 3 | 2, len(b)]) + b


def request(service, uuid=""):
    return pb_string(1, service) + (pb_string(2, uuid) if uuid else b"")


def read_fields(b):
    """[(field number, bytes)] of a message of LEN fields (lengths < 128)."""
    out, i = [], 0
    while i < len(b):
        tag, n = b[i], b[i + 1]
        out.append((tag >> 3, b[i + 2:i + 2 + n]))
        i += 2 + n
    return out


def command_args(answer):
    """{key: value} of the one ConfigurationDiscoveryCommand in a Commands answer."""
    (num, cmd), = read_fields(answer)
    assert num == 1
    fields = read_fields(cmd)
    assert fields[0] == (1, b"ConfigurationDiscoveryCommand"), fields
    args = {}
    for num, kv in fields[1:]:
        (_, k), (_, v) = read_fields(kv)
        args[k.decode()] = v.decode()
    return args


class ConfigDiscovery(Case):
    def start(self, oaps, cds="", upstream_extra=""):
        self.admin_port = free_port()
        yaml = ("  backoff_initial: 30s\n  backoff_max: 60s\n" + upstream_extra +
                "  config_discovery: {%s}\n" % cds + pipes() +
                "telemetry:\n  prometheus_address: 127.0.0.1:%d\n" % self.admin_port)
        relay = self.relay(oaps, yaml)
        self.ch = self.grpc().insecure_channel(relay.address)
        return relay

    def poll(self, service, uuid="", timeout=5, token=None, path=FETCH):
        """(code name, answer bytes or None)."""
        grpc = self.grpc()
        md = (("authentication", token),) if token else ()
        try:
            return "OK", self.ch.unary_unary(path)(request(service, uuid), metadata=md,
                                                   timeout=timeout)
        except grpc.RpcError as e:
            return e.code().name, None

    def answers(self):
        m = wait_until(lambda: scrape(self.admin_port), 10, "/metrics")
        out = {src: int(m.get(("skyrelay_config_discovery_answers_total",
                               frozenset({("source", src)})), -1))
               for src in ("upstream", "coalesced", "cache", "stale", "error")}
        out["calls"] = int(m[("skyrelay_config_discovery_upstream_calls_total", frozenset())])
        out["services"] = int(m[("skyrelay_config_discovery_cached_services", frozenset())])
        return out

    def upstream_calls(self, oap, path=FETCH):
        return ((oap.summary() or {}).get("calls") or {}).get(path, 0)

    def test_many_agents_of_one_service_polling_at_once_make_one_upstream_call(self):
        # the node answers after 500 ms, so the 40 polls are all in flight together
        oap = self.oap("n0", ["--cds-uuid", "u1", "--delay-ms", "500"])
        self.start([oap])
        with concurrent.futures.ThreadPoolExecutor(40) as pool:
            got = list(pool.map(lambda i: self.poll("svc-a"), range(40)))
        self.assertEqual({code for code, _ in got}, {"OK"})
        self.assertEqual(len({ans for _, ans in got}), 1)  # one answer, the same bytes to all
        args = command_args(got[0][1])
        self.assertEqual((args["UUID"], args["fake.service"], args["fake.node"]),
                         ("u1", "svc-a", "n0"))
        wait_until(lambda: self.upstream_calls(oap) >= 1, 5, "the node to count the call")
        time.sleep(0.3)
        self.assertEqual(self.upstream_calls(oap), 1)
        a = self.answers()
        self.assertEqual((a["upstream"], a["coalesced"], a["calls"]), (1, 39, 1))

        # within cache_ttl (10 s by default): answered by skyrelay, the same serial number;
        # the agent that holds u1 gets OAP's "no change", an empty Commands
        for _ in range(10):
            self.assertEqual(self.poll("svc-a"), ("OK", got[0][1]))
        self.assertEqual(self.poll("svc-a", "u1"), ("OK", b""))
        self.assertEqual(self.poll("svc-a", "u0", path=FETCH_COMPAT), ("OK", got[0][1]))
        self.assertEqual(self.upstream_calls(oap) + self.upstream_calls(oap, FETCH_COMPAT), 1)
        a = self.answers()
        self.assertEqual((a["cache"], a["calls"], a["services"]), (12, 1, 1))

        # another token is another key: an answer got with one token never answers another
        self.assertEqual(self.poll("svc-a", token="t2")[0], "OK")
        wait_until(lambda: self.upstream_calls(oap) == 2, 5, "a second upstream call")
        # another service too
        ok, ans = self.poll("svc-b")
        self.assertEqual((ok, command_args(ans)["fake.service"]), ("OK", "svc-b"))
        self.assertEqual(self.answers()["calls"], 3)

    def test_without_cache_every_poll_goes_upstream_and_a_bad_request_none(self):
        oap = self.oap("n0", ["--cds-uuid", "u1"])
        self.start([oap], "cache_ttl: 0s")
        serials = set()
        for _ in range(5):
            code, ans = self.poll("svc-a")
            self.assertEqual(code, "OK")
            serials.add(command_args(ans)["SerialNumber"])
        self.assertEqual(len(serials), 5)  # five fresh answers from the node
        grpc = self.grpc()
        with self.assertRaises(grpc.RpcError) as e:  # field 1 as a varint: not a string
            self.ch.unary_unary(FETCH)(b"\x08\x01", timeout=5)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        time.sleep(0.3)
        self.assertEqual(self.upstream_calls(oap), 5)
        a = self.answers()
        self.assertEqual((a["upstream"], a["cache"], a["error"], a["calls"]), (5, 0, 1, 5))

    def test_with_oap_down_the_last_good_answer_is_served(self):
        oap = self.oap("n0", ["--cds-uuid", "u1"])
        self.start([oap], "cache_ttl: 0s")
        code, full = self.poll("svc-a")
        self.assertEqual((code, command_args(full)["UUID"]), ("OK", "u1"))
        self.assertEqual(self.poll("svc-b", "u1"), ("OK", b""))  # svc-b: u1 is current
        oap.stop()
        # svc-a: the full answer for any other uuid, "no change" for u1
        self.assertEqual(self.poll("svc-a"), ("OK", full))
        self.assertEqual(self.poll("svc-a", "u0"), ("OK", full))
        self.assertEqual(self.poll("svc-a", "u1"), ("OK", b""))
        self.assertEqual(self.poll("svc-b", "u1"), ("OK", b""))
        # what OAP never said cannot be served
        self.assertEqual(self.poll("svc-b")[0], "UNAVAILABLE")
        self.assertEqual(self.poll("svc-c")[0], "UNAVAILABLE")
        a = self.answers()
        self.assertEqual((a["upstream"], a["stale"], a["error"]), (2, 4, 2))

    def test_a_frozen_node_gets_a_stale_answer_to_the_agent_before_its_deadline(self):
        oap = self.oap("n0", ["--cds-uuid", "u1"])
        self.start([oap], "cache_ttl: 0s")  # sync_timeout stays 20 s
        code, full = self.poll("svc-a")
        self.assertEqual(code, "OK")
        os.kill(oap.pid, signal.SIGSTOP)
        try:
            t = time.time()
            # the upstream call gets 4/5 of the 2 s the agent gives: the stale answer
            # comes at ~1.6 s, before the agent's own deadline
            self.assertEqual(self.poll("svc-a", timeout=2), ("OK", full))
            self.assertLess(time.time() - t, 2)
        finally:
            os.kill(oap.pid, signal.SIGCONT)
        self.assertEqual(self.answers()["stale"], 1)

    def test_oaps_answer_about_the_request_is_passed_on_not_replaced(self):
        oap = self.oap("n0", ["--cds-uuid", "u1", "--status-method", FETCH + "=13"])
        self.start([oap], "cache_ttl: 0s")
        self.assertEqual(self.poll("svc-a")[0], "INTERNAL")  # OAP answered: no stale answer
        a = self.answers()
        self.assertEqual((a["error"], a["stale"]), (1, 0))


if __name__ == "__main__":
    unittest.main()
