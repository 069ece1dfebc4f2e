"""Linux audit records: parse ``type=... msg=audit(<epoch>:<serial>): key=value ...`` lines and
build one record from the records of one event (``parsers/auditd_join.py`` joins them).

The kernel writes an event as several records sharing ``audit(<epoch>:<serial>)``: a ``SYSCALL``,
then ``EXECVE`` (the argv; a long argument is split into ``a1_len=N a1[0]=... a1[1]=...`` pieces
that may span several ``EXECVE`` records), ``CWD``, ``PATH`` (one per file), ``PROCTITLE`` and,
on the netlink socket, ``EOE``. auditd does not write ``EOE`` to its log, so an event is complete
at ``EOE``, at ``PROCTITLE`` (the kernel logs it last), at a record of a type that stands alone
(``USER_*``, ``CRED_*``, ``DAEMON_*``, ``ANOM_*``, ...), or when it has waited ``timeout``
seconds, or when a line of a later event arrives more than ``timeout`` seconds later in event
time (a file read from its start). Records of several events may interleave; events come out in
the order their first record arrived.

Lines are accepted as auditd writes them (``type=SYSCALL msg=audit(...)``), with the ``node=``
prefix of a multi-host setup, after any syslog header (as audisp-syslog and rsyslog forward
them), and as the kernel prints them when no auditd runs (``audit: type=1300 audit(...)``).
Unquoted values of the fields the kernel hex-encodes (argv, proctitle, comm, exe, cwd, name,
key, cmd) are decoded; the names that ``log_format = ENRICHED`` appends after a ``0x1d``
character (``AUID="alice"``, ``SYSCALL=execve``) are kept under ``auditd.names``.

Pure: no I/O, never imports ``agent``; nothing here raises for any input.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec

__all__ = ["ENDS", "AuditLine", "event_record", "parse_fields", "parse_line", "standalone"]

_HEADER = re.compile(
    r"type=(?P<type>[A-Za-z0-9_]+) (?:msg=)?audit\("
    r"(?P<sec>\d{1,12})\.(?P<ms>\d{1,9}):(?P<serial>\d{1,20})\):?"
)
_NODE = re.compile(r"node=(\S+) $")
_PLAIN_HEADER = re.compile(
    r"type=([A-Za-z_][A-Za-z0-9_]*) msg=audit\(([0-9]{1,12})\.([0-9]{3}):([0-9]{1,20})\): "
).match
"""auditd's usual header (a named type, milliseconds): what ``parse_line``'s string path
accepts, and gives the same result for."""
_PAIR = re.compile(r"([^\s=\x1d]+)=(\"[^\"]*\"?|'[^']*'?|[^\s\x1d]*)")
_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]+").fullmatch


def _is_hex(text: str) -> bool:
    """``text`` is hex-encoded bytes: pairs of hex digits, at least one (one repeated
    character class: much cheaper for the regex engine than a repeated pair)."""
    return not len(text) & 1 and _HEX_DIGITS(text) is not None


_ARG_PIECE = re.compile(r"a(\d+)\[(\d+)\]")
_CWD = re.compile(r"(?:^|\s)cwd=(\"[^\"]*\"?|[^\s\x1d]+)")
_NAME = re.compile(r"(?:^|\s)name=(\"[^\"]*\"?|[^\s\x1d]+)")
_PROCTITLE = re.compile(r"(?:^|\s)proctitle=(\"[^\"]*\"?|[^\s\x1d]+)")
_ARG_SEPARATORS = [f" a{i}=" for i in range(4096)]
_ENRICHED: dict[str, dict[str, str]] = {}
"""Enriched names of SYSCALL records by their text (the same few on a node, parsed once)."""
_SYSCALL_FIELDS = re.compile(
    r"arch=(?P<arch>\S++) syscall=(?P<syscall>\d++) (?:success=(?P<success>\S++) "
    r"exit=(?P<exit>\S++) )?+(?:a\d=\S++ )*+items=\d++ ppid=(?P<ppid>\d++) pid=(?P<pid>\d++) "
    r"auid=(?P<auid>\d++) uid=(?P<uid>\d++) gid=\d++ euid=(?P<euid>\d++) suid=\d++ fsuid=\d++ "
    r"egid=\d++ sgid=\d++ fsgid=\d++ tty=(?P<tty>\S++) ses=(?P<ses>\d++) comm=(?P<comm>\S++) "
    r"exe=(?P<exe>\S++)(?: subj=\S++)?+ key=(?P<key>\S++)$"
)
"""A SYSCALL record in the kernel's field order, matched in one go; any other shape is split.
Possessive (``++``, ``?+``, ``*+``): every run ends at a space or the end, where the next part
needs one, so giving characters back could never make a match; the engine keeps no state for it."""
_MATCHED: dict[str, str] = {}
"""``main`` when the SYSCALL record matched ``_SYSCALL_FIELDS`` (fields in ``syscall_fields``)."""
_DETAILED = frozenset(("CONFIG_CHANGE", "LOGIN"))
"""Kernel records besides SYSCALL whose fields are kept (what a rule change or login was)."""

HEX_FIELDS = frozenset(
    ("proctitle", "comm", "exe", "cwd", "name", "key", "cmd", "path", "data", "old", "new")
)
"""Fields whose unquoted values the kernel (or a PAM message) hex-encodes."""

NUMERIC_TYPES = {
    "1006": "LOGIN", "1100": "USER_AUTH", "1101": "USER_ACCT", "1102": "USER_MGMT",
    "1103": "CRED_ACQ", "1104": "CRED_DISP", "1105": "USER_START", "1106": "USER_END",
    "1112": "USER_LOGIN", "1113": "USER_LOGOUT", "1114": "ADD_USER", "1115": "DEL_USER",
    "1116": "ADD_GROUP", "1117": "DEL_GROUP", "1123": "USER_CMD", "1124": "USER_TTY",
    "1119": "CHGRP_ID", "1125": "CHUSER_ID", "1130": "SERVICE_START", "1131": "SERVICE_STOP",
    "1300": "SYSCALL", "1302": "PATH", "1305": "CONFIG_CHANGE", "1306": "SOCKADDR",
    "1307": "CWD", "1309": "EXECVE", "1320": "EOE", "1327": "PROCTITLE",
}  # fmt: skip
"""The kernel's record type numbers (as printed with no auditd running) that matter here."""

