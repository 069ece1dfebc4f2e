"""throttle, multiline, parser (and parsers/body.py), python: behaviour, bad records, bad config."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from agent.filters.multiline import MultilineFilter
from agent.filters.python_filter import PythonFilter
from agent.filters.throttle import ThrottleFilter
from parsers.body import compile_body_regex, parse_json, parse_logfmt, parse_regex
from tests.filter_helpers import Clock, make, recorded, run

# ---------------------------------------------------------------------------------- throttle


def test_throttle_sliding_window() -> None:
    f = make("throttle", rate=3, window="10s", panes=10)
    assert isinstance(f, ThrottleFilter)
    clock = f.clock = Clock(1000.0)
    assert len(run(f, [{"n": i} for i in range(5)])) == 3
    clock.now += 5  # half a window later: the three still count
    assert run(f, [{"n": 5}]) == []
    clock.now += 5.5  # the first slot has left the window
    assert len(run(f, [{"n": i} for i in range(5)])) == 3


def test_throttle_per_key_and_missing_key() -> None:
    f = make("throttle", rate=2, window="1m", key="container_id")
    assert isinstance(f, ThrottleFilter)
    f.clock = Clock()
    records = [{"container_id": c} for c in "aaabbb"] + [{}, {}, {}]
    out = run(f, records)
    assert [r.get("container_id") for r in out] == ["a", "a", "b", "b", None, None]


def test_throttle_status_line_once_per_window(caplog: pytest.LogCaptureFixture) -> None:
    f = make("throttle", rate=1, window="1s", print_status=True)
    assert isinstance(f, ThrottleFilter)
    clock = f.clock = Clock(0.0)
    f._status_at = 0.0
    with caplog.at_level(logging.INFO, logger="test"):
        for _ in range(100):
            run(f, [{"a": 1}, {"a": 2}])
        clock.now = 1.5
        run(f, [{"a": 3}])
        run(f, [{"a": 4}])
    lines = [r.message for r in caplog.records if "throttle" in r.message]
    assert len(lines) == 1 and "dropped" in lines[0]


def test_throttle_bad_config() -> None:
    with pytest.raises(msgspec.ValidationError, match="rate must be at least 1"):
        make("throttle", rate=0)
    with pytest.raises(msgspec.ValidationError, match="duration"):
        make("throttle", rate=1, window="soon")


# --------------------------------------------------------------------------------- multiline

TRACE = [
    'Exception in thread "main" java.lang.IllegalStateException: boom',
    "\tat com.example.App.run(App.java:42)",
    "\tat com.example.App.main(App.java:10)",
    "Caused by: java.io.IOException: disk",
    "\t... 2 more",
]


def line(message: str, pid: str = "7") -> dict[str, Any]:
    return {"host": "h", "ident": "java", "pid": pid, "message": message}


def test_multiline_joins_java_trace_and_flushes_on_timeout() -> None:
    f = make("multiline", start_pattern=r"^[^\s]", flush_timeout="2s")
    assert isinstance(f, MultilineFilter)
    clock = f.clock = Clock(100.0)
    # "Caused by" starts with a letter: with this start pattern it is a new record.
    out = run(f, [line(m) for m in TRACE[:3]])
    assert out == []
    out = run(f, [line(m) for m in TRACE[3:]] + [line("next event")])
    assert [r["message"] for r in out] == ["\n".join(TRACE[:3]), "\n".join(TRACE[3:])]
    assert f.flush(clock.now + 1.0) == []
    (released,) = f.flush(clock.now + 2.0)
    assert released == ("syslog", [line("next event")])
    assert recorded(f).counter("filter_multiline_joined_lines_total") == 3


def test_multiline_streams_are_separate_and_close_releases_all() -> None:
    f = make("multiline", start_pattern=r"^(?:Exception|Traceback|\S+Error)")
    assert isinstance(f, MultilineFilter)
    f.clock = Clock()
    records = [
        line("Traceback (most recent call last):", pid="1"),
        line("Exception in thread x", pid="2"),
        line('  File "app.py", line 3, in <module>', pid="1"),
        line("\tat A.b(A.java:1)", pid="2"),
        line("ValueError: bad", pid="1"),
        {"host": "h", "message": 12},  # not text: passes through at once
    ]
    out = run(f, records)
    assert out == [
        line('Traceback (most recent call last):\n  File "app.py", line 3, in <module>', "1"),
        {"host": "h", "message": 12},
    ]
    closed = f.close()
    assert [r["message"] for _, rs in closed for r in rs] == [
        "Exception in thread x\n\tat A.b(A.java:1)",
        "ValueError: bad",
    ]


def test_multiline_max_lines_starts_a_new_record() -> None:
    f = make("multiline", start_pattern="^S", max_lines=2)
    assert isinstance(f, MultilineFilter)
    f.clock = Clock()
    out = run(f, [line("S1"), line(" a"), line(" b"), line(" c"), line("S2")])
    assert [r["message"] for r in out] == ["S1\n a", " b\n c"]


def test_multiline_bad_config() -> None:
    with pytest.raises(ValueError, match=r"filters\[0\] \(multiline\): start_pattern: invalid"):
        make("multiline", start_pattern="(")


# ------------------------------------------------------------------------------------ parser


def test_body_parsers() -> None:
    assert parse_json('{"a": 1, "b": {"c": "d"}}') == {"a": 1, "b": {"c": "d"}}
    assert parse_json("[1, 2]") is None
    assert parse_json("{broken") is None
    assert parse_json("plain text") is None
    assert parse_logfmt('level=info msg="a \\"quoted\\" word" dur=5ms ok') == {
        "level": "info",
        "msg": 'a "quoted" word',
        "dur": "5ms",
        "ok": True,
    }
    assert parse_logfmt("connection reset by peer") is None
    assert parse_logfmt('a="unterminated') is None
    rx = compile_body_regex(r"^(?<user>\w+) from (?P<ip>\S+)(?: port (?P<port>\d+))?")
    assert parse_regex(rx, "alice from 10.0.0.1") == {"user": "alice", "ip": "10.0.0.1"}
    assert parse_regex(rx, "!!") is None
    with pytest.raises(ValueError, match="no named group"):
        compile_body_regex(r"\w+")


def test_parser_json_merge_and_failures() -> None:
    f = make("parser", format="json")
    records: list[dict[str, Any]] = [
        {"host": "h", "message": '{"level": "warn", "host": "inner"}'},
        {"host": "h", "message": "not json"},
        {"host": "h", "message": 5},
        {"host": "h"},
    ]
    out = run(f, records)
    assert out[0] == {"host": "inner", "level": "warn"}
    assert out[1:] == [
        {"host": "h", "message": "not json"},
        {"host": "h", "message": 5},
        {"host": "h"},
    ]
    metrics = recorded(f)
    assert metrics.counter("filter_parse_failures_total", reason="no_match") == 1
    assert metrics.counter("filter_parse_failures_total", reason="not_a_string") == 2


def test_parser_target_key_preserve_key_and_no_reserve() -> None:
    f = make("parser", format="logfmt", target_key="fields", preserve_key=True)
    (parsed,) = run(f, [{"message": "a=1 b=2"}])
    assert parsed == {"message": "a=1 b=2", "fields": {"a": "1", "b": "2"}}
    g = make("parser", format="regex", regex=r"^(?P<user>\w+) logged in", reserve_data=False)
    out = run(g, [{"host": "h", "message": "bob logged in"}, {"host": "h", "message": "x"}])
    assert out == [{"user": "bob"}, {"host": "h", "message": "x"}]


def test_parser_bad_config() -> None:
    with pytest.raises(ValueError, match=r"filters\[0\] \(parser\): regex: invalid regular"):
        make("parser", format="regex", regex="(?P<a>")
    with pytest.raises(ValueError, match=r"regex: the regex has no named group"):
        make("parser", format="regex", regex="abc")
    with pytest.raises(msgspec.ValidationError, match="regex: required"):
        make("parser", format="regex")
    with pytest.raises(msgspec.ValidationError, match="format"):
        make("parser", format="yaml")


# ------------------------------------------------------------------------------------ python

USER_MODULE = """
calls = []

