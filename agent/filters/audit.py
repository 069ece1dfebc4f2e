"""``audit``: mark records that show someone inside a container or on a node where they should
not be (exec sessions, shells, package managers, su/sudo, SSH logins and brute force, reads of
secrets, user and group changes).

Rules come from the default set shipped beside this module (``audit_rules.toml``) and an
optional ``rules_file``; docs/filters.md describes the format. A matching record gets
``audit = {rule, severity, description[, fields][, matched]}`` for its most severe matching
rule, and (``retag``) a copy goes out under the tag ``audit.<rule id>``.
"""

from __future__ import annotations

import re
import time
import tomllib
from collections import deque
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec

from agent.filters.base import Batch, Filter, FilterConfig, FilterContext, Record
from agent.filters.common import as_text, compile_regex, copy_record, make_getter, parse_path
from agent.router import TagMatcher
from outputs.base import Duration, config_dec_hook

SEVERITIES = ("critical", "high", "medium", "low", "info")
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
_RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_INDEX_FIELD = "ident"
"""The field rules are indexed by: most rules name the program, and one dict lookup per record
then skips every rule written for other programs."""

Scalar = str | int | float | bool


class AuditCondition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    field: str
    equals: Scalar | None = None
    in_: list[Scalar] | None = msgspec.field(default=None, name="in")
    contains: str | None = None
    regex: str | None = None
    not_regex: str | None = None
    exists: bool | None = None


class AuditRule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    severity: Literal["critical", "high", "medium", "low", "info"]
    description: str
    when: list[AuditCondition]
    tags: list[str] = []
    """Globs over the record's tag; empty: any tag."""
    threshold: int = 0
    """Stateful rule: fire when this many matches fall within ``window`` for one group."""
    window: Duration = Duration(60.0)
    group_by: list[str] = []
    """Named regex groups or field paths that identify a group (source IP, host)."""


class AuditRulesFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    rule: list[AuditRule] = []


class AuditConfig(FilterConfig, tag_field="type", tag="audit"):
    rules_file: str | None = None
    """Extra rules (TOML, same format as the defaults); a rule with a default's id replaces it."""
    default_rules: bool = True
    """Load the rules shipped with the agent."""
    disable: list[str] = []
    """Rule ids to turn off."""
    only: list[str] | None = None
    """If given, only these rule ids are on."""
    retag: bool = True
    """Send matching records out under ``<tag_prefix>.<rule id>`` too."""
    keep_original: bool = True
    """With retag: the record also stays in its own stream (marked), not only under the
    audit tag."""
    tag_prefix: str = "audit"
    field: str = "audit"
    """Top-level key receiving the mark."""
    max_groups: int = 10000
    """Groups a stateful rule tracks at most; the least recently seen is forgotten beyond."""

    def __post_init__(self) -> None:
        if not self.tag_prefix:
            raise ValueError("tag_prefix: cannot be empty")
        if self.max_groups < 1:
            raise ValueError("max_groups: must be at least 1")


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
    return resources.files("agent.filters").joinpath("audit_rules.toml").read_text("utf-8")


Check = Callable[[Record], bool]
Capture = Callable[[Record], "dict[str, str] | None"]


def _check(condition: AuditCondition, key: str) -> tuple[list[Check], list[Capture]]:
    """Cheap checks (equality, membership, substring, existence) and regex checks."""
    getter = make_getter(parse_path(condition.field, f"{key}.field"))
    cheap: list[Check] = []
    costly: list[Capture] = []
    if condition.exists is not None:
        want = condition.exists
        cheap.append(lambda r: (getter(r) is not None) is want)
    if condition.equals is not None:
        expected = condition.equals
        text = as_text(expected)
        cheap.append(lambda r: (v := getter(r)) == expected or as_text(v) == text)
    if condition.in_ is not None:
        options = frozenset(as_text(v) for v in condition.in_)
        cheap.append(lambda r: as_text(getter(r)) in options)
    if condition.contains is not None:
        needle = condition.contains
        cheap.append(lambda r: (t := as_text(getter(r))) is not None and needle in t)
    if condition.not_regex is not None:
        avoid = compile_regex(condition.not_regex, f"{key}.not_regex").search
        cheap_last = lambda r: (t := as_text(getter(r))) is None or avoid(t) is None  # noqa: E731
    else:
        cheap_last = None
    if condition.regex is not None:
        search = compile_regex(condition.regex, f"{key}.regex").search

        def capture(record: Record) -> dict[str, str] | None:
            value = getter(record)
            text = value if value.__class__ is str else as_text(value)
            if text is None:
                return None
            match = search(text)
            if match is None:
                return None
            return {k: v for k, v in match.groupdict().items() if v is not None}

        costly.append(capture)
    if cheap_last is not None:
        costly.append(lambda r: {} if cheap_last(r) else None)
    if not cheap and not costly:
        raise ValueError(
            f"{key}: a condition needs one of equals, in, contains, regex, not_regex, exists"
        )
    return cheap, costly


