"""Shared test helpers: free loopback ports, waiting, running the agent as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness import REPO, AgentProcess, free_port

__all__ = [
    "REPO",
    "agent_command",
    "agent_env",
    "check_config",
    "free_port",
    "read_ndjson",
    "wait_for",
]


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.05
) -> object:
    """Poll until ``predicate()`` is truthy; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {predicate!r}")
        time.sleep(interval)


def agent_env(**extra: str) -> dict[str, str]:
    """Environment for ``python -m agent`` subprocesses run from any working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    env.update(extra)
    return env


def agent_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent", *args]


def check_config(path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m agent --config path --check [args]``, as a user runs it."""
    return subprocess.run(
        agent_command("--config", str(path), "--check", *args),
        env=agent_env(**env),
        capture_output=True,
        text=True,
        cwd=path.parent,
        timeout=60,
    )


# ----------------------------------------------------------------------------- agent processes


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    """``start_agent(config_text, workdir=None)`` runs ``python -m agent`` until /readyz is 200;
    every agent started is stopped (or killed) at teardown, its log printed if the test failed."""
    started: list[AgentProcess] = []

    def start(config: str, workdir: Path | None = None, **kwargs: object) -> AgentProcess:
        directory = workdir or tmp_path / f"agent{len(started)}"
        directory.mkdir(parents=True, exist_ok=True)
        agent = AgentProcess(directory, config, **kwargs)  # type: ignore[arg-type]
        started.append(agent)
        return agent.start()

    yield start
    for agent in started:
        agent.stop(timeout=30)
        agent.kill()


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    """The records in an NDJSON file (none if it does not exist): decoded JSON, any shape."""
    import msgspec

    if not path.exists():
        return []
    return [msgspec.json.decode(line) for line in path.read_bytes().splitlines() if line]
