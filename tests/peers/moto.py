"""A real moto S3 server (``moto_server``) on a free loopback port, for tests and benchmarks.

    with MotoServer() as moto:
        moto.client().create_bucket(Bucket="logs")
        moto.pause()      # SIGSTOP: connections open, nothing answers (a hung server)
        moto.resume()     # SIGCONT
        moto.stop(); moto.start()   # a real outage; same port, but moto's state is gone

The server runs in its own process group and is killed with it, so nothing outlives the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.peers.base import Peer

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
}
FAKE_CREDENTIALS_ENV = {
    **CREDENTIALS,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""The environment that gives botocore's standard chain moto's fake credentials and nothing
else: no credential files, no instance metadata."""


def use_fake_credentials() -> None:
    """Point botocore's standard chain at moto's fake credentials (env vars only, no files)."""
    os.environ.update(FAKE_CREDENTIALS_ENV)


class MotoServer(Peer):
    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> MotoServer:
        if not MOTO_SERVER.exists():
            raise RuntimeError(
                f"moto_server not found at {MOTO_SERVER}; pip install 'moto[server]'"
            )
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.process = subprocess.Popen(
                [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **CREDENTIALS},
            )
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        self.paused = False
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not answer on {self.url}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Kill the server's process group and wait until the port is free again."""
        process, self.process = self.process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGCONT if self.paused else 0)
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
        self.paused = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)

    def restart(self) -> MotoServer:
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing reads or answers them."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)
        self.paused = False

    def reset(self) -> None:
        """Forget every bucket and object (moto's reset API)."""
        request = urllib.request.Request(self.url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client(self, **config: Any) -> Any:
        """A synchronous boto3 S3 client for checking what arrived."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config),
        )
