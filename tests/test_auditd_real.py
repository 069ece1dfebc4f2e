"""The real audit subsystem: the test starts auditd in the foreground with its own config and a
log file under tmp, adds an execve rule scoped to one shell (``-F ppid=`` and a unique key),
runs commands in that shell (inside a cgroup named like containerd's), and feeds the log
through the ``auditd`` filter. The rule is removed, auditd stopped and the audit state restored
in ``finally``, also when the test fails."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.filters.auditd import AuditdFilter
from tests.cgroup_helpers import Scope, containerd_parts, mounts, scopes, writable
from tests.filter_helpers import Clock, make, recorded, run
from tests.peers.auditd import AuditDaemon, AuditdExited, auditctl, unavailable

__all__ = ["scopes"]  # the fixture


@pytest.fixture
def audit_daemon(tmp_path: Path) -> Iterator[Path]:
    """auditd in the foreground (``-n``) writing a log file under tmp; yields the log's path."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    daemon = AuditDaemon(tmp_path)
    try:
        daemon.start()
    except AuditdExited as exc:
        pytest.skip(str(exc))
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield daemon.log
    finally:
        daemon.stop()


@pytest.fixture
def exec_rule() -> Iterator[Any]:
    """Adds execve rules scoped to one ppid and a unique key; removes them afterwards."""
    added: list[list[str]] = []

    def add(ppid: int, key: str) -> None:
        for arch in ("b64", "b32"):
            rule = ["always,exit", "-F", f"arch={arch}", "-S", "execve", "-F", f"ppid={ppid}"]
            rule += ["-F", f"key={key}"]
            auditctl("-a", *rule)
            added.append(rule)

    try:
        yield add
    finally:
        errors = []
        for rule in added:
            try:
                auditctl("-d", *rule)
            except RuntimeError as exc:
                errors.append(str(exc))
        assert not errors, errors


LONG = "x" * 9000
SCRIPT = f"""
read go
/bin/echo hello "a b" {LONG} é > /dev/null
/nonexistent/program 2>/dev/null
cd /tmp && /bin/cat /etc/hostname > /dev/null
read done
"""


def test_real_auditd_exec_events_joined_and_attributed(
    audit_daemon: Path, exec_rule: Any, scopes: list[Scope]
) -> None:
    key = f"cat-test-{secrets.token_hex(4)}"
    cid = secrets.token_hex(32)
    roots = mounts("cgroup2")
    in_cgroup = bool(roots) and writable(roots[0]) is None
    if in_cgroup:
        scope = Scope(roots[0], containerd_parts(cid))
        scopes.append(scope)
        shell = scope.start("sh", "-c", SCRIPT)
    else:
        shell = subprocess.Popen(["sh", "-c", SCRIPT], stdin=subprocess.PIPE)
    assert shell.stdin is not None
    try:
        exec_rule(shell.pid, key)
        shell.stdin.write(b"go\n")
        shell.stdin.flush()
        text = ""
        for _ in range(500):  # until cat's event is in the log
            text = audit_daemon.read_text(errors="replace") if audit_daemon.exists() else ""
            if re.search(r"type=PROCTITLE msg=audit\([^)]*\): proctitle=2F62696E2F636174", text):
                break
            time.sleep(0.02)
        # Not splitlines(): it also splits at the 0x1d before the enriched names.
        lines = [line for line in text.split("\n") if line]
        f = make("auditd")  # the real /proc: the shell is alive and answers for its children
        assert isinstance(f, AuditdFilter)
        f.clock = Clock()
        passed = run(f, [{"message": line} for line in lines], tag="auditd")
        passed += [e for _, batch in f.close() for e in batch]
        events = [e for e in passed if e.get("auditd", {}).get("key") == key]
    finally:
        if shell.poll() is None:
            shell.stdin.write(b"done\n")
            shell.stdin.close()
            shell.wait(timeout=10)

    assert [r for r in passed if "auditd" not in r] == []  # every line was an audit line
    by_exe = {e["auditd"].get("argv", e["auditd"]["paths"])[0]: e for e in events}
    assert set(by_exe) == {"/bin/echo", "/nonexistent/program", "/bin/cat"}, events
    echo = by_exe["/bin/echo"]
    info = echo["auditd"]
    assert info["argv"] == ["/bin/echo", "hello", "a b", LONG, "é"]
    assert echo["message"] == f"/bin/echo hello a b {LONG} é"
    assert info["records"].count("EXECVE") >= 2  # the long argument took several records
    assert info["type"] == "SYSCALL" and info["syscall"] == "execve"
    assert info["success"] is True and info["exit"] == 0
    assert info["ppid"] == shell.pid and info["pid"] != shell.pid
    assert info["uid"] == 0 and info["euid"] == 0
    assert info["comm"] == "echo" and os.path.realpath(info["exe"]) == os.path.realpath("/bin/echo")
    assert info["key"] == key
    assert info["names"]["syscall"] == "execve"
    assert isinstance(info["ses"], int) and isinstance(info["auid"], int)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", echo["time"])
    failed = by_exe["/nonexistent/program"]["auditd"]
    assert failed["success"] is False and failed["exit"] == -2  # ENOENT
    assert failed["proctitle"].startswith("sh -c") and "argv" not in failed
    cat = by_exe["/bin/cat"]
    assert cat["auditd"]["argv"] == ["/bin/cat", "/etc/hostname"]
    assert cat["auditd"]["cwd"] == "/tmp"
    assert "/bin/cat" in cat["auditd"]["paths"]
    if in_cgroup:
        # Each command had exited when its record was read; the shell, in the container's
        # cgroup, answered for it.
        assert [e.get("container_id") for e in events] == [cid] * 3
        assert recorded(f).counter("filter_auditd_attribution_total", result="ppid") >= 3
    assert recorded(f).counter("filter_auditd_incomplete_events_total", reason="timeout") == 0
