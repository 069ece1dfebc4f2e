"""Audit lines through the real agent process: as audisp-syslog hands them to syslog (``logger``
sends them, tag ``audisp-syslog``, with long EXECVE records, to the syslog input over TCP), and
as a real rsyslog forwards audit.log read by imfile. The ``auditd`` filter joins each event,
finds the container of its process in a /proc tree, and the ``audit`` rules mark it. An event
whose end record never comes is sent out by the agent's periodic flush after ``timeout``,
counted."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.harness import AgentProcess
from tests.agent_config import agent_toml, file_output, syslog_input
from tests.auditd_lines import EXEC_CAT, EXEC_LONG, LONG
from tests.conftest import free_port, read_ndjson, wait_for
from tests.peers.rsyslog import Rsyslog
from tests.peers.rsyslog import available as rsyslog_available
from tests.test_filter_auditd import CGROUPS, CID, fake_proc

pytestmark = pytest.mark.skipif(shutil.which("logger") is None, reason="logger is needed")


def _config(tmp_path: Path, port: int) -> str:
    return agent_toml(
        tmp_path,
        syslog_input("tcp", port, tag="syslog"),
        filters=[
            {
                "type": "auditd",
                "name": "join",
                "match": "syslog",
                "timeout": "1s",
                "proc_root": tmp_path / "proc",
            },
            {"type": "audit", "name": "rules"},
        ],
        outputs=[
            file_output(tmp_path / "node.ndjson", "syslog", name="node"),
            file_output(tmp_path / "audit.ndjson", "audit.*", name="alerts"),
        ],
    )


def _logger(port: int, lines: list[str]) -> None:
    for line in lines:
        subprocess.run(
            ["logger", "-n", "127.0.0.1", "-P", str(port), "-T", "--rfc3164", "--size", "65536",
             "-t", "audisp-syslog", "-p", "local6.info", line],
            check=True,
            timeout=10,
        )  # fmt: skip


def test_forwarded_audit_lines_become_marked_events_with_their_container(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    fake_proc(tmp_path / "proc", 4100, CGROUPS["containerd-systemd-v2"])  # cat's parent shell
    port = free_port()
    agent = start_agent(_config(tmp_path, port))
    partial = "type=SYSCALL msg=audit(1796563500.000:999): arch=c000003e syscall=59 pid=1 ppid=0"
    _logger(port, [*EXEC_LONG, *EXEC_CAT, "not an audit line", partial])  # in time order
    wait_for(lambda: len(read_ndjson(tmp_path / "node.ndjson")) >= 4, timeout=30)
    wait_for(lambda: '"serial":999' in (tmp_path / "node.ndjson").read_text(), timeout=30)
    # The partial event comes out only after its timeout, from the agent's periodic flush.
    node: list[dict[str, Any]] = read_ndjson(tmp_path / "node.ndjson")
    by_serial = {r["auditd"]["serial"]: r for r in node if "auditd" in r}
    assert sorted(by_serial) == [47, 120, 999]
    cat = by_serial[120]
    assert cat["message"] == "cat /etc/shadow" and cat["ident"] == "auditd"
    assert cat["container_id"] == CID
    assert cat["auditd"]["auid"] == 1000 and cat["auditd"]["tty"] == "pts0"
    assert cat["audit"]["rule"] == "shadow-read"
    echo = by_serial[47]
    assert echo["auditd"]["argv"] == ["/bin/echo", "hello", "a b", LONG, "é"]
    assert "container_id" not in echo  # its parent is not in this /proc tree
    assert by_serial[999]["auditd"]["records"] == ["SYSCALL"]  # flushed after the timeout
    (other,) = [r for r in node if "auditd" not in r]
    assert other["message"] == "not an audit line" and other["ident"] == "audisp-syslog"
    wait_for(lambda: len(read_ndjson(tmp_path / "audit.ndjson")) >= 1, timeout=30)
    (alert,) = read_ndjson(tmp_path / "audit.ndjson")
    assert alert["message"] == "cat /etc/shadow"
    assert agent.metric("filter_auditd_events_total", name="join") == 3
    assert (
        agent.metric("filter_auditd_records_total", name="join")
        == len(EXEC_CAT) + len(EXEC_LONG) + 1
    )
    assert agent.metric("filter_auditd_incomplete_events_total", name="join", reason="timeout") == 1
    assert agent.metric("filter_auditd_attribution_total", name="join", result="ppid") == 1


@pytest.mark.rsyslog
@pytest.mark.skipif(not rsyslog_available(), reason="rsyslogd and logger are needed")
def test_rsyslog_imfile_forwards_audit_log_lines_to_the_agent(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    """A node without the audisp plugin: rsyslog's imfile reads audit.log (tag ``audit``) and
    omfwd sends every line over TCP to the agent, which joins them into events."""
    fake_proc(tmp_path / "proc", 4100, CGROUPS["crio-v2"])  # cat's parent shell
    audit_log = tmp_path / "audit.log"
    audit_log.write_text("")
    port = free_port()
    agent = start_agent(_config(tmp_path, port))
    forward = f"""
module(load="imfile" mode="polling" PollingInterval="1")
input(type="imfile" File="{audit_log}" Tag="audit:" Facility="local6" Severity="info")
local6.* action(type="omfwd" target="127.0.0.1" port="{port}" protocol="tcp"
                TCP_Framing="octet-counted")
"""
    with Rsyslog(tmp_path, forward):
        with audit_log.open("a") as log:  # as auditd appends: in time order
            for line in [*EXEC_LONG, *EXEC_CAT]:
                log.write(line + "\n")
        wait_for(lambda: '"serial":120' in _text(tmp_path / "node.ndjson"), timeout=30)
    node: list[dict[str, Any]] = read_ndjson(tmp_path / "node.ndjson")
    by_serial = {r["auditd"]["serial"]: r for r in node if "auditd" in r}
    assert sorted(by_serial) == [47, 120]
    assert by_serial[47]["auditd"]["argv"] == ["/bin/echo", "hello", "a b", LONG, "é"]
    assert by_serial[47]["auditd"]["records"].count("EXECVE") == 3
    assert by_serial[120]["message"] == "cat /etc/shadow"
    assert by_serial[120]["container_id"] == CID
    assert agent.metric("filter_auditd_records_total", name="join") == len(EXEC_LONG) + len(
        EXEC_CAT
    )


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""