_STANDALONE_PREFIXES = (
    "USER_", "CRED_", "DAEMON_", "ANOM_", "ADD_", "DEL_", "GRP_", "ACCT_", "CHUSER_", "CHGRP_",
    "SERVICE_", "SYSTEM_", "ROLE_", "LABEL_", "RESP_", "CRYPTO_", "VIRT_", "AVC_PATH",
)  # fmt: skip
"""Record types that user space (PAM, shadow utils, systemd, auditd) sends as one-record events."""

ENDS = frozenset(("EOE", "PROCTITLE"))
"""Record types that end an event."""


def standalone(kind: str) -> bool:
    """A record type that is an event of its own (PAM, shadow utils, systemd, auditd)."""
    return kind.startswith(_STANDALONE_PREFIXES)


_SYSCALLS = {
    ("c000003e", "59"): "execve", ("c000003e", "322"): "execveat",
    ("c00000b7", "221"): "execve", ("c00000b7", "281"): "execveat",
    ("40000003", "11"): "execve", ("40000003", "358"): "execveat",
}  # fmt: skip
"""(arch, number) -> name for the exec calls, when the log is not ENRICHED."""

_INT_FIELDS = ("exit", "pid", "ppid", "uid", "auid", "euid", "ses")
_USER_FIELDS = ("op", "acct", "res", "terminal", "hostname", "addr", "cmd", "grantors", "id", "cwd")
"""Fields of user-space records (PAM, sudo, shadow utils) kept on the event."""


class AuditLine(msgspec.Struct, gc=False):
    """One record: its header and the text after it (fields are parsed on demand). A msgspec
    Struct because one is built per line: its constructor runs in C."""

    node: str | None
    type: str
    sec: int
    ms: str
    serial: int
    body: str


