"""What the readers hand to the mapping: fluent-bit sections as ordered key/value entries, each
with the file and line it came from (so whatever is not translated can be pointed at)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_UPPER = re.compile(r"[A-Z_][A-Z0-9_]*")


class ConvertError(Exception):
    """A fluent-bit configuration that cannot be read at all (a missing file, bad syntax)."""


@dataclass
class Entry:
    key: str
    value: str
    file: str
    line: int


@dataclass
class Section:
    """One ``[INPUT]``/``[FILTER]``/... section, or one item of a YAML ``pipeline`` list."""

    kind: str
    """Lower case: service, input, filter, output, parser, multiline_parser."""
    file: str
    line: int
    entries: list[Entry] = field(default_factory=list)
    used: set[str] = field(default_factory=set)
    """Lower-cased keys the mapping consumed; the rest are reported."""

    def add(self, key: str, value: str, file: str, line: int) -> None:
        self.entries.append(Entry(key, value, file, line))

    def get(self, key: str, default: str | None = None) -> str | None:
        """The last value of ``key`` (case-insensitive), marking it used."""
        found = self.all(key)
        return found[-1].value if found else default

    def all(self, key: str) -> list[Entry]:
        """Every entry of ``key`` (Regex, Rule, Set ... repeat), marking it used."""
        lowered = key.lower()
        self.used.add(lowered)
        return [entry for entry in self.entries if entry.key.lower() == lowered]

    def entry(self, key: str) -> Entry | None:
        found = self.all(key)
        return found[-1] if found else None

    def where(self, key: str | None = None) -> tuple[str, int]:
        """File and line of ``key`` in this section, or of the section itself."""
        if key is not None:
            lowered = key.lower()
            for entry in self.entries:
                if entry.key.lower() == lowered:
                    return entry.file, entry.line
        return self.file, self.line

    @property
    def plugin(self) -> str:
        for entry in self.entries:
            if entry.key.lower() == "name":
                return entry.value.strip().lower()
        return ""

    def unused(self) -> list[Entry]:
        return [entry for entry in self.entries if entry.key.lower() not in self.used]


@dataclass
class FluentBitConfig:
    """Everything read from the main file, its includes and its parsers files."""

    source: str
    service: list[Section] = field(default_factory=list)
    inputs: list[Section] = field(default_factory=list)
    filters: list[Section] = field(default_factory=list)
    outputs: list[Section] = field(default_factory=list)
    parser_sections: list[Section] = field(default_factory=list)
    other: list[Section] = field(default_factory=list)
    missing: list[tuple[str, int, str]] = field(default_factory=list)
    """(file, line, text) of what the readers could not read but the conversion survives
    (a Parsers_File that is not on this machine)."""
    """Sections we have no place for ([PLUGINS], [CUSTOM], YAML keys we do not know)."""

    def add(self, section: Section) -> None:
        kind = section.kind
        if kind == "service":
            self.service.append(section)
        elif kind == "input":
            self.inputs.append(section)
        elif kind == "filter":
            self.filters.append(section)
        elif kind == "output":
            self.outputs.append(section)
        elif kind in ("parser", "multiline_parser"):
            self.parser_sections.append(section)  # named once its entries are read
        else:
            self.other.append(section)

    def _named(self, kind: str) -> dict[str, Section]:
        table: dict[str, Section] = {}
        for section in self.parser_sections:
            if section.kind == kind:
                for entry in section.entries:
                    if entry.key.lower() == "name":
                        table[entry.value.strip()] = section
        return table

    @property
    def parsers(self) -> dict[str, Section]:
        """[PARSER] sections by name (a later definition wins, as in fluent-bit)."""
        return self._named("parser")

    @property
    def multiline_parsers(self) -> dict[str, Section]:
        return self._named("multiline_parser")


def substitute(
    value: str, variables: dict[str, str], config: FluentBitConfig, file: str, line: int
) -> str:
    """``${NAME}`` defined by @SET/env is replaced; any other is an environment variable. The
    agent reads upper-case ``${NAME}`` from the environment as fluent-bit does; a lower-case
    ``${name}`` would be a record field there, so it becomes ``${name:-}`` (the environment
    variable, or empty when unset: what fluent-bit gives)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return variables[name]
        if _UPPER.fullmatch(name):
            return match.group(0)
        if file:
            config.missing.append(
                (
                    file,
                    line,
                    f"${{{name}}} (an environment variable) "
                    f"becomes ${{{name}:-}}: the agent reads lower-case names "
                    "from the environment only with a default",
                )
            )
        return "${" + name + ":-}"

    return _VARIABLE.sub(replace, value)
