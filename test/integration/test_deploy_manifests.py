"""Deployment artefacts: the Helm chart's checked-in renders (docs/manifests/*.yaml), the chart
itself when a `helm` binary is installed, and docker/Dockerfile.

- Each render has the expected kinds and names, ports 11800/1234, /readyz and /healthz probes, a
  preStop hook and a terminationGracePeriodSeconds longer than the drain, anti-affinity, and only
  environment variables that skyrelay's configuration reads.
- The real binary accepts each render's environment (and its config override): --check-config.
- With helm on PATH: `helm lint` and `helm template` with the same values give the same objects.
  Without it, that part is skipped (helm is neither a Debian nor an npm package).
- The Dockerfile's build stage installs every build package of scripts/install-deps.sh.
"""
import os
import re
import shutil
import subprocess
import tempfile
import unittest

try:
    import yaml
except ImportError:  # pragma: no cover
    raise ImportError("python3-yaml is missing: scripts/install-deps.sh must install it")

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "helm", "skyrelay")
MANIFESTS = os.path.join(ROOT, "docs", "manifests")
SKYRELAY = os.path.join(ROOT, "build", "skyrelay")
RELEASE, NAMESPACE = "skyrelay", "skywalking"

# render file -> (values file relative to the chart or None, expected {(kind, name)})
RENDERS = {
    "skyrelay.yaml": (None, {
        ("ServiceAccount", "skyrelay"), ("Service", "skyrelay"), ("Deployment", "skyrelay")}),
    "skyrelay-kubernetes-hpa.yaml": ("ci/kubernetes-hpa-values.yaml", {
        ("ServiceAccount", "skyrelay"), ("Service", "skyrelay"), ("Deployment", "skyrelay"),
        ("Role", "skyrelay"), ("RoleBinding", "skyrelay"), ("ConfigMap", "skyrelay"),
        ("HorizontalPodAutoscaler", "skyrelay"), ("PodMonitor", "skyrelay"),
        ("PodDisruptionBudget", "skyrelay")}),
}

# Variables every render must set (Satellite's names where one exists).
ALWAYS_ENV = {
    "SATELLITE_GRPC_ADDRESS", "SATELLITE_GRPC_CLIENT_FINDER",
    "SATELLITE_GRPC_ACCEPT_LIMIT_CONNECTION_COUNT", "SATELLITE_TELEMETRY_EXPORT_TYPE",
    "SATELLITE_TELEMETRY_PROMETHEUS_ADDRESS", "SATELLITE_TELEMETRY_SERVICE",
    "SATELLITE_TELEMETRY_INSTANCE", "SATELLITE_LOGGER_LEVEL", "SKYRELAY_SHUTDOWN_GRACE_PERIOD",
    "SKYRELAY_ROUTING_POLICY", "SKYRELAY_WORKERS",
}
KUBERNETES_ENV = {
    "SATELLITE_GRPC_CLIENT_KUBERNETES_NAMESPACE", "SATELLITE_GRPC_CLIENT_KUBERNETES_KIND",
    "SATELLITE_GRPC_CLIENT_KUBERNETES_SELECTOR_LABEL", "SATELLITE_GRPC_CLIENT_KUBERNETES_EXTRA_PORT",
}
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_.-]+)")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def load_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def seconds(duration):
    m = re.fullmatch(r"(\d+)(ms|s|m)", duration)
    if not m:
        raise AssertionError("unexpected duration %r" % duration)
    n = int(m.group(1))
    return {"ms": n / 1000.0, "s": n, "m": n * 60}[m.group(2)]


