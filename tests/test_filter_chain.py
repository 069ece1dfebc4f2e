"""The filter chain: order, tag matching (new tags included), metrics, held-back records."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from agent.filters.base import Batch
from agent.filters.chain import merge_batches, unshare
from tests.filter_helpers import chain


def rec(ident: str, message: str, host: str = "node-1") -> dict[str, Any]:
    return {"host": host, "ident": ident, "pid": "1", "message": message}


def test_grep_modify_rewrite_tag_audit() -> None:
    c, metrics = chain(
        {"type": "grep", "exclude": [["message", "healthz"]]},
        {"type": "modify", "rules": [["set", "cluster", "prod"]]},
        {
            "type": "rewrite_tag",
            "match": "syslog.*",
            "rules": [["ident", "^(sshd|sudo)$", "secure.$1", False]],
        },
        # Only the re-tagged stream is audited: proves later filters see new tags.
        {"type": "audit", "match": "secure.*"},
        {"type": "modify", "match": "audit.*", "rules": [["set", "alert", True]]},
    )
    records = [
        rec("kubelet", "GET /healthz 200"),
        rec("sshd", "Accepted password for alice from 198.51.100.7 port 40022 ssh2"),
        rec("sshd", "Connection closed by 198.51.100.7 port 40022"),
        rec("cron", "(root) CMD (true)"),
        rec("sudo", "  alice : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/ls"),
        rec("useradd", "new user: name=x, UID=1001"),  # audit rule exists, but not secure.*
    ]
    out = c.process("syslog.node", records)
    summary = [
        (tag, [(r["ident"], r.get("audit", {}).get("rule"), r.get("alert")) for r in rs])
        for tag, rs in out
    ]
    assert summary == [
        ("syslog.node", [("cron", None, None), ("useradd", None, None)]),
        ("secure.sshd", [("sshd", "ssh-login", None), ("sshd", None, None)]),
        ("audit.ssh-login", [("sshd", "ssh-login", True)]),
        ("secure.sudo", [("sudo", "sudo-command", None)]),
        ("audit.sudo-command", [("sudo", "sudo-command", True)]),
    ]
    assert all(r["cluster"] == "prod" for _, rs in out for r in rs)
    grep = metrics[0]
    assert grep.counter("filter_records_total", direction="in") == 6
    assert grep.counter("filter_records_total", direction="out") == 5
    assert grep.counter("filter_dropped_records_total") == 1
    assert metrics[3].counter("filter_records_total", direction="in") == 3  # secure.* only
    assert metrics[3].counter("filter_records_total", direction="out") == 5
    assert metrics[3].counter("filter_dropped_records_total") == 0


def test_empty_chain_and_empty_results() -> None:
    c, _ = chain()
    records = [rec("a", "b")]
    assert c.process("t", records) == [("t", records)]
    assert c.process("t", []) == []
    d, _ = chain({"type": "grep", "regex": [["ident", "^nothing$"]]})
    assert d.process("t", [rec("a", "b")]) == []


def test_multiline_flush_goes_through_the_rest_of_the_chain() -> None:
    c, metrics = chain(
        {"type": "multiline", "start_pattern": r"^\S", "flush_timeout": "1s"},
        {"type": "modify", "rules": [["set", "joined", True]]},
    )
    out = c.process("app", [rec("java", "Exception: x"), rec("java", "\tat A.b(A.java:1)")])
    assert out == []
    assert metrics[0].counter("filter_dropped_records_total") == 0  # held back, not dropped
    assert c.flush(0.0) == []
    import time

    ((tag, [record]),) = c.flush(time.monotonic() + 5)
    assert tag == "app" and record["message"] == "Exception: x\n\tat A.b(A.java:1)"
    assert record["joined"] is True
    c.process("app", [rec("java", "Exception: y")])
    ((_, [last]),) = c.close()
    assert last["message"] == "Exception: y" and last["joined"] is True


def test_a_raising_filter_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    c, metrics = chain(
        {"type": "grep", "regex": [["ident", "."]]},
        {"type": "modify", "rules": [["set", "after", 1]]},
    )

    def boom(records: list[dict[str, Any]]) -> Any:
        raise RuntimeError("bug")

    # grep is a KeepFilter: the chain calls its keep
    c.filters[0].keep = boom  # type: ignore[attr-defined]
    with caplog.at_level(logging.ERROR):
        out = c.process("t", [rec("a", "b")])
    assert out == [("t", [{**rec("a", "b"), "after": 1}])]
    assert metrics[0].counter("filter_errors_total") == 1


def test_bad_config_names_position_and_type() -> None:
    with pytest.raises(
        ValueError,
        match=r"^filters\[2\] \(grep\): regex\[0\]\[1\]: invalid regular "
        r"expression '\(': missing \), unterminated subpattern",
    ):
        chain(
            {"type": "modify", "rules": [["set", "a", 1]]},
            {"type": "modify", "rules": [["set", "b", 1]]},
            {"type": "grep", "regex": [["message", "("]]},
        )
    # The selector is checked by the config struct itself (FilterConfig), before any build.
    with pytest.raises(ValueError, match=r"^match_regex: invalid regular expression '\('"):
        chain({"type": "grep", "name": "g", "match_regex": "(", "regex": [["a", "b"]]})


def test_merge_batches() -> None:
    a, b = {"n": 1}, {"n": 2}
    assert merge_batches([("x", [a]), ("x", []), ("x", [b]), ("y", [a]), ("x", [])]) == [
        ("x", [a, b]),
        ("y", [a]),
    ]


def test_shared_records_are_copied_before_later_filters_only() -> None:
    """rewrite_tag (keep) and audit (keep_original) send one record object out under two tags.
    A later filter changing one of them, nested fields included, must not change the other;
    after the last filter nothing changes records, so they stay shared (no copy)."""

    def record() -> dict[str, Any]:
        return {**rec("sshd", "Accepted password for alice from 198.51.100.7 port 22 ssh2"),
                "sd": {"origin": {"ip": "10.0.0.1"}}}  # fmt: skip

    c, _ = chain(
        {"type": "rewrite_tag", "rules": [["ident", "^(sshd)$", "copy.$1", True]]},
        {"type": "modify", "match": "copy.*", "rules": [["set", "sd.origin.ip", "changed"]]},
        {"type": "audit", "match": "syslog"},
        {"type": "modify", "match": "audit.*", "rules": [["set", "alert", True]]},
    )
    out = dict(c.process("syslog", [record()]))
    assert set(out) == {"syslog", "copy.sshd", "audit.ssh-login"}
    (kept,), (copied,), (alert,) = out["syslog"], out["copy.sshd"], out["audit.ssh-login"]
    assert kept["sd"] == {"origin": {"ip": "10.0.0.1"}} and "alert" not in kept
    assert copied["sd"] == {"origin": {"ip": "changed"}} and "audit" not in copied
    assert alert["alert"] is True and alert["audit"]["rule"] == "ssh-login"
    assert kept["audit"] == alert["audit"] and kept["audit"] is not alert["audit"]
    assert alert["sd"] == {"origin": {"ip": "10.0.0.1"}}

    last, _ = chain({"type": "audit"})
    out = dict(last.process("syslog", [record()]))
    assert out["syslog"][0] is out["audit.ssh-login"][0]


def test_unshare_copies_every_later_appearance() -> None:
    a, b = {"n": 1, "tags": ["x"]}, {"n": 2}
    batches: list[Batch] = [("one", [a, b, a]), ("two", [b])]
    out = unshare(batches)
    assert [(t, [r["n"] for r in rs]) for t, rs in out] == [("one", [1, 2, 1]), ("two", [2])]
    assert out[0][1][0] is a and out[0][1][1] is b
    assert out[0][1][2] is not a and out[1][1][0] is not b
    out[0][1][2]["tags"].append("y")
    assert a["tags"] == ["x"]
    alone: list[Batch] = [("one", [a]), ("two", [b])]
    assert unshare(alone) == alone and unshare(alone)[0][1] is alone[0][1]