class CompiledRule:
    def __init__(self, rule: AuditRule, order: int, key: str, max_groups: int) -> None:
        if not _RULE_ID.match(rule.id):
            raise ValueError(f"{key}.id: {rule.id!r} must be letters, digits, '-' or '_'")
        if not rule.when:
            raise ValueError(f"{key}.when: a rule needs at least one condition")
        self.id = rule.id
        self.severity = rule.severity
        self.description = rule.description
        self.rank = (_RANK[rule.severity], order)
        self.tags = [TagMatcher(glob) for glob in rule.tags]
        self.index_values: frozenset[str] | None = None
        cheap: list[Check] = []
        costly: list[Capture] = []
        for i, condition in enumerate(rule.when):
            ckey = f"{key}.when[{i}]"
            indexable = self._index_values(condition)
            if indexable is not None and self.index_values is None:
                self.index_values = indexable
                # The index lookup already guarantees this condition; other ops still run.
                condition = msgspec.structs.replace(condition, equals=None, in_=None)
                if all(
                    getattr(condition, name) is None
                    for name in ("contains", "regex", "not_regex", "exists")
                ):
                    continue
            c, r = _check(condition, ckey)
            cheap.extend(c)
            costly.extend(r)
        self._cheap = cheap
        self._costly = costly
        self.threshold = rule.threshold
        self.window = float(rule.window)
        if rule.threshold < 0:
            raise ValueError(f"{key}.threshold: cannot be negative")
        if rule.group_by and not rule.threshold:
            raise ValueError(f"{key}.group_by: only used with threshold")
        self._group: list[tuple[str, Callable[[Record], Any]]] = [
            (name, make_getter(parse_path(name, f"{key}.group_by[{i}]")))
            for i, name in enumerate(rule.group_by)
        ]
        self._groups: dict[tuple[Any, ...], deque[float]] = {}
        self._max_groups = max_groups

    @staticmethod
    def _index_values(condition: AuditCondition) -> frozenset[str] | None:
        if condition.field != _INDEX_FIELD:
            return None
        if isinstance(condition.equals, str) and condition.in_ is None:
            return frozenset([condition.equals])
        if condition.in_ is not None and condition.equals is None:
            values = [v for v in condition.in_ if isinstance(v, str)]
            if len(values) == len(condition.in_):
                return frozenset(values)
        return None

    def applies_to(self, tag: str) -> bool:
        return not self.tags or any(m.matches(tag) for m in self.tags)

    def match(self, record: Record, now: float) -> dict[str, Any] | None:
        for check in self._cheap:
            if not check(record):
                return None
        fields: dict[str, Any] = {}
        for capture in self._costly:
            found = capture(record)
            if found is None:
                return None
            if found:
                fields.update(found)
        if self.threshold:
            return self._count(record, fields, now)
        return fields

    def _count(self, record: Record, fields: dict[str, Any], now: float) -> dict[str, Any] | None:
        group = tuple(
            fields[name] if name in fields else as_text(getter(record))
            for name, getter in self._group
        )
        times = self._groups.pop(group, None)  # re-inserted below: LRU order
        if times is None:
            times = deque()
            if len(self._groups) >= self._max_groups:
                del self._groups[next(iter(self._groups))]
        horizon = now - self.window
        while times and times[0] <= horizon:
            times.popleft()
        times.append(now)
        if len(times) < self.threshold:
            self._groups[group] = times
            return None
        # Fired: start counting afresh so a sustained attack yields one mark per threshold.
        fields = {**fields, "count": len(times), "window_seconds": self.window}
        return fields


