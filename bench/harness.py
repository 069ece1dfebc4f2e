"""Running ``python -m agent`` as a real process: start it on a config, wait until /readyz says
ready, read its metrics, its CPU time and peak RSS, stop it (SIGTERM) or kill it (SIGKILL).

Shared by the benchmarks and the end-to-end tests.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_result(path: Path, result: dict[str, object]) -> None:
    """A benchmark's JSON, where ``--json`` says (its folder made if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class AgentProcess:
    """One agent process. ``config`` is the TOML text without ``[agent] http_listen``, which
    this class sets to a free port so it can watch the agent."""

    def __init__(
        self,
        workdir: Path,
        config: str,
        *,
        ready_timeout: float = 30.0,
        nofile: tuple[int, int] | None = None,
    ) -> None:
        self.workdir = workdir
        self.nofile = nofile
        """(soft, hard) RLIMIT_NOFILE the agent starts with; inherited when None."""
        self.http_port = free_port()
        self.config_path = workdir / "agent.toml"
        if "[agent]" in config:
            config = config.replace(
                "[agent]", f'[agent]\nhttp_listen = "127.0.0.1:{self.http_port}"', 1
            )
        else:
            config = f'[agent]\nhttp_listen = "127.0.0.1:{self.http_port}"\n' + config
        self.config_path.write_text(config)
        self.log_path = workdir / "agent.log"
        self.stdout_path = workdir / "agent.stdout"
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_timeout = ready_timeout

    def start(self, extra_env: dict[str, str] | None = None) -> AgentProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + (
            os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
        )
        env.update(extra_env or {})
        nofile = self.nofile

        def limit_files() -> None:
            if nofile is not None:
                import resource

                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        with open(self.log_path, "ab") as log, open(self.stdout_path, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "agent", "--config", str(self.config_path)],
                env=env,
                stdout=out,
                stderr=log,
                start_new_session=True,
                preexec_fn=limit_files if nofile is not None else None,
            )
        deadline = time.monotonic() + self.ready_timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"agent exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"agent not ready after {self.ready_timeout}s:\n{self.log()}")
            time.sleep(0.05)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    def _get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def ready(self) -> bool:
        try:
            return self._get("/readyz")[0] == 200
        except OSError:
            return False

    def readyz(self) -> tuple[int, str]:
        return self._get("/readyz")

    def metrics_text(self) -> str:
        return self._get("/metrics")[1]

    def metric(self, metric: str, /, **labels: str) -> float:
        """Sum of the series of ``audit_agent_<name>`` whose labels include ``labels``."""
        total = 0.0
        prefix = f"audit_agent_{metric}"
        for line in self.metrics_text().splitlines():
            if not (line.startswith(prefix + "{") or line.startswith(prefix + " ")):
                continue
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit status (SIGKILL if it does not stop in time)."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """kill -9, as a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait()
