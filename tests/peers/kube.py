"""A real Kubernetes API server (kube-apiserver with Debian's etcd) on free loopback ports.

    with KubeApiServer() as kube:              # skips the test if the binary is not built
        kube.create_namespace("t1", labels={"team": "a"})
        kube.create_pod("t1", "web-7d4b9c8f5d-x2x9q", node="node-a", containers={"app": "nginx"})
        kube.set_container_ids("t1", "web-7d4b9c8f5d-x2x9q", {"app": "containerd://abc..."})
        kube.delete_pod("t1", "web-7d4b9c8f5d-x2x9q")
        kube.stop_apiserver(); kube.start_apiserver()   # an outage; etcd (the state) stays

No controller manager, scheduler or kubelet: pods are accepted with ``spec.nodeName`` set, their
status is written through the status subresource, and a delete uses ``gracePeriodSeconds=0``.
The ServiceAccount admission plugin is off (no ``default`` ServiceAccount is needed). Tokens come
from a static token file: ``ADMIN_TOKEN`` (system:masters) and ``AGENT_TOKEN`` (user
``agent``, which RBAC grants nothing until a test binds a role to it); ``client_cert`` /
``client_key`` authenticate as that same user with a certificate. Both processes run in
their own process groups and are killed with them; the temporary directory is removed.

The binary is built by ``scripts/build-kube-apiserver.sh`` (``make test`` does it once).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.peers.base import Peer

KUBE_VERSION = os.environ.get("KUBE_VERSION", "1.34.4")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
KUBE_APISERVER = Path(
    os.environ.get("KUBE_APISERVER")
    or CACHE / "container-audit-agent" / "kube-apiserver" / f"kube-apiserver-v{KUBE_VERSION}"
)
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ADMIN_TOKEN = "admin-token-for-tests"
AGENT_TOKEN = "agent-token-for-tests"


def missing() -> str | None:
    """Why the peer cannot run here, or None."""
    if not KUBE_APISERVER.exists():
        return f"kube-apiserver not built ({KUBE_APISERVER}): run scripts/build-kube-apiserver.sh"
    if not os.path.exists(ETCD):
        return "etcd not installed (apt-get install etcd-server)"
    if not shutil.which("openssl"):
        return "openssl not installed"
    return None


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    except ProcessLookupError:
        pass


class KubeApiServer(Peer):
    def __init__(self, authorization: str = "RBAC") -> None:
        self.authorization = authorization
        self.dir = Path(tempfile.mkdtemp(prefix="kube-peer-"))
        self.port = free_port()
        self.etcd_port = free_port()
        self.etcd_peer_port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd: subprocess.Popen[bytes] | None = None
        self.apiserver: subprocess.Popen[bytes] | None = None
        self._ssl = ssl.create_default_context()
        self._ssl.check_hostname = False
        self._ssl.verify_mode = ssl.CERT_NONE

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> KubeApiServer:
        reason = missing()
        if reason:
            import pytest

            pytest.skip(reason)
        try:
            self._prepare()
            self._start_etcd()
            self.start_apiserver()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        _kill_group(self.apiserver)
        _kill_group(self.etcd)
        self.apiserver = self.etcd = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def _prepare(self) -> None:
        (self.dir / "certs").mkdir()
        (self.dir / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},admin,admin,"system:masters"\n{AGENT_TOKEN},agent,agent\n'
        )
        # A client CA and a certificate for user "agent" signed by it (kubeconfig client certs).
        d = self.dir
        for command in (
            [
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                d / "client-ca.key",
                "-out",
                d / "client-ca.crt",
                "-subj",
                "/CN=test-client-ca",
                "-days",
                "2",
            ],
            [
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                d / "client.key",
                "-out",
                d / "client.csr",
                "-subj",
                "/CN=agent",
            ],
            [
                "x509",
                "-req",
                "-in",
                d / "client.csr",
                "-CA",
                d / "client-ca.crt",
                "-CAkey",
                d / "client-ca.key",
                "-CAcreateserial",
                "-out",
                d / "client.crt",
                "-days",
                "2",
            ],
        ):
            subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
        key, pub = self.dir / "sa.key", self.dir / "sa.pub"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(pub)],
            check=True,
            capture_output=True,
        )

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_port}"
        self.etcd = subprocess.Popen(
            [
                ETCD,
                "--name=peer",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=peer={peer}",
                "--log-level=error",
            ],
            stdout=open(self.dir / "etcd.log", "wb"),  # noqa: SIM115 (the child owns it)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=1) as response:
                    if b"true" in response.read():
                        return
            except OSError:
                pass
            if self.etcd.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"etcd did not start: {(self.dir / 'etcd.log').read_text()[-2000:]}")

    def start_apiserver(self) -> None:
        d = self.dir
        self.apiserver = subprocess.Popen(
            [
                str(KUBE_APISERVER),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={d / 'certs'}",
                f"--token-auth-file={d / 'tokens.csv'}",
                f"--client-ca-file={d / 'client-ca.crt'}",
                f"--service-account-key-file={d / 'sa.pub'}",
                f"--service-account-signing-key-file={d / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--authorization-mode={self.authorization}",
                "--endpoint-reconciler-type=none",
                "--disable-admission-plugins=ServiceAccount",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--enable-priority-and-fairness=false",
                "--v=0",
            ],
            stdout=open(d / "apiserver.log", "ab"),  # noqa: SIM115 (the child owns it)
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/readyz", raw=True) == b"ok":
                    return
            except (OSError, RuntimeError):
                pass
            if self.apiserver.poll() is not None:
                break
            time.sleep(0.2)
        log = (d / "apiserver.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"kube-apiserver did not become ready: {log}")

    def stop_apiserver(self) -> None:
        _kill_group(self.apiserver)
        self.apiserver = None

    @property
    def client_cert(self) -> Path:
        return self.dir / "client.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "client.key"

    @property
    def ca_file(self) -> str:
        """The self-signed serving certificate the API server made (its own CA)."""
        return str(self.dir / "certs" / "apiserver.crt")

    # -------------------------------------------------------------------- API
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str = ADMIN_TOKEN,
        content_type: str = "application/json",
        raw: bool = False,
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, context=self._ssl, timeout=30) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:500]!r}") from None
        return payload if raw else json.loads(payload)

    def status_code(self, method: str, path: str, token: str) -> int:
        try:
            self.request(method, path, token=token, raw=True)
        except RuntimeError as exc:
            return int(str(exc).split("HTTP ", 1)[1].split(":", 1)[0])
        return 200

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        meta: dict[str, Any] = {"name": name}
        if labels:
            meta["labels"] = labels
        self.request(
            "POST",
            "/api/v1/namespaces",
            {"apiVersion": "v1", "kind": "Namespace", "metadata": meta},
        )

    def label_namespace(self, name: str, labels: dict[str, str | None]) -> None:
        self.request(
            "PATCH",
            f"/api/v1/namespaces/{name}",
            {"metadata": {"labels": labels}},
            content_type="application/merge-patch+json",
        )

    def create_pod(
        self,
        namespace: str,
        name: str,
        node: str,
        containers: dict[str, str],
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        owner: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": name,
            "labels": labels or {},
            "annotations": annotations or {},
        }
        if owner is not None:
            kind, owner_name = owner
            api = "apps/v1" if kind in ("ReplicaSet", "DaemonSet", "StatefulSet") else "batch/v1"
            meta["ownerReferences"] = [
                {
                    "apiVersion": api,
                    "kind": kind,
                    "name": owner_name,
                    "controller": True,
                    "uid": "00000000-0000-0000-0000-000000000001",
                }
            ]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "nodeName": node,
                "containers": [{"name": c, "image": i} for c, i in containers.items()],
            },
        }
        return self.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)

    def set_container_ids(self, namespace: str, name: str, ids: dict[str, str]) -> None:
        """``status.containerStatuses`` through the status subresource (as kubelet would)."""
        pod = self.request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        images = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
        statuses = [
            {
                "name": container,
                "containerID": cid,
                "image": images.get(container, ""),
                "imageID": f"{images.get(container, '')}@sha256:" + "ab" * 32,
                "ready": True,
                "restartCount": 0,
                "started": True,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }
            for container, cid in ids.items()
        ]
        self.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}/status",
            {"status": {"phase": "Running", "containerStatuses": statuses}},
            content_type="application/merge-patch+json",
        )

    def label_pod(self, namespace: str, name: str, labels: dict[str, str | None]) -> None:
        self.request(
            "PATCH",
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            {"metadata": {"labels": labels}},
            content_type="application/merge-patch+json",
        )

    def delete_pod(self, namespace: str, name: str) -> None:
        self.request(
            "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", {"gracePeriodSeconds": 0}
        )

    def apply_rbac(self, user: str = "agent") -> None:
        """The agent's ClusterRole exactly as manifests/base/rbac.yaml ships it, bound to
        ``user`` (a static-token user standing in for the ServiceAccount)."""
        import yaml

        manifest = Path(__file__).resolve().parents[2] / "manifests" / "base" / "rbac.yaml"
        role = next(
            doc for doc in yaml.safe_load_all(manifest.read_text()) if doc["kind"] == "ClusterRole"
        )
        rules = role["rules"]
        self.request(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "container-audit-agent"},
                "rules": rules,
            },
        )
        self.request(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "container-audit-agent"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "container-audit-agent",
                },
                "subjects": [
                    {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}
                ],
            },
        )

    def etcd_compact(self) -> int:
        """Compact etcd's history up to now (old resourceVersions then answer 410 Gone)."""
        base = f"http://127.0.0.1:{self.etcd_port}/v3"
        key = base64.b64encode(b"/registry").decode()
        req = urllib.request.Request(
            f"{base}/kv/range", data=json.dumps({"key": key, "limit": 1}).encode(), method="POST"
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            revision = int(json.loads(response.read())["header"]["revision"])
        req = urllib.request.Request(
            f"{base}/kv/compaction",
            data=json.dumps({"revision": revision, "physical": True}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as response:
            response.read()
        return revision
