"""The audit filter: every default rule fires on a realistic line and not on a near miss; rule
files, retagging, stateful bursts, bad rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.filters.audit import AuditFilter, default_rules_text, load_rules_text
from tests.audit_corpus import CASES as CORPUS
from tests.filter_helpers import Clock, make_audit


def make(**config: Any) -> AuditFilter:
    f = make_audit(**config)
    assert isinstance(f, AuditFilter)
    return f


def syslog(ident: str, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "time": "2026-11-29T21:30:00.000000Z",
        "host": "node-1",
        "ident": ident,
        "pid": "1234",
        "facility": "authpriv",
        "severity": "info",
        "message": message,
        **extra,
    }


def matched(record: dict[str, Any]) -> list[str]:
    mark = record.get("audit")
    if mark is None:
        return []
    return list(mark.get("matched", [mark["rule"]]))


CID = "847c8c9d8275a2dfea35581c5d3f1e6494362a45cbd653ea183397dc24049398"
K8S_AUDIT = (
    '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata",'
    '"auditID":"5f0c2e8a-2a51-4c7e-9d0b-6c3f3d1e9a11","stage":"%s",'
    '"requestURI":"/api/v1/namespaces/default/pods/web-0/%s?command=sh&container=web&stdin=true'
    '&stdout=true&tty=true","verb":"create","user":{"username":"alice@example.com",'
    '"groups":["system:authenticated"]},"sourceIPs":["10.0.0.5"],"userAgent":"kubectl/v1.30.1",'
    '"objectRef":{"resource":"pods","namespace":"default","name":"web-0","apiVersion":"v1",'
    '"subresource":"%s"},"responseStatus":{"metadata":{},"code":101}}'
)

# (rule id, a record that fires it, a near miss that must not fire it)
CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "container-exec-shell",
        syslog(
            "containerd",
            f'time="2026-11-29T21:30:00.1Z" level=debug msg="Exec for '
            f'\\"{CID}\\" with command [/bin/bash] and tty true and stdin true"',
        ),
        syslog(
            "containerd",
            f'time="2026-11-29T21:30:00.1Z" level=debug msg="Exec for '
            f'\\"{CID}\\" with command [cat /etc/hostname] and tty false and stdin false"',
        ),
    ),
    (
        "container-exec",
        syslog(
            "containerd",
            f'time="2026-11-29T21:30:00.1Z" level=debug msg="Exec for '
            f'\\"{CID}\\" with command [cat /etc/hostname] and tty false and stdin false"',
        ),
        syslog(
            "containerd",
            f'time="2026-11-29T21:30:00.1Z" level=info msg="ExecSync for '
            f'\\"{CID}\\" with command [cat /app/ready.txt] and timeout 1 (s)"',
        ),
    ),
    (
        "docker-exec",
        syslog(
            "dockerd",
            'time="2026-11-29T21:30:00.120361207Z" level=debug '
            'msg="Calling POST /v1.43/containers/web/exec"',
        ),
        syslog(
            "dockerd",
            'time="2026-11-29T21:30:00.120361207Z" level=debug '
            'msg="Calling GET /v1.43/containers/json"',
        ),
    ),
    (
        "kubectl-exec",
        syslog("kube-apiserver-audit", K8S_AUDIT % ("ResponseStarted", "exec", "exec")),
        syslog("kube-apiserver-audit", K8S_AUDIT % ("ResponseComplete", "log", "log")),
    ),
    (
        "container-shell-spawned",
        syslog(
            "falco",
            "21:30:00.123456789: Notice A shell was spawned in a container with an "
            "attached terminal (evt_type=execve user=root user_uid=0 user_loginuid=-1 "
            "process=bash proc_exepath=/usr/bin/bash parent=runc command=bash terminal=34816 "
            "container_id=3d1b8a1c8e0f container_name=web)",
        ),
        syslog("falco", "Falco initialized with configuration files: /etc/falco/falco.yaml"),
    ),
    (
        "container-package-manager",
        syslog(
            "web",
            "Setting up curl (7.88.1-10+deb12u5) ...",
            container_id="3d1b8a1c8e0f",
            container_name="web",
        ),
        syslog(
            "web",
            "Setting up database connection pool (size 10)",
            container_id="3d1b8a1c8e0f",
            container_name="web",
        ),
    ),
    (
        "package-manager-exec",
        syslog(
            "audisp-syslog",
            "node=node-1 type=EXECVE msg=audit(1780090200.413:2231): "
            'argc=4 a0="apt-get" a1="install" a2="-y" a3="netcat-openbsd"',
        ),
        syslog(
            "audisp-syslog",
            "node=node-1 type=EXECVE msg=audit(1780090200.413:2231): "
            'argc=2 a0="apt-cache" a1="policy"',
        ),
    ),
    (
        "sudo-command",
        syslog(
            "sudo",
            "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow",
        ),
        syslog("sudo", "pam_unix(sudo:session): session closed for user root"),
    ),
    (
        "sudo-failure",
        syslog(
            "sudo",
            "   alice : 3 incorrect password attempts ; TTY=pts/0 ; "
            "PWD=/home/alice ; USER=root ; COMMAND=/bin/bash",
        ),
        syslog(
            "sudo", "pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)"
        ),
    ),
    (
        "su-session",
        syslog(
            "su", "pam_unix(su:session): session opened for user root(uid=0) by alice(uid=1000)"
        ),
        syslog("su", "pam_unix(su:session): session closed for user root"),
    ),
    (
        "su-failure",
        syslog(
            "su",
            "pam_unix(su:auth): authentication failure; logname=alice uid=1000 euid=0 "
            "tty=pts/0 ruser=alice rhost=  user=root",
        ),
        syslog("su", "pam_unix(su:session): session closed for user root"),
    ),
    (
        "ssh-root-login",
        syslog(
            "sshd",
            "Accepted publickey for root from 203.0.113.9 port 50122 ssh2: ED25519 "
            "SHA256:Jm8uQ3n0eWc0y7o9e0d1Zk2bq6S6e5k3QmX1x2y3z4A",
        ),
        syslog(
            "sshd",
            "Accepted publickey for alice from 203.0.113.9 port 50122 ssh2: ED25519 "
            "SHA256:Jm8uQ3n0eWc0y7o9e0d1Zk2bq6S6e5k3QmX1x2y3z4A",
        ),
    ),
    (
        "ssh-login",
        syslog("sshd-session", "Accepted password for alice from 198.51.100.7 port 40022 ssh2"),
        syslog("sshd", "Disconnected from user alice 198.51.100.7 port 40022"),
    ),
    (
        "ssh-auth-failure",
        syslog("sshd", "Failed password for invalid user admin from 203.0.113.50 port 51234 ssh2"),
        syslog("sshd", "Connection closed by 203.0.113.50 port 51234 [preauth]"),
    ),
    (
        "ssh-invalid-user",
        syslog("sshd", "Invalid user admin from 203.0.113.50 port 51234"),
        syslog("sshd", "Connection closed by invalid user admin 203.0.113.50 port 51234 [preauth]"),
    ),
    (
        "sensitive-file-access",
        syslog(
            "audit",
            "type=PATH msg=audit(1780090200.413:2232): item=0 "
            'name="/var/run/secrets/kubernetes.io/serviceaccount/..2026_11_29_21_00_00.1234/'
            'token" inode=393377 dev=00:2f mode=0100644 ouid=0 ogid=0 rdev=00:00 '
            "nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0",
        ),
        syslog(
            "audit",
            'type=PATH msg=audit(1780090200.413:2232): item=0 name="/etc/passwd" '
            "inode=393377 dev=08:01 mode=0100644 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL",
        ),
    ),
    (
        "user-group-change",
        syslog(
            "useradd",
            "new user: name=mallory, UID=1001, GID=1001, home=/home/mallory, "
            "shell=/bin/bash, from=/dev/pts/0",
        ),
        syslog(
            "passwd",
            "pam_unix(passwd:chauthtok): authentication failure; logname= uid=1000 "
            "euid=0 tty=pts/0 ruser= rhost=  user=alice",
        ),
    ),
    (
        "user-group-change-audit",
        syslog(
            "audit",
            "type=ADD_USER msg=audit(1780090200.500:2240): pid=4242 uid=0 auid=1000 "
            'ses=3 subj=unconfined msg=\'op=adding user id=1001 exe="/usr/sbin/useradd" '
            "hostname=node-1 addr=? terminal=pts/0 res=success'",
        ),
        syslog(
            "audit",
            "type=USER_LOGIN msg=audit(1780090200.500:2241): pid=4242 uid=0 "
            'auid=1000 ses=3 msg=\'op=login id=1000 exe="/usr/sbin/sshd" hostname=10.0.0.5 '
            "addr=10.0.0.5 terminal=/dev/pts/0 res=success'",
        ),
    ),
]


@pytest.mark.parametrize(("rule_id", "hit", "miss"), CASES, ids=[c[0] for c in CASES])
def test_default_rule_fires_and_near_miss_does_not(
    rule_id: str, hit: dict[str, Any], miss: dict[str, Any]
) -> None:
    f = make(retag=False)
    ((_, out),) = f.process("syslog", [dict(hit), dict(miss)])
    assert rule_id in matched(out[0]), out[0]
    assert rule_id not in matched(out[1]), out[1]


def test_every_default_rule_has_a_case() -> None:
    ids = {rule.id for rule in load_rules_text(default_rules_text(), "defaults")}
    covered = {case[0] for case in CASES} | {"ssh-auth-failure-burst"}
    covered |= {case.rule for case in CORPUS}  # the command-level rules: tests/audit_corpus.py
    assert ids == covered


def test_every_default_rule_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "filters.md").read_text()
    for rule in load_rules_text(default_rules_text(), "defaults"):
        assert f"| `{rule.id}` | {rule.severity} |" in docs, rule.id


def test_mark_is_the_most_severe_rule_with_fields() -> None:
    f = make(retag=False)
    ((_, [record]),) = f.process("syslog", [CASES[0][1]])
    assert record["audit"]["rule"] == "container-exec-shell"
    assert record["audit"]["severity"] == "critical"
    assert record["audit"]["matched"] == ["container-exec-shell", "container-exec"]
    assert record["audit"]["fields"] == {"container_id": CID, "command": "/bin/bash"}


def test_retag_keeps_original_by_default_and_can_move() -> None:
    login = syslog("sshd", "Accepted password for alice from 198.51.100.7 port 40022 ssh2")
    other = syslog("cron", "(root) CMD (run-parts /etc/cron.hourly)")
    f = make()
    batches = f.process("syslog.node", [dict(login), dict(other)])
    assert [(t, [r["ident"] for r in rs]) for t, rs in batches] == [
        ("syslog.node", ["sshd", "cron"]),
        ("audit.ssh-login", ["sshd"]),
    ]
    # One record in both batches: the chain copies it only for later filters (test_filter_chain).
    assert batches[0][1][0] is batches[1][1][0]
    g = make(keep_original=False, tag_prefix="sec")
    batches = g.process("syslog.node", [dict(login), dict(other)])
    assert [(t, [r["ident"] for r in rs]) for t, rs in batches] == [
        ("syslog.node", ["cron"]),
        ("sec.ssh-login", ["sshd"]),
    ]


def test_ssh_burst_fires_at_threshold_per_source_within_window() -> None:
    f = make(only=["ssh-auth-failure-burst"], retag=False)
    clock = f.clock
    assert isinstance(clock, Clock)

    def fail(ip: str) -> dict[str, Any]:
        return syslog("sshd", f"Failed password for root from {ip} port 51234 ssh2")

    def fired(records: list[dict[str, Any]]) -> list[bool]:
        return [("audit" in r) for _, rs in f.process("syslog", records) for r in rs]

    assert fired([fail("203.0.113.50") for _ in range(4)]) == [False] * 4
    # Four from other sources do not add up with these.
    assert fired([fail(f"198.51.100.{i}") for i in range(4)]) == [False] * 4
    ((_, [fifth]),) = f.process("syslog", [fail("203.0.113.50")])
    assert fifth["audit"]["fields"] == {
        "method": "password",
        "user": "root",
        "src_ip": "203.0.113.50",
        "count": 5,
        "window_seconds": 60.0,
    }
    # Counting starts afresh after firing; old failures leave the window.
    assert fired([fail("203.0.113.50") for _ in range(4)]) == [False] * 4
    clock.now += 61
    assert fired([fail("203.0.113.50") for _ in range(4)]) == [False] * 4
    assert fired([fail("203.0.113.50")]) == [True]


def test_user_rules_file_disable_and_tags(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        """
[[rule]]
id = "nginx-admin"
severity = "low"
description = "admin page hit"
tags = ["docker.*"]
when = [{ field = "container_name", equals = "nginx" }, { field = "message", contains = "/admin" }]

