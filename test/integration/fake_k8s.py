"""A fake Kubernetes API server for the Kubernetes finder's tests.

Runs in the test's own process (threads), over HTTPS on 127.0.0.1 with a
self-signed certificate made by the `openssl` CLI, and serves just what the
finder uses:

  GET /api/v1/namespaces/{ns}/pods[?labelSelector=&fieldSelector=]           PodList
  GET /apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices[?labelSelector=] EndpointSliceList
  ... &watch=1&resourceVersion=RV[&allowWatchBookmarks=true][&timeoutSeconds=N]
      a chunked stream of WatchEvent JSON lines, one flushed chunk per event

Requests without "Authorization: Bearer <token>" get 401 with a Status. Every
change bumps one cluster-wide resourceVersion (like etcd) and is kept in a
history, so a watch from RV replays what happened after RV and then follows
new changes. A watch from an RV older than the last expire() gets an ERROR
event with a 410 Status, as the real server does.

The test drives it through methods: add_pod, set_ready, terminate_pod,
delete_pod, put_slice, delete_slice, send_bookmark, expire, cut_watch,
end_watches. Every request is recorded (see requests(), lists(), watches()).
"""
import json
import os
import socket
import ssl
import struct
import subprocess
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POD = "pods"
SLICE = "endpointslices"


