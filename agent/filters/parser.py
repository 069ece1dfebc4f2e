"""``parser``: parse one field (``message``) as JSON, logfmt or a regex with named groups and
merge the fields it yields into the record (fluent-bit's parser filter)."""

from __future__ import annotations

import re
from typing import Any, Literal

from agent.fields import delete_field, get_field, set_field
from agent.filters.base import FilterConfig, FilterContext, Record, RecordFilter
from agent.filters.common import parse_path
from parsers.body import compile_body_regex, parse_json, parse_logfmt, parse_regex


class ParserConfig(FilterConfig, tag_field="type", tag="parser"):
    format: Literal["json", "logfmt", "regex"]
    """How the text is parsed: a JSON object, logfmt ``key=value`` pairs, or ``regex``."""
    key_name: str = "message"
    """Field path of the text to parse."""
    regex: str | None = None
    """With ``format = "regex"``: named groups become fields (``(?P<user>\\S+)``)."""
    reserve_data: bool = True
    """Keep the record's other fields; ``false`` (fluent-bit's default): the record becomes
    only the parsed fields."""
    preserve_key: bool = False
    """Keep ``key_name`` itself after a successful parse."""
    target_key: str | None = None
    """Put the parsed fields under this field path instead of at the top level (other fields
    always kept)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format == "regex" and not self.regex:
            raise ValueError('regex: required with format = "regex"')
        if self.format != "regex" and self.regex is not None:
            raise ValueError('regex: only used with format = "regex"')


class ParserFilter(RecordFilter):
    def __init__(self, config: ParserConfig, context: FilterContext) -> None:
        super().__init__(config, context)
        self._key = parse_path(config.key_name, "key_name")
        self._target = parse_path(config.target_key, "target_key") if config.target_key else None
        if config.format == "regex":
            try:
                pattern = compile_body_regex(config.regex or "")
            except re.error as exc:
                raise ValueError(
                    f"regex: invalid regular expression {config.regex!r}: {exc}"
                ) from None
            except ValueError as exc:
                raise ValueError(f"regex: {exc}") from None
            self._parse = lambda text: parse_regex(pattern, text)
        elif config.format == "json":
            self._parse = parse_json
        else:
            self._parse = parse_logfmt

    def apply(self, records: list[Record]) -> list[Record]:
        config, key, parse, target = self.config, self._key, self._parse, self._target
        single = key[0] if len(key) == 1 else None
        failed = skipped = 0
        out = records
        for index, record in enumerate(records):
            text = record.get(single) if single is not None else get_field(record, key)
            if text.__class__ is not str:
                skipped += 1
                continue
            fields: dict[str, Any] | None = parse(text)
            if fields is None:
                failed += 1
                continue
            if not config.preserve_key:
                delete_field(record, key)
            if target is not None:
                set_field(record, target, fields)
            elif config.reserve_data:
                record.update(fields)
            else:
                if config.preserve_key:
                    fields = {**fields, key[0]: record.get(key[0])}
                if out is records:
                    out = list(records)
                out[index] = fields
        if failed:
            self.context.metrics.inc("filter_parse_failures_total", failed, reason="no_match")
        if skipped:
            self.context.metrics.inc("filter_parse_failures_total", skipped, reason="not_a_string")
        return out
