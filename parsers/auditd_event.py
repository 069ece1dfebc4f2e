"""One record from the records of one audit event (same node and serial, in arrival order):
the SYSCALL's fields, the argv of its EXECVE records, CWD, PATH and PROCTITLE, and the fields of
user-space records. The usual kernel shapes take ``str`` methods and one regex each; anything
else falls back to a field-by-field parse with the same result.

Pure: no I/O, never imports ``agent``; nothing here raises for any input.
"""

from __future__ import annotations

import re
import time
from typing import Any

from parsers.auditd import (
    PAIR,
    AuditLine,
    decode_hex,
    field_value,
    is_hex,
    parse_fields,
    standalone,
)

__all__ = ["event_record"]

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

_SYSCALLS = {
    ("c000003e", "59"): "execve", ("c000003e", "322"): "execveat",
    ("c00000b7", "221"): "execve", ("c00000b7", "281"): "execveat",
    ("40000003", "11"): "execve", ("40000003", "358"): "execveat",
}  # fmt: skip
"""(arch, number) -> name for the exec calls, when the log is not ENRICHED."""

_INT_FIELDS = ("exit", "pid", "ppid", "uid", "auid", "euid", "ses")
_USER_FIELDS = ("op", "acct", "res", "terminal", "hostname", "addr", "cmd", "grantors", "id", "cwd")
"""Fields of user-space records (PAM, sudo, shadow utils) kept on the event."""


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
        for key, raw in PAIR.findall(body):
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
                elif is_hex(raw):
                    args[int(index)] = decode_hex(raw)
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
            args[index] = decode_hex(hexed)
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
                        for key, raw in PAIR.findall(tail)
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
                    info["cwd"] = field_value("cwd", raw)
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
                    paths.append(field_value("name", raw))
        elif kind == "PROCTITLE":
            raw = body[10:]
            if body[:10] != "proctitle=" or not raw.isalnum():
                # Not the kernel's usual one hex field (str methods, not a regex scan, for that).
                found = _PROCTITLE.search(body)
                raw = found.group(1) if found is not None else ""
            if raw:
                if raw[0] == '"':
                    proctitle = field_value("proctitle", raw)
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
        info["tty"] = tty if tty[0] != '"' and tty[0] != "'" else field_value("tty", tty)
        for key, text in (("comm", comm), ("exe", exe)):
            if len(text) > 1 and text[0] == '"' and text[-1] == '"':
                info[key] = text[1:-1]
            else:
                info[key] = field_value(key, text)
        if rule_key != "(null)":
            if len(rule_key) > 1 and rule_key[0] == '"' and rule_key[-1] == '"':
                info["key"] = rule_key[1:-1].replace("\x01", ",")
            else:
                info["key"] = field_value("key", rule_key).replace("\x01", ",")
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
                info[key] = field_value(key, text)
        rule_key = main.get("key")
        if rule_key is not None and rule_key != "(null)":
            info["key"] = field_value("key", rule_key).replace("\x01", ",")
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
