"""The literal gates read from regexes never reject a text the regex matches (they only spare
the regex on texts it cannot match), an anchored literal regex is exactly a ``startswith``, and
the audit filter marks the same records with its literal screen as without it."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.filters import audit as audit_module
from agent.filters.audit import AuditFilter
from agent.filters.audit import engine as audit_engine
from agent.filters.common import compile_regex
from agent.filters.literals import Gate, groups_always_set, literal_prefixes, regex_gate
from bench.filters import sample_records
from tests.filter_helpers import make_audit
from tests.test_filter_audit import CASES


def _default_regexes() -> list[str]:
    rules = tomllib.loads(audit_module.default_rules_text())["rule"]
    return [
        condition[key]
        for rule in rules
        for condition in rule["when"]
        for key in ("regex", "not_regex")
        if key in condition
    ]


TRICKY = [
    r"^GET /healthz",
    r"^(?:GET|HEAD) /re?ady\b",
    r"(foo|bar)+baz",
    r"x(?:ab|cd){2}y",
    r"^\s*x[0-9]+",
    r"\Afoo|bar$",
    r"a|b",
    r"(?P<x>ab)c?d",
    r"^(?:a(?=b)|c)d",
    r"pre(?:fix)??-(?P<n>\d+)",
    r"[xy]z{1,3}w",
    r"(?s)a.b",
    r"(?x) a \s b  # verbose",
]
PATTERNS = _default_regexes() + TRICKY


@pytest.mark.parametrize("pattern", PATTERNS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_gate_passes_every_text_the_regex_matches(pattern: str, data: st.DataObject) -> None:
    regex = compile_regex(pattern, "test")
    gate = regex_gate(regex)
    text = data.draw(st.from_regex(regex))
    assert regex.search(text) is not None
    if gate is not None:
        assert gate.passes(text), (pattern, gate, text)


@pytest.mark.parametrize(
    "pattern", [r"^GET /healthz", r"^(?:GET|HEAD) /re?ady", r"\A(?:ab|a)c", r"^x[yz]"]
)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_literal_prefix_regex_is_exactly_startswith(pattern: str, data: st.DataObject) -> None:
    regex = re.compile(pattern)
    prefixes = literal_prefixes(regex)
    assert prefixes is not None
    text = data.draw(st.one_of(st.from_regex(regex), st.text(max_size=30)))
    assert (regex.search(text) is not None) is text.startswith(prefixes)


@pytest.mark.parametrize(
    "pattern",
    [r"^GET /healthz$", r"^a.b", r"GET", r"(?i)^get", r"(?m)^GET", r"^a(?=b)", r"^\d"],
)
def test_literal_prefixes_refuses_what_startswith_cannot_decide(pattern: str) -> None:
    assert literal_prefixes(re.compile(pattern)) is None


def test_gates_of_the_default_rules_are_specific() -> None:
    gate = regex_gate(re.compile(r"^Failed (?P<m>\S+) for (?:invalid user )?\S* from"))
    assert gate == Gate(("Failed ",), ())
    exec_gate = regex_gate(
        re.compile(r'Exec(?: for \\?"|Request &ExecRequest\{ContainerId:)(?P<c>[0-9a-f]{12,64})')
    )
    assert exec_gate is not None and set(exec_gate.needles) == {
        'Exec for "',
        'Exec for \\"',
        "ExecRequest &ExecRequest{ContainerId:",
    }
    # Case folding and multi-line anchors defeat literal tests: no gate, the regex decides.
    assert regex_gate(re.compile(r"(?i)failed password")) is None
    assert regex_gate(re.compile(r"(?m)^Failed")) is None
    assert regex_gate(re.compile(r"a(?m:^b)")) is None
    assert regex_gate(re.compile(r".*")) is None


@pytest.mark.parametrize(
    ("pattern", "always"),
    [
        (r"^Failed (?P<m>\S+) for (?:invalid user )?(?P<u>\S*) from", True),
        (r"(?P<a>x)?y", False),
        (r"(?:(?P<a>x)|y)", False),
        (r"a(?P<b>c)+", True),
        (r"(?!(?P<a>x))y", False),
        (r"no groups", True),
    ],
)
def test_groups_always_set(pattern: str, always: bool) -> None:
    regex = re.compile(pattern)
    assert groups_always_set(regex) is always
    if always and regex.groups:
        match = regex.search(pattern.replace("^", "").replace("(?P<m>\\S+)", "x"))
        assert match is None or None not in match.groups()


def _audit(**config: Any) -> AuditFilter:
    return make_audit(**config)


def _records() -> list[dict[str, Any]]:
    records = [dict(r) for _, fires, miss in CASES for r in (fires, miss)]
    records += sample_records(3000)
    # Variants: the firing lines with their text shifted, cut and re-cased.
    for _, fires, _miss in CASES:
        message = str(fires.get("message", ""))
        for variant in (" " + message, message[:20], message.upper(), message.lower()):
            records.append({**fires, "message": variant})
    return records


def test_audit_marks_the_same_records_with_and_without_the_screen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    screened = _audit()
    records = _records()
    with_screen = screened.process("syslog.node", [dict(r) for r in records])
    monkeypatch.setattr(audit_engine, "regex_gate", lambda regex: None)
    bare = _audit()
    # Only the rules with a `contains` condition keep a literal gate now.
    assert {rule.id for rule in bare.rules if rule.gates} == {
        "kubectl-exec",
        "package-manager-exec",
    }
    without = bare.process("syslog.node", [dict(r) for r in records])
    assert with_screen == without
    marked = sum(1 for _tag, batch in with_screen for r in batch if "audit" in r)
    assert marked > 100  # the comparison covers many matches, not only misses