class Render:
    def __init__(self, fname):
        self.fname = fname
        self.values, self.expected = RENDERS[fname]
        self.docs = load_docs(read(os.path.join(MANIFESTS, fname)))
        self.by_kind = {}
        for d in self.docs:
            self.by_kind.setdefault(d["kind"], []).append(d)

    def one(self, kind):
        docs = self.by_kind.get(kind, [])
        assert len(docs) == 1, "%s: %d %s" % (self.fname, len(docs), kind)
        return docs[0]

    @property
    def pod(self):
        return self.one("Deployment")["spec"]["template"]

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
            svc = r.one("Service")["spec"]
            self.assertEqual({(p["name"], p["port"], p["targetPort"]) for p in svc["ports"]},
                             {("grpc", 11800, "grpc"), ("http-metrics", 1234, "http-metrics")})
            sel = r.one("Deployment")["spec"]["selector"]["matchLabels"]
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
            strategy = r.one("Deployment")["spec"]["strategy"]
            self.assertEqual(strategy["rollingUpdate"]["maxUnavailable"], 0)

    def test_anti_affinity(self):
        for r in self.renders():
            aff = r.pod["spec"]["affinity"]["podAntiAffinity"]
            terms = aff["preferredDuringSchedulingIgnoredDuringExecution"]
            self.assertEqual(terms[0]["podAffinityTerm"]["topologyKey"], "kubernetes.io/hostname")
            self.assertEqual(terms[0]["podAffinityTerm"]["labelSelector"]["matchLabels"],
                             r.one("Deployment")["spec"]["selector"]["matchLabels"])

    def test_security_context(self):
        for r in self.renders():
            self.assertEqual(r.pod["spec"]["securityContext"]["runAsUser"], 10001)
            self.assertTrue(r.pod["spec"]["securityContext"]["runAsNonRoot"])
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
            # SKYRELAY_ROUTING_POLICY is optional in an override that leaves pipes out
            unread = names - read_by_config - {"SKYRELAY_ROUTING_POLICY"}
            self.assertEqual(unread, set(), "variables no placeholder of the config reads")
            if "pipes:" in r.config_text():
                self.assertIn("SKYRELAY_ROUTING_POLICY", read_by_config)

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
        self.assertIn("max_connection_age: 15m", r.config_text())
        vols = {v["name"]: v for v in r.pod["spec"]["volumes"]}
        self.assertEqual(vols["config"]["configMap"]["name"], r.one("ConfigMap")["metadata"]["name"])
        self.assertIn("checksum/config", r.pod["metadata"]["annotations"])

    @unittest.skipUnless(os.access(SKYRELAY, os.X_OK), "build/skyrelay not built")
    def test_binary_accepts_each_render(self):
        """skyrelay --check-config with the container's environment and config: what the pod
        would load. valueFrom variables get a stand-in value."""
        for r in self.renders():
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
            for name, e in r.env.items():
                env[name] = e.get("value", "token" if "AUTHENTICATION" in name else "skyrelay-0")
            with tempfile.TemporaryDirectory() as tmp:
                cfg = os.path.join(tmp, "skyrelay.yaml")
                with open(cfg, "w", encoding="utf-8") as f:
                    f.write(r.config_text())
                p = subprocess.run([SKYRELAY, "--check-config", "--config", cfg], env=env,
                                   capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


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
        for values, _ in RENDERS.values():
            extra = ["-f", os.path.join(CHART, values)] if values else []
            self.helm_run("lint", "--strict", CHART, *extra)

    def test_template_matches_checked_in_render(self):
        for fname, (values, _) in RENDERS.items():
            with self.subTest(render=fname):
                extra = ["-f", os.path.join(CHART, values)] if values else []
                out = self.helm_run("template", RELEASE, CHART, "-n", NAMESPACE,
                                    "--kube-version", "1.29.0", *extra)
                got = load_docs(out)
                want = Render(fname).docs
                key = lambda d: (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
                self.assertEqual(sorted(map(key, got)), sorted(map(key, want)))
                self.assertEqual(sorted(got, key=key), sorted(want, key=key),
                                 "docs/manifests/%s is stale: re-render it with helm template "
                                 "(docs/deploy-kubernetes.md)" % fname)


class Dockerfile(unittest.TestCase):
    def setUp(self):
        self.text = read(os.path.join(ROOT, "docker", "Dockerfile"))
        stages = re.split(r"^FROM ", self.text, flags=re.M)[1:]
        self.assertEqual(len(stages), 2)
        self.build, self.run = stages

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
                         "libjson-c5", "ca-certificates"} <= got, got)
        self.assertFalse({p for p in got if p.endswith("-dev")}, "no -dev package at run time")
        self.assertRegex(self.run, r"(?m)^USER 10001")
        self.assertRegex(self.run, r"(?m)^EXPOSE 11800 1234$")
        self.assertIn("COPY --from=build /src/build/skyrelay /usr/local/bin/skyrelay", self.run)
        self.assertIn("COPY config/skyrelay.yaml /etc/skyrelay/skyrelay.yaml", self.run)
        self.assertIn('ENTRYPOINT ["/usr/local/bin/skyrelay"]', self.run)
        self.assertIn('CMD ["--config", "/etc/skyrelay/skyrelay.yaml"]', self.run)
        self.assertRegex(self.run, r"HEALTHCHECK[^\n]*\\\n\s*CMD curl [^\n]*/healthz")
        self.assertIn("curl", got)


if __name__ == "__main__":
    unittest.main()
