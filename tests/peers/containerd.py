"""A real containerd (Debian's, with runc) started by a test, driven through its CRI plugin by
``crictl``: it runs a pod sandbox and a container, and writes the container's output exactly as it
does for kubelet, under the pod's log directory.

Everything lives in the test's directory: containerd's root, state and socket, the image (built
here from Debian's busybox-static: no registry is reached), the pod's logs. The pod uses the
node's network, so no CNI plugin is needed. Stopping removes the pod (its shim exits) and stops
containerd. Needs root (runc), ``containerd``, ``runc``, ``busybox`` (static) and ``crictl``
(``go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0``; found on PATH, in ~/go/bin or $CRICTL).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path

from tests.peers.base import Peer

IMAGE = "docker.io/local/busybox:1"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"


def crictl_path() -> str | None:
    for candidate in (
        os.environ.get("CRICTL"),
        shutil.which("crictl"),
        str(Path.home() / "go" / "bin" / "crictl"),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _static(path: str) -> bool:
    """The image has no libc: busybox must be the static build (Debian's busybox-static)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(1 << 20)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in head and b"ld-linux" not in head


def available() -> bool:
    return (
        os.geteuid() == 0
        and shutil.which("containerd") is not None
        and shutil.which("runc") is not None
        and shutil.which("ctr") is not None
        and crictl_path() is not None
        and _static(BUSYBOX)
    )


def busybox_image(path: Path) -> Path:
    """An OCI image archive: busybox and a few applet links, ``sleep infinity`` as entrypoint
    (it also serves as the pod's sandbox image)."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        for directory in ("bin", "tmp", "proc", "dev", "sys", "etc"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in ("sh", "sleep", "echo", "seq", "printf", "cat"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest, len(data)

    diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    layer_digest, layer_size = blob(gzip.compress(layer.getvalue()))
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/bin/sleep", "infinity"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_digest, config_size = blob(json.dumps(config).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer_size,
            }
        ],
    }
    manifest_digest, manifest_size = blob(json.dumps(manifest).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {
                    "org.opencontainers.image.ref.name": IMAGE,
                    "io.containerd.image.name": IMAGE,
                },
                "platform": {"architecture": "amd64", "os": "linux"},
            }
        ],
    }
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add(f"blobs/sha256/{digest.split(':', 1)[1]}", data)
    return path


CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  # a sandboxed test machine may not lower oom_score_adj (kubelet's -998 for the sandbox)
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      BinaryName = "{runc}"
"""


class Containerd(Peer):
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        # UNIX socket paths are short (108 bytes): the socket lives in a short directory.
        self.socket_dir = Path(f"/tmp/ctrd-{os.getpid()}-{time.monotonic_ns() % 10**9}")
        self.socket = self.socket_dir / "c.sock"
        self.logs = workdir / "pods"
        self.process: subprocess.Popen[bytes] | None = None
        self.pods: list[str] = []
        self.crictl = crictl_path() or "crictl"

    def start(self) -> Containerd:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Containerd:
        self.socket_dir.mkdir(mode=0o700)
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "containerd.toml"
        config.write_text(
            CONFIG.format(
                root=self.workdir / "root",
                state=self.socket_dir / "state",
                socket=self.socket,
                image=IMAGE,
                runc=os.environ.get("CONTAINERD_RUNC", shutil.which("runc") or "runc"),
            )
        )
        self.log_file = open(self.workdir / "containerd.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            ["containerd", "--config", str(config)],
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"containerd did not start: {self.log()}")
            time.sleep(0.1)
        archive = busybox_image(self.workdir / "busybox.tar")
        subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", "images", "import",
             str(archive)],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        return self

    def log(self) -> str:
        path = self.workdir / "containerd.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def cri(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [self.crictl, "--runtime-endpoint", f"unix://{self.socket}",
             "--image-endpoint", f"unix://{self.socket}", *args],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"crictl {' '.join(args)}: {done.stderr}\n{self.log()}")
        return done.stdout.strip()

    def run(self, namespace: str, pod: str, uid: str, container: str, script: str) -> Path:
        """A pod with one container running ``sh -c script``; returns its log file (what
        /var/log/containers would link to)."""
        log_directory = self.logs / f"{namespace}_{pod}_{uid}"
        pod_config = self.workdir / f"{pod}-pod.json"
        pod_config.write_text(
            json.dumps(
                {
                    "metadata": {"name": pod, "namespace": namespace, "uid": uid, "attempt": 0},
                    "log_directory": str(log_directory),
                    "linux": {"security_context": {"namespace_options": {"network": 2}}},
                }
            )
        )
        container_config = self.workdir / f"{pod}-{container}.json"
        container_config.write_text(
            json.dumps(
                {
                    "metadata": {"name": container},
                    "image": {"image": IMAGE},
                    "command": ["/bin/sh", "-c", script],
                    "log_path": f"{container}/0.log",
                    "linux": {},
                }
            )
        )
        pod_id = self.cri("runp", str(pod_config))
        self.pods.append(pod_id)
        container_id = self.cri("create", pod_id, str(container_config), str(pod_config))
        self.cri("start", container_id)
        return log_directory / container / "0.log"

    def stop(self) -> None:
        for pod_id in self.pods:
            try:
                self.cri("stopp", pod_id, timeout=30)
                self.cri("rmp", pod_id, timeout=30)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if hasattr(self, "log_file"):
            self.log_file.close()
        shutil.rmtree(self.socket_dir, ignore_errors=True)
