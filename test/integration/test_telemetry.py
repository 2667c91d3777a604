"""skyrelay's own telemetry that does not need the admin port: the sw_stl_*
self meters sent to OAP (telemetry.export: metrics_service) and the gRPC health
service answered by skyrelay itself."""
import unittest

from harness import Case, pipes, wait_until

SATELLITE_RULE_METERS = [  # the names OAP's meter-analyzer-config/satellite.yaml reads
    "sw_stl_gatherer_receive_count", "sw_stl_queue_output_count", "sw_stl_sender_output_count",
    "sw_stl_pipeline_queue_total_capacity", "sw_stl_pipeline_queue_partition_size",
    "sw_stl_grpc_server_cpu_gauge", "sw_stl_grpc_server_connection_count",
]


class SelfMeters(Case):
    def test_self_meters_reach_oap_with_the_configured_service_and_instance(self):
        oap = self.oap("n0")
        relay = self.relay([oap], pipes() + "telemetry:\n  export: prometheus,metrics_service\n"
                           "  service: stl-svc\n  instance: stl-inst-1\n  interval: 1s\n"
                           "  prometheus_address: 127.0.0.1:0\n")
        wait_until(lambda: all(n in (oap.summary() or {}).get("self_meters", {})
                               for n in SATELLITE_RULE_METERS), 15, "every sw_stl_* meter")
        s = oap.summary()
        self.assertIn("stl-svc|stl-inst-1", s["meters"]["by_instance"])
        self.assertEqual(list(s["meters"]["by_instance"]), ["stl-svc|stl-inst-1"])
        self.assertEqual(s["meters"]["dropped"], 0)
        relay.stop()

    def test_no_self_meters_without_metrics_service_export(self):
        oap = self.oap("n0")
        self.relay([oap], pipes() + "telemetry:\n  export: prometheus\n  interval: 1s\n"
                   "  prometheus_address: 127.0.0.1:0\n")
        import time
        time.sleep(2.5)
        self.assertEqual((oap.summary() or {}).get("self_meters", {}), {})


class Health(Case):
    def test_grpc_health_check_is_answered_by_skyrelay(self):
        import grpc
        oap = self.oap("n0")
        relay = self.relay([oap], pipes() + "telemetry:\n  prometheus_address: 127.0.0.1:0\n")
        ch = grpc.insecure_channel(relay.address)
        check = ch.unary_unary("/grpc.health.v1.Health/Check")
        # SERVING (08 01) once the upstream channel is connected
        wait_until(lambda: check(b"", timeout=3) == b"\x08\x01", 10, "SERVING")
        self.assertEqual((oap.summary() or {}).get("calls", {})
                         .get("/grpc.health.v1.Health/Check"), None)  # not forwarded

    def test_grpc_health_check_not_serving_without_reachable_upstream(self):
        import grpc
        relay = self.relay(["127.0.0.1:1"], pipes() + "telemetry:\n  prometheus_address: 127.0.0.1:0\n")
        ch = grpc.insecure_channel(relay.address)
        self.assertEqual(ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=3), b"\x08\x02")


if __name__ == "__main__":
    unittest.main()
