"""A real OpenSearch node on loopback for the tests: started from jars in ~/.m2, no download.

``scripts/fetch-opensearch.sh`` resolves OpenSearch (tests/opensearch/pom.xml) with Maven and
compiles a tiny launcher that starts a Node with the HTTP module inside one JVM. This module runs
it on free 127.0.0.1 ports with its data in a temporary directory:

    with OpenSearchNode() as node:          # plain context manager (bench/es.py uses it)
        requests go to node.url

    from tests.peers.opensearch import opensearch_fixture  # noqa: F401 (registers it)
    def test_x(opensearch: OpenSearchNode): # session-scoped pytest fixture "opensearch"
        ...

Startup takes a few seconds here (about 3-6 s on 2 shared cores); the JVM uses about 300 MB RSS
with its 512 MiB heap. Tests are skipped only if ``java`` is absent.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "opensearch"
FETCH_SCRIPT = REPO / "scripts" / "fetch-opensearch.sh"
CLASSPATH_FILE = NODE_DIR / "target" / "classpath.txt"
CLASSES_DIR = NODE_DIR / "target" / "classes"

START_TIMEOUT = 180.0


def java_available() -> bool:
    return shutil.which("java") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_built() -> str:
    """Run the fetch script (a no-op when cached) and return the JVM classpath."""
    result = subprocess.run(
        ["bash", str(FETCH_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/fetch-opensearch.sh failed:\n{result.stdout}{result.stderr}")
    return f"{CLASSES_DIR}{os.pathsep}{CLASSPATH_FILE.read_text().strip()}"


class OpenSearchNode:
    """One single-node OpenSearch cluster. ``settings`` are extra node settings, for example
    ``{"thread_pool.write.queue_size": "1"}``. ``start()``/``stop()`` may be called again to
    simulate an outage: the node comes back on the same port with the same data."""

    def __init__(
        self, settings: Mapping[str, str] | None = None, heap: str = "512m", port: int | None = None
    ) -> None:
        self.extra_settings = dict(settings or {})
        self.heap = heap
        self.port = port or _free_port()
        self.transport_port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = Path(tempfile.mkdtemp(prefix="opensearch-test-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds = 0.0

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.process is not None:
            return
        classpath = ensure_built()
        (self.home / "config").mkdir(parents=True, exist_ok=True)
        (self.home / "config" / "opensearch.yml").touch()
        settings = {
            "path.home": str(self.home),
            "path.data": str(self.home / "data"),
            "path.logs": str(self.home / "logs"),
            "cluster.name": "agent-test",
            "node.name": "agent-test-node",
            "network.host": "127.0.0.1",
            "http.port": str(self.port),
            "transport.port": str(self.transport_port),
            "discovery.type": "single-node",
            # a nearly full disk here must not make the test indices read-only
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            **self.extra_settings,
        }
        command = [
            "java",
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            "-Dlog4j2.disable.jmx=true",
            "-Dlauncher.exitOnStdinClose=true",
            "-cp",
            classpath,
            "OpenSearchLauncher",
            *(f"{key}={value}" for key, value in settings.items()),
        ]
        began = time.monotonic()
        log = open(self.home / "node.log", "ab")  # noqa: SIM115 - owned by the process
        try:
            # stdin is a pipe only we hold: if this process dies, the node exits too
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"OpenSearch exited with {self.process.returncode} during startup:\n"
                    + self.log_tail()
                )
            try:
                health = self.request("GET", "/_cluster/health?wait_for_status=yellow&timeout=5s")
                if health.get("status") in ("green", "yellow"):
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"OpenSearch not healthy after {timeout:.0f}s:\n" + self.log_tail()
                )
            time.sleep(0.25)

    def stop(self) -> None:
        """SIGTERM the process group (the node closes cleanly), SIGKILL it after 30 s."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> OpenSearchNode:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = (self.home / "node.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def rss_bytes(self) -> int:
        """Resident memory of the JVM (Linux), for the record."""
        if self.process is None:
            return 0
        try:
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    # ------------------------------------------------------------------ a tiny REST client

    def request(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        """JSON in, JSON out; an HTTP error status still returns its JSON body."""
        data = None
        headers = {}
        if body is not None:
            if isinstance(body, bytes | str):
                data = body.encode() if isinstance(body, str) else body
                headers["Content-Type"] = "application/x-ndjson"
            else:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                return json.loads(payload)
            except ValueError:
                return {"status": error.code, "error": payload.decode(errors="replace")}

    def refresh(self, index: str = "_all") -> None:
        self.request("POST", f"/{index}/_refresh")

    def count(self, index: str, query: dict[str, Any] | None = None) -> int:
        self.refresh(index)
        body = {"query": query or {"match_all": {}}}
        result = self.request("POST", f"/{index}/_count", body)
        if result.get("status") == 503:
            # "all shards failed": the agent's first bulk request has just created the index
            # and its primary shard is still starting; ask again once it has. (The index's
            # health is already "yellow" then: wait for the shard itself.)
            self.request(
                "GET",
                f"/_cluster/health/{index}?wait_for_no_initializing_shards=true"
                "&wait_for_active_shards=1&timeout=30s",
            )
            result = self.request("POST", f"/{index}/_count", body)
        if "count" not in result:
            if result.get("status") == 404:
                return 0  # no such index (yet)
            raise AssertionError(f"count on {index} failed: {result}")
        return int(result["count"])

    def search(self, index: str, size: int = 10000, **body: Any) -> list[dict[str, Any]]:
        self.refresh(index)
        result = self.request("POST", f"/{index}/_search", {"size": size, **body})
        if "hits" not in result:
            raise AssertionError(f"search on {index} failed: {result}")
        hits: list[dict[str, Any]] = result["hits"]["hits"]
        return hits

    def delete_index(self, pattern: str) -> None:
        self.request("DELETE", f"/{pattern}?expand_wildcards=all")


@pytest.fixture(scope="session", name="opensearch")
def opensearch_fixture() -> Iterator[OpenSearchNode]:
    """One OpenSearch node shared by the session's tests (each test uses its own indices)."""
    if not java_available():
        pytest.skip("java is not installed: the real OpenSearch node cannot run")
    with OpenSearchNode() as node:
        yield node
