"""PRI, facility and severity of syslog messages, shared by the RFC 5424 and RFC 3164 paths and
by the records of messages that could not be parsed."""

from __future__ import annotations

import re

FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

# PRI text -> (pri, facility name, severity name), for every valid PRI written without
# leading zeros; other spellings ("013") go through pri_info.
PRI_TABLE: dict[str, tuple[int, str, str]] = {
    str(pri): (pri, FACILITIES[pri >> 3], SEVERITIES[pri & 7]) for pri in range(192)
}
PRI_DEFAULT = PRI_TABLE["13"]  # RFC 3164 4.3.3: a message without PRI is user.notice
PRI_PREFIX = re.compile(r"<(\d{1,3})>", re.ASCII)


def pri_info(text: str) -> tuple[int, str, str] | None:
    """(pri, facility, severity) of PRI digits, or None when they are not a valid PRI."""
    info = PRI_TABLE.get(text)
    if info is None and text.isdigit() and int(text) < 192:
        info = PRI_TABLE[str(int(text))]
    return info
