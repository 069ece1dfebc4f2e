"""The audit rules against their corpus: every line that must fire a rule fires it, no near miss
fires its rule, a normal node's day raises no alert, every command-level rule has at least
three positives from at least two sources and three near misses, and docs/filters.md shows the
corpus's current precision and recall."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from agent.filters.audit import default_rules_text, load_rules_text
from tests.audit_corpus import (
    BENIGN,
    CASES,
    CATEGORIES,
    Case,
    current_table,
    docs_path,
    fired,
    is_alert,
)
from tests.filter_helpers import make

AUDIT = make("audit", retag=False)


def run(record: dict[str, Any]) -> dict[str, Any]:
    ((_, (out,)),) = AUDIT.process("syslog", [dict(record)])
    return out


@pytest.mark.parametrize(
    "case", CASES, ids=[f"{c.rule}-{'hit' if c.fires else 'miss'}-{i}" for i, c in enumerate(CASES)]
)
def test_corpus_line(case: Case) -> None:
    got = fired(run(case.record))
    if case.fires:
        assert case.rule in got, (case.source, case.record["message"], got)
    else:
        assert case.rule not in got, (case.source, case.record["message"], got)


@pytest.mark.parametrize("entry", BENIGN, ids=[f"{s}-{i}" for i, (s, _) in enumerate(BENIGN)])
def test_a_normal_node_day_raises_no_alert(entry: tuple[str, dict[str, Any]]) -> None:
    source, record = entry
    out = run(record)
    assert not is_alert(out), (source, record["message"], out.get("audit"))


def test_every_corpus_rule_has_three_hits_from_two_sources_and_three_near_misses() -> None:
    hits: dict[str, list[str]] = defaultdict(list)
    misses: dict[str, int] = defaultdict(int)
    for case in CASES:
        if case.fires:
            hits[case.rule].append(case.source.split(" ")[0])
        else:
            misses[case.rule] += 1
    for rule in set(hits) | set(misses):
        assert len(hits[rule]) >= 3, rule
        assert misses[rule] >= 3, rule
        assert len(set(hits[rule])) >= 2 or rule in SINGLE_SOURCE, (rule, hits[rule])


SINGLE_SOURCE = {
    "container-interactive-shell",
    "container-package-install",
    "container-escape-mount",
    "user-management-audit-event",
    "container-exec-shell",
    "sudo-root-shell",
    "sudo-command",
    "sudo-failure",
    "container-shell-spawned",
}
"""Rules that only one kind of source can show (auditd events of container processes, the
runtime's exec lines, sudo's and Falco's own lines); their positives come from different
runtimes, forwarding paths or message shapes."""


def test_every_rule_is_in_a_category() -> None:
    ids = {rule.id for rule in load_rules_text(default_rules_text(), "defaults")}
    categorised = {rule for rules in CATEGORIES.values() for rule in rules}
    assert ids == categorised


def test_docs_show_the_current_precision_and_recall() -> None:
    assert current_table() in docs_path().read_text(), (
        "docs/filters.md's corpus table is stale: run `python -m tests.audit_corpus`"
    )
