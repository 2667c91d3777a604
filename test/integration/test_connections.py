"""Downstream connections: server.max_connections (the accept4 interposition in
src/server/conn_limit.c) and server.max_connection_age, with real gRPC clients
(Debian's python3-grpcio), each channel on its own TCP connection."""
import time
import unittest

from harness import Case, pipes

LOG_COLLECT = "/skywalking.v3.LogReportService/collect"


def _grpc():
    try:
        import grpc  # Debian python3-grpcio
        return grpc
    except ImportError:
        raise unittest.SkipTest("python3-grpcio is required (scripts/install-deps.sh installs it)")


def _len(n):
    assert n < 128
    return bytes([n])


def log_data(ident, service=b"svc", instance=b"inst"):
    """A LogData whose text body is `ident` (the fake OAP's id for logs)."""
    text = b"\x0a" + _len(len(ident)) + ident          # TextLog.text
    body = b"\x12" + _len(len(text)) + text            # LogDataBody.text
    return (b"\x12" + _len(len(service)) + service     # service
            + b"\x1a" + _len(len(instance)) + instance  # serviceInstance
            + b"\x2a" + _len(len(body)) + body)        # body


def own_connection_channel(grpc, address):
    """A channel that does not share its TCP connection with the others (the
    global subchannel pool would put equal channels on one connection)."""
    return grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


def connection_stats(relay):
    """The 'stats: final connections live=.. accepted=.. refused=.. closed=..' line."""
    for line in relay.output().splitlines():
        if "stats: final connections " in line:
            rest = line.split("stats: final connections ", 1)[1]
            return {k: int(v) for k, v in (t.split("=", 1) for t in rest.split() if "=" in t)}
    raise AssertionError("no 'stats: final connections' line in the log:\n" + relay.output())


def admin_metrics(relay):
    """Unlabelled samples of GET /metrics on the relay's admin port (from its log line)."""
    import urllib.request
    port = relay.admin_port()
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            out[name] = float(value)
    return out


class MaxConnections(Case):
    def test_connections_over_the_limit_are_refused_until_one_closes(self):
        grpc = _grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(), server_extra="  max_connections: 5\n")
        channels, codes = [], []
        for i in range(8):  # one after the other: the first 5 connect, then the limit is reached
            ch = own_connection_channel(grpc, relay.address)
            try:
                ch.stream_unary(LOG_COLLECT)(iter([log_data(b"first-%d" % i)]), timeout=5)
                codes.append("OK")
                channels.append(ch)  # kept open: its connection stays live
            except grpc.RpcError as e:
                codes.append(e.code().name)
                ch.close()  # a refused channel would reconnect (with backoff) and take a freed slot
        self.assertEqual(codes, ["OK"] * 5 + ["UNAVAILABLE"] * 3)
        self.assertEqual(self.wait_total([oap], "logs.unique", 5), 5)
        # what the HPA reads: 5 live, 3 refused
        m = admin_metrics(relay)
        self.assertEqual(m["skyrelay_server_connections"], 5, m)
        self.assertEqual(m["skyrelay_server_connections_refused_total"], 3, m)
        self.assertEqual(m["skyrelay_server_connections_accepted_total"], 5, m)

        # two agents leave: two others get in
        for ch in channels[:2]:
            ch.close()
        for i in range(2):
            ch = own_connection_channel(grpc, relay.address)
            # wait_for_ready: should the relay not have seen a close yet, the channel retries
            ch.stream_unary(LOG_COLLECT)(iter([log_data(b"second-%d" % i)]), timeout=10,
                                         wait_for_ready=True)
            channels.append(ch)
        self.assertEqual(self.wait_total([oap], "logs.unique", 7), 7)

        self.assertEqual(relay.stop(), 0)
        st = connection_stats(relay)
        self.assertEqual(st["accepted"], 7, st)  # 5 + 2, each connection once
        self.assertGreaterEqual(st["refused"], 3, st)  # 3, plus any early retry of the last two
        self.assertEqual(st["live"] + st["closed"], st["accepted"], st)
        for ch in channels:
            ch.close()


class MaxConnectionAge(Case):
    def test_aged_connection_is_replaced_without_losing_a_message(self):
        grpc = _grpc()
        oap = self.oap("n0")
        relay = self.relay([oap], pipes(), server_extra="  max_connection_age: 2s\n"
                                                        "  max_connection_age_grace: 1s\n")
        ch = own_connection_channel(grpc, relay.address)
        collect = ch.stream_unary(LOG_COLLECT)
        ok_calls = failed_calls = 0
        end = time.time() + 5
        n = 0
        while time.time() < end:
            batch = [log_data(b"age-%d" % (n + k)) for k in range(50)]
            n += 50
            for attempt in range(5):  # a call caught by the GOAWAY is sent again
                try:
                    collect(iter(batch), timeout=5, wait_for_ready=True)
                    ok_calls += 1
                    break
                except grpc.RpcError as e:
                    failed_calls += 1
                    self.assertIn(e.code(), (grpc.StatusCode.UNAVAILABLE,
                                             grpc.StatusCode.CANCELLED), e)
            else:
                self.fail("a call failed 5 times in a row")
        ch.close()

        self.assertEqual(ok_calls * 50, n)
        self.assertEqual(self.wait_total([oap], "logs.unique", n), n)  # nothing lost
        # a failed attempt may have delivered part of its messages before failing
        self.assertLessEqual(self.total([oap], "logs.duplicates"), 50 * failed_calls)

        self.assertEqual(relay.stop(), 0)
        st = connection_stats(relay)
        # one channel, but the 2 s age replaced its connection at least once
        self.assertGreaterEqual(st["accepted"], 2, st)
        self.assertEqual(st["refused"], 0, st)


if __name__ == "__main__":
    unittest.main()
