"""grep, modify, record_modifier, rewrite_tag, nest: behaviour, bad records, bad config."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agent.filters.grep import GrepFilter
from tests.filter_helpers import make, run

# ------------------------------------------------------------------------------------- grep


def test_grep_legacy_keeps_matching_and_drops_excluded() -> None:
    f = make(
        "grep",
        regex=[["ident", "^ssh"]],
        exclude=[["message", "Connection closed"]],
    )
    records = [
        {"ident": "sshd", "message": "Accepted publickey for alice"},
        {"ident": "sshd", "message": "Connection closed by 1.2.3.4"},
        {"ident": "cron", "message": "job"},
    ]
    assert run(f, records) == [records[0]]
    # A keep-mask: the chain takes the records (and their parsed times) by it.
    assert isinstance(f, GrepFilter)
    assert f.keep(records) == [True, False, False]
    # Nothing dropped: the list itself comes back.
    kept = records[:1]
    assert f.process("syslog", kept) == [("syslog", kept)] and f.process("s", kept)[0][1] is kept


def test_grep_nested_path_and_non_string_values() -> None:
    f = make("grep", regex=[['sd["origin@1"].ip', r"^10\."]])
    records: list[dict[str, Any]] = [
        {"sd": {"origin@1": {"ip": "10.1.2.3"}}},
        {"sd": {"origin@1": {"ip": "192.168.0.1"}}},
        {"sd": {"origin@1": {"ip": 10}}},  # number: matched as its text "10", no dot
        {"sd": "not a dict"},
        {"message": "no sd"},
    ]
    assert run(f, records) == [records[0]]
    pid = make("grep", regex=[["pid", "^42$"]])
    assert run(pid, [{"pid": 42}, {"pid": "42"}, {"pid": [42]}]) == [{"pid": 42}, {"pid": "42"}]


def test_grep_or_and_and() -> None:
    records = [{"a": "x", "b": "y"}, {"a": "x", "b": "n"}, {"a": "n", "b": "n"}]
    f_or = make("grep", regex=[["a", "x"], ["b", "y"]], logical_op="or")
    assert run(f_or, [dict(r) for r in records]) == records[:2]
    f_and = make("grep", regex=[["a", "x"], ["b", "y"]], logical_op="and")
    assert run(f_and, [dict(r) for r in records]) == records[:1]
    ex_and = make("grep", exclude=[["a", "x"], ["b", "y"]], logical_op="and")
    assert run(ex_and, [dict(r) for r in records]) == records[1:]
    ex_or = make("grep", exclude=[["a", "x"], ["b", "y"]], logical_op="or")
    assert run(ex_or, [dict(r) for r in records]) == records[2:]


def test_grep_bad_config_names_filter_and_key() -> None:
    with pytest.raises(
        ValueError, match=r"filters\[0\] \(grep\): regex\[0\]\[1\]: invalid regular"
    ):
        make("grep", regex=[["message", "("]])
    with pytest.raises(ValueError, match=r"exclude\[1\]: expected a list of 2 items"):
        make("grep", exclude=[["a", "b"], ["c"]])
    with pytest.raises(ValueError, match=r"give at least one rule"):
        make("grep")
    with pytest.raises(msgspec.ValidationError, match="logical_op"):
        make("grep", regex=[["a", "b"]], logical_op="xor")
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        make("grep", regex=[["a", "b"]], regexp=[])


# ----------------------------------------------------------------------------------- modify


def test_modify_operations_in_order() -> None:
    f = make(
        "modify",
        rules=[
            ["set", "cluster", "prod"],
            ["add", "host", "default-host"],
            ["add", "zone", "eu-1"],
            ["rename", "msg", "message"],
            ["rename", "other", "host"],  # target exists: skipped
            ["hard_rename", "hostname", "node"],
            ["copy", "ident", "program"],
            ["hard_copy", "cluster", "env.cluster"],
            ["remove", "password"],
            ["remove_wildcard", "tmp_*"],
            ["remove_regex", "^x-"],
        ],
    )
    record = {
        "host": "n1",
        "msg": "hello",
        "other": "o",
        "hostname": "h",
        "node": "old",
        "ident": "app",
        "password": "secret",
        "tmp_a": 1,
        "tmp_b": 2,
        "x-trace": "t",
    }
    (out,) = run(f, [record])
    assert out == {
        "host": "n1",
        "other": "o",
        "node": "h",
        "ident": "app",
        "cluster": "prod",
        "zone": "eu-1",
        "message": "hello",
        "program": "app",
        "env": {"cluster": "prod"},
    }


def test_modify_conditions() -> None:
    f = make(
        "modify",
        rules=[["set", "flag", True]],
        condition=[
            ["key_exists", "ident"],
            ["key_value_matches", "ident", "^ssh"],
            ["key_value_does_not_equal", "host", "skip"],
            ["no_key_matches", "^debug"],
        ],
    )
    records: list[dict[str, Any]] = [
        {"ident": "sshd", "host": "a"},
        {"ident": "cron", "host": "a"},
        {"ident": "sshd", "host": "skip"},
        {"ident": "sshd", "host": "a", "debug_x": 1},
        {"host": "a"},
        {"ident": 5, "host": "a"},
    ]
    out = run(f, records)
    assert [r.get("flag") for r in out] == [True, None, None, None, None, None]

    g = make(
        "modify",
        rules=[["set", "hit", 1]],
        condition=[["matching_keys_have_matching_values", "^k", "^v"]],
    )
    out = run(g, [{"k1": "v1", "k2": "v2"}, {"k1": "v1", "k2": "x"}, {"a": "b"}])
    assert [r.get("hit") for r in out] == [1, None, None]


def test_modify_set_table_values_are_not_shared() -> None:
    f = make("modify", rules=[["set", "labels", {"team": "a"}]])
    one, two = run(f, [{}, {}])
    one["labels"]["team"] = "changed"
    assert two["labels"] == {"team": "a"}


def test_modify_bad_config() -> None:
    with pytest.raises(
        ValueError, match=r"filters\[0\] \(modify\): rules\[1\]: unknown operation 'sett'"
    ):
        make("modify", rules=[["set", "a", 1], ["sett", "a", 1]])
    with pytest.raises(ValueError, match=r"rules\[0\]: 'rename' takes 2 argument"):
        make("modify", rules=[["rename", "a"]])
    with pytest.raises(ValueError, match=r"condition\[0\]: unknown condition 'key_exist'"):
        make("modify", rules=[["set", "a", 1]], condition=[["key_exist", "a"]])
    with pytest.raises(ValueError, match=r"rules\[0\]: invalid regular expression '\['"):
        make("modify", rules=[["remove_regex", "["]])


# -------------------------------------------------------------------------- record_modifier


def test_record_modifier(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "node-7")
    f = make(
        "record_modifier",
        record=[["node", "${NODE_NAME}"], ["where", "${NODE_NAME}/${ident}"], ["sd.x", "${host}"]],
        remove_keys=["secret", "sd.drop"],
    )
    (out,) = run(f, [{"ident": "sshd", "host": "h", "secret": 1, "sd": {"drop": 1, "keep": 2}}])
    assert out == {
        "ident": "sshd",
        "host": "h",
        "node": "node-7",
        "where": "node-7/sshd",
        "sd": {"keep": 2, "x": "h"},
    }
    (missing,) = run(f, [{"message": "m"}])
    assert missing["where"] == "node-7/" and missing["sd"] == {"x": ""}

    allow = make("record_modifier", allowlist_keys=["message", "host"])
    assert run(allow, [{"message": "m", "host": "h", "pid": 1}]) == [{"message": "m", "host": "h"}]


def test_record_modifier_bad_config() -> None:
    with pytest.raises(ValueError, match=r"record\[0\]: bad template"):
        make("record_modifier", record=[["k", "${a..b[}"]])
    with pytest.raises(ValueError, match=r"record\[0\]: expected a list of 2 items"):
        make("record_modifier", record=[["k"]])


# ------------------------------------------------------------------------------ rewrite_tag


def test_rewrite_tag_captures_fields_and_keep() -> None:
    f = make(
        "rewrite_tag",
        rules=[
            ["ident", r"^(ssh)d$", "secure.$1.${host}.$TAG[1]", False],
            ["message", "panic", "alerts.$TAG", True],
        ],
    )
    records: list[dict[str, Any]] = [
        {"ident": "sshd", "host": "n1", "message": "x"},
        {"ident": "app", "host": "n1", "message": "kernel panic"},
        {"ident": "app", "host": "n2", "message": "fine"},
        {"ident": None, "message": None},
    ]
    batches = f.process("syslog.node", records)
    assert [(t, [r.get("ident") for r in rs]) for t, rs in batches] == [
        ("syslog.node", ["app", "app", None]),
        ("secure.ssh.n1.node", ["sshd"]),
        ("alerts.syslog.node", ["app"]),
    ]
    # Kept: one record object under both tags; the chain copies it for later filters only.
    assert batches[0][1][0] is batches[2][1][0]


def test_rewrite_tag_bad_config() -> None:
    with pytest.raises(ValueError, match=r"filters\[0\] \(rewrite_tag\): rules\[0\]\[2\]: \$2 but"):
        make("rewrite_tag", rules=[["ident", "(a)", "x.$2", False]])
    with pytest.raises(ValueError, match=r"rules\[0\]\[3\]: keep must be true or false"):
        make("rewrite_tag", rules=[["ident", "a", "x", "maybe"]])
    with pytest.raises(ValueError, match=r"rules\[0\]\[1\]: invalid regular expression"):
        make("rewrite_tag", rules=[["ident", "a(", "x", True]])


# ------------------------------------------------------------------------------------ nest


def test_nest_and_lift() -> None:
    nest = make(
        "nest",
        operation="nest",
        wildcard=["container_*"],
        nest_under="container",
        remove_prefix="container_",
    )
    (out,) = run(nest, [{"container_id": "abc", "container_name": "web", "host": "h"}])
    assert out == {"host": "h", "container": {"id": "abc", "name": "web"}}
    lift = make("nest", operation="lift", nested_under="container", add_prefix="c_")
    (back,) = run(lift, [out])
    assert back == {"host": "h", "c_id": "abc", "c_name": "web"}
    # Bad records pass through unchanged.
    assert run(lift, [{"container": "text"}]) == [{"container": "text"}]
    assert run(nest, [{"container": 1, "container_id": "x"}]) == [
        {"container": 1, "container_id": "x"}
    ]


def test_nest_bad_config() -> None:
    with pytest.raises(msgspec.ValidationError, match="nest_under: required"):
        make("nest", operation="nest", wildcard=["a*"])
    with pytest.raises(msgspec.ValidationError, match="operation"):
        make("nest", operation="flatten", nested_under="x")
