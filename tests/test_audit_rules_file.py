"""The node's audit rule file (manifests/node/audit-agent.rules) as the real kernel takes it:
each rule is added with auditctl and removed again (also when the test fails). Runs only while
auditing is off (no auditd, ``enabled 0``), so loading the rules records nothing on the machine."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import REPO

RULES = REPO / "manifests" / "node" / "audit-agent.rules"


def auditctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["auditctl", *args], capture_output=True, text=True, timeout=10)


def rules() -> list[list[str]]:
    lines = RULES.read_text().splitlines()
    return [shlex.split(line) for line in lines if line.strip() and not line.startswith("#")]


def removal(rule: list[str]) -> list[str]:
    if rule[0] == "-a":
        return ["-d", *rule[1:]]
    if rule[0] == "-w":
        return ["-W", *rule[1:]]
    raise AssertionError(f"unexpected rule {rule}")


@pytest.fixture
def loaded() -> Iterator[list[list[str]]]:
    if shutil.which("auditctl") is None:
        pytest.skip("auditctl not installed (scripts/install-system-deps.sh installs auditd)")
    status = auditctl("-s")
    if status.returncode != 0:
        pytest.skip(f"audit subsystem unavailable: {status.stderr.strip()}")
    state = dict(line.split(" ", 1) for line in status.stdout.splitlines() if " " in line)
    if state.get("enabled") != "0" or state.get("pid", "0") != "0":
        pytest.skip(f"auditing is on here (enabled {state.get('enabled')}): rules would record")
    added: list[list[str]] = []
    try:
        yield added
    finally:
        failures = [
            f"{rule}: {done.stderr.strip()}"
            for rule in reversed(added)
            if (done := auditctl(*removal(rule))).returncode != 0
        ]
        assert not failures, failures


def test_every_rule_is_accepted_by_the_kernel(loaded: list[list[str]]) -> None:
    assert rules(), "no rules in the file"
    for rule in rules():
        done = auditctl(*rule)
        assert done.returncode == 0, f"{rule}: {done.stderr.strip()}"
        loaded.append(rule)
    listed = auditctl("-l").stdout
    assert listed.count("-F key=audit-agent-exec") == 2  # 64 and 32 bit
    assert "-F exe=/usr/sbin/xtables-nft-multi" in listed
    # The exclusions come first: the kernel takes the first matching rule of a list.
    assert listed.index("never,exit") < listed.index("always,exit")
