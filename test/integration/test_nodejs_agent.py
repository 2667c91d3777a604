"""The real SkyWalking Node.js agent (npm skywalking-backend-js) instrumenting a tiny HTTP
app (nodejs/app.js), reporting to a fake OAP: once directly (proves the app, the agent and
the fake), once through skyrelay. Asserts that the trace segments are credited to the
app's service and that the agent's heartbeat (ManagementService keepAlive and
reportInstanceProperties) reaches the OAP for its instance.

The agent is installed with npm into a temp dir (cache: build/npm-cache). If the npm
registry cannot be reached, the tests are skipped with the reason; any other install
failure fails them."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

from harness import BUILD, Case, Proc, free_port, pipes, wait_summary, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.join(HERE, "nodejs")
NPM_CACHE = os.path.join(BUILD, "npm-cache")

SERVICE = "node-app"
INSTANCE = "node-app-1"
KEY = SERVICE + "|" + INSTANCE
REQUESTS = 20
TIMEOUT = 60  # seconds to wait for the OAP to see what the agent reports

# npm's own words for a registry it cannot reach
NETWORK_ERROR = re.compile(
    r"(code (ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH"
    r"|ESOCKETTIMEDOUT|ERR_SOCKET_TIMEOUT|ECONNABORTED|EPROTO|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)"
    r"|network request to .* failed|request to https?://\S+ failed)")


def node_major():
    out = subprocess.run(["node", "--version"], stdout=subprocess.PIPE, timeout=30).stdout
    return int(out.decode().strip().lstrip("v").split(".")[0])


class NodeAgent(Case):
    """Installs the agent once for the class; each test starts its own processes."""

    @classmethod
    def setUpClass(cls):
        for tool in ("node", "npm"):
            if not shutil.which(tool):
                raise AssertionError("%s not found: install Debian's nodejs package" % tool)
        cls.install = tempfile.TemporaryDirectory(prefix="skyrelay-node-")
        d = cls.install.name
        shutil.copy(os.path.join(APP_DIR, "package.json"), d)
        shutil.copy(os.path.join(APP_DIR, "app.js"), d)
        args = ["npm", "install", "--no-audit", "--no-fund", "--ignore-scripts",
                "--prefer-offline", "--cache", NPM_CACHE, "--fetch-timeout", "60000",
                "--fetch-retries", "1"]
        major = node_major()
        if major < 20:
            # skywalking-backend-js 0.9.0 declares engines node >= 20; 0.7.0 declares none
            args.append("skywalking-backend-js@0.7.0")
        env = dict(os.environ, npm_config_update_notifier="false")
        t0 = time.time()
        p = subprocess.Popen(args, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=env, start_new_session=True)
        try:
            out, _ = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # npm and its children, by our child's group
            p.communicate(timeout=10)
            cls.install.cleanup()
            raise unittest.SkipTest("npm registry unreachable: npm install timed out after 240 s")
        out = out.decode("utf-8", "replace")
        if p.returncode != 0:
            cls.install.cleanup()
            m = NETWORK_ERROR.search(out)
            if m:
                raise unittest.SkipTest("npm registry unreachable: " + m.group(0))
            raise AssertionError("npm install failed (%d):\n%s" % (p.returncode, out[-4000:]))
        with open(os.path.join(d, "node_modules", "skywalking-backend-js", "package.json")) as f:
            cls.agent_version = json.load(f)["version"]
        sys.stderr.write("\n  [node %s, skywalking-backend-js %s, npm install %.1fs] "
                         % (major, cls.agent_version, time.time() - t0))
        cls.app_js = os.path.join(d, "app.js")

    @classmethod
    def tearDownClass(cls):
        cls.install.cleanup()

    def start_app(self, collector):
        port = free_port()
        env = {
            "SW_AGENT_COLLECTOR_BACKEND_SERVICES": collector,
            "SW_AGENT_NAME": SERVICE,
            "SW_AGENT_INSTANCE": INSTANCE,
            "SW_TEST_HEARTBEAT_MS": "1000",
            "APP_PORT": str(port),
        }
        app = Proc(["node", self.app_js], self.dir, "node-app", env=env)
        self.procs.append(app)
        wait_until(lambda: "listening" in app.output() or not app.alive(), 30, "node app to listen")
        if not app.alive():
            raise AssertionError("node app exited:\n" + app.output())
        return app, port

    def drive(self, port):
        for i in range(REQUESTS):
            with urllib.request.urlopen("http://127.0.0.1:%d/hello/%d" % (port, i),
                                        timeout=10) as r:
                self.assertEqual(r.status, 200)
                json.loads(r.read())

    def check_reports(self, oap, app):
        try:
            s = wait_summary(
                oap, lambda s: s["segments"]["by_service"].get(SERVICE, 0) >= REQUESTS,
                TIMEOUT, "%d segments of %s" % (REQUESTS, SERVICE))
            s = wait_summary(
                oap, lambda s: (s["management"]["keepalive_by_instance"].get(KEY, 0) >= 1 and
                                s["management"]["properties_by_instance"].get(KEY, 0) >= 1),
                TIMEOUT, "keepAlive and reportInstanceProperties of " + KEY)
        except AssertionError:
            sys.stderr.write("\n--- node app output ---\n%s\n" % app.output()[-3000:])
            raise
        time.sleep(0.5)  # let a wrong extra segment show up
        s = oap.summary()
        sys.stderr.write("\n  [fake OAP calls: %s] " % json.dumps(s["calls"], sort_keys=True))
        # one entry span, so one segment, per HTTP request; nothing else is traced
        self.assertEqual(s["segments"]["by_service"], {SERVICE: REQUESTS})
        self.assertEqual(s["segments"]["by_instance"], {KEY: REQUESTS})
        self.assertEqual(s["segments"]["duplicates"], 0)
        self.assertEqual(s["decode_errors"], 0)
        self.assertEqual(s["unimplemented"], {})
        return s

    def stop_app(self, app):
        rc = app.stop(signal.SIGTERM, timeout=10)
        self.assertEqual(rc, 0, app.output()[-3000:])

    def test_agent_reports_directly_to_fake_oap(self):
        oap = self.oap("oap")
        app, port = self.start_app(oap.address)
        self.drive(port)
        self.check_reports(oap, app)
        self.stop_app(app)

    def test_agent_reports_through_skyrelay(self):
        oap = self.oap("oap")
        relay = self.relay([oap], pipes())
        app, port = self.start_app(relay.address)
        self.drive(port)
        self.check_reports(oap, app)
        self.stop_app(app)


if __name__ == "__main__":
    unittest.main()
