"""The filter chain inside the real agent process: syslog in over TCP (``logger`` and a raw
socket), grep + modify + rewrite_tag + audit, three file outputs selecting different tags; which
record lands where, the audit marks, and the chain's metrics. A bad filter config fails
``--check`` with exit 2, naming the file and the filter."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bench.harness import AgentProcess
from tests.agent_config import Table, agent_toml, file_output, syslog_input
from tests.conftest import check_config, free_port, read_ndjson, wait_for

CID = "847c8c9d8275a2dfea35581c5d3f1e6494362a45cbd653ea183397dc24049398"

_HAVE_LOGGER = subprocess.run(["which", "logger"], capture_output=True).returncode == 0


FILTERS: list[Table] = [
    {"type": "grep", "name": "drop-health", "exclude": [["message", "^GET /healthz"]]},
    {
        "type": "modify",
        "name": "enrich",
        "rules": [["set", "cluster", "prod"], ["rename", "pid", "process_id"]],
    },
    {"type": "rewrite_tag", "name": "web", "rules": [["ident", "^nginx$", "web.$0", False]]},
    {"type": "audit", "name": "audit"},
]


def _config(tmp_path: Path, port: int) -> str:
    return agent_toml(
        tmp_path,
        syslog_input("tcp", port, tag="syslog"),
        filters=FILTERS,
        outputs=[
            file_output(tmp_path / "audit.ndjson", "audit.*", name="audit-out"),
            file_output(tmp_path / "web.ndjson", "web.*", name="web-out"),
            file_output(tmp_path / "node.ndjson", "syslog", name="node-out"),
        ],
    )


def _frame(ident: str, message: str) -> bytes:
    return f"<38>Nov 29 21:30:00 node-1 {ident}: {message}\n".encode()


SHELL_EXEC = (
    f'time="2026-11-29T21:30:00.1Z" level=debug msg="Exec for \\"{CID}\\" with command '
    '[/bin/bash] and tty true and stdin true"'
)
SSH_FAILED = "Failed password for invalid user admin from 203.0.113.50 port 51234 ssh2"


def _send_lines(port: int) -> int:
    """Every kind of line the chain treats differently; returns how many were sent."""
    frames = [
        _frame("kubelet[2417]", "GET /healthz 200 OK"),  # dropped by grep
        _frame("nginx[100]", "GET /healthz 200 OK"),  # dropped before the rewrite
        _frame("app[7]", "hello from the app"),  # stays on syslog, unmarked
        _frame("containerd[812]", SHELL_EXEC),  # audit: shell exec in a container
        _frame("containerd[812]", 'level=info msg="ExecSync for \\"abc123\\" with command [ls]"'),
    ]
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"".join(frames))
    sent = len(frames)
    if _HAVE_LOGGER:
        logger = ["logger", "-n", "127.0.0.1", "-P", str(port), "-T", "--rfc3164"]
        subprocess.run([*logger, "-t", "nginx", "--id=100", '"GET / HTTP/1.1" 200'], check=True)
        subprocess.run([*logger, "-t", "sshd", "--id=9121", SSH_FAILED], check=True)
    else:  # the same lines from a socket
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(_frame("nginx[100]", '"GET / HTTP/1.1" 200'))
            conn.sendall(_frame("sshd[9121]", SSH_FAILED))
    return sent + 2


def _by_ident(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        out.setdefault(str(record.get("ident")), []).append(record)
    return out


def test_chain_filters_retags_marks_and_routes(
    tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    port = free_port()
    agent = start_agent(_config(tmp_path, port))
    sent = _send_lines(port)
    assert sent == 7
    # 5 records leave the chain on syslog or web.*, plus 2 audit copies.
    wait_for(lambda: agent.metric("filter_records_total", name="audit", direction="out") == 7)
    wait_for(
        lambda: (
            sum(
                len(read_ndjson(tmp_path / name))
                for name in ("audit.ndjson", "web.ndjson", "node.ndjson")
            )
            >= 7
        ),
        timeout=30,
    )
    audit: list[dict[str, Any]] = read_ndjson(tmp_path / "audit.ndjson")
    web: list[dict[str, Any]] = read_ndjson(tmp_path / "web.ndjson")
    node: list[dict[str, Any]] = read_ndjson(tmp_path / "node.ndjson")

    # web.*: only the nginx line that grep kept, re-tagged, enriched, not marked.
    assert len(web) == 1
    (nginx,) = web
    assert nginx["ident"] == "nginx" and nginx["message"] == '"GET / HTTP/1.1" 200'
    assert nginx["cluster"] == "prod" and str(nginx["process_id"]) == "100"
    assert "pid" not in nginx and "audit" not in nginx

    # syslog: the app line unmarked, the ExecSync probe unmarked, the two audited lines marked.
    node_idents = _by_ident(node)
    assert sorted(node_idents) == ["app", "containerd", "sshd"]
    assert len(node) == 4
    (app,) = node_idents["app"]
    assert app["message"] == "hello from the app" and "audit" not in app
    assert app["cluster"] == "prod" and str(app["process_id"]) == "7" and "pid" not in app
    probe, shell = sorted(node_idents["containerd"], key=lambda r: "audit" in r)
    assert "ExecSync" in probe["message"] and "audit" not in probe
    assert shell["audit"]["rule"] == "container-exec-shell"
    (ssh,) = node_idents["sshd"]
    assert ssh["audit"]["rule"] == "ssh-auth-failure"

    # audit.*: a copy of each marked record, with the mark and the enrichment.
    audit_idents = _by_ident(audit)
    assert sorted(audit_idents) == ["containerd", "sshd"] and len(audit) == 2
    (shell_copy,) = audit_idents["containerd"]
    assert shell_copy["message"] == SHELL_EXEC and shell_copy["cluster"] == "prod"
    assert shell_copy["audit"] == {
        "rule": "container-exec-shell",
        "severity": "critical",
        "description": shell_copy["audit"]["description"],
        "fields": {"container_id": CID, "command": "/bin/bash"},
        "matched": ["container-exec-shell", "container-exec"],
    }
    assert "shell" in shell_copy["audit"]["description"]
    assert shell["audit"] == shell_copy["audit"]
    (ssh_copy,) = audit_idents["sshd"]
    assert ssh_copy["message"] == SSH_FAILED and ssh_copy["cluster"] == "prod"
    assert ssh_copy["audit"]["severity"] == "low"
    assert ssh_copy["audit"]["fields"] == {
        "method": "password",
        "user": "admin",
        "src_ip": "203.0.113.50",
    }
    assert "matched" not in ssh_copy["audit"]
    assert ssh["audit"] == ssh_copy["audit"]

    # The chain's counters, per filter.
    def count(metric: str, name: str, **labels: str) -> float:
        return agent.metric(metric, name=name, **labels)

    assert count("filter_records_total", "drop-health", direction="in") == 7
    assert count("filter_records_total", "drop-health", direction="out") == 5
    assert count("filter_dropped_records_total", "drop-health") == 2
    for name in ("enrich", "web"):
        assert count("filter_records_total", name, direction="in") == 5
        assert count("filter_records_total", name, direction="out") == 5
        assert count("filter_dropped_records_total", name) == 0
    assert count("filter_records_total", "audit", direction="in") == 5
    assert count("filter_audit_matches_total", "audit") == 2
    assert count("filter_dropped_records_total", "audit") == 0
    assert agent.metric("router_dropped_records_total") == 0


@pytest.mark.parametrize(
    ("filter_block", "expected"),
    [
        (
            '[[filters]]\ntype = "grep"\nname = "bad-grep"\nexclude = [["message", "[oops"]]\n',
            "filters[0] (grep) 'bad-grep': exclude[0][1]: invalid regular expression '[oops'",
        ),
        (
            '[[filters]]\ntype = "modify"\nname = "ok"\nrules = [["set", "a", "b"]]\n'
            '[[filters]]\ntype = "rewrite_tag"\nname = "bad-tag"\n'
            'rules = [["ident", "(nginx", "web.$1", false]]\n',
            "filters[1] (rewrite_tag) 'bad-tag': rules[0][1]: invalid regular expression",
        ),
    ],
    ids=["grep", "rewrite_tag"],
)
def test_check_rejects_an_invalid_regex_naming_file_and_filter(
    tmp_path: Path, filter_block: str, expected: str
) -> None:
    path = tmp_path / "agent.toml"
    port = free_port()
    config = agent_toml(tmp_path, syslog_input("tcp", port, tag="syslog"), outputs=[])
    config += filter_block
    config += '[[outputs]]\ntype = "null"\nmatch = "*"\n'
    path.write_text(config)
    result = check_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}: {expected}" in result.stderr, result.stderr


def test_check_rejects_an_invalid_audit_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        '[[rule]]\nid = "mine"\nseverity = "high"\ndescription = "d"\n'
        'when = [{ field = "message", regex = "a(b" }]\n'
    )
    path = tmp_path / "agent.toml"
    config = agent_toml(
        tmp_path,
        syslog_input("tcp", free_port(), tag="syslog"),
        filters=[{"type": "audit", "name": "mine", "rules_file": rules}],
        outputs=[{"type": "null", "match": "*"}],
    )
    path.write_text(config)
    result = check_config(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"{path}: filters[0] (audit) 'mine': rules_file {rules}: rule[0].when[0].regex" in (
        result.stderr
    ), result.stderr
