"""Container attribution against the kernel's own cgroups: the test creates cgroups named as
containerd (cgroup v2) and Docker (cgroup v1) name theirs, moves a real process into each, and
reads it back through /proc. Every cgroup is removed again, also when the test fails."""

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

from agent.filters.cgroups import ContainerResolver


def _mounts(kind: str) -> list[Path]:
    found = []
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) >= 4 and parts[2] == kind:
                found.append((Path(parts[1]), parts[3].split(",")))
    return [path for path, _ in found] if kind == "cgroup2" else [
        path for path, options in found if "pids" in options
    ]  # fmt: skip


def _writable(root: Path) -> str | None:
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


def test_containerd_scope_on_cgroup_v2(scopes: list[Scope]) -> None:
    roots = _mounts("cgroup2")
    if not roots:
        pytest.skip("no cgroup v2 hierarchy mounted")
    reason = _writable(roots[0])
    if reason:
        pytest.skip(reason)
    cid = secrets.token_hex(32)
    pod = f"pod{str(uuid.uuid4()).replace('-', '_')}"
    scope = Scope(
        roots[0],
        ["kubepods.slice", "kubepods-burstable.slice", f"kubepods-burstable-{pod}.slice",
         f"cri-containerd-{cid}.scope"],
    )  # fmt: skip
    scopes.append(scope)
    # The shell forks only once it is in the cgroup (when it reads a line).
    shell = scope.start("sh", "-c", "read go; sleep 60 & wait")
    text = Path(f"/proc/{shell.pid}/cgroup").read_text()
    assert f"cri-containerd-{cid}.scope" in text
    resolver = ContainerResolver()
    assert resolver.resolve(shell.pid, os.getpid()) == (cid, "pid")
    assert shell.stdin is not None
    shell.stdin.write(b"go\n")
    shell.stdin.flush()
    children = Path(f"/proc/{shell.pid}/task/{shell.pid}/children")
    for _ in range(500):
        if children.read_text().split():
            break
        time.sleep(0.01)
    sleeper = int(children.read_text().split()[0])
    # A process that already exited: its parent, still in the container, answers.
    assert resolver.resolve(2**22 + 1, shell.pid) == (cid, "ppid")
    assert resolver.resolve(sleeper, shell.pid) == (cid, "pid")  # children inherit the cgroup
    # Our own process is on the host.
    assert resolver.resolve(os.getpid(), 1) == (None, "pid")


def test_docker_cgroup_on_cgroup_v1(scopes: list[Scope]) -> None:
    roots = _mounts("cgroup")
    if not roots:
        pytest.skip("no cgroup v1 pids hierarchy mounted")
    reason = _writable(roots[0])
    if reason:
        pytest.skip(reason)
    cid = secrets.token_hex(32)
    scope = Scope(roots[0], ["docker", cid])
    scopes.append(scope)
    process = scope.start("sleep", "60")
    assert f":/docker/{cid}" in Path(f"/proc/{process.pid}/cgroup").read_text()
    assert ContainerResolver().resolve(process.pid, 1) == (cid, "pid")
