"""Real cgroups for tests: a cgroup path made directory by directory under a mounted hierarchy,
a process moved into it, and everything removed again (processes killed, directories removed,
deepest first)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def mounts(kind: str) -> list[Path]:
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) >= 4 and parts[2] == kind:
                found.append((Path(parts[1]), parts[3].split(",")))
    return [path for path, _ in found] if kind == "cgroup2" else [
        path for path, options in found if "pids" in options
    ]  # fmt: skip


def writable(root: Path) -> str | None:
    """None when cgroups can be made under ``root``, else why not."""
    if os.geteuid() != 0:
        return "needs root to create cgroups"
    probe = root / f"cat-probe-{secrets.token_hex(4)}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        return f"cannot create a cgroup under {root}: {exc}"
    return None


class Scope:
    """A cgroup path made directory by directory, with a process moved into its leaf."""

    def __init__(self, root: Path, parts: list[str]) -> None:
        self.made: list[Path] = []
        self.process: subprocess.Popen[bytes] | None = None
        path = root
        for part in parts:
            path = path / part
            if not path.exists():
                path.mkdir()
                self.made.append(path)
        self.leaf = path

    def start(self, *argv: str) -> subprocess.Popen[bytes]:
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE)
        (self.leaf / "cgroup.procs").write_text(str(self.process.pid))
        return self.process

    def remove(self) -> None:
        """Kill what runs in the leaf (the process and its children), then remove the
        directories this scope made, deepest first."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        procs = self.leaf / "cgroup.procs"
        for _ in range(500):
            pids = procs.read_text().split() if procs.exists() else []
            if not pids:
                break
            for pid in pids:  # only the test's own processes can be in this new cgroup
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.01)
        for path in reversed(self.made):
            path.rmdir()


@pytest.fixture
def scopes() -> Iterator[list[Scope]]:
    made: list[Scope] = []
    try:
        yield made
    finally:
        for scope in made:
            scope.remove()


def containerd_parts(cid: str) -> list[str]:
    """The cgroup v2 path (as directories) that containerd's systemd driver gives a container
    of a burstable pod."""
    pod = f"pod{str(uuid.uuid4()).replace('-', '_')}"
    return [
        "kubepods.slice",
        "kubepods-burstable.slice",
        f"kubepods-burstable-{pod}.slice",
        f"cri-containerd-{cid}.scope",
    ]