[[rule]]
id = "ssh-login"
severity = "info"
description = "overridden default"
when = [{ field = "ident", equals = "sshd" }, { field = "message", regex = '^Accepted ' }]
"""
    )
    f = make(rules_file=str(rules), disable=["ssh-root-login"], retag=False)
    hit = {"container_name": "nginx", "message": "GET /admin HTTP/1.1"}
    ((_, [docker]),) = f.process("docker.web", [dict(hit)])
    ((_, [plain]),) = f.process("syslog", [dict(hit)])
    assert docker["audit"]["rule"] == "nginx-admin" and "audit" not in plain
    ((_, [login]),) = f.process(
        "syslog", [syslog("sshd", "Accepted publickey for root from x port 1")]
    )
    assert login["audit"]["rule"] == "ssh-login" and login["audit"]["severity"] == "info"


def test_bad_records_pass_through() -> None:
    f = make()
    records: list[dict[str, Any]] = [
        {},
        {"ident": ["sshd"], "message": "Accepted password for a from b port 1"},
        {"ident": "sshd", "message": None},
        {"ident": "sshd", "message": {"nested": "Accepted password for a from b port 1"}},
        {"ident": {"x": 1}, "container_id": 5, "message": 7},
    ]
    copies = [dict(r) for r in records]
    assert f.process("syslog", records) == [("syslog", copies)]


def test_bad_rules(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[[rule]]\nid = "x"\nseverity = "high"\ndescription = "d"\n'
        'when = [{ field = "message", regex = "(" }]\n'
    )
    with pytest.raises(
        ValueError,
        match=r"filters\[0\] \(audit\): rules_file .*rule\[0\]"
        r"\.when\[0\]\.regex: invalid regular expression '\('",
    ):
        make(rules_file=str(bad))
    bad.write_text('[[rule]]\nid = "x"\nseverity = "urgent"\ndescription = "d"\nwhen = []\n')
    with pytest.raises(ValueError, match=r"rules_file .*severity"):
        make(rules_file=str(bad))
    bad.write_text(
        '[[rule]]\nid = "x"\nseverity = "low"\ndescription = "d"\n'
        'when = [{ field = "message", matches = "a" }]\n'
    )
    with pytest.raises(ValueError, match=r"unknown field `matches`"):
        make(rules_file=str(bad))
    with pytest.raises(ValueError, match=r"disable\[0\]: no rule 'nope'"):
        make(disable=["nope"])
    with pytest.raises(ValueError, match=r"rules_file: cannot read"):
        make(rules_file=str(tmp_path / "missing.toml"))


def test_duplicate_rule_id_in_one_file(tmp_path: Path) -> None:
    rule = (
        '[[rule]]\nid = "x"\nseverity = "low"\ndescription = "d"\n'
        'when = [{ field = "a", exists = true }]\n'
    )
    bad = tmp_path / "dup.toml"
    bad.write_text(rule + rule)
    with pytest.raises(ValueError, match=r"rule\[1\]\.id: 'x' is defined twice"):
        make(rules_file=str(bad))


def test_rules_sharing_a_regex_each_judge_every_record(tmp_path: Path) -> None:
    """Two rules with one regex (run once a record for both) still decide per record: a record
    whose text changed, or a new record with the same text, is matched afresh."""
    rules = tmp_path / "rules.toml"
    rules.write_text(
        """
