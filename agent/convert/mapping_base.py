"""fluent-bit sections -> the agent's config (a dict of the agent.toml tables), and a note for
everything that was not carried over as it was: ``left_out`` notes (a setting, a plugin, a parser
with no equivalent here) make ``convert`` exit 3; the other notes say where the agent behaves
differently or already does what a setting asked for."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.convert.model import FluentBitConfig, Section


@dataclass
class Note:
    file: str
    line: int
    text: str
    left_out: bool = True

    def render(self, base: str = "") -> str:
        where = f"{os.path.relpath(self.file, base) if base else self.file}:{self.line}"
        return f"{where}: {self.text}"


@dataclass
class Result:
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)

    @property
    def left_out(self) -> list[Note]:
        return [note for note in self.notes if note.left_out]


# Keys whose behaviour the agent has anyway (or that only tune fluent-bit's internals): reported
# as notes, not as something left out.
_COVERED = {
    "threaded": "inputs always run on the agent's event loop",
    "storage.type": "every input goes through the agent's buffer ([buffer] type, disk by default)",
    "storage.pause_on_chunks_overlimit": "a full buffer pauses stream inputs ([buffer] when_full)",
    "db": "tail positions are kept in data_dir",
    "db.sync": "tail positions are kept in data_dir",
    "db.locking": "tail positions are kept in data_dir",
    "db.journal_mode": "tail positions are kept in data_dir",
    "inotify_watcher": "the tail input polls (poll_interval)",
    "docker_mode": 'format = "docker" joins Docker\'s partial lines',
    "docker_mode_flush": 'format = "docker" joins Docker\'s partial lines',
    "buffer_chunk_size": "the agent sizes its read buffers itself",
    "kube_tag_prefix": "the tail input puts the pod's names into the record; the kubernetes "
    "filter needs no tag prefix",
    "buffer_size": "the kubernetes client reads whole API answers",
    "emitter_name": "re-tagged records go on through the chain; no emitter",
    "emitter_storage.type": "re-tagged records go on through the chain; no emitter",
    "emitter_mem_buf_limit": "re-tagged records go on through the chain; no emitter",
    "auto_retry_requests": "S3 requests are retried by the agent's delivery",
    "store_dir": "S3 uploads are staged in the agent's buffer (data_dir)",
    "store_dir_limit_size": "bounded by [buffer] max_bytes",
    "preserve_data_ordering": "objects are uploaded in chunk order",
    "use_put_object": "the agent uses PutObject below upload_chunk_size and multipart above",
    "send_content_md5": "requests carry botocore's checksums (checksum)",
    "trace_error": "refused documents are dead-lettered with the server's error",
    "mkdir": "the file output creates parent directories",
    "buffer": "the multiline filter holds pending records itself (flush_timeout)",
    "skip_empty_lines": "empty lines become records with an empty message",
}


_SECRET = re.compile(r"passw|secret|token|auth|api_?key|credential|signature", re.I)


def _shown(key: str, value: str) -> str:
    """A value fit for a note: credentials are not repeated in comments or on stderr."""
    if _SECRET.search(key) and not re.fullmatch(r"\$\{[^}]*\}|on|off|true|false", value, re.I):
        return "(value redacted)"
    value = " ".join(value.split())
    return value if len(value) <= 120 else value[:117] + "..."


PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def host_port(host: str, port: str) -> str:
    """``host:port``; an IPv6 address in brackets (a ``${VAR:-}`` placeholder is no address)."""
    bare = PLACEHOLDER.sub("", host)
    if ":" in bare and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def parse_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in ("on", "true", "yes", "1"):
        return True
    if lowered in ("off", "false", "no", "0"):
        return False
    return None


_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def _size(value: str) -> int | str | None:
    """fluent-bit's sizes (``32k``, ``5M``, ``1G``, ``512KB``) are binary multiples."""
    match = _NUMBER.match(value)
    if not match:
        return None
    number, unit = match.group(1), match.group(2).lower().rstrip("b")
    units = {"": "", "k": "KiB", "m": "MiB", "g": "GiB"}
    if unit not in units:
        return None
    if not units[unit]:
        return int(float(number))
    return f"{number}{units[unit]}"


def _duration(value: str, unit: str = "s") -> float | int | str | None:
    match = _NUMBER.match(value)
    if not match:
        return None
    number, suffix = match.group(1), match.group(2).lower() or unit
    if suffix not in ("ms", "s", "m", "h", "d"):
        return None
    if suffix == "s":
        return int(number) if number.isdigit() else float(number)
    return f"{number}{suffix}"