_TagRules = tuple[dict[str, tuple[CompiledRule, ...]], tuple[CompiledRule, ...]]
"""Per tag: rules by ident value (generic rules merged in, severity order), generic rules."""


class AuditFilter(Filter):
    def __init__(self, config: AuditConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self.clock: Callable[[], float] = time.monotonic
        rules: dict[str, tuple[AuditRule, str]] = {}
        if config.default_rules:
            for i, rule in enumerate(load_rules_text(default_rules_text(), "default rules")):
                rules[rule.id] = (rule, f"default rules: rule[{i}]")
        if config.rules_file:
            try:
                text = Path(config.rules_file).read_text("utf-8")
            except OSError as exc:
                raise ValueError(f"rules_file: cannot read {config.rules_file!r}: {exc}") from None
            for i, rule in enumerate(load_rules_text(text, f"rules_file {config.rules_file}")):
                rules[rule.id] = (rule, f"rules_file {config.rules_file}: rule[{i}]")
        for i, rule_id in enumerate(config.disable):
            if rule_id not in rules:
                raise ValueError(f"disable[{i}]: no rule {rule_id!r}")
        if config.only is not None:
            for i, rule_id in enumerate(config.only):
                if rule_id not in rules:
                    raise ValueError(f"only[{i}]: no rule {rule_id!r}")
        enabled = [
            (rule, key)
            for rule, key in rules.values()
            if rule.id not in config.disable and (config.only is None or rule.id in config.only)
        ]
        self.rules = [
            CompiledRule(rule, order, key, config.max_groups)
            for order, (rule, key) in enumerate(enabled)
        ]
        self._per_tag: dict[str, _TagRules] = {}

    def _rules_for(self, tag: str) -> _TagRules:
        cached = self._per_tag.get(tag)
        if cached is not None:
            return cached
        rules = sorted((r for r in self.rules if r.applies_to(tag)), key=lambda r: r.rank)
        generic = tuple(r for r in rules if r.index_values is None)
        index: dict[str, list[CompiledRule]] = {}
        for rule in rules:
            for value in rule.index_values or ():
                index.setdefault(value, [])
        for value, bucket in index.items():
            bucket.extend(
                r for r in rules if r.index_values is None or value in r.index_values
            )
        table = {value: tuple(bucket) for value, bucket in index.items()}
        if len(self._per_tag) > 1024:
            self._per_tag.clear()
        self._per_tag[tag] = (table, generic)
        return table, generic

    def process(self, tag: str, records: list[Record]) -> list[Batch]:
        table, generic = self._rules_for(tag)
        if not table and not generic:
            return [(tag, records)]
        config = self.config
        now = self.clock()
        mark_field = config.field
        moved: dict[str, list[Record]] = {}
        stay: list[Record] | None = None if config.keep_original or not config.retag else []
        for record in records:
            ident = record.get(_INDEX_FIELD)
            candidates = table.get(ident, generic) if ident.__class__ is str else generic
            top: CompiledRule | None = None
            mark: dict[str, Any] | None = None
            matched: list[str] | None = None
            for rule in candidates:
                fields = rule.match(record, now)
                if fields is None:
                    continue
                if top is None:
                    top = rule
                    mark = {
                        "rule": rule.id,
                        "severity": rule.severity,
                        "description": rule.description,
                    }
                    if fields:
                        mark["fields"] = fields
                elif matched is None:
                    matched = [top.id, rule.id]
                else:
                    matched.append(rule.id)
            if top is None or mark is None:
                if stay is not None:
                    stay.append(record)
                continue
            if matched is not None:
                mark["matched"] = matched
            record[mark_field] = mark
            if config.retag:
                new_tag = f"{config.tag_prefix}.{top.id}"
                moved.setdefault(new_tag, []).append(
                    copy_record(record) if stay is None else record
                )
            elif stay is not None:
                stay.append(record)
        if moved:
            self.context.metrics.inc(
                "filter_audit_matches_total", sum(len(v) for v in moved.values())
            )
        out: list[Batch] = []
        kept = records if stay is None else stay
        if kept:
            out.append((tag, kept))
        out.extend(moved.items())
        return out