[[rule]]
id = "deploy-burst"
severity = "high"
description = "three deploys by one user"
threshold = 3
group_by = ["user"]
when = [{ field = "message", regex = '^deploy by (?P<user>\\w+)$' }]

[[rule]]
id = "deploy"
severity = "low"
description = "a deploy"
when = [{ field = "message", regex = '^deploy by (?P<user>\\w+)$' }]
"""
    )
    f = make(rules_file=str(rules), default_rules=False, retag=False)
    ((_, out),) = f.process("t", [{"message": "deploy by bob"}, {"message": "noise"}])
    assert [r.get("audit", {}).get("rule") for r in out] == ["deploy", None]
    assert out[0]["audit"]["fields"] == {"user": "bob"}
    first = {"message": "deploy by ann"}
    ((_, out),) = f.process("t", [first])
    assert out[0]["audit"]["fields"] == {"user": "ann"}
    # The same record object again with another text: the remembered answer is not reused.
    del first["audit"]
    first["message"] = "deploy by bob"
    ((_, out),) = f.process("t", [first])
    assert out[0]["audit"]["fields"] == {"user": "bob"}
    # bob's third deploy fires the burst rule, which also counted through the shared regex.
    ((_, out),) = f.process("t", [{"message": "deploy by bob"}])
    assert out[0]["audit"]["rule"] == "deploy-burst"
    assert out[0]["audit"]["fields"] == {"user": "bob", "count": 3, "window_seconds": 60.0}
    assert out[0]["audit"]["matched"] == ["deploy-burst", "deploy"]
    first["message"] = "noise"
    del first["audit"]
    ((_, out),) = f.process("t", [first])
    assert "audit" not in out[0]
