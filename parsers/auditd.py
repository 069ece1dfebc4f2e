"""Linux audit records: parse ``type=... msg=audit(<epoch>:<serial>): key=value ...`` lines
(``parsers/auditd_event.py`` builds one record from the records of one event,
``parsers/auditd_join.py`` joins them).

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

import msgspec

__all__ = [
    "ENDS",
    "HEX_DIGITS",
    "PAIR",
    "AuditLine",
    "decode_hex",
    "field_value",
    "is_hex",
    "parse_fields",
    "parse_line",
    "standalone",
]

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
PAIR = re.compile(r"([^\s=\x1d]+)=(\"[^\"]*\"?|'[^']*'?|[^\s\x1d]*)")
HEX_DIGITS = re.compile(r"[0-9A-Fa-f]+").fullmatch


def is_hex(text: str) -> bool:
    """``text`` is hex-encoded bytes: pairs of hex digits, at least one (one repeated
    character class: much cheaper for the regex engine than a repeated pair)."""
    return not len(text) & 1 and HEX_DIGITS(text) is not None


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


def decode_hex(value: str) -> str:
    return bytes.fromhex(value).decode("utf-8", "replace")


def field_value(key: str, raw: str) -> str:
    first = raw[:1]
    if first == '"':
        return raw[1:-1] if raw.endswith('"') and len(raw) > 1 else raw[1:]
    if first == "'":
        return raw[1:-1] if raw.endswith("'") and len(raw) > 1 else raw[1:]
    if key in HEX_FIELDS and raw and is_hex(raw):
        return decode_hex(raw)
    return raw


def parse_fields(body: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``key=value`` fields of a record's body (quotes removed, hex decoded) and the
    enriched names after ``0x1d`` (keys lower-cased). A user-space record's ``msg='...'`` is
    opened: its fields join the others (an inner field does not replace an outer one)."""
    names: dict[str, str] = {}
    sep = body.find("\x1d")
    if sep >= 0:
        for key, raw in PAIR.findall(body, sep + 1):
            names[key.lower()] = field_value("", raw)
        body = body[:sep]
    fields: dict[str, str] = {}
    for key, raw in PAIR.findall(body):
        if key == "msg" and raw[:1] == "'":
            for inner_key, inner_raw in PAIR.findall(raw.strip("'")):
                fields.setdefault(inner_key, field_value(inner_key, inner_raw))
            continue
        fields[key] = field_value(key, raw)
    return fields, names
