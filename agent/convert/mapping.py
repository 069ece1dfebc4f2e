"""fluent-bit sections -> the agent's config (a dict of the agent.toml tables), and a note for
everything that was not carried over as it was: ``left_out`` notes (a setting, a plugin, a parser
with no equivalent here) make ``convert`` exit 3; the other notes say where the agent behaves
differently or already does what a setting asked for."""

from __future__ import annotations

import os
import re
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


_PLACEHOLDER = re.compile(r"\$\{[^}]*\}")


def _host_port(host: str, port: str) -> str:
    """``host:port``; an IPv6 address in brackets (a ``${VAR:-}`` placeholder is no address)."""
    bare = _PLACEHOLDER.sub("", host)
    if ":" in bare and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def _bool(value: str | None) -> bool | None:
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


class Mapper:
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

    def flag(self, section: Section, key: str) -> bool | None:
        raw = section.get(key)
        if raw is None or raw == "":
            return None
        value = _bool(raw)
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

    # ------------------------------------------------------------------ service

    def service(self) -> None:
        for section in self.fb.service:
            flush = self.duration(section, "flush")
            if flush is not None:
                self.buffer["flush_interval"] = flush
            level = section.get("log_level")
            if level:
                levels = {
                    "error": "error",
                    "warn": "warning",
                    "warning": "warning",
                    "info": "info",
                    "debug": "debug",
                    "trace": "debug",
                }
                if level.lower() in levels:
                    self.agent["log_level"] = levels[level.lower()]
                else:
                    self.agent["log_level"] = "error"
                    self.note(
                        section,
                        "log_level",
                        f"Log_Level {level}: the agent always logs "
                        'errors; log_level = "error" written',
                    )
            if self.flag(section, "http_server"):
                host = section.get("http_listen") or "0.0.0.0"
                port = section.get("http_port") or "2020"
                self.agent["http_listen"] = _host_port(host, port)
            else:
                for key in ("http_listen", "http_port"):
                    section.get(key)
            path = section.get("storage.path")
            if path:
                self.agent["data_dir"] = path
            sync = section.get("storage.sync")
            if sync:
                self.buffer["sync"] = "always" if sync.lower() == "full" else "none"
            grace = self.duration(section, "grace")
            if grace is not None:
                self.agent["grace_period"] = grace
            for key, text in (
                ("daemon", "run the agent under your service manager; it does not fork"),
                ("health_check", "/healthz and /readyz are always served with http_listen"),
                ("hc_errors_count", "/readyz reports each output's state"),
                ("hc_retry_failure_count", "/readyz reports each output's state"),
                ("hc_period", "/readyz reports each output's state"),
                ("storage.metrics", "buffer metrics are always in /metrics"),
                ("storage.checksum", "every frame of a chunk carries a CRC32"),
                ("storage.max_chunks_up", "the disk buffer keeps only open chunks in memory"),
                (
                    "storage.backlog.mem_limit",
                    "the backlog is replayed from disk, chunk by "
                    "chunk; [buffer] max_bytes bounds it",
                ),
                (
                    "storage.delete_irrecoverable_chunks",
                    "damaged chunks are salvaged and the rest moved to data_dir/corrupt, counted",
                ),
                ("hot_reload", "SIGHUP reloads the config"),
                ("coro_stack_size", "no coroutine stacks to size"),
            ):
                entry = section.entry(key)
                if entry:
                    self.result.notes.append(
                        Note(
                            entry.file,
                            entry.line,
                            f"[SERVICE] {entry.key} {entry.value}: not needed ({text})",
                            left_out=False,
                        )
                    )
            section.all("parsers_file")
            self.finish_section(section, "[SERVICE]")
        if not any(s.get("storage.path") for s in self.fb.service) and self.fb.inputs:
            self.result.notes.append(
                Note(
                    self.fb.source,
                    1,
                    "fluent-bit buffered in memory (no storage.path): the agent "
                    "buffers on disk in [agent] data_dir (/var/lib/audit-agent by default); "
                    '[buffer] type = "memory" gives the old behaviour',
                    left_out=False,
                )
            )

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

    # ------------------------------------------------------------------ inputs

    def input(self, section: Section, index: int) -> None:
        plugin = section.plugin
        method = getattr(self, f"input_{plugin.replace('-', '_')}", None)
        if method is None:
            self.note(
                section,
                None,
                f"[INPUT] {plugin or '(no Name)'}: no such input in the "
                "agent (it has syslog and tail); not translated",
            )
            return
        target: dict[str, Any] = {"type": plugin}
        tag = section.get("tag")
        target["tag"] = tag if tag else f"{plugin}.{index}"
        self.common(section, target, selector=False)
        method(section, target)
        self.inputs.append(target)
        self.finish_section(section, f"[INPUT] {plugin}")

    def input_syslog(self, section: Section, target: dict[str, Any]) -> None:
        modes = {"udp": "udp", "tcp": "tcp", "unix_udp": "unix_dgram", "unix_tcp": "unix_stream"}
        mode = (section.get("mode") or "unix_udp").lower()
        if mode not in modes:
            self.note(section, "mode", f"Mode {mode}: unknown; unix_dgram written")
            mode = "unix_udp"
        target["mode"] = modes[mode]
        if mode in ("udp", "tcp"):
            host = section.get("listen") or "0.0.0.0"
            port = section.get("port") or "5140"
            target["listen"] = _host_port(host, port)
            section.get("path")
        else:
            path = section.get("path")
            if path:
                target["path"] = path
            else:
                self.note(
                    section,
                    None,
                    "[INPUT] syslog: a unix mode without Path; "
                    'path = "/tmp/fluent-bit.sock" written (set the real one)',
                )
                target["path"] = "/tmp/fluent-bit.sock"
            perm = section.get("unix_perm")
            if perm:
                target["socket_mode"] = perm if perm.startswith("0") else "0" + perm
            for key in ("listen", "port"):
                section.get(key)
        parser = section.get("parser")
        if parser:
            fmt = self.parser_format(section, "parser", parser)
            if fmt:
                target["format"] = fmt
        size = self.size(section, "buffer_max_size")
        if size is not None:
            target["max_message_bytes"] = size
        receive = self.size(section, "receive_buffer_size")
        if receive is not None:
            target["receive_buffer_bytes"] = receive
        source = section.get("source_address_key")
        if source:
            target["source_key"] = source

    def input_tail(self, section: Section, target: dict[str, Any]) -> None:
        paths = [p.strip() for e in section.all("path") for p in e.value.split(",") if p.strip()]
        if paths:
            target["paths"] = paths
        excludes = [
            p.strip() for e in section.all("exclude_path") for p in e.value.split(",") if p.strip()
        ]
        if excludes:
            target["exclude"] = excludes
        tag = target["tag"]
        if "*" in tag:
            containers = all(
                p.startswith(("/var/log/containers", "/var/log/pods"))
                for p in paths or ["/var/log/containers"]
            )
            fields = "${namespace_name}.${pod_name}.${container_name}" if containers else "${path}"
            new = tag.replace("*", fields, 1)
            self.note(
                section,
                "tag",
                f"Tag {tag}: '*' (the file's path) becomes {new!r}; a "
                "Match on the old prefix still selects these records",
                left_out=False,
            )
            target["tag"] = new
        for key, ours in (("read_from_head", "read_from_head"),):
            flag = self.flag(section, key)
            if flag is not None:
                target[ours] = flag
        for key, ours in (
            ("refresh_interval", "refresh_interval"),
            ("rotate_wait", "rotate_wait"),
            ("ignore_older", "ignore_older"),
        ):
            seconds = self.duration(section, key)
            if seconds is not None:
                target[ours] = seconds
        size = self.size(section, "buffer_max_size")
        if size is not None:
            target["max_line_bytes"] = size
        path_key = section.get("path_key")
        if path_key:
            target["path_key"] = path_key
        skip = section.entry("skip_long_lines")
        if skip and _bool(skip.value):
            self.note(
                section,
                "skip_long_lines",
                "Skip_Long_Lines On: a longer line is cut "
                "at max_line_bytes and flagged truncated (counted), not skipped",
                left_out=False,
            )
        key_entry = section.entry("key")
        if key_entry and key_entry.value != "log":
            self.note(section, "key", f"Key {key_entry.value}: the line is always in message")
        formats: list[str] = []
        entries = section.all("multiline.parser") + section.all("parser")
        for entry in entries:
            for name in (n.strip() for n in entry.value.split(",") if n.strip()):
                lowered = name.lower()
                if lowered in ("cri", "docker"):
                    formats.append(lowered)
                elif lowered.startswith("docker") and self.fb.parsers.get(name) is not None:
                    formats.append("docker")
                else:
                    extra = self.multiline_start(section, entry.key, name)
                    if extra is not None:
                        extra["match"] = re.sub(r"\$\{[^}]*\}", "*", target["tag"])
                        extra["key"] = "message"
                        extra["stream_keys"] = ["stream"]  # the tag is per container already
                        self.filters.append(extra)
        if formats:
            target["format"] = formats[0] if len(set(formats)) == 1 else "auto"

    # ------------------------------------------------------------------ filters

    def filter(self, section: Section) -> None:
        plugin = section.plugin
        method = getattr(self, f"filter_{plugin.replace('-', '_')}", None)
        if method is None:
            what = {"lua": "Lua scripts", "wasm": "WASM filters"}.get(plugin, "this filter")
            self.note(
                section,
                None,
                f"[FILTER] {plugin or '(no Name)'}: {what} cannot be "
                'translated; a [[filters]] type = "python" function can do the same',
            )
            return
        target: dict[str, Any] = {"type": plugin}
        self.common(section, target, selector=True)
        if "match" not in target and "match_regex" not in target:
            self.note(
                section,
                None,
                f"[FILTER] {plugin} without Match: fluent-bit applies it "
                "to no record; not written (an agent filter without match takes every tag)",
            )
            for entry in section.entries:
                section.used.add(entry.key.lower())
            return
        extra = method(section, target)
        if extra is not False:
            self.filters.append(target)
        self.finish_section(section, f"[FILTER] {plugin}")

    def _key_value(self, entry_value: str) -> tuple[str, str]:
        key, _, value = entry_value.strip().partition(" ")
        return key, value.strip()

    def filter_grep(self, section: Section, target: dict[str, Any]) -> None:
        for key in ("regex", "exclude"):
            rules = []
            for entry in section.all(key):
                field_name, pattern = self._key_value(entry.value)
                rules.append([self.field(field_name), pattern])
            if rules:
                target[key] = rules
        op = section.get("logical_op")
        if op and op.lower() in ("and", "or", "legacy"):
            target["logical_op"] = op.lower()

    _MODIFY_RULES = (
        "set",
        "add",
        "remove",
        "remove_wildcard",
        "remove_regex",
        "rename",
        "hard_rename",
        "copy",
        "hard_copy",
        "move_to_start",
        "move_to_end",
    )
    _MODIFY_FIELDS = {"set", "add", "remove", "rename", "hard_rename", "copy", "hard_copy"}
    _CONDITIONS = {
        "key_exists": 1,
        "key_does_not_exist": 1,
        "a_key_matches": 1,
        "no_key_matches": 1,
        "key_value_equals": 2,
        "key_value_does_not_equal": 2,
        "key_value_matches": 2,
        "key_value_does_not_match": 2,
        "matching_keys_have_matching_values": 2,
        "matching_keys_do_not_have_matching_values": 2,
    }

    def filter_modify(self, section: Section, target: dict[str, Any]) -> None:
        rules: list[list[Any]] = []
        conditions: list[list[Any]] = []
        for entry in section.entries:
            key = entry.key.lower()
            if key in self._MODIFY_RULES:
                section.used.add(key)
                first, rest = self._key_value(entry.value)
                if key in ("set", "add"):
                    rules.append([key, self.field(first), rest])
                elif key in ("rename", "hard_rename", "copy", "hard_copy"):
                    rules.append([key, self.field(first), self.field(rest)])
                elif key == "remove":
                    rules.append([key, self.field(first)])
                else:
                    rules.append([key, entry.value.strip()])
            elif key == "condition":
                section.used.add(key)
                name, rest = self._key_value(entry.value)
                arity = self._CONDITIONS.get(name.lower())
                if arity is None:
                    self.result.notes.append(
                        Note(entry.file, entry.line, f"[FILTER] modify: Condition {name}: unknown")
                    )
                    continue
                args = [rest] if arity == 1 else list(self._key_value(rest))
                if name.lower() in (
                    "key_exists",
                    "key_does_not_exist",
                    "key_value_equals",
                    "key_value_does_not_equal",
                    "key_value_matches",
                    "key_value_does_not_match",
                ):
                    args[0] = self.field(args[0])
                conditions.append([name.lower(), *args])
        target["rules"] = rules
        if conditions:
            target["condition"] = conditions

    def filter_record_modifier(self, section: Section, target: dict[str, Any]) -> None:
        records = []
        for entry in section.all("record"):
            key, value = self._key_value(entry.value)
            records.append([self.field(key), self.template(value)])
        if records:
            target["record"] = records
        removes = [self.field(e.value) for e in section.all("remove_key")]
        if removes:
            target["remove_keys"] = removes
        allow = [
            e.value.strip() for e in section.all("allowlist_key") + section.all("whitelist_key")
        ]
        if allow:
            target["allowlist_keys"] = allow
        uuid = section.entry("uuid_key")
        if uuid:
            self.note(section, "uuid_key", f"UUID_key {uuid.value}: no equivalent")

    def filter_rewrite_tag(self, section: Section, target: dict[str, Any]) -> None:
        rules: list[list[Any]] = []
        for entry in section.all("rule"):
            parts = entry.value.split()
            if len(parts) < 3:
                self.result.notes.append(
                    Note(
                        entry.file,
                        entry.line,
                        f"[FILTER] rewrite_tag: Rule {entry.value}: expected KEY REGEX TAG KEEP",
                    )
                )
                continue
            key, regex, tag = parts[0], " ".join(parts[1:-2]) if len(parts) > 3 else parts[1], None
            if len(parts) > 3:
                tag, keep_text = parts[-2], parts[-1]
            else:
                tag, keep_text = parts[2], "false"
            keep = bool(_bool(keep_text))
            rules.append([self.field(key), regex, self.template(tag), keep])
        target["rules"] = rules

    def filter_throttle(self, section: Section, target: dict[str, Any]) -> None:
        rate = self.number(section, "rate", 1)
        window = self.number(section, "window", 5)
        interval = self.duration(section, "interval")
        seconds = interval if isinstance(interval, int | float) else 1
        target["rate"] = rate * window
        target["window"] = seconds * window
        status = self.flag(section, "print_status")
        if status is not None:
            target["print_status"] = status
        self.note(
            section,
            None,
            f"[FILTER] throttle: Rate {rate} per Interval averaged over "
            f"Window {window} becomes rate = {rate * window} per window = "
            f"{seconds * window}s (a sliding window, no slow start)",
            left_out=False,
        )

    def filter_nest(self, section: Section, target: dict[str, Any]) -> None:
        operation = (section.get("operation") or "nest").lower()
        target["operation"] = operation
        if operation == "nest":
            target["wildcard"] = [e.value.strip() for e in section.all("wildcard")]
            target["nest_under"] = self.field(section.get("nest_under") or "")
        else:
            target["nested_under"] = self.field(section.get("nested_under") or "")
        for key in ("add_prefix", "remove_prefix"):
            value = section.get(key)
            if value:
                target[key] = value

    def filter_parser(self, section: Section, target: dict[str, Any]) -> None:
        key = section.get("key_name") or "log"
        target["key_name"] = self.field(key)
        names = [e for e in section.all("parser")]
        if names:
            parsed = self.parser_filter(section, "parser", names[0].value.strip())
            if parsed:
                target.update(parsed)
            for extra in names[1:]:
                self.result.notes.append(
                    Note(
                        extra.file,
                        extra.line,
                        f"[FILTER] parser: Parser {extra.value}: only the "
                        'first parser is tried; add another [[filters]] type = "parser"',
                    )
                )
        if "format" not in target:
            return False  # type: ignore[return-value]
        reserve = self.flag(section, "reserve_data")
        target["reserve_data"] = bool(reserve)
        preserve = self.flag(section, "preserve_key")
        if preserve is not None:
            target["preserve_key"] = preserve
        return None

    def filter_multiline(self, section: Section, target: dict[str, Any]) -> Any:
        key = section.get("multiline.key_content") or "log"
        made = False
        for entry in section.all("multiline.parser"):
            for name in (n.strip() for n in entry.value.split(",") if n.strip()):
                if name.lower() in ("cri", "docker"):
                    self.note(
                        section,
                        entry.key,
                        f"multiline.parser {name}: partial lines are "
                        "joined by the tail input's format",
                        left_out=False,
                    )
                    continue
                extra = self.multiline_start(section, entry.key, name)
                if extra is not None and not made:
                    target.update(extra)
                    target["key"] = self.field(key)
                    made = True
        flush_ms = self.duration(section, "flush_ms", "ms")
        if flush_ms is not None and made:
            target["flush_timeout"] = flush_ms
        mode = section.entry("mode")
        if mode and mode.value.strip().lower() == "partial_message":
            self.note(
                section,
                "mode",
                "mode partial_message: Docker's and CRI's partial lines "
                "are joined by the tail input's format (docker, cri), not by a filter",
                left_out=not self.has_tail,
            )
        return None if made else False

    def filter_kubernetes(self, section: Section, target: dict[str, Any]) -> None:
        for key, ours in (
            ("kube_url", "kube_url"),
            ("kube_ca_file", "kube_ca_file"),
            ("kube_token_file", "kube_token_file"),
        ):
            value = section.get(key)
            if value:
                target[ours] = value
        for key, ours in (
            ("labels", "labels"),
            ("annotations", "annotations"),
            ("tls.verify", "tls_verify"),
        ):
            flag = self.flag(section, key)
            if flag is not None:
                target[ours] = flag
        merge = self.flag(section, "merge_log")
        if merge:
            parser: dict[str, Any] = {
                "type": "parser",
                "format": "json",
                "key_name": "message",
                "reserve_data": True,
            }
            if "match" in target:
                parser["match"] = target["match"]
            keep = self.flag(section, "keep_log")
            parser["preserve_key"] = True if keep is None else keep
            merge_key = section.get("merge_log_key")
            if merge_key:
                parser["target_key"] = merge_key
            self.pending_after = parser
            self.note(
                section,
                "merge_log",
                'Merge_Log On: a [[filters]] type = "parser" '
                "(json on message) follows the kubernetes filter",
                left_out=False,
            )
        for key in (
            "k8s-logging.parser",
            "k8s-logging.exclude",
            "use_kubelet",
            "kubelet_port",
            "merge_parser",
            "kube_meta_cache_ttl",
            "namespace_labels",
        ):
            entry = section.entry(key)
            if entry and (_bool(entry.value) is not False):
                self.note(
                    section,
                    key,
                    f"{entry.key} {entry.value}: no equivalent in the agent's kubernetes filter",
                )

    # ------------------------------------------------------------------ outputs

    def output(self, section: Section) -> None:
        plugin = section.plugin
        kinds = {
            "es": "elasticsearch",
            "elasticsearch": "elasticsearch",
            "opensearch": "opensearch",
            "s3": "s3",
            "file": "file",
            "stdout": "stdout",
            "null": "null",
        }
        kind = kinds.get(plugin)
        if kind is None:
            self.note(
                section,
                None,
                f"[OUTPUT] {plugin or '(no Name)'}: no such output in the "
                "agent (it has s3, elasticsearch/opensearch, file, stdout, null); not "
                "translated: its records are not sent anywhere",
            )
            return
        target: dict[str, Any] = {"type": kind}
        self.common(section, target, selector=True)
        if "match" not in target and "match_regex" not in target:
            self.note(
                section,
                None,
                f"[OUTPUT] {plugin} without Match: fluent-bit sends it no record; not written",
            )
            for entry in section.entries:
                section.used.add(entry.key.lower())
            return
        retry = section.get("retry_limit")
        if retry:
            lowered = retry.lower()
            if lowered in ("false", "no_limits", "off"):
                target["retry_limit"] = "unlimited"
            elif lowered == "no_retries":
                target["retry_limit"] = 0
            elif retry.isdigit():
                target["retry_limit"] = int(retry)
        workers = section.get("workers")
        if workers and workers.isdigit() and int(workers) > 0:
            target["workers"] = int(workers)
        getattr(self, f"output_{'es' if kind in ('elasticsearch', 'opensearch') else kind}")(
            section, target
        )
        self.outputs.append(target)
        self.finish_section(section, f"[OUTPUT] {plugin}")

    def output_null(self, section: Section, target: dict[str, Any]) -> None:
        return None

    def output_stdout(self, section: Section, target: dict[str, Any]) -> None:
        fmt = section.entry("format")
        if fmt is None or fmt.value.lower() != "json_lines":
            self.note(
                section,
                "format" if fmt else None,
                "[OUTPUT] stdout: records are "
                "printed as JSON lines (fluent-bit's Format json_lines)",
                left_out=False,
            )
        self.date_key(section)

    def date_key(self, section: Section) -> None:
        """json_date_key/json_date_format: records keep their own ``time``; no key is added."""
        for key in ("json_date_key", "json_date_format"):
            entry = section.entry(key)
            if entry and entry.value.lower() not in ("false", "off"):
                self.note(
                    section,
                    key,
                    f"{entry.key} {entry.value}: records keep their time field; no date key "
                    "is added",
                )

    def output_file(self, section: Section, target: dict[str, Any]) -> None:
        directory = section.get("path") or "."
        name = section.get("file")
        if not name:
            self.note(
                section,
                None,
                "[OUTPUT] file without File: fluent-bit names the file "
                "after the tag; one file, out.log, is written instead",
                left_out=False,
            )
            name = "out.log"
        target["path"] = os.path.join(directory, name)
        fmt = section.entry("format")
        if fmt is None or fmt.value.lower() not in ("plain",):
            self.note(
                section,
                "format" if fmt else None,
                "[OUTPUT] file: the file holds one "
                "JSON record per line (no tag or timestamp prefix)",
                left_out=False,
            )

    def output_s3(self, section: Section, target: dict[str, Any]) -> None:
        bucket = section.get("bucket")
        if not bucket:
            self.note(
                section, None, '[OUTPUT] s3 without bucket: bucket = "${S3_BUCKET}" written; set it'
            )
        target["bucket"] = bucket or "${S3_BUCKET}"
        for key, ours in (
            ("region", "region"),
            ("endpoint", "endpoint_url"),
            ("storage_class", "storage_class"),
            ("canned_acl", "canned_acl"),
            ("role_arn", "role_arn"),
            ("sts_endpoint", "sts_endpoint_url"),
            ("external_id", "external_id"),
            ("content_type", "content_type"),
        ):
            value = section.get(key)
            if value:
                target[ours] = value
        for key, ours in (
            ("total_file_size", "total_file_size"),
            ("upload_chunk_size", "upload_chunk_size"),
        ):
            size = self.size(section, key)
            if size is not None:
                target[ours] = size
        timeout = self.duration(section, "upload_timeout")
        if timeout is not None:
            target["upload_timeout"] = timeout
        compression = (section.get("compression") or "none").lower()
        if compression in ("gzip", "zstd", "none"):
            target["compression"] = compression
        else:
            target["compression"] = "gzip"
            self.note(
                section, "compression", f"compression {compression}: not available; gzip written"
            )
        key_format = section.get("s3_key_format") or "/fluent-bit-logs/$TAG/%Y/%m/%d/%H/%M/%S"
        key = re.sub(r"\$TAG\[(\d+)\]", r"${tag[\1]}", key_format)
        key = key.replace("$TAG", "${tag}").replace("$UUID", "${chunk_id}")
        key = key.replace("$INDEX", "${index}")
        key = key.lstrip("/")
        if "${chunk_id}" not in key:
            key += "-${chunk_id}"
        if "${host}" not in key:
            key = key.replace("${chunk_id}", "${host}-${chunk_id}", 1)
        if key != key_format:
            self.note(
                section,
                "s3_key_format" if section.entry("s3_key_format") else None,
                f"s3_key_format {key_format} becomes key_format = {key!r} (keys carry "
                "${host} and ${chunk_id}, so a resend overwrites instead of duplicating)",
                left_out=False,
            )
        target["key_format"] = key
        delimiters = section.get("s3_key_format_tag_delimiters")
        if delimiters and delimiters != ".":
            self.note(
                section,
                "s3_key_format_tag_delimiters",
                f"s3_key_format_tag_delimiters "
                f"{delimiters}: ${{tag[N]}} splits the tag at dots only",
            )
        self.date_key(section)

    def output_es(self, section: Section, target: dict[str, Any]) -> None:
        tls = bool(self.flag(section, "tls"))
        scheme = "https" if tls else "http"
        host = section.get("host") or "127.0.0.1"
        port = section.get("port") or "9200"
        prefix = (section.get("path") or "").rstrip("/")
        hosts = [h.strip() for h in host.split(",") if h.strip()] if "," in host else [host]
        urls = [
            f"{scheme}://{h}{prefix}"
            if ":" in _PLACEHOLDER.sub("", h).split("]")[-1]  # host:port already
            else f"{scheme}://{_host_port(h, port)}{prefix}"
            for h in hosts
        ]
        target["hosts"] = urls[0] if len(urls) == 1 else urls
        if not section.entry("index") and not _bool(section.get("logstash_format")):
            target["index"] = "fluent-bit"  # fluent-bit's default index
        for key, ours in (
            ("http_user", "user"),
            ("http_passwd", "password"),
            ("index", "index"),
            ("logstash_prefix", "logstash_prefix"),
            ("logstash_dateformat", "logstash_dateformat"),
            ("logstash_prefix_separator", "logstash_prefix_separator"),
            ("time_key", "time_key"),
            ("tag_key", "tag_key"),
            ("pipeline", "pipeline"),
            ("tls.ca_file", "ca_file"),
            ("tls.crt_file", "cert_file"),
            ("tls.key_file", "key_file"),
            ("aws_region", "aws_region"),
            ("type", "type_name"),
            ("http_api_key", "api_key"),
        ):
            value = section.get(key)
            if value:
                target[ours] = value
        for key, ours in (
            ("logstash_format", "logstash_format"),
            ("include_tag_key", "include_tag_key"),
            ("replace_dots", "replace_dots"),
            ("suppress_type_name", "suppress_type_name"),
            ("tls.verify", "verify_tls"),
            ("aws_auth", "aws_auth"),
        ):
            flag = self.flag(section, key)
            if flag is not None:
                target[ours] = flag
        if self.flag(section, "generate_id"):
            target["id_mode"] = "hash"
            self.note(
                section,
                "generate_id",
                'Generate_ID On: id_mode = "hash" derives '
                "_id from the chunk and position (a resend overwrites); fluent-bit "
                "hashes the record",
                left_out=False,
            )
        compress = section.get("compress")
        if compress and compress.lower() == "gzip":
            target["compression"] = "gzip"
        op = section.entry("write_operation")
        if op and op.value.lower() == "create":
            target["op_type"] = "create"
        elif op and op.value.lower() != "index":
            self.note(
                section, "write_operation", f"Write_Operation {op.value}: only index and create"
            )

    # ------------------------------------------------------------------ all

    def run(self) -> Result:
        self.service()
        for index, section in enumerate(self.fb.inputs):
            self.input(section, index)
        for section in self.fb.filters:
            self.filter(section)
            if self.pending_after is not None:
                self.filters.append(self.pending_after)
                self.pending_after = None
        for section in self.fb.outputs:
            self.output(section)
        for file, line, text in self.fb.missing:
            self.result.notes.append(Note(file, line, text, left_out=False))
        for section in self.fb.other:
            self.note(section, None, f"[{section.kind.upper()}] section: not translated")
        if not self.inputs:
            self.result.notes.append(
                Note(
                    self.fb.source,
                    1,
                    "no input could be translated; "
                    "a placeholder syslog input on udp 127.0.0.1:5140 "
                    "is written so the file is valid",
                )
            )
            self.inputs.append({"type": "syslog", "mode": "udp", "listen": "127.0.0.1:5140"})
        if not self.outputs:
            self.result.notes.append(
                Note(
                    self.fb.source,
                    1,
                    "no output could be translated; "
                    "a stdout output is written so the file is valid",
                )
            )
            self.outputs.append({"type": "stdout", "match": "*"})
        config: dict[str, Any] = {}
        if self.agent:
            config["agent"] = self.agent
        if self.buffer:
            config["buffer"] = self.buffer
        config["inputs"] = self.inputs
        if self.filters:
            config["filters"] = self.filters
        config["outputs"] = self.outputs
        self.result.config = config
        self.result.notes.sort(key=lambda n: (not n.left_out, n.file, n.line))
        return self.result


def convert(fb: FluentBitConfig) -> Result:
    return Mapper(fb).run()
