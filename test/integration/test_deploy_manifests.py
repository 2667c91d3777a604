"""Deployment artefacts: the Helm chart's checked-in renders (docs/manifests/*.yaml), the chart
itself when a `helm` binary is installed, and docker/Dockerfile.

- Each render has the expected kinds and names, ports 11800/1234, /readyz and /healthz probes, a
  preStop hook and a terminationGracePeriodSeconds longer than the drain, anti-affinity, and only
  environment variables that skyrelay's configuration reads.
- Persistence: emptyDir renders a Deployment with an emptyDir, pvc a StatefulSet with a claim per
  pod (never a claim shared by the replicas); the HPA targets the kind rendered; the queue
  variables point at the mounted volume; fsGroup makes it writable by uid 10001.
- The real binary accepts each render's environment (and its config override): --check-config;
  --print-config shows the chart's routing policy and connection age reaching the running config.
- With helm on PATH: `helm lint` and `helm template` with the same values give the same objects.
  Without it, that part is skipped (helm is neither a Debian nor an npm package); the values file
  and the templates' guards are still checked as text.
- The Dockerfile: every build package of scripts/install-deps.sh, apt lists removed in both
  stages, a pinnable base, uid 10001 without `useradd --system`, the queue VOLUME owned by 10001,
  and a HEALTHCHECK that follows SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS (run here with /bin/sh).
"""
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    import yaml
except ImportError:  # pragma: no cover
    raise ImportError("python3-yaml is missing: scripts/install-deps.sh must install it")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "helm", "skyrelay")
MANIFESTS = os.path.join(ROOT, "docs", "manifests")
# the binary of the build directory the integration tests use (SKYRELAY_BUILD, SKYRELAY_BIN)
_BUILD = os.path.join(ROOT, os.environ.get("SKYRELAY_BUILD") or "build")
SKYRELAY = os.environ.get("SKYRELAY_BIN") or os.path.join(_BUILD, "skyrelay")
RELEASE, NAMESPACE = "skyrelay", "skywalking"
QUEUE_DIR = "/var/lib/skyrelay/queue"
DISK_ENV = {"SKYRELAY_QUEUE_DIR", "SKYRELAY_QUEUE_DISK_MAX_BYTES", "SKYRELAY_QUEUE_DISK_SYNC"}

# render file -> (values file relative to the chart or None, extra `helm template` arguments,
#                 expected {(kind, name)})
RENDERS = {
    "skyrelay.yaml": (None, [], {
        ("ServiceAccount", "skyrelay"), ("Service", "skyrelay"), ("Deployment", "skyrelay")}),
    "skyrelay-kubernetes-hpa.yaml": ("ci/kubernetes-hpa-values.yaml",
                                     ["--api-versions", "monitoring.coreos.com/v1"], {
        ("ServiceAccount", "skyrelay"), ("Service", "skyrelay"), ("Deployment", "skyrelay"),
        ("Role", "skyrelay"), ("RoleBinding", "skyrelay"), ("ConfigMap", "skyrelay"),
        ("HorizontalPodAutoscaler", "skyrelay"), ("PodMonitor", "skyrelay"),
        ("PodDisruptionBudget", "skyrelay")}),
    "skyrelay-persistence-pvc.yaml": ("ci/persistence-pvc-values.yaml", [], {
        ("ServiceAccount", "skyrelay"), ("Service", "skyrelay"), ("Service", "skyrelay-headless"),
        ("StatefulSet", "skyrelay"), ("HorizontalPodAutoscaler", "skyrelay"),
        ("PodDisruptionBudget", "skyrelay")}),
    "skyrelay-persistence-emptydir.yaml": ("ci/persistence-emptydir-values.yaml", [], {
        ("ServiceAccount", "skyrelay"), ("Service", "skyrelay"), ("Deployment", "skyrelay")}),
    "skyrelay-tls.yaml": ("ci/tls-values.yaml", [], {
        ("ServiceAccount", "skyrelay"), ("Service", "skyrelay"), ("Deployment", "skyrelay")}),
}

# Variables every render must set (Satellite's names where one exists).
ALWAYS_ENV = {
    "SATELLITE_GRPC_ADDRESS", "SATELLITE_GRPC_CLIENT_FINDER",
    "SATELLITE_GRPC_ACCEPT_LIMIT_CONNECTION_COUNT", "SATELLITE_TELEMETRY_EXPORT_TYPE",
    "SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS", "SATELLITE_TELEMETRY_SERVICE",
    "SATELLITE_TELEMETRY_INSTANCE", "SATELLITE_LOGGER_LEVEL", "SKYRELAY_SHUTDOWN_GRACE_PERIOD",
    "SKYRELAY_ROUTING_POLICY", "SKYRELAY_WORKERS", "SKYRELAY_SERVER_MAX_CONNECTION_AGE",
}
KUBERNETES_ENV = {
    "SATELLITE_GRPC_CLIENT_KUBERNETES_NAMESPACE", "SATELLITE_GRPC_CLIENT_KUBERNETES_KIND",
    "SATELLITE_GRPC_CLIENT_KUBERNETES_SELECTOR_LABEL", "SATELLITE_GRPC_CLIENT_KUBERNETES_EXTRA_PORT",
}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.-]+)")
# TLS (values tls.*): the Secrets' mount directories and the variables of server.tls.* and
# upstream.tls.* in config/skyrelay.yaml (Satellite's names where one exists)
TLS_DIR = "/etc/skyrelay/tls/"
TLS_SERVER_ENV = {"SATELLITE_GRPC_TLS_CERT_FILE", "SATELLITE_GRPC_TLS_KEY_FILE",
                  "SKYRELAY_SERVER_TLS_CLIENT_CA_FILE", "SKYRELAY_SERVER_TLS_CLIENT_AUTH",
                  "SKYRELAY_SERVER_TLS_RELOAD_INTERVAL"}
TLS_UPSTREAM_ENV = {"SATELLITE_GRPC_ENABLE_TLS", "SATELLITE_grpc_CA_PEM_PATH",
                    "SATELLITE_GRPC_CLIENT_PEM_PATH", "SATELLITE_GRPC_CLIENT_KEY_PATH",
                    "SKYRELAY_UPSTREAM_TLS_SERVER_NAME", "SATELLITE_GRPC_INSECURE_SKIP_VERIFY",
                    "SKYRELAY_UPSTREAM_TLS_RELOAD_INTERVAL"}