def add_field(records):
    for r in records:
        r["seen"] = True
    return records

def drop_debug(record):
    if record.get("level") == "debug":
        return None
    if record.get("level") == "boom":
        raise RuntimeError("user bug")
    return {**record, "checked": True}

def broken(records):
    raise KeyError("missing")
"""


@pytest.fixture
def user_module(tmp_path: Path) -> str:
    (tmp_path / "audit_user_funcs.py").write_text(textwrap.dedent(USER_MODULE))
    return str(tmp_path)


def test_python_batch_and_per_record(user_module: str) -> None:
    f = make("python", function="audit_user_funcs:add_field", path=user_module)
    assert run(f, [{"a": 1}]) == [{"a": 1, "seen": True}]
    g = make("python", function="audit_user_funcs:drop_debug", path=user_module, per_record=True)
    out = run(g, [{"level": "info"}, {"level": "debug"}, {"level": "boom"}])
    assert out == [{"level": "info", "checked": True}, {"level": "boom"}]
    assert recorded(g).counter("filter_python_errors_total") == 1


def test_python_errors_pass_batch_and_log_once(
    user_module: str, caplog: pytest.LogCaptureFixture
) -> None:
    f = make("python", function="audit_user_funcs:broken", path=user_module, log_interval="60s")
    assert isinstance(f, PythonFilter)
    clock = f.clock = Clock(0.0)
    with caplog.at_level(logging.ERROR, logger="test"):
        for _ in range(5):
            assert run(f, [{"a": 1}]) == [{"a": 1}]
        clock.now = 61.0
        run(f, [{"a": 1}])
    logged = [r.message for r in caplog.records]
    assert len(logged) == 2
    assert "KeyError" in logged[0] and "4 more since the last report" in logged[1]
    assert recorded(f).counter("filter_python_errors_total") == 6


def test_python_bad_config(user_module: str) -> None:
    with pytest.raises(
        ValueError, match=r"filters\[0\] \(python\): function: cannot import module"
    ):
        make("python", function="no_such_module_xyz:f")
    with pytest.raises(ValueError, match=r"function: module 'audit_user_funcs' has no attribute"):
        make("python", function="audit_user_funcs:nope", path=user_module)
    with pytest.raises(ValueError, match=r'function: expected "module:function"'):
        make("python", function="just_a_module")
