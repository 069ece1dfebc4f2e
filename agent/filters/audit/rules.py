"""Audit rules: the rule model (the format of ``default_rules.toml`` and of a ``rules_file``,
described in docs/filters.md) and which rules a filter runs: the defaults, the user's file (a
rule with a default's id replaces it), ``disable`` and ``only``."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec

from agent.filters.audit.config import AuditConfig
from common.units import Duration, config_dec_hook

SEVERITIES = ("critical", "high", "medium", "low", "info")

Scalar = str | int | float | bool


class AuditCondition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One test of a rule's ``when``: a field and one or more tests, all of which must hold."""

    field: str
    """Field path of the record tested."""
    equals: Scalar | None = None
    """The field equals this (numbers compared as text too)."""
    in_: list[Scalar] | None = msgspec.field(default=None, name="in")
    """``in``: the field's text is one of these."""
    contains: str | None = None
    """The field's text contains this plain substring (much cheaper than a regex)."""
    regex: str | None = None
    """The regex matches somewhere in the field's text; named groups go to the mark's
    ``fields``."""
    not_regex: str | None = None
    """The field is missing or this regex does not match it."""
    exists: bool | None = None
    """The field is present (not null) when true, absent when false."""


class AuditRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    """Letters, digits, '-' and '_'; with ``retag`` its records also go out as
    ``<tag_prefix>.<id>``."""
    severity: Literal["critical", "high", "medium", "low", "info"]
    """Of the mark; a record matching several rules is marked by its most severe one."""
    description: str
    """Of the mark, for people."""
    when: list[AuditCondition]
    """Conditions that must all hold."""
    tags: list[str] = []
    """Globs over the record's tag; empty: any tag."""
    threshold: int = 0
    """Stateful rule: fire when this many matches fall within ``window`` for one group."""
    window: Duration = Duration(60.0)
    """The sliding window of a stateful rule, on the agent's clock at arrival."""
    group_by: list[str] = []
    """Named regex groups or field paths that identify a group (source IP, host)."""


class AuditRulesFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rule: list[AuditRule] = []
    """``[[rule]]`` tables, in order."""


def load_rules_text(text: str, source: str) -> list[AuditRule]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{source}: invalid TOML: {exc}") from None
    try:
        parsed = msgspec.convert(data, AuditRulesFile, dec_hook=config_dec_hook)
    except msgspec.ValidationError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return parsed.rule


def default_rules_text() -> str:
    return resources.files("agent.filters.audit").joinpath("default_rules.toml").read_text("utf-8")


def enabled_rules(config: AuditConfig) -> list[tuple[AuditRule, str]]:
    """The rules ``config`` turns on, in file order (defaults first), each with where it was
    written (``<source>: rule[<i>]``, for error messages). Raises ValueError."""
    rules: dict[str, tuple[AuditRule, str]] = {}
    sources: list[tuple[str, str]] = []
    if config.default_rules:
        sources.append(("default rules", default_rules_text()))
    if config.rules_file:
        try:
            text = Path(config.rules_file).read_text("utf-8")
        except OSError as exc:
            raise ValueError(f"rules_file: cannot read {config.rules_file!r}: {exc}") from None
        sources.append((f"rules_file {config.rules_file}", text))
    for source, text in sources:
        seen: set[str] = set()
        for i, rule in enumerate(load_rules_text(text, source)):
            if rule.id in seen:
                raise ValueError(f"{source}: rule[{i}].id: {rule.id!r} is defined twice")
            seen.add(rule.id)
            # A user rule with a default's id replaces it.
            rules[rule.id] = (rule, f"{source}: rule[{i}]")
    for i, rule_id in enumerate(config.disable):
        if rule_id not in rules:
            raise ValueError(f"disable[{i}]: no rule {rule_id!r}")
    if config.only is not None:
        for i, rule_id in enumerate(config.only):
            if rule_id not in rules:
                raise ValueError(f"only[{i}]: no rule {rule_id!r}")
    return [
        (rule, key)
        for rule, key in rules.values()
        if rule.id not in config.disable and (config.only is None or rule.id in config.only)
    ]