TLS_ENV = TLS_SERVER_ENV | TLS_UPSTREAM_ENV
# a mounted Secret's key -> the file of test_tls.make_pki's throwaway PKI standing in for it
TLS_STAND_INS = {"server/tls.crt": "server.crt", "server/tls.key": "server.key",
                 "server/ca.crt": "ca.crt", "upstream-client/tls.crt": "client.crt",
                 "upstream-client/tls.key": "client.key"}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def size_bytes(text):
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti|KiB|MiB|GiB|K|M|G)?", str(text))
    if not m:
        raise AssertionError("unexpected size %r" % text)
    unit = (m.group(2) or "").rstrip("B")
    return int(m.group(1)) * {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
                              "K": 10**3, "M": 10**6, "G": 10**9}[unit]


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    if not m:
        raise AssertionError("unexpected duration %r" % duration)
    n = int(m.group(1))
    return {"ms": n / 1000.0, "s": n, "m": n * 60}[m.group(2)]


class Render:
    def __init__(self, fname):
        self.fname = fname
        self.values, self.helm_args, self.expected = RENDERS[fname]
        self.docs = load_docs(read(os.path.join(MANIFESTS, fname)))
        self.by_kind = {}
        for d in self.docs:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def one(self, kind):
        docs = self.by_kind.get(kind, [])
        assert len(docs) == 1, "%s: %d %s" % (self.fname, len(docs), kind)
        return docs[0]

    @property
    def workload(self):
        """The Deployment, or the StatefulSet (persistence.type pvc): exactly one of them."""
        docs = self.by_kind.get("Deployment", []) + self.by_kind.get("StatefulSet", [])
        assert len(docs) == 1, "%s: %d workloads" % (self.fname, len(docs))
        return docs[0]

    def service(self, name=RELEASE):
        (svc,) = [d for d in self.by_kind.get("Service", []) if d["metadata"]["name"] == name]
        return svc

    @property
    def pod(self):
        return self.workload["spec"]["template"]

    @property
    def container(self):
        cs = self.pod["spec"]["containers"]
        assert len(cs) == 1, cs
        return cs[0]

    @property
    def env(self):
        return {e["name"]: e for e in self.container.get("env", [])}

    def config_text(self):
        """The skyrelay.yaml the pod runs: the ConfigMap override when mounted, else the image's."""
        mounts = {m["mountPath"]: m for m in self.container.get("volumeMounts", [])}
        if "/etc/skyrelay/skyrelay.yaml" not in mounts:
            return read(os.path.join(ROOT, "config", "skyrelay.yaml"))
        return self.one("ConfigMap")["data"][mounts["/etc/skyrelay/skyrelay.yaml"]["subPath"]]