def _match_labels(selector, labels):
    """Equality-based label selectors: k=v, k==v, k!=v, k, !k (comma = AND)."""
    for term in filter(None, (t.strip() for t in (selector or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class _Watch:
    """One open watch request; guarded by FakeK8s.cond."""

    def __init__(self, kind, ns, selector, cursor):
        self.kind = kind
        self.ns = ns
        self.selector = selector
        self.cursor = cursor   # last resourceVersion sent
        self.extra = []        # out-of-history events to send (bookmarks, errors)
        self.end = False       # finish the response cleanly after `extra`
        self.cut = False       # close the connection abruptly


class FakeK8s:
    def __init__(self, workdir, token="test-token", tls=True):
        self.workdir = workdir
        self.token = token
        self.cond = threading.Condition()
        self.rv = 1000
        self.compacted = 0       # watches from an RV below this get 410
        self.objects = {}        # (kind, ns, name) -> state dict
        self.history = []        # (rv, kind, ns, labels, event dict)
        self.open_watches = []
        self._requests = []
        self.closing = False
        self.always_gone = False  # every watch answers 410 at once (a server that cannot watch)

        self.ca_file = os.path.join(workdir, "k8s-ca.crt")
        self.key_file = os.path.join(workdir, "k8s.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-days", "1", "-keyout", self.key_file, "-out", self.ca_file],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.token_file = os.path.join(workdir, "k8s-token")
        with open(self.token_file, "w") as f:
            f.write(token + "\n")

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ca_file, self.key_file)
        handler = type("Handler", (_Handler,), {"fake": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        # handshake in the handler thread, not in the accept loop
        if tls:
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True,
                                                do_handshake_on_connect=False)
        self.port = self.httpd.server_address[1]
        self.url = "%s://127.0.0.1:%d" % ("https" if tls else "http", self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fake-k8s",
                                       daemon=True)
        self.thread.start()

    def stop(self):
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- objects ----

    def _render(self, st):
        meta = {"name": st["name"], "namespace": st["ns"], "uid": st["uid"],
                "resourceVersion": str(st["rv"]), "labels": dict(st["labels"]),
                "creationTimestamp": "2024-05-02T09:14:07Z"}
        if st["kind"] == SLICE:
            eps = []
            for e in st["endpoints"]:
                ep = {"addresses": list(e["addresses"]),
                      "targetRef": {"kind": "Pod", "namespace": st["ns"], "name": e.get("pod", "")}}
                if e.get("ready") is not None:
                    ep["conditions"] = {"ready": e["ready"], "serving": e["ready"],
                                        "terminating": False}
                eps.append(ep)
            return {"kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1", "metadata": meta,
                    "addressType": st["address_type"], "endpoints": eps or None,
                    "ports": [{"name": "grpc", "protocol": "TCP", "port": 11800}]}
        if st["deleting"]:
            meta["deletionTimestamp"] = "2024-05-02T10:00:00Z"
            meta["deletionGracePeriodSeconds"] = 30
        ready = "True" if st["ready"] else "False"
        status = {"phase": st["phase"], "hostIP": "172.18.0.2", "startTime": "2024-05-02T09:14:07Z",
                  "qosClass": "BestEffort",
                  "conditions": [
                      {"type": "Initialized", "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": "2024-05-02T09:14:07Z"},
                      {"type": "Ready", "status": ready, "lastProbeTime": None,
                       "lastTransitionTime": "2024-05-02T09:15:01Z"},
                      {"type": "ContainersReady", "status": ready, "lastProbeTime": None,
                       "lastTransitionTime": "2024-05-02T09:15:01Z"},
                      {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                       "lastTransitionTime": "2024-05-02T09:14:07Z"}]}
        if st["ip"]:
            status["podIP"] = st["ip"]
            status["podIPs"] = [{"ip": st["ip"]}]
        return {"kind": "Pod", "apiVersion": "v1", "metadata": meta,
                "spec": {"containers": [{"name": "oap", "image": "apache/skywalking-oap-server",
                                         "ports": [{"containerPort": 11800, "protocol": "TCP"}]}]},
                "status": status}

    def _change(self, kind, ns, name, etype, mutate=None, create=None):
        with self.cond:
            key = (kind, ns, name)
            st = self.objects.get(key)
            if create is not None:
                if st is not None:
                    raise KeyError("%s/%s exists" % (ns, name))
                st = dict(create, kind=kind, ns=ns, name=name, uid=str(uuid.uuid4()))
                self.objects[key] = st
            elif st is None:
                raise KeyError("%s/%s not found" % (ns, name))
            if mutate:
                mutate(st)
            self.rv += 1
            st["rv"] = self.rv
            if etype == "DELETED":
                del self.objects[key]
            self.history.append((self.rv, kind, ns, dict(st["labels"]),
                                 {"type": etype, "object": self._render(st)}))
            self.cond.notify_all()
            return self.rv

    def add_pod(self, name, ip, ready=True, ns="default", labels=None, phase="Running"):
        return self._change(POD, ns, name, "ADDED", create={
            "ip": ip, "ready": ready, "phase": phase, "deleting": False,
            "labels": labels if labels is not None else {"app": "oap"}})

    def set_ready(self, name, ready, ns="default"):
        return self._change(POD, ns, name, "MODIFIED", lambda st: st.update(ready=ready))

    def terminate_pod(self, name, ns="default"):
        """Sets deletionTimestamp (the pod may still report Ready)."""
        return self._change(POD, ns, name, "MODIFIED", lambda st: st.update(deleting=True))

    def delete_pod(self, name, ns="default"):
        return self._change(POD, ns, name, "DELETED")

    def put_slice(self, name, endpoints, ns="default", labels=None, address_type="IPv4"):
        """endpoints: [{"addresses": [...], "ready": True|False|None}]; creates or replaces."""
        labels = labels if labels is not None else {"kubernetes.io/service-name": "oap"}
        with self.cond:
            exists = (SLICE, ns, name) in self.objects
        if exists:
            return self._change(SLICE, ns, name, "MODIFIED",
                                lambda st: st.update(endpoints=endpoints, labels=labels))
        return self._change(SLICE, ns, name, "ADDED", create={
            "endpoints": endpoints, "labels": labels, "address_type": address_type})

    def delete_slice(self, name, ns="default"):
        return self._change(SLICE, ns, name, "DELETED")

    # ---- watch control ----

    def send_bookmark(self):
        """Sends a BOOKMARK with the current resourceVersion to every open watch."""
        with self.cond:
            for w in self.open_watches:
                kind = "Pod" if w.kind == POD else "EndpointSlice"
                w.extra.append({"type": "BOOKMARK", "object": {
                    "kind": kind, "apiVersion": "v1" if w.kind == POD else "discovery.k8s.io/v1",
                    "metadata": {"resourceVersion": str(self.rv)}}})
            n = len(self.open_watches)
            self.cond.notify_all()
            return n

    def expire(self):
        """Compacts history: every RV handed out so far becomes too old. Open watches
        get an ERROR event with a 410 Status and end; later watches from an old RV too."""
        with self.cond:
            self.rv += 1
            self.compacted = self.rv
            for w in self.open_watches:
                w.extra.append(self._expired_event(w.cursor))
                w.end = True
            n = len(self.open_watches)
            self.cond.notify_all()
            return n

    def cut_watch(self):
        """Closes every open watch connection abruptly (no chunked terminator)."""
        with self.cond:
            for w in self.open_watches:
                w.cut = True
            n = len(self.open_watches)
            self.cond.notify_all()
            return n

    def end_watches(self):
        """Ends every open watch normally, as when its timeoutSeconds runs out."""
        with self.cond:
            for w in self.open_watches:
                w.end = True
            n = len(self.open_watches)
            self.cond.notify_all()
            return n

    def _expired_event(self, rv):
        return {"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "too old resource version: %d (%d)" % (rv, self.compacted),
            "reason": "Expired", "code": 410}}

    # ---- requests seen ----

    def _record(self, rec):
        with self.cond:
            self._requests.append(rec)
            self.cond.notify_all()

    def requests(self):
        with self.cond:
            return list(self._requests)

    def lists(self, ns=None, kind=None, ok=None):
        return [r for r in self.requests() if not r["watch"] and (ns is None or r["ns"] == ns)
                and (kind is None or r["kind"] == kind) and (ok is None or r["ok"] == ok)]

    def watches(self, ns=None):
        return [r for r in self.requests() if r["watch"] and (ns is None or r["ns"] == ns)]

    def open_watch_count(self, ns=None):
        with self.cond:
            return len([w for w in self.open_watches if ns is None or w.ns == ns])

    def current_rv(self):
        with self.cond:
            return self.rv


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake = None  # set on the subclass

    def setup(self):
        super().setup()
        if not isinstance(self.connection, ssl.SSLSocket):  # FakeK8s(tls=False)
            return
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            self.close_connection = True

    def log_message(self, fmt, *args):
        pass

    def _send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _status(self, code, reason, message):
        self._send_json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                               "status": "Failure", "message": message, "reason": reason,
                               "code": code})

    def do_GET(self):
        fake = self.fake
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        parts = url.path.strip("/").split("/")
        kind = ns = None
        if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == POD:
            kind, ns = POD, parts[3]
        elif (len(parts) == 6 and parts[:4] == ["apis", "discovery.k8s.io", "v1", "namespaces"]
              and parts[5] == SLICE):
            kind, ns = SLICE, parts[4]
        watch = q.get("watch") in ("1", "true")
        ok = self.headers.get("Authorization") == "Bearer " + fake.token
        fake._record({"path": url.path, "query": q, "kind": kind, "ns": ns, "watch": watch,
                      "ok": ok, "time": time.time()})
        if not ok:
            return self._status(401, "Unauthorized", "Unauthorized")
        if kind is None:
            return self._status(404, "NotFound", "the server could not find the requested resource")
        selector = q.get("labelSelector", "")
        if not watch:
            with fake.cond:
                items = [fake._render(st) for (k, n, _), st in sorted(fake.objects.items())
                         if k == kind and n == ns and _match_labels(selector, st["labels"])]
                rv = fake.rv
            list_kind, api = ("PodList", "v1") if kind == POD else \
                ("EndpointSliceList", "discovery.k8s.io/v1")
            return self._send_json(200, {"kind": list_kind, "apiVersion": api,
                                         "metadata": {"resourceVersion": str(rv)}, "items": items})
        self._watch(kind, ns, selector, q)

    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, kind, ns, selector, q):
        fake = self.fake
        try:
            rv = int(q.get("resourceVersion") or 0)
        except ValueError:
            return self._status(400, "BadRequest", "bad resourceVersion")
        timeout = float(q.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        w = _Watch(kind, ns, selector, rv)
        deadline = time.time() + timeout
        with fake.cond:
            if rv < fake.compacted or fake.always_gone:
                w.extra.append(fake._expired_event(rv))
                w.end = True
            fake.open_watches.append(w)
        try:
            while True:
                with fake.cond:
                    while True:
                        out = [ev for (erv, k, n, labels, ev) in fake.history
                               if erv > w.cursor and k == kind and n == ns
                               and _match_labels(selector, labels)]
                        if out or w.extra or w.end or w.cut or fake.closing:
                            break
                        left = deadline - time.time()
                        if left <= 0:
                            w.end = True
                            break
                        fake.cond.wait(min(left, 0.5))
                    if fake.history:
                        w.cursor = max(w.cursor, fake.history[-1][0])
                    if w.cut:
                        break
                    # history first: a 410 or bookmark comes after what happened before it
                    out = [json.dumps(ev).encode() + b"\n" for ev in out]
                    out += [json.dumps(ev).encode() + b"\n" for ev in w.extra]
                    w.extra = []
                    end = w.end or fake.closing
                for line in out:
                    self._chunk(line)
                if end:
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    return
            # cut: no terminating chunk, no TLS close_notify, just the TCP connection gone
            self.close_connection = True
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))  # RST on close
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        except (OSError, ssl.SSLError):
            self.close_connection = True
        finally:
            with fake.cond:
                if w in fake.open_watches:
                    fake.open_watches.remove(w)