def parse_line(line: str) -> AuditLine | None:
    """The record in ``line``, or None when it holds no audit header. Any text before the
    header (a syslog header, ``audit: ``) is skipped; a ``node=`` just before it is kept."""
    plain = _PLAIN_HEADER(line)
    if plain is not None:
        # auditd's own lines (audit.log, a raw tail) with a named type and millisecond stamp:
        # one C-speed match, the exact subset of the string path below that gives the same.
        kind, sec, ms, serial = plain.groups()
        return AuditLine(None, kind, int(sec), ms, int(serial), line[plain.end() :])
    if line[:5] == "type=":
        # auditd's own lines (audit.log, a raw tail): plain string operations, no regex.
        end = line.find(" msg=audit(", 5)
        close = line.find("): ", end) if end > 5 else -1
        if close > 0:
            kind = line[5:end]
            stamp = line[end + 11 : close]
            sec, dot, rest = stamp.partition(".")
            ms, colon, serial = rest.partition(":")
            if (
                dot
                and colon
                and stamp.isascii()
                and sec.isdigit()
                and ms.isdigit()
                and serial.isdigit()
                and len(sec) <= 12
                and len(serial) <= 20
                and kind.isascii()
                and (kind.isidentifier() or kind.isdigit())
            ):
                if kind[0].isdigit():
                    kind = NUMERIC_TYPES.get(kind, kind)
                return AuditLine(
                    None, kind, int(sec), ms[:3].ljust(3, "0"), int(serial), line[close + 3 :]
                )
    start = line.find("type=")
    if start < 0:
        return None
    match = _HEADER.match(line, start)
    if match is None:
        # ``type=`` inside a syslog header or an earlier field: try the next one, once.
        start = line.find("type=", start + 5)
        if start < 0 or (match := _HEADER.match(line, start)) is None:
            return None
    node = None
    if start >= 6:
        found = _NODE.search(line, max(0, start - 300), start)
        if found is not None:
            node = found.group(1)
    kind = match.group("type")
    if kind[0].isdigit():
        kind = NUMERIC_TYPES.get(kind, kind)
    body = line[match.end() :]
    if body[:1] == " ":
        body = body[1:]
    return AuditLine(
        node, kind, int(match.group("sec")), match.group("ms")[:3].ljust(3, "0"),
        int(match.group("serial")), body,
    )  # fmt: skip


def _decode_hex(value: str) -> str:
    return bytes.fromhex(value).decode("utf-8", "replace")


def _value(key: str, raw: str) -> str:
    first = raw[:1]
    if first == '"':
        return raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
    if first == "'":
        return raw[1:-1] if raw.endswith("'") and len(raw) > 1 else raw[1:]
    if key in HEX_FIELDS and raw and _is_hex(raw):
        return _decode_hex(raw)
    return raw