class RenderedManifests(unittest.TestCase):
    def renders(self):
        for fname in RENDERS:
            with self.subTest(render=fname):
                yield Render(fname)

    def test_every_render_is_checked(self):
        present = {f for f in os.listdir(MANIFESTS) if f.endswith(".yaml")}
        self.assertEqual(present, set(RENDERS))

    def test_kinds_names_namespace(self):
        for r in self.renders():
            got = {(d["kind"], d["metadata"]["name"]) for d in r.docs}
            self.assertEqual(got, r.expected)
            for d in r.docs:
                self.assertEqual(d["metadata"].get("namespace"), NAMESPACE, d["kind"])

    def test_versions_follow_chart_and_version_file(self):
        chart = yaml.safe_load(read(os.path.join(CHART, "Chart.yaml")))
        version = read(os.path.join(ROOT, "VERSION")).strip()
        self.assertEqual(str(chart["appVersion"]), version,
                         "helm/skyrelay/Chart.yaml appVersion must follow VERSION")
        for r in self.renders():
            for d in r.docs:
                labels = d["metadata"]["labels"]
                self.assertEqual(labels["helm.sh/chart"], "skyrelay-%s" % chart["version"],
                                 "stale render: re-render docs/manifests (docs/deploy-kubernetes.md)")
                self.assertEqual(labels["app.kubernetes.io/version"], version)
            self.assertTrue(r.container["image"].endswith(":" + version), r.container["image"])

    def test_ports_and_service(self):
        for r in self.renders():
            ports = {p["name"]: p["containerPort"] for p in r.container["ports"]}
            self.assertEqual(ports, {"grpc": 11800, "http-metrics": 1234})
            self.assertEqual(r.env["SATELLITE_GRPC_ADDRESS"]["value"], ":11800")
            self.assertEqual(r.env["SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS"]["value"], ":1234")
            svc = r.service()["spec"]
            self.assertEqual({(p["name"], p["port"], p["targetPort"]) for p in svc["ports"]},
                             {("grpc", 11800, "grpc"), ("http-metrics", 1234, "http-metrics")})
            sel = r.workload["spec"]["selector"]["matchLabels"]
            self.assertEqual(svc["selector"], sel)
            self.assertTrue(set(sel.items()) <= set(r.pod["metadata"]["labels"].items()))

    def test_probes(self):
        for r in self.renders():
            c = r.container
            self.assertEqual(c["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "http-metrics"})
            self.assertEqual(c["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "http-metrics"})

    def test_graceful_shutdown(self):
        for r in self.renders():
            cmd = r.container["lifecycle"]["preStop"]["exec"]["command"]
            self.assertEqual(cmd[0], "/bin/sleep")
            pre_stop = int(cmd[1])
            self.assertGreater(pre_stop, 0)
            grace = seconds(r.env["SKYRELAY_SHUTDOWN_GRACE_PERIOD"]["value"])
            tgps = r.pod["spec"]["terminationGracePeriodSeconds"]
            # the kubelet counts the preStop hook in the period; skyrelay may take 10 s more than
            # its grace to stop the workers (src/main.c)
            self.assertGreater(tgps, grace)
            self.assertGreaterEqual(tgps, pre_stop + grace + 10)
            if r.workload["kind"] == "Deployment":
                strategy = r.workload["spec"]["strategy"]
                self.assertEqual(strategy["rollingUpdate"]["maxUnavailable"], 0)
            else:  # a StatefulSet cannot surge: one pod replaced at a time
                self.assertEqual(r.workload["spec"]["updateStrategy"], {"type": "RollingUpdate"})

    def test_anti_affinity(self):
        for r in self.renders():
            aff = r.pod["spec"]["affinity"]["podAntiAffinity"]
            terms = aff["preferredDuringSchedulingIgnoredDuringExecution"]
            self.assertEqual(terms[0]["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname")
            self.assertEqual(terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
                             r.workload["spec"]["selector"]["matchLabels"])

    def test_security_context(self):
        for r in self.renders():
            self.assertEqual(r.pod["spec"]["securityContext"]["runAsUser"], 10001)
            self.assertTrue(r.pod["spec"]["securityContext"]["runAsNonRoot"])
            # the queue volume is writable by the image's user (docker/Dockerfile: 10001)
            self.assertEqual(r.pod["spec"]["securityContext"]["fsGroup"], 10001)
            self.assertTrue(r.container["securityContext"]["readOnlyRootFilesystem"])

    def test_env_names_are_read_by_the_config(self):
        """Every variable the chart sets is one the running skyrelay.yaml reads, so a renamed
        placeholder in config/skyrelay.yaml cannot silently leave a chart value dead."""
        for r in self.renders():
            names = set(r.env)
            self.assertTrue(ALWAYS_ENV <= names, ALWAYS_ENV - names)
            finder = r.env["SATELLITE_GRPC_CLIENT_FINDER"]["value"]
            if finder == "kubernetes":
                self.assertTrue(KUBERNETES_ENV <= names, KUBERNETES_ENV - names)
                self.assertTrue(r.pod["spec"]["automountServiceAccountToken"])
            else:
                self.assertIn("SATELLITE_GRPC_CLIENT", names)
                self.assertFalse(r.pod["spec"]["automountServiceAccountToken"])
            inst = r.env["SATELLITE_TELEMETRY_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"]
            self.assertEqual(inst, "metadata.name")
            read_by_config = set(PLACEHOLDER.findall(r.config_text()))
            unread = names - read_by_config
            if not re.search(r"(?m)^  disk:", read(os.path.join(ROOT, "config", "skyrelay.yaml"))):
                # the disk queue's keys are not in config/skyrelay.yaml yet: the chart's variables
                # for it are checked against the config once they are
                unread -= DISK_ENV
            # SKYRELAY_ROUTING_POLICY included: an override without its placeholder makes
            # routing.policy a dead value
            self.assertEqual(unread, set(), "variables no placeholder of the config reads")

    def test_kubernetes_finder_rbac(self):
        r = Render("skyrelay-kubernetes-hpa.yaml")
        role = r.one("Role")
        self.assertEqual(role["rules"], [{"apiGroups": [""], "resources": ["pods"],
                                          "verbs": ["get", "list", "watch"]}])
        self.assertEqual(r.env["SATELLITE_GRPC_CLIENT_KUBERNETES_KIND"]["value"], "pod")
        self.assertEqual(r.env["SATELLITE_GRPC_CLIENT_KUBERNETES_NAMESPACE"]["value"], NAMESPACE)
        rb = r.one("RoleBinding")
        self.assertEqual(rb["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                         "name": role["metadata"]["name"]})
        sa = r.one("ServiceAccount")["metadata"]["name"]
        self.assertEqual(rb["subjects"], [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}])
        self.assertEqual(r.pod["spec"]["serviceAccountName"], sa)
        # no RBAC at all with the static finder
        d = Render("skyrelay.yaml")
        self.assertNotIn("Role", d.by_kind)
        self.assertNotIn("RoleBinding", d.by_kind)

    def test_authentication_from_secret(self):
        r = Render("skyrelay-kubernetes-hpa.yaml")
        ref = r.env["SATELLITE_GRPC_AUTHENTICATION"]["valueFrom"]["secretKeyRef"]
        self.assertEqual(ref["name"], "skyrelay-oap-token")
        self.assertNotIn("value", r.env["SATELLITE_GRPC_AUTHENTICATION"])
        self.assertNotIn("SATELLITE_GRPC_AUTHENTICATION", Render("skyrelay.yaml").env)
        # the agent token is asked for: a Secret without it must fail the pod, not turn the
        # check off (serverTokenRequired, default true)
        server = r.env["SKYRELAY_SERVER_AUTHENTICATION"]["valueFrom"]["secretKeyRef"]
        self.assertEqual((server["name"], server["key"]), ("skyrelay-oap-token", "server-token"))
        self.assertNotIn("optional", server)

    def test_hpa_targets_the_rendered_workload(self):
        for r in self.renders():
            for hpa in r.by_kind.get("HorizontalPodAutoscaler", []):
                self.assertEqual(hpa["spec"]["scaleTargetRef"],
                                 {"apiVersion": "apps/v1", "kind": r.workload["kind"],
                                  "name": r.workload["metadata"]["name"]})
                self.assertNotIn("replicas", r.workload["spec"])
            for pdb in r.by_kind.get("PodDisruptionBudget", []):
                self.assertEqual(pdb["spec"]["selector"]["matchLabels"],
                                 r.workload["spec"]["selector"]["matchLabels"])
        self.assertEqual(Render("skyrelay-persistence-pvc.yaml").workload["kind"], "StatefulSet")

    def test_hpa(self):
        r = Render("skyrelay-kubernetes-hpa.yaml")
        hpa = r.one("HorizontalPodAutoscaler")
        self.assertEqual(hpa["apiVersion"], "autoscaling/v2")
        self.assertEqual(hpa["spec"]["scaleTargetRef"],
                         {"apiVersion": "apps/v1", "kind": "Deployment", "name": "skyrelay"})
        (m,) = hpa["spec"]["metrics"]
        self.assertEqual(m["type"], "Pods")
        self.assertEqual(m["pods"]["metric"]["name"], "skyrelay_server_connections")
        self.assertEqual(m["pods"]["target"], {"type": "AverageValue", "averageValue": "2000"})
        limit = int(r.env["SATELLITE_GRPC_ACCEPT_LIMIT_CONNECTION_COUNT"]["value"])
        self.assertLess(int(m["pods"]["target"]["averageValue"]), limit)
        # the HPA owns the replica count
        self.assertNotIn("replicas", r.one("Deployment")["spec"])
        self.assertEqual(Render("skyrelay.yaml").one("Deployment")["spec"]["replicas"], 2)

    def test_config_override_mount(self):
        r = Render("skyrelay-kubernetes-hpa.yaml")
        # the override keeps the placeholders: the chart's values reach it through the environment
        self.assertIn("max_connection_age: ${SKYRELAY_SERVER_MAX_CONNECTION_AGE:", r.config_text())
        self.assertIn("policy: ${SKYRELAY_ROUTING_POLICY:", r.config_text())
        self.assertEqual(r.env["SKYRELAY_SERVER_MAX_CONNECTION_AGE"]["value"], "15m")
        vols = {v["name"]: v for v in r.pod["spec"]["volumes"]}
        self.assertEqual(vols["config"]["configMap"]["name"], r.one("ConfigMap")["metadata"]["name"])
        self.assertIn("checksum/config", r.pod["metadata"]["annotations"])

    def test_no_persistence_by_default(self):
        for fname in ("skyrelay.yaml", "skyrelay-kubernetes-hpa.yaml"):
            r = Render(fname)
            self.assertEqual(DISK_ENV & set(r.env), set())
            self.assertNotIn("queue", {v["name"] for v in r.pod["spec"].get("volumes", [])})
            self.assertNotIn("StatefulSet", r.by_kind)

    def queue_mount(self, r):
        (m,) = [m for m in r.container["volumeMounts"] if m["name"] == "queue"]
        self.assertEqual(m["mountPath"], QUEUE_DIR)
        self.assertNotIn("subPath", m)  # the whole directory: skyrelay creates files in it
        self.assertFalse(m.get("readOnly", False))
        self.assertEqual(r.env["SKYRELAY_QUEUE_DIR"]["value"], QUEUE_DIR)
        self.assertIn(r.env["SKYRELAY_QUEUE_DISK_SYNC"]["value"], ("none", "interval", "always"))
        return m

    def test_persistence_pvc_is_a_statefulset_with_a_claim_per_pod(self):
        r = Render("skyrelay-persistence-pvc.yaml")
        self.assertNotIn("Deployment", r.by_kind)  # instead of it, not beside it
        sts = r.one("StatefulSet")["spec"]
        self.assertEqual(sts["podManagementPolicy"], "Parallel")
        headless = r.service(sts["serviceName"])
        self.assertEqual(headless["spec"]["clusterIP"], "None")
        self.assertEqual(headless["spec"]["selector"], sts["selector"]["matchLabels"])
        self.queue_mount(r)
        # the mount is served by the claim template, not by a pod volume (a shared claim)
        self.assertNotIn("queue", {v["name"] for v in r.pod["spec"].get("volumes", [])})
        for v in r.pod["spec"].get("volumes", []):
            self.assertNotIn("persistentVolumeClaim", v, "one claim shared by every replica")
        (claim,) = sts["volumeClaimTemplates"]
        self.assertEqual(claim["metadata"]["name"], "queue")
        self.assertEqual(claim["spec"]["accessModes"], ["ReadWriteOnce"])
        size = claim["spec"]["resources"]["requests"]["storage"]
        self.assertEqual(size, "2Gi")
        self.assertNotIn("storageClassName", claim["spec"])  # empty value = the cluster default
        disk_max = r.env["SKYRELAY_QUEUE_DISK_MAX_BYTES"]["value"]
        self.assertEqual(disk_max, "1843MiB")  # 90% of 2Gi, the default
        self.assertLess(size_bytes(disk_max), size_bytes(size))

    def test_persistence_emptydir(self):
        r = Render("skyrelay-persistence-emptydir.yaml")
        self.assertEqual(r.workload["kind"], "Deployment")
        self.queue_mount(r)
        (vol,) = [v for v in r.pod["spec"]["volumes"] if v["name"] == "queue"]
        self.assertEqual(vol, {"name": "queue", "emptyDir": {"sizeLimit": "1Gi"}})
        disk_max = r.env["SKYRELAY_QUEUE_DISK_MAX_BYTES"]["value"]
        self.assertEqual(disk_max, "900MiB")  # set explicitly in the values file
        # over its sizeLimit the pod is evicted: the queue's cap must stay below it
        self.assertLess(size_bytes(disk_max), size_bytes(vol["emptyDir"]["sizeLimit"]))

    def test_tls_env_and_secret_mounts(self):
        """tls.*: every TLS variable is a file in a read-only directory mount (never a subPath,
        or a renewed Secret would never reach the process) of the right Secret."""
        r = Render("skyrelay-tls.yaml")
        env = {k: v["value"] for k, v in r.env.items() if "value" in v}
        self.assertEqual(TLS_ENV & set(env), TLS_ENV - {"SATELLITE_GRPC_INSECURE_SKIP_VERIFY"})
        self.assertEqual(env["SATELLITE_GRPC_TLS_CERT_FILE"], TLS_DIR + "server/tls.crt")
        self.assertEqual(env["SATELLITE_GRPC_TLS_KEY_FILE"], TLS_DIR + "server/tls.key")
        # clientAuth require without clientCASecretName: ca.crt of the server's Secret
        self.assertEqual(env["SKYRELAY_SERVER_TLS_CLIENT_CA_FILE"], TLS_DIR + "server/ca.crt")
        self.assertEqual(env["SKYRELAY_SERVER_TLS_CLIENT_AUTH"], "require")
        self.assertEqual(env["SATELLITE_GRPC_ENABLE_TLS"], "true")
        self.assertEqual(env["SATELLITE_grpc_CA_PEM_PATH"], TLS_DIR + "upstream-ca/ca.crt")
        self.assertEqual(env["SATELLITE_GRPC_CLIENT_PEM_PATH"], TLS_DIR + "upstream-client/tls.crt")
        self.assertEqual(env["SATELLITE_GRPC_CLIENT_KEY_PATH"], TLS_DIR + "upstream-client/tls.key")
        self.assertEqual(env["SKYRELAY_UPSTREAM_TLS_SERVER_NAME"], "skywalking-oap.skywalking.svc")
        self.assertEqual(env["SKYRELAY_SERVER_TLS_RELOAD_INTERVAL"], "30s")
        self.assertEqual(env["SKYRELAY_UPSTREAM_TLS_RELOAD_INTERVAL"], "30s")
        mounts = {m["name"]: m for m in r.container["volumeMounts"]}
        vols = {v["name"]: v for v in r.pod["spec"]["volumes"]}
        want = {"tls-server": ("server", "skyrelay-tls"),
                "tls-upstream-ca": ("upstream-ca", "skywalking-oap-ca"),
                "tls-upstream-client": ("upstream-client", "skyrelay-oap-client")}
        self.assertEqual({n for n in mounts if n.startswith("tls-")}, set(want))
        for name, (d, secret) in want.items():
            m = mounts[name]
            self.assertEqual(m["mountPath"], TLS_DIR + d)
            self.assertNotIn("subPath", m, "a subPath mount never sees a renewed Secret")
            self.assertNotIn("subPathExpr", m)
            self.assertIs(m.get("readOnly"), True)
            self.assertEqual(vols[name]["secret"]["secretName"], secret)
            self.assertNotIn("items", vols[name]["secret"])  # the whole Secret
            # readable by the pod's fsGroup, nobody else
            self.assertEqual(vols[name]["secret"]["defaultMode"], 0o440)
        self.assertEqual(r.pod["spec"]["securityContext"]["fsGroup"], 10001)
        for name, value in env.items():
            if value.startswith(TLS_DIR):
                self.assertTrue(any(value.startswith(m["mountPath"] + "/") for m in mounts.values()),
                                "%s=%s is in no mount" % (name, value))
        # no subPath on any TLS mount in any render; no TLS at all without tls.* values
        for other in self.renders():
            for m in other.container.get("volumeMounts", []):
                if m["mountPath"].startswith(TLS_DIR):
                    self.assertNotIn("subPath", m)
            if other.fname != "skyrelay-tls.yaml":
                self.assertEqual(TLS_ENV & set(other.env), set(), other.fname)
                self.assertFalse([v for v in other.pod["spec"].get("volumes", []) if "secret" in v])

    def test_tls_probes_and_service(self):
        """With TLS on the gRPC port the probes still work: they are HTTP on the admin port
        (the kubelet's grpc: probe cannot do TLS); the Service tells a mesh the port is TLS."""
        for r in self.renders():
            tls = "SATELLITE_GRPC_TLS_CERT_FILE" in r.env
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                p = r.container.get(probe)
                if p is None:
                    continue
                self.assertNotIn("grpc", p)
                self.assertEqual(p["httpGet"]["port"], "http-metrics")
                self.assertNotIn("scheme", p["httpGet"])  # the admin port stays HTTP
            svcs = [d for d in r.by_kind["Service"]]
            for svc in svcs:
                (grpc,) = [p for p in svc["spec"]["ports"] if p["name"] == "grpc"]
                self.assertEqual(grpc["appProtocol"], "tls" if tls else "grpc", r.fname)
            self.assertEqual(tls, r.fname == "skyrelay-tls.yaml")

    @unittest.skipUnless(os.access(SKYRELAY, os.X_OK), "skyrelay not built")
    def test_binary_opens_the_tls_render_files(self):
        """The TLS render's environment with the Secrets laid out as the kubelet does (a
        throwaway PKI): --print-config shows the chart's files and intervals; a Secret whose
        tls.key belongs to another certificate fails --check-config naming the key and file."""
        r = Render("skyrelay-tls.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            env, cfg = self.binary_env(r, tmp)
            p = subprocess.run([SKYRELAY, "--print-config", "--config", cfg], env=env,
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            eff = yaml.safe_load(p.stdout)
            st, ut = eff["server"]["tls"], eff["upstream"]["tls"]
            self.assertEqual(st["cert_file"], env["SATELLITE_GRPC_TLS_CERT_FILE"])
            self.assertEqual(st["key_file"], env["SATELLITE_GRPC_TLS_KEY_FILE"])
            self.assertEqual(st["client_ca_file"], env["SKYRELAY_SERVER_TLS_CLIENT_CA_FILE"])
            self.assertEqual(st["client_auth"], "require")
            self.assertIs(ut["enabled"], True)
            self.assertEqual(ut["ca_file"], env["SATELLITE_grpc_CA_PEM_PATH"])
            self.assertEqual(ut["cert_file"], env["SATELLITE_GRPC_CLIENT_PEM_PATH"])
            self.assertEqual(ut["server_name"], "skywalking-oap.skywalking.svc")
            for t in (st, ut):
                self.assertEqual(seconds(str(t["reload_interval"])), 30)
        with tempfile.TemporaryDirectory() as tmp:
            env, cfg = self.binary_env(r, tmp)
            tls_key = env["SATELLITE_GRPC_TLS_KEY_FILE"]
            os.chmod(tls_key, 0o600)
            shutil.copyfile(os.path.join(tmp, "pki", "client.key"), tls_key)
            p = subprocess.run([SKYRELAY, "--check-config", "--config", cfg], env=env,
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn("server.tls.key_file: key %s does not belong to certificate %s"
                          % (tls_key, env["SATELLITE_GRPC_TLS_CERT_FILE"]), p.stderr)

    def binary_env(self, r, tmp):
        """The container's environment; valueFrom variables get a stand-in value, the queue
        directory a writable temporary one."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for name, e in r.env.items():
            env[name] = e.get("value", "token" if "AUTHENTICATION" in name else "skyrelay-0")
        if "SKYRELAY_QUEUE_DIR" in env:
            env["SKYRELAY_QUEUE_DIR"] = os.path.join(tmp, "queue")
            os.mkdir(env["SKYRELAY_QUEUE_DIR"])
        self.lay_tls_secrets(r, env, tmp)
        cfg = os.path.join(tmp, "skyrelay.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(r.config_text())
        return env, cfg

    def lay_tls_secrets(self, r, env, tmp, stand_ins=None):
        """Each TLS Secret the pod mounts, laid out under tmp as the kubelet writes a secret
        volume (files in a timestamped directory, ..data a symlink to it, each key a symlink
        through ..data), filled from a throwaway PKI; the variables pointing into the mounts
        are moved there. So --check-config opens real files at the chart's paths."""
        mounts = {m["name"]: m["mountPath"] for m in r.container.get("volumeMounts", [])}
        secrets = {v["name"]: v["secret"] for v in r.pod["spec"].get("volumes", []) if "secret" in v}
        if not secrets:
            return
        from test_tls import make_pki  # the openssl CLI, as test_tls.py does
        pki = os.path.join(tmp, "pki")
        os.mkdir(pki)
        make_pki(pki)
        stand_ins = dict(TLS_STAND_INS, **(stand_ins or {}))
        for name, value in list(env.items()):
            if not value.startswith(TLS_DIR):
                continue
            rel = value[len(TLS_DIR):]
            vol_dir, key = rel.split("/", 1)
            (vol,) = [n for n, m in mounts.items() if m == TLS_DIR + vol_dir]
            self.assertIn(vol, secrets, "%s points into %s, not a Secret volume" % (name, vol_dir))
            top = os.path.join(tmp, "tls", vol_dir)
            data = os.path.join(top, "..2026_01_01_00_00_00.000000001")
            os.makedirs(data, exist_ok=True)
            if not os.path.lexists(os.path.join(top, "..data")):
                os.symlink(os.path.basename(data), os.path.join(top, "..data"))
            shutil.copyfile(os.path.join(pki, stand_ins.get(rel, "ca.crt")), os.path.join(data, key))
            if not os.path.lexists(os.path.join(top, key)):
                os.symlink(os.path.join("..data", key), os.path.join(top, key))
            env[name] = os.path.join(top, key)

    @unittest.skipUnless(os.access(SKYRELAY, os.X_OK), "skyrelay not built")
    def test_binary_accepts_each_render(self):
        """skyrelay --check-config with the container's environment and config: what the pod
        would load."""
        for r in self.renders():
            with tempfile.TemporaryDirectory() as tmp:
                env, cfg = self.binary_env(r, tmp)
                p = subprocess.run([SKYRELAY, "--check-config", "--config", cfg], env=env,
                                   capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)

    @unittest.skipUnless(os.access(SKYRELAY, os.X_OK), "skyrelay not built")
    def test_print_config_shows_the_chart_values(self):
        """The effective config of each render (--print-config): routing.policy set by the chart
        reaches every pipe but meter (fixed), also through a config override, and so do the
        connection age and, once the disk queue reads them, the queue variables."""
        for r in self.renders():
            with tempfile.TemporaryDirectory() as tmp:
                env, cfg = self.binary_env(r, tmp)
                env["SKYRELAY_ROUTING_POLICY"] = "least_loaded"  # as `--set routing.policy=...`
                p = subprocess.run([SKYRELAY, "--print-config", "--config", cfg], env=env,
                                   capture_output=True, text=True, timeout=30)
                self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
                eff = yaml.safe_load(p.stdout)
                policies = {name: pipe["routing"]["policy"] for name, pipe in eff["pipes"].items()}
                self.assertEqual(policies.pop("meter"), "fixed")
                self.assertTrue(policies)
                self.assertEqual(set(policies.values()), {"least_loaded"}, policies)
                age = r.env["SKYRELAY_SERVER_MAX_CONNECTION_AGE"]["value"]
                self.assertEqual(seconds(str(eff["server"]["max_connection_age"])),
                                 seconds(age if age != "0" else "0s"))
                disk = (eff.get("queue") or {}).get("disk")
                if disk is not None and "SKYRELAY_QUEUE_DIR" in env:
                    self.assertEqual(disk["dir"], env["SKYRELAY_QUEUE_DIR"])
                    self.assertEqual(disk["sync"], env["SKYRELAY_QUEUE_DISK_SYNC"])


class ChartSource(unittest.TestCase):
    """The chart's values and templates as text: checked with or without helm."""

    def setUp(self):
        self.values = yaml.safe_load(read(os.path.join(CHART, "values.yaml")))
        self.values_text = read(os.path.join(CHART, "values.yaml"))

    def template(self, name):
        return read(os.path.join(CHART, "templates", name))

    def test_persistence_values(self):
        p = self.values["persistence"]
        self.assertIs(p["enabled"], False)
        self.assertEqual(p["type"], "emptyDir")
        self.assertEqual(p["size"], "2Gi")
        self.assertEqual(p["accessModes"], ["ReadWriteOnce"])
        self.assertEqual(p["mountPath"], QUEUE_DIR)
        self.assertEqual(p["sync"], "interval")
        self.assertIn("storageClassName", p)
        self.assertEqual(p["diskMaxBytes"], "")  # = 90% of size, computed by the chart
        # the image declares the same directory (docker/Dockerfile)
        self.assertIn("VOLUME %s" % QUEUE_DIR, read(os.path.join(ROOT, "docker", "Dockerfile")))

    def test_fs_group(self):
        sc = self.values["podSecurityContext"]
        self.assertEqual((sc["runAsUser"], sc["runAsGroup"], sc["fsGroup"]), (10001, 10001, 10001))

    def test_image_repository_is_documented_as_yours(self):
        self.assertEqual(self.values["image"]["repository"], "skyrelay")
        block = self.values_text[self.values_text.index("image:"):
                                 self.values_text.index("repository:")]
        self.assertIn("registry", block)
        self.assertIn('"skyrelay"', self.template("NOTES.txt"))

    def test_pod_monitor_needs_the_operator_crds(self):
        self.assertRegex(self.template("podmonitor.yaml"),
                         r'\{\{-? if and \.Values\.metrics\.podMonitor\.enabled '
                         r'\(\.Capabilities\.APIVersions\.Has "monitoring\.coreos\.com/v1"\)')

    def test_workload_kind_follows_persistence(self):
        helpers = self.template("_helpers.tpl")
        self.assertIn('(eq .Values.persistence.type "pvc")', helpers)
        self.assertIn('kind: {{ include "skyrelay.workloadKind" . }}', self.template("hpa.yaml"))
        self.assertIn('eq (include "skyrelay.workloadKind" .) "Deployment"',
                      self.template("deployment.yaml"))
        sts = self.template("statefulset.yaml")
        self.assertIn('eq (include "skyrelay.workloadKind" .) "StatefulSet"', sts)
        self.assertIn("volumeClaimTemplates:", sts)
        self.assertIn("podManagementPolicy: Parallel", sts)

    def test_tls_values(self):
        """tls.* defaults: everything off; each value documented with a comment."""
        t = self.values["tls"]
        self.assertEqual(t, {
            "server": {"enabled": False, "secretName": "", "clientAuth": "none",
                       "clientCASecretName": "", "clientCAKey": "ca.crt"},
            "upstream": {"enabled": False, "caSecretName": "", "caKey": "ca.crt",
                         "clientSecretName": "", "serverName": "", "insecureSkipVerify": False},
            "reloadInterval": "60s"})
        start = self.values_text.index("\ntls:\n")
        start = self.values_text.rindex("\n\n", 0, start)  # from the comment above it
        block = self.values_text[start:self.values_text.index("\nserver:\n")]
        lines = block.strip("\n").splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^\s*[A-Za-z]+:", line):
                self.assertTrue(lines[i - 1].lstrip().startswith("#"), "undocumented: " + line)
        self.assertIn("subPath", block)  # says why the Secrets are directory mounts

    def test_tls_secrets_are_directory_mounts(self):
        """The TLS volume mounts in the pod template: read-only, never subPath."""
        pod = self.template("_pod.tpl")
        m = re.search(r"\{\{- range \$name := keys \$tlsVolumes \| sortAlpha \}\}\n"
                      r"(\s+- name: \{\{ \$name \}\}\n(?:\s+[a-zA-Z]+:[^\n]*\n)+)", pod)
        self.assertTrue(m, "TLS volumeMounts loop not found")
        self.assertIn("readOnly: true", m.group(1))
        self.assertNotIn("subPath", m.group(1))

    def test_tls_guards(self):
        """The chart refuses values that would leave TLS silently off or break a probe."""
        helpers = self.template("_helpers.tpl")
        for needle in ("tls.server.secretName is required", "tls.server.clientAuth must be",
                       "tls.upstream.enabled is false", 'hasKey $probe "grpc"',
                       "tls.server.enabled with config.override",
                       "tls.upstream.enabled with config.override", "tls.reloadInterval must be"):
            self.assertIn(needle, helpers)

    def test_example_override_keeps_the_placeholders(self):
        """The example's config override reads every variable the chart sets (env names in
        the pod template), routing policy included."""
        ci = yaml.safe_load(read(os.path.join(CHART, "ci", "kubernetes-hpa-values.yaml")))
        override = set(PLACEHOLDER.findall(ci["config"]["override"]))
        pod = self.template("_pod.tpl")
        set_by_chart = set(re.findall(r'"((?:SATELLITE|SKYRELAY)_[A-Za-z0-9_]+)"', pod)) - DISK_ENV
        self.assertIn("SKYRELAY_ROUTING_POLICY", set_by_chart)
        self.assertTrue(TLS_ENV <= set_by_chart, TLS_ENV - set_by_chart)
        self.assertEqual(set_by_chart - override, set())


class HelmChart(unittest.TestCase):
    """Only where a helm binary is installed."""

    def setUp(self):
        self.helm = shutil.which("helm")
        if not self.helm:
            print("\n  skip: no helm on PATH: the chart itself is not rendered; the checked-in "
                  "renders in docs/manifests are checked by RenderedManifests", flush=True)
            self.skipTest("helm not installed")

    def helm_run(self, *args):
        p = subprocess.run([self.helm, *args], capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        return p.stdout

    def test_lint(self):
        for values, _, _ in RENDERS.values():
            extra = ["-f", os.path.join(CHART, values)] if values else []
            self.helm_run("lint", "--strict", CHART, *extra)

    def test_template_matches_checked_in_render(self):
        for fname, (values, args, _) in RENDERS.items():
            with self.subTest(render=fname):
                extra = ["-f", os.path.join(CHART, values)] if values else []
                out = self.helm_run("template", RELEASE, CHART, "-n", NAMESPACE,
                                    "--kube-version", "1.29.0", *args, *extra)
                got = load_docs(out)
                want = Render(fname).docs
                key = lambda d: (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
                self.assertEqual(sorted(map(key, got)), sorted(map(key, want)))
                self.assertEqual(sorted(got, key=key), sorted(want, key=key),
                                 "docs/manifests/%s is stale: re-render it with helm template "
                                 "(docs/deploy-kubernetes.md)" % fname)

    def test_pod_monitor_only_with_the_operator_crds(self):
        values = os.path.join(CHART, "ci", "kubernetes-hpa-values.yaml")
        out = self.helm_run("template", RELEASE, CHART, "-n", NAMESPACE, "-f", values)
        self.assertNotIn("PodMonitor", {d["kind"] for d in load_docs(out)})

    def test_bad_tls_values_fail(self):
        on = ["--set", "tls.server.enabled=true", "--set", "tls.server.secretName=s"]
        for bad in (["--set", "tls.server.enabled=true"],
                    on + ["--set", "tls.server.clientAuth=maybe"],
                    on + ["--set", "readinessProbe.httpGet=null",
                          "--set", "readinessProbe.grpc.port=11800"],
                    on + ["--set", "config.override=server: {}"],
                    ["--set", "tls.upstream.serverName=oap"],
                    ["--set", "tls.reloadInterval=1.5s"]):
            p = subprocess.run([self.helm, "template", RELEASE, CHART, *bad],
                               capture_output=True, text=True, timeout=120)
            self.assertNotEqual(p.returncode, 0, bad)

    def test_bad_persistence_values_fail(self):
        for bad in (["--set", "persistence.enabled=true", "--set", "persistence.type=hostPath"],
                    ["--set", "persistence.enabled=true", "--set", "persistence.sync=sometimes"],
                    ["--set", "persistence.enabled=true", "--set", "persistence.type=pvc",
                     "--set", "persistence.size=2.5Gi"]):
            p = subprocess.run([self.helm, "template", RELEASE, CHART, *bad],
                               capture_output=True, text=True, timeout=120)
            self.assertNotEqual(p.returncode, 0, bad)


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass


class Dockerfile(unittest.TestCase):
    def setUp(self):
        self.text = read(os.path.join(ROOT, "docker", "Dockerfile"))
        self.preamble, *stages = re.split(r"^FROM ", self.text, flags=re.M)
        self.assertEqual(len(stages), 2)
        self.build, self.run = stages

    @staticmethod
    def runs(stage):
        """Each RUN instruction of a stage, continuation lines joined."""
        return [m.group(1).replace("\\\n", " ")
                for m in re.finditer(r"(?m)^RUN ((?:[^\n]*\\\n)*[^\n]*)", stage)]

    def healthcheck_cmd(self):
        m = re.search(r"(?m)^HEALTHCHECK [^\n]*?\\\n((?:[^\n]*\\\n)*[^\n]*)", self.run)
        self.assertTrue(m, "no HEALTHCHECK")
        cmd = re.sub(r"\\\n\s*", " ", m.group(1)).strip()
        self.assertTrue(cmd.startswith("CMD "), cmd)
        cmd = cmd[len("CMD "):]
        self.assertFalse(cmd.startswith("["), "shell form expected: it reads the environment")
        return cmd

    @staticmethod
    def installed(stage):
        pkgs = set()
        for m in re.finditer(r"apt-get install ((?:[^\n]*\\\n)*[^\n]*)", stage):
            words = m.group(1).replace("\\\n", " ").split("&&")[0].split()
            pkgs |= {w for w in words if not w.startswith("-")}
        return pkgs

    def test_build_stage_has_the_build_packages(self):
        deps = read(os.path.join(ROOT, "scripts", "install-deps.sh"))
        m = re.search(r'^REQUIRED="([^"]*)"', deps, re.M)
        listed = m.group(1).replace("\\\n", " ").split()
        needed = {p for p in listed if p.endswith("-dev") or p in
                  ("gcc", "make", "pkg-config", "protobuf-c-compiler")} - {"libcmocka-dev"}
        got = self.installed(self.build)
        self.assertTrue(needed <= got, "build stage lacks %s" % (needed - got))
        self.assertIn("make -j\"$(nproc)\" build/skyrelay", self.build)

    def test_runtime_stage(self):
        got = self.installed(self.run)
        self.assertTrue({"libgrpc29", "libprotobuf-c1", "libuv1", "libyaml-0-2", "libcurl4",
                         "libjson-c5", "libisal2", "ca-certificates"} <= got, got)
        self.assertFalse({p for p in got if p.endswith("-dev")}, "no -dev package at run time")
        self.assertRegex(self.run, r"(?m)^USER 10001")
        self.assertRegex(self.run, r"(?m)^EXPOSE 11800 1234$")
        self.assertIn("COPY --from=build /src/build/skyrelay /usr/local/bin/skyrelay", self.run)
        self.assertIn("COPY config/skyrelay.yaml /etc/skyrelay/skyrelay.yaml", self.run)
        self.assertIn('ENTRYPOINT ["/usr/local/bin/skyrelay"]', self.run)
        self.assertIn('CMD ["--config", "/etc/skyrelay/skyrelay.yaml"]', self.run)
        self.assertIn("curl", got)

    def test_base_image_is_one_pinnable_argument(self):
        """Both stages start from ARG DEBIAN_IMAGE; its default stays the tag the image smoke
        test imports locally (a digest is given with --build-arg, docker/README.md)."""
        self.assertRegex(self.preamble, r"(?m)^ARG DEBIAN_IMAGE=debian:12-slim$")
        self.assertTrue(self.build.startswith("${DEBIAN_IMAGE} AS build\n"), self.build[:40])
        self.assertTrue(self.run.startswith("${DEBIAN_IMAGE}\n"), self.run[:40])

    def test_apt_lists_removed_in_both_stages(self):
        for name, stage in (("build", self.build), ("run", self.run)):
            updates = [r for r in self.runs(stage) if "apt-get update" in r]
            self.assertEqual(len(updates), 1, name)
            # in the same layer as the download, or the lists stay in the image's history
            self.assertIn("rm -rf /var/lib/apt/lists/*", updates[0], name)

    def test_user_10001_without_system_range_warning(self):
        self.assertNotRegex(self.text, r"useradd[^\n]*(--system|\s-r\b)")
        self.assertNotRegex(self.text, r"groupadd[^\n]*(--system|\s-r\b)")
        self.assertRegex(self.run, r"groupadd --gid 10001 skyrelay")
        self.assertRegex(self.run, r"useradd --uid 10001 --gid 10001 ")
        self.assertRegex(self.run, r"(?m)^USER 10001:10001$")

    def test_queue_volume(self):
        q = QUEUE_DIR
        made = re.search(r"install -d -o 10001 -g 10001 -m 0750 %s\b" % re.escape(q), self.run)
        self.assertTrue(made, "queue directory owned by 10001:10001, mode 0750")
        volume = re.search(r"(?m)^VOLUME %s$" % re.escape(q), self.run)
        self.assertTrue(volume)
        # a change under a VOLUME after its declaration would be discarded
        self.assertLess(made.start(), volume.start())

    def test_healthcheck_follows_the_admin_address(self):
        cmd = self.healthcheck_cmd()
        self.assertIn("SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS", cmd)
        # 1234 only as the default of the variable, never as the probed port itself
        self.assertEqual(re.findall(r"1234", cmd), ["1234"])
        self.assertIn("${SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS:-:1234}", cmd)
        self.assertIn("/healthz", cmd)

    def run_healthcheck(self, env, path_dir=None):
        e = {"PATH": (path_dir + ":" if path_dir else "") + os.environ.get("PATH", "/usr/bin:/bin")}
        e.update(env)
        return subprocess.run(["/bin/sh", "-c", self.healthcheck_cmd()], env=e,
                              capture_output=True, text=True, timeout=30)

    def test_healthcheck_url_for_each_address_form(self):
        """The HEALTHCHECK command under /bin/sh, with a stand-in curl that records its URL."""
        cases = {None: "http://127.0.0.1:1234/healthz", "": "http://127.0.0.1:1234/healthz",
                 ":1234": "http://127.0.0.1:1234/healthz",
                 "0.0.0.0:21234": "http://127.0.0.1:21234/healthz",
                 ":9100": "http://127.0.0.1:9100/healthz",
                 "127.0.0.1:21234": "http://127.0.0.1:21234/healthz",
                 "10.1.2.3:8080": "http://10.1.2.3:8080/healthz",
                 "admin.local:1235": "http://admin.local:1235/healthz",
                 "[::]:1234": "http://[::1]:1234/healthz",
                 "[::1]:4321": "http://[::1]:4321/healthz"}
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "urls")
            curl = os.path.join(tmp, "curl")
            with open(curl, "w", encoding="utf-8") as f:
                f.write('#!/bin/sh\nfor a; do last=$a; done\necho "$last" >> %s\n' % log)
            os.chmod(curl, stat.S_IRWXU)
            for addr, want in cases.items():
                with self.subTest(address=addr):
                    if os.path.exists(log):
                        os.unlink(log)
                    env = {} if addr is None else {"SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS": addr}
                    p = self.run_healthcheck(env, tmp)
                    self.assertEqual(p.returncode, 0, p.stderr)
                    self.assertEqual(read(log).strip(), want)

    @unittest.skipUnless(shutil.which("curl"), "no curl")
    def test_healthcheck_against_a_moved_admin_port(self):
        """With real curl: healthy on the moved port, unhealthy when nothing listens there."""
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
        port = srv.server_address[1]
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        try:
            for addr in ("127.0.0.1:%d" % port, "0.0.0.0:%d" % port, ":%d" % port):
                with self.subTest(address=addr):
                    p = self.run_healthcheck({"SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS": addr})
                    self.assertEqual(p.returncode, 0, p.stderr)
        finally:
            srv.shutdown()
            srv.server_close()
        # the same port, now closed
        p = self.run_healthcheck({"SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS": ":%d" % port})
        self.assertEqual(p.returncode, 1, p.stderr)


if __name__ == "__main__":
    unittest.main()
