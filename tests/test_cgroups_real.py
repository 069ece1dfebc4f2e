"""Container attribution against the kernel's own cgroups: the test creates cgroups named as
containerd (cgroup v2) and Docker (cgroup v1) name theirs, moves a real process into each, and
reads it back through /proc. Every cgroup is removed again, also when the test fails."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest

from agent.filters.cgroups import ContainerResolver
from tests.cgroup_helpers import Scope, containerd_parts, mounts, scopes, writable

__all__ = ["scopes"]  # the fixture


def test_containerd_scope_on_cgroup_v2(scopes: list[Scope]) -> None:
    roots = mounts("cgroup2")
    if not roots:
        pytest.skip("no cgroup v2 hierarchy mounted")
    reason = writable(roots[0])
    if reason:
        pytest.skip(reason)
    cid = secrets.token_hex(32)
    scope = Scope(roots[0], containerd_parts(cid))
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
    roots = mounts("cgroup")
    if not roots:
        pytest.skip("no cgroup v1 pids hierarchy mounted")
    reason = writable(roots[0])
    if reason:
        pytest.skip(reason)
    cid = secrets.token_hex(32)
    scope = Scope(roots[0], ["docker", cid])
    scopes.append(scope)
    process = scope.start("sleep", "60")
    assert f":/docker/{cid}" in Path(f"/proc/{process.pid}/cgroup").read_text()
    assert ContainerResolver().resolve(process.pid, 1) == (cid, "pid")