_ACCESSOR_PART = re.compile(r"\[\s*['\"]([^'\"]*)['\"]\s*\]|\[\s*(\d+)\s*\]")
_ACCESSOR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_\-]*)((?:\[\s*(?:'[^']*'|\"[^\"]*\"|\d+)\s*\])*)")


def _path_part(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name) else f'["{name}"]'


def _join_path(parts: list[str]) -> str:
    out = ""
    for part in parts:
        piece = _path_part(part)
        out += piece if piece.startswith("[") or not out else "." + piece
    return out


class MapperBase:
    """What every section's mapping shares: the result, notes, fields, values."""

    def __init__(self, fb: FluentBitConfig) -> None:
        self.fb = fb
        self.result = Result()
        self.inputs: list[dict[str, Any]] = []
        self.filters: list[dict[str, Any]] = []
        self.outputs: list[dict[str, Any]] = []
        self.agent: dict[str, Any] = {}
        self.buffer: dict[str, Any] = {}
        self.pending_after: dict[str, Any] | None = None
        self.has_tail = any(s.plugin == "tail" for s in fb.inputs)

    # ------------------------------------------------------------------ notes

    def note(self, section: Section, key: str | None, text: str, left_out: bool = True) -> None:
        file, line = section.where(key)
        self.result.notes.append(Note(file, line, text, left_out))

    def field(self, key: str) -> str:
        """A record accessor (``$kubernetes['labels']['app']``) or key -> our field path; the
        tail input's ``log`` is our ``message``."""
        key = key.strip()
        match = _ACCESSOR.fullmatch(key)
        if match:
            parts = [match.group(1)]
            for sub in _ACCESSOR_PART.finditer(match.group(2)):
                parts.append(sub.group(1) if sub.group(1) is not None else sub.group(2))
        else:
            parts = [key]
        if parts[0] == "log" and self.has_tail:
            parts[0] = "message"
        return _join_path(parts)

    def template(self, text: str) -> str:
        """``$TAG``/``$TAG[n]``/``$1`` stay; ``$key['sub']`` becomes ``${key.sub}``."""

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name == "TAG" or name.isdigit():
                return match.group(0)
            return "${" + self.field(match.group(0)) + "}"

        return _ACCESSOR.sub(replace, text)

    def finish_section(self, section: Section, what: str) -> None:
        for entry in section.unused():
            key = entry.key.lower()
            shown = _shown(entry.key, entry.value)
            if key in _COVERED:
                text = f"{what}: {entry.key} {shown}: not needed ({_COVERED[key]})"
                self.result.notes.append(Note(entry.file, entry.line, text, left_out=False))
            else:
                text = f"{what}: {entry.key} {shown}: no equivalent in the agent"
                self.result.notes.append(Note(entry.file, entry.line, text))

    def common(self, section: Section, target: dict[str, Any], selector: bool) -> None:
        alias = section.get("alias")
        if alias:
            target["name"] = alias
        if selector:
            match, regex = section.get("match"), section.get("match_regex")
            if regex:
                target["match_regex"] = regex
                if match:
                    self.note(section, "match", "Match and Match_Regex both set: Match_Regex kept")
            elif match:
                target["match"] = match
        section.get("name")
        limit = section.entry("mem_buf_limit")
        if limit:
            self.note(
                section,
                "mem_buf_limit",
                f"{limit.key} {limit.value}: no per-input limit; [buffer] max_bytes bounds "
                "the whole buffer (a full buffer pauses stream inputs)",
            )
        level = section.entry("log_level")
        if level:
            self.note(
                section,
                "log_level",
                f"{level.key} {level.value}: no per-plugin log level; "
                "[agent] log_level applies to all",
            )

    # ------------------------------------------------------------------ values

    def _bad(self, section: Section, key: str, value: str, expected: str) -> None:
        self.note(
            section,
            key,
            f"{key} {_shown(key, value)}: not understood (expected {expected}); not translated",
        )

    def size(self, section: Section, key: str) -> int | str | None:
        raw = section.get(key)
        if raw is None or raw == "":
            return None
        value = _size(raw)
        if value is None:
            self._bad(section, key, raw, "a size such as 32k or 5M")
        return value

    def duration(self, section: Section, key: str, unit: str = "s") -> float | int | str | None:
        raw = section.get(key)
        if raw is None or raw == "":
            return None
        value = _duration(raw, unit)
        if value is None:
            self._bad(section, key, raw, "a time such as 5 or 5s")
        return value

    def copy(
        self, section: Section, target: dict[str, Any], keys: Sequence[tuple[str, str]]
    ) -> None:
        """fluent-bit key -> our key, for each (theirs, ours) that is set and not empty."""
        for key, ours in keys:
            value = section.get(key)
            if value:
                target[ours] = value

    def copy_flags(
        self, section: Section, target: dict[str, Any], keys: Sequence[tuple[str, str]]
    ) -> None:
        """``copy`` for on/off settings: each one given becomes a bool (or a note if unclear)."""
        for key, ours in keys:
            flag = self.flag(section, key)
            if flag is not None:
                target[ours] = flag

    def flag(self, section: Section, key: str) -> bool | None:
        raw = section.get(key)
        if raw is None or raw == "":
            return None
        value = parse_bool(raw)
        if value is None:
            self._bad(section, key, raw, "on or off")
        return value

    def number(self, section: Section, key: str, default: int) -> int:
        raw = section.get(key)
        if raw is None or raw == "":
            return default
        try:
            value = int(float(raw))
        except ValueError:
            value = -1
        if value < 1:
            self._bad(section, key, raw, "a positive number")
            return default
        return value

    # ------------------------------------------------------------------ parsers

    def parser_format(self, section: Section, key: str, name: str) -> str | None:
        """syslog-rfc5424/3164 and their look-alikes -> our syslog ``format``."""
        lowered = name.lower()
        if lowered in ("syslog-rfc5424", "syslog-rfc5424-local"):
            return "rfc5424"
        if lowered in ("syslog-rfc3164", "syslog-rfc3164-local"):
            return "rfc3164"
        parser = self.fb.parsers.get(name)
        if parser is not None and "5424" in name:
            return "rfc5424"
        if parser is not None and "3164" in name:
            return "rfc3164"
        self.note(
            section,
            key,
            f"Parser {name}: the syslog input parses RFC 5424 and RFC 3164 "
            'itself (format = "auto"); a custom syslog parser is not translated (add a '
            '[[filters]] type = "parser" on message if the body needs it)',
        )
        return None

    def parser_filter(self, section: Section, key: str, name: str) -> dict[str, Any] | None:
        """A [PARSER] by name -> our parser filter's format (and regex)."""
        builtin = {"json": "json", "docker": "json", "logfmt": "logfmt"}
        parser = self.fb.parsers.get(name)
        if parser is None:
            if name.lower() in builtin:
                return {"format": builtin[name.lower()]}
            self.note(section, key, f"Parser {name}: not defined in any Parsers_File read")
            return None
        fmt = (parser.get("format") or "").lower()
        out: dict[str, Any]
        if fmt in ("json", "logfmt"):
            out = {"format": fmt}
        elif fmt == "regex":
            regex = parser.get("regex") or ""
            out = {"format": "regex", "regex": regex}
        else:
            self.note(
                parser,
                "format",
                f"[PARSER] {name}: Format {fmt or '(none)'} is not "
                "translated (json, logfmt and regex are)",
            )
            return None
        time_key = parser.entry("time_key")
        if time_key:
            self.note(
                parser,
                "time_key",
                f"[PARSER] {name}: Time_Key {time_key.value}: the "
                "parsed time is kept as a field; the record's time stays the time it was "
                "received or read",
            )
        parser.get("name")
        for key2 in ("time_format", "time_keep", "time_offset", "time_strict"):
            parser.get(key2)
        self.finish_section(parser, f"[PARSER] {name}")
        return out

    def multiline_start(self, section: Section, key: str, name: str) -> dict[str, Any] | None:
        """A [MULTILINE_PARSER] of type regex -> our multiline filter (its start_state rule)."""
        parser = self.fb.multiline_parsers.get(name)
        if parser is None:
            self.note(
                section,
                key,
                f"multiline parser {name}: built-in fluent-bit parser with "
                'no equivalent here; use [[filters]] type = "multiline" with a '
                "start_pattern",
            )
            return None
        start = None
        for rule in parser.all("rule"):
            parts = re.findall(r'"((?:[^"\\]|\\.)*)"|\'([^\']*)\'', rule.value)
            texts = [a or b for a, b in parts]
            if len(texts) >= 2 and texts[0] == "start_state" and start is None:
                start = texts[1]
        if start is None:
            self.note(parser, None, f"[MULTILINE_PARSER] {name}: no start_state rule")
            return None
        if len(start) > 1 and start.startswith("/") and start.endswith("/"):
            start = start[1:-1]
        out: dict[str, Any] = {"type": "multiline", "start_pattern": start}
        flush = self.duration(parser, "flush_timeout", "ms")
        if flush is not None:
            out["flush_timeout"] = flush
        if (parser.get("type") or "regex").lower() != "regex":
            self.note(parser, "type", f"[MULTILINE_PARSER] {name}: only type regex translates")
            return None
        parser.get("name")
        self.result.notes.append(
            Note(
                parser.file,
                parser.line,
                f"[MULTILINE_PARSER] {name}: start_state becomes "
                "start_pattern; every other line continues the record (the continuation rules "
                "are not checked)",
                left_out=False,
            )
        )
        self.finish_section(parser, f"[MULTILINE_PARSER] {name}")
        return out