def parse_fields(body: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``key=value`` fields of a record's body (quotes removed, hex decoded) and the
    enriched names after ``0x1d`` (keys lower-cased). A user-space record's ``msg='...'`` is
    opened: its fields join the others (an inner field does not replace an outer one)."""
    names: dict[str, str] = {}
    sep = body.find("\x1d")
    if sep >= 0:
        for key, raw in _PAIR.findall(body, sep + 1):
            names[key.lower()] = _value("", raw)
        body = body[:sep]
    fields: dict[str, str] = {}
    for key, raw in _PAIR.findall(body):
        if key == "msg" and raw[:1] == "'":
            for inner_key, inner_raw in _PAIR.findall(raw.strip("'")):
                fields.setdefault(inner_key, _value(inner_key, inner_raw))
            continue
        fields[key] = _value(key, raw)
    return fields, names


def _split_fields(body: str) -> dict[str, str]:
    """A kernel record's fields as written (values still quoted or hex): the kernel hex-encodes
    any value with a space, so splitting at spaces is exact."""
    fields: dict[str, str] = {}
    for token in body.split(" "):
        key, eq, raw = token.partition("=")
        if eq:
            fields[key] = raw
    return fields


def _argv(execve: list[str]) -> list[str]:
    """Arguments from the bodies of one event's EXECVE records (quoted, hex, or split into
    ``aN[k]`` hex pieces that may span records)."""
    if len(execve) == 1:
        # One record, every argument quoted and numbered in order (the kernel quotes a value
        # only when it holds no quote, space or control character): split at the quotes and
        # check the separators between the values, instead of the loop below.
        quoted = execve[0].split('"')
        head = quoted[0]
        count = len(quoted) // 2
        if (
            head[:5] == "argc="
            and head[-4:] == " a0="
            and head.isascii()
            and head[5:-4].isdigit()
            and len(head) < 19
            and quoted[-1] == ""
            and count <= len(_ARG_SEPARATORS)
            and quoted[2:-1:2] == _ARG_SEPARATORS[1:count]
        ):
            return quoted[1::2][: int(head[5:-4])]
    args: dict[int, str] = {}
    pieces: dict[int, dict[int, str]] = {}
    argc = -1
    for body in execve:
        for key, raw in _PAIR.findall(body):
            if key[:1] != "a":
                continue
            if key == "argc":
                if raw.isdecimal() and len(raw) <= 4300:  # more digits than int() takes: no count
                    argc = int(raw)
                continue
            index = key[1:]
            if index.isdecimal():
                if raw[:1] == '"':
                    args[int(index)] = raw[1:-1] if len(raw) > 1 and raw[-1] == '"' else raw[1:]
                elif raw == "(null)":
                    args[int(index)] = ""
                elif _is_hex(raw):
                    args[int(index)] = _decode_hex(raw)
                else:
                    args[int(index)] = raw
                continue
            piece = _ARG_PIECE.fullmatch(key)
            if piece is not None:
                value = raw.strip('"')
                pieces.setdefault(int(piece.group(1)), {})[int(piece.group(2))] = value
    for index, parts in pieces.items():
        hexed = "".join(parts[k] for k in sorted(parts))
        try:
            args[index] = _decode_hex(hexed)
        except ValueError:
            args[index] = hexed
    if not args:
        return []
    count = max(args) + 1 if argc < 0 else min(argc, max(args) + 1)
    return [args.get(i, "") for i in range(count)]


_SECOND_TEXT: dict[int, str] = {}


def _time_text(sec: int, ms: str) -> str:
    prefix = _SECOND_TEXT.get(sec)
    if prefix is None:
        try:
            parts = time.gmtime(sec)
            if not 1 <= parts.tm_year <= 9999:
                raise OverflowError(sec)
            prefix = (
                f"{parts.tm_year:04d}-{parts.tm_mon:02d}-{parts.tm_mday:02d}"
                f"T{parts.tm_hour:02d}:{parts.tm_min:02d}:{parts.tm_sec:02d}"
            )
        except (OverflowError, ValueError, OSError):
            prefix = "1970-01-01T00:00:00"
        if len(_SECOND_TEXT) > 4096:
            _SECOND_TEXT.clear()
        _SECOND_TEXT[sec] = prefix
    return f"{prefix}.{ms}Z"


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip('"'))
    except ValueError:
        return None


def event_record(lines: list[AuditLine]) -> dict[str, Any]:
    """One record for the lines of one event (same node and serial, in arrival order):
    ``time``, ``message`` and ``auditd.{type, serial, syscall, success, exit, pid, ppid, uid,
    auid, euid, ses, tty, comm, exe, argv, cwd, key, paths, proctitle, names, records, node}``.

    ``argv`` is the exec'd command line (EXECVE), or for any other syscall the process's own
    (PROCTITLE); a failed exec has none (its PATH records name what it tried to run)."""
    first = lines[0]
    info: dict[str, Any] = {"type": first.type, "serial": first.serial}
    execve: list[str] = []
    paths: list[str] = []
    names: dict[str, str] = {}
    proctitle: str | None = None
    types: list[str] = []
    main: dict[str, str] | None = None
    syscall_fields: tuple[Any, ...] | None = None
    """The groups of ``_SYSCALL_FIELDS`` when the SYSCALL record is in the kernel's field order
    (a tuple: one C call, where ``groupdict`` would build a dict per event)."""
    for line in lines:
        kind = line.type
        types.append(kind)
        body = line.body
        if kind == "EXECVE":
            execve.append(body)
        elif kind == "SYSCALL":
            # The fields as written (a C-speed findall); only the few shown are decoded below.
            sep = body.find("\x1d")
            if sep >= 0:
                tail = body[sep + 1 :]
                enriched = _ENRICHED.get(tail)
                if enriched is None:
                    enriched = {
                        key.lower(): raw[1:-1] if raw[:1] == '"' else raw
                        for key, raw in _PAIR.findall(tail)
                    }
                    if len(_ENRICHED) >= 1024:
                        _ENRICHED.clear()
                    _ENRICHED[tail] = enriched
                names = enriched | names  # a new dict: the cached one is never handed out
            else:
                sep = len(body)
            known = _SYSCALL_FIELDS.match(body, 0, sep)
            if known is not None:
                syscall_fields = known.groups()
                main = _MATCHED
            else:
                main = _split_fields(body[:sep])
                syscall_fields = None
            info["type"] = "SYSCALL"
        elif kind == "CWD":
            if body[:5] == 'cwd="' and (close := body.find('"', 5)) > 0:
                info["cwd"] = body[5:close]  # as the kernel writes it: what the regex finds
                continue
            found = _CWD.search(body)
            if found is not None:
                raw = found.group(1)
                if len(raw) > 1 and raw[0] == '"' and raw[-1] == '"':
                    info["cwd"] = raw[1:-1]
                else:
                    info["cwd"] = _value("cwd", raw)
        elif kind == "PATH":
            start = body.find(' name="')
            if (
                start > 0
                and "name=" not in body[:start]
                and (close := body.find('"', start + 7)) > 0
            ):
                paths.append(body[start + 7 : close])  # the first name=, quoted: as the regex
                continue
            found = _NAME.search(body)
            if found is not None:
                raw = found.group(1)
                if len(raw) > 1 and raw[0] == '"' and raw[-1] == '"':
                    paths.append(raw[1:-1])
                elif raw != "(null)":
                    paths.append(_value("name", raw))
        elif kind == "PROCTITLE":
            raw = body[10:]
            if body[:10] != "proctitle=" or not raw.isalnum():
                # Not the kernel's usual one hex field (str methods, not a regex scan, for that).
                found = _PROCTITLE.search(body)
                raw = found.group(1) if found is not None else ""
            if raw:
                if raw[0] == '"':
                    proctitle = _value("proctitle", raw)
                else:
                    try:  # hex digits in pairs, as fromhex checks them (raw has no whitespace)
                        proctitle = bytes.fromhex(raw).decode("utf-8", "replace")
                    except ValueError:
                        proctitle = raw
        elif kind != "EOE" and (main is None or standalone(kind) or kind in _DETAILED):
            # User-space records (and a few kernel ones) carry what the event is about.
            fields, enriched = parse_fields(body)
            for key, value in enriched.items():
                names.setdefault(key, value)
            if main is None:
                main = {key: f'"{value}"' for key, value in fields.items()}
            for key in _USER_FIELDS:
                if key in fields and key not in info:
                    info[key] = fields[key]
    if syscall_fields is not None:
        # The usual SYSCALL record: every field is there and the numbers are digits.
        (arch, syscall, success, exit_code, ppid, pid, auid, uid, euid, tty, ses, comm, exe,
         rule_key) = syscall_fields  # fmt: skip
        info["syscall"] = names.get("syscall") or _SYSCALLS.get((arch, syscall), syscall)
        if success is not None:
            info["success"] = success == "yes"
        number = _int(exit_code)
        if number is not None:
            info["exit"] = number
        try:
            ids = (int(pid), int(ppid), int(uid), int(auid), int(euid), int(ses))
        except ValueError:  # more digits than int() takes: left out, as _int does
            for key, text in zip(_INT_FIELDS[1:], (pid, ppid, uid, auid, euid, ses), strict=True):
                number = _int(text)
                if number is not None:
                    info[key] = number
        else:
            info["pid"], info["ppid"], info["uid"], info["auid"], info["euid"], info["ses"] = ids
        info["tty"] = tty if tty[0] != '"' and tty[0] != "'" else _value("tty", tty)
        for key, text in (("comm", comm), ("exe", exe)):
            if len(text) > 1 and text[0] == '"' and text[-1] == '"':
                info[key] = text[1:-1]
            else:
                info[key] = _value(key, text)
        if rule_key != "(null)":
            if len(rule_key) > 1 and rule_key[0] == '"' and rule_key[-1] == '"':
                info["key"] = rule_key[1:-1].replace("\x01", ",")
            else:
                info["key"] = _value("key", rule_key).replace("\x01", ",")
    elif main is not None:
        syscall = main.get("syscall")
        if syscall is not None:
            info["syscall"] = names.get("syscall") or _SYSCALLS.get(
                (main.get("arch", ""), syscall), syscall
            )
        success = main.get("success")
        if success is not None:
            info["success"] = success == "yes"
        elif "res" in main:
            info["success"] = main["res"].strip('"') in ("success", "1")
        for key in _INT_FIELDS:
            number = _int(main.get(key))
            if number is not None:
                info[key] = number
        for key in ("tty", "comm", "exe"):
            text = main.get(key)
            if text is not None:
                info[key] = _value(key, text)
        rule_key = main.get("key")
        if rule_key is not None and rule_key != "(null)":
            info["key"] = _value("key", rule_key).replace("\x01", ",")
    argv = _argv(execve) if execve else []
    if proctitle:
        title = proctitle.split("\x00")
        while title and not title[-1]:
            title.pop()
        info["proctitle"] = " ".join(title)
        # The running process's command line: the argv of any syscall but a failed exec
        # (which has no EXECVE record, and whose process still runs the old program).
        if not argv and not info.get("syscall", "").startswith("execve"):
            argv = title
    if argv:
        info["argv"] = argv
    if paths:
        info["paths"] = paths
    if names:
        info["names"] = names
    info["records"] = types
    if first.node is not None:
        info["node"] = first.node
    if argv:
        message = " ".join(argv)
    else:
        parts = [info["type"]]
        if info.get("success") is False and "res" not in info:
            parts.append("success=no")
        for key in ("syscall", "op", "acct", "exe", "cmd", "res"):
            shown = info.get(key)
            if shown is not None and shown != "?":
                parts.append(f"{key}={shown}")
        if paths:
            parts.append("paths=" + ",".join(paths))
        message = " ".join(parts)
    return {"time": _time_text(first.sec, first.ms), "message": message, "auditd": info}
